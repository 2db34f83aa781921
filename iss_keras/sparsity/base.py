"""What a sparsity method is to the rest of the package: one small interface.

A method (ISS, element-wise L1, weight zeroing, and later gate/neuron
sparsification or sparse evolutionary training) is an object that answers six
questions, each with a harmless default:

1. **What it adds to a layer**: `regularizer(slot)` and `constraint(slot)`,
   asked by a model builder for each weight it creates. Slots name the
   weight's role: `"embeddings"`, `"kernel"`, `"recurrent_kernel"`, `"bias"`.
   A new object is returned per call (an `ISSRegularizer` belongs to one layer).
   Builders create their layers with `sparsity.layer(cls, *args, **kwargs)`;
   a method that needs layers of its own (SparseVD's noisy ones) returns them
   from `make_layer`, the others build `cls(*args, **kwargs)`.
2. **How it binds to a built model**: `bind(model, groups)`, once the model
   exists (ISS couples its regularizers to the unit groups here).
3. **Its callbacks**: `callbacks(run)`, per-step work during `fit`
   (enforcement, size control, topology changes).
4. **Its state in checkpoints**: `get_state()` / `set_state(state)`
   (JSON-ready); `epoch_summary()` is what it adds to each epoch's log row.
5. **Its final clean-up**: `finalize(model)`, before the model is tested and
   rebuilt (for example: noise off, masks applied).
6. **Its compression**: `compress(model, groups)` -> `(smaller model, plan)`,
   verified equal to `model`. The default is `iss_keras.shrink`: remove the
   hidden units whose outgoing weights are all zero (identity when none are).

Plus `get_config()` (JSON-ready; `from_config` rebuilds it), `name` (the
registry key), `sparsifies` (whether it makes the network sparse),
`original_zeroing` (whether the original repository zeroes small weights after
every step in runs with this method: ISS and L1), and what it adds to a run's
record: `result_fields(history, model)` (results.json), `pictures(model)` (the
data of its pictures, drawn by `iss_keras.training.plots.draw`) and the
classmethod `describe(config)` (how the results tables name a run of it).

A method the trainers offer also declares its options: `Options`, a dataclass
of `iss_keras.options.option` fields (the trainers' flags), and the classmethod
`from_options(options, context, chosen)` that builds it from them (None when
its options are off). `register(cls)` checks both and adds the class to the
registry (`registered()`, `method_class(name)`); `iss_keras.sparsity` registers
the package's methods in the order they are built from options.

`Sparsity` combines several methods into one object with the same interface;
model builders take one `sparsity=` argument, a `Sparsity` (or one method).
"""

import dataclasses

import keras

from iss_keras.rebuild import shrink

# Keyword arguments of `SparsityMethod.layer` that describe a layer's input to a method's own
# layer; they are dropped before a stock Keras layer is made.
LAYER_HINTS = ("one_hot_input",)


class SparsityMethod:
    """Base class: a method that adds nothing (see the module docstring for the interface).

    Example (a method that keeps every kernel non-negative):

    >>> class NonNegative(SparsityMethod):
    ...     name = "non_negative"
    ...     def constraint(self, slot):
    ...         return keras.constraints.NonNeg() if slot == "kernel" else None
    """

    name = "none"
    sparsifies = False
    # A registered method's options dataclass (the trainers' flags); see `from_options`.
    Options = None
    # The original repository zeroes every weight below a threshold after each
    # step in its sparsity runs (ISS, L1); a method that says so here gets it
    # from options (`WeightZeroing`).
    original_zeroing = False

    @classmethod
    def from_options(cls, options, context, chosen=()):
        """The method a run's options ask for, or None when they leave it off.

        Args:
            options: an instance of `cls.Options`.
            context: an `iss_keras.sparsity.OptionContext` (the original's units to Keras's).
            chosen: the methods already built from the same options (registered earlier).
        """
        raise NotImplementedError(f"{cls.__name__} does not define from_options(options, "
                                  "context, chosen): a registered method must say how its "
                                  "options build it.")

    @classmethod
    def describe(cls, config):
        """How a results table names a run of this method, from its recorded `get_config()`;
        None for a method the tables leave out (e.g. weight decay)."""
        return cls.name

    # 1. what it adds to a layer
    def regularizer(self, slot):
        return None

    def constraint(self, slot):
        return None

    def layer(self, cls, *args, **kwargs):
        """`cls(*args, **kwargs)`, or this method's own version of that layer.

        `kwargs` may carry `LAYER_HINTS` (what a builder knows about the layer's
        input, e.g. `one_hot_input=True`): a method's own layer may use them; a
        stock layer never sees them.
        """
        made = self.make_layer(cls, args, kwargs)
        if made is not None:
            return made
        return cls(*args, **{k: v for k, v in kwargs.items() if k not in LAYER_HINTS})

    def make_layer(self, cls, args, kwargs):
        return None

    # 2. binding
    def bind(self, model, groups):
        return None

    # 3. callbacks
    def callbacks(self, run):
        return []

    # 4. state
    def get_state(self):
        return {}

    def set_state(self, state):
        if state:
            raise ValueError(f"Sparsity method {self.name!r} keeps no state; a checkpoint "
                             f"holds some for it: {state!r}.")

    def epoch_summary(self):
        return {}

    def may_be_best(self, row):
        """Whether the epoch of history `row` may be kept as the best one (e.g. not before a
        size asked for is reached)."""
        return True

    # 5. clean-up, 6. compression
    def finalize(self, model):
        return model

    def compress(self, model, groups=None):
        return shrink(model, groups)

    compresses = False  # True where `compress` is the method's own, not the default shrink

    def result_fields(self, history, model=None):
        """What the method adds to results.json (e.g. the size a target run reached), given
        the history rows and the tested model."""
        return {}

    def pictures(self, model):
        """The data of the pictures of what the method learned: a dict picture kind -> data,
        drawn beside the training plots by `iss_keras.training.plots.draw` (none by default)."""
        return {}

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


NO_SPARSITY = SparsityMethod()

_REGISTRY = {}  # name -> method class, in the order registered


def register(cls):
    """Add the `SparsityMethod` subclass `cls` to the registry (under `cls.name`); returns it.

    The order of registration is the order in which `iss_keras.sparsity.from_options` builds
    a run's methods: a method sees those registered before it (`chosen`).

    Raises:
        TypeError: `cls` is not a `SparsityMethod` subclass, or lacks its own `name`, its
            `Options` dataclass or its `from_options` classmethod.
        ValueError: another class is registered under the same name or with the same
            `Options`.
    """
    if not (isinstance(cls, type) and issubclass(cls, SparsityMethod)):
        raise TypeError(f"Only SparsityMethod subclasses can be registered. Received: {cls!r}")
    missing = []
    if cls.name == SparsityMethod.name:
        missing.append("a name (class attribute `name`, the registry key)")
    if not (isinstance(cls.Options, type) and dataclasses.is_dataclass(cls.Options)):
        missing.append(f"an Options dataclass (class attribute `Options`; has {cls.Options!r})")
    if getattr(cls.from_options, "__func__", None) is SparsityMethod.from_options.__func__:
        missing.append("a from_options(options, context, chosen) classmethod")
    if missing:
        raise TypeError(f"Cannot register sparsity method {cls.__name__}: it lacks "
                        + "; ".join(missing) + ".")
    for other in _REGISTRY.values():
        if other is cls:
            return cls
        clash = (f"name {cls.name!r}" if other.name == cls.name else
                 f"Options {cls.Options.__name__}" if other.Options is cls.Options else None)
        if clash:
            raise ValueError(f"Cannot register {cls.__name__}: {other.__name__} is registered "
                             f"with the same {clash}.")
    _REGISTRY[cls.name] = cls
    return cls


def registered():
    """The registered method classes, in the order registered."""
    return tuple(_REGISTRY.values())


def method_class(name):
    """The registered method class called `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown sparsity method {name!r}; known: {list(_REGISTRY)}.")
    return _REGISTRY[name]


def merge_regularizers(first, second):
    """One regularizer computing both (Keras gives each weight one slot).

    A coupled regularizer with an `elementwise` slot (`ISSRegularizer`) takes
    the other one there; two element-wise L1/L2 regularizers become one
    `L1L2`. Anything else raises: say how the two should combine.
    """
    if first is None or second is None:
        return first if second is None else second
    for coupled, other in ((first, second), (second, first)):
        if hasattr(coupled, "elementwise"):
            if hasattr(other, "elementwise"):
                raise ValueError(f"Two coupled regularizers on one weight: {first!r} and "
                                 f"{second!r}. Use one structured method per layer.")
            coupled.elementwise = merge_regularizers(coupled.elementwise, other)
            return coupled
    l1, l2 = 0.0, 0.0
    for reg in (first, second):
        if not isinstance(reg, (keras.regularizers.L1, keras.regularizers.L2,
                                keras.regularizers.L1L2)):
            raise ValueError(f"Cannot combine regularizers {first!r} and {second!r} on one "
                             "weight: only L1/L2 and coupled (ISS) regularizers combine.")
        config = reg.get_config()
        l1 += float(config.get("l1", 0.0))
        l2 += float(config.get("l2", 0.0))
    return keras.regularizers.L1L2(l1=l1, l2=l2)


def elementwise_part(regularizer):
    """What of `regularizer` acts on its weight alone.

    A coupled regularizer (one with an `elementwise` slot, e.g. ISS's group
    Lasso: it needs the model's unit groups, see `merge_regularizers`) gives
    that slot; any other regularizer is returned whole. For weights outside
    every unit family, where a coupled regularizer could never be coupled
    (e.g. BiDAF's contextual LSTM).
    """
    return regularizer.elementwise if hasattr(regularizer, "elementwise") else regularizer


class Sparsity(SparsityMethod):
    """Several methods acting together, with the interface of one.

    Args:
        methods: `SparsityMethod`s (e.g. `[ISS(...), WeightZeroing(1e-4)]`).

    Example:

    >>> sparsity = Sparsity([ISS(0.004 / 20), WeightZeroing(1e-4)])
    >>> model = lstm_language_model(10000, [200, 200], sparsity=sparsity)
    """

    name = "combined"

    def __init__(self, methods=()):
        self.methods = [m for m in methods if m is not None]
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise ValueError(f"Each sparsity method may appear once. Received: {names}")
        own = [m.name for m in self.methods if m.compresses]
        if len(own) > 1:
            raise ValueError(f"Methods {own} each rebuild the model their own way; combine at "
                             "most one of them.")

    @property
    def sparsifies(self):
        return any(m.sparsifies for m in self.methods)

    def find(self, name):
        """The member method called `name`, or None."""
        return next((m for m in self.methods if m.name == name), None)

    def regularizer(self, slot):
        merged = None
        for method in self.methods:
            merged = merge_regularizers(merged, method.regularizer(slot))
        return merged

    def make_layer(self, cls, args, kwargs):
        for method in self.methods:
            made = method.make_layer(cls, args, kwargs)
            if made is not None:
                return made
        return None

    def constraint(self, slot):
        found = [c for c in (m.constraint(slot) for m in self.methods) if c is not None]
        if len(found) > 1:
            raise ValueError(f"Several constraints for the {slot!r} weights: {found}; Keras "
                             "applies one per weight.")
        return found[0] if found else None

    def bind(self, model, groups):
        for method in self.methods:
            method.bind(model, groups)

    def callbacks(self, run):
        return [cb for method in self.methods for cb in method.callbacks(run)]

    def get_state(self):
        return {m.name: s for m in self.methods for s in [m.get_state()] if s}

    def set_state(self, state):
        state = dict(state or {})
        for method in self.methods:
            method.set_state(state.pop(method.name, {}))
        if state:
            raise ValueError(f"The checkpoint holds state for sparsity methods {sorted(state)} "
                             f"that this run does not use ({[m.name for m in self.methods]}). "
                             "Use the flags the checkpoint was trained with (flags.txt).")

    def epoch_summary(self):
        out = {}
        for method in self.methods:
            out.update(method.epoch_summary())
        return out

    def may_be_best(self, row):
        return all(method.may_be_best(row) for method in self.methods)

    def finalize(self, model):
        for method in self.methods:
            model = method.finalize(model)
        return model

    @property
    def compresses(self):
        return any(m.compresses for m in self.methods)

    def compress(self, model, groups=None):
        own = [m for m in self.methods if m.compresses]
        return (own[0] if own else super()).compress(model, groups)

    def result_fields(self, history, model=None):
        out = {}
        for method in self.methods:
            out.update(method.result_fields(history, model))
        return out

    def pictures(self, model):
        out = {}
        for method in self.methods:
            for kind, data in method.pictures(model).items():
                if kind in out:
                    raise ValueError(f"Two methods of {self!r} give a {kind!r} picture.")
                out[kind] = data
        return out

    def get_config(self):
        return {"methods": [{"name": m.name, "config": m.get_config()} for m in self.methods]}

    @classmethod
    def from_config(cls, config):
        return cls([method_class(m["name"]).from_config(m["config"]) for m in config["methods"]])

    def __repr__(self):
        return f"Sparsity({self.methods!r})"


def as_sparsity(sparsity):
    """`sparsity` as a method object: None means no sparsity."""
    if sparsity is None:
        return NO_SPARSITY
    if not isinstance(sparsity, SparsityMethod):
        raise TypeError(f"sparsity must be a SparsityMethod (e.g. iss_keras.sparsity.ISS(...)) "
                        f"or None. Received: {sparsity!r}")
    return sparsity


def check_strength(strength, name="strength"):
    """`strength` as a float >= 0, or ValueError quoting it."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0. Received: {name}={strength!r}") from None
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"{name} must be a number >= 0. Received: {name}={strength}")
    return value
