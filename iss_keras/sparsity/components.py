"""ISS's building blocks: the coupled group Lasso regularizer and the enforcement on whole
components.

The pieces of Wen et al.'s method (ICLR 2018, wenwei202/iss-rnns) that the
ISS method (`iss_keras.sparsity.iss`), its target-size controller
(`iss_keras.sparsity.target`) and the gate and neuron pruning
(`iss_keras.sparsity.gate_neuron`) are built from:

* `ISSRegularizer`, attached to a recurrent layer as its
  `recurrent_regularizer`. Keras hands a regularizer only that one variable,
  but an ISS component also spans the input kernel and the rows of every
  consumer, so the regularizer is *coupled* to the whole model once with
  `couple(model)`. Until then it refuses to compute anything
  (`UncoupledRegularizerError`): a penalty over the recurrent kernel alone
  would silently under-regularize. `iss_penalty(model)` is the total.
* `ComponentEnforcer`, a callback working on whole components (which span
  several variables; a constraint sees one): after every step it zeroes
  components whose norm is below a threshold (`"threshold"`), or applies the
  group soft-threshold of proximal gradient descent (`"proximal"`), and with
  `freeze=True` keeps removed components at zero; on TensorFlow it runs
  inside the compiled train step, after the optimizer's update. [ours: the
  paper uses the subgradient with per-weight zeroing, `WeightZeroing`.]
  `component_multipliers` gives the per-variable factors that scale whole
  components.
"""

import keras
import numpy as np
from keras import ops

from iss_keras.discovery import discover_groups, recurrent_layers_by_family
from iss_keras.groups import (check_footprints, crossings, group_lasso, group_sq_norms,
                              variables_by_path)
from iss_keras.sparsity.base import check_strength

EPSILON = 1e-8


class UncoupledRegularizerError(RuntimeError):
    """An ISSRegularizer was evaluated before `iss_keras.couple(model)`."""


@keras.saving.register_keras_serializable(package="iss_keras")
class ISSRegularizer(keras.regularizers.Regularizer):
    """Group Lasso over the Intrinsic Sparse Structures of a recurrent layer.

    Penalty: `strength * sum_k sqrt(||component k||^2 + 1e-8)`, where
    component k holds the unit's gate columns of `kernel` and
    `recurrent_kernel`, row k of `recurrent_kernel`, and row k of every
    consumer's input kernel, each weight counted once. Biases are not
    penalized.

    Attach it as `recurrent_regularizer`, one instance per layer, then call
    `iss_keras.couple(model)` once the model is built (and again after
    `keras.saving.load_model`).

    Args:
        strength: the group Lasso coefficient (lambda), >= 0.
        proximal: if True the penalty still appears in the loss (for logging)
            but carries no gradient; `ComponentEnforcer(mode="proximal")` then
            applies it as a group soft-threshold after every step.
        elementwise: optional regularizer (e.g. `keras.regularizers.L1L2`)
            applied to the recurrent kernel itself as well; ISS occupies the
            layer's `recurrent_regularizer` slot, so weight decay on that
            kernel goes here.

    Example:

    >>> lstm = keras.layers.LSTM(650, recurrent_regularizer=ISSRegularizer(1e-3))
    """

    def __init__(self, strength=1e-3, proximal=False, elementwise=None):
        self.strength = check_strength(strength)
        self.proximal = bool(proximal)
        self.elementwise = keras.regularizers.get(elementwise)
        self._family = None
        self._variables = None

    @property
    def family(self):
        """The `UnitFamily` this regularizer is coupled to, or None."""
        return self._family

    def bind(self, family, variables):
        check_footprints(family, variables)
        self._family = family
        self._variables = {fp.variable: variables[fp.variable] for fp in family.footprints}

    def penalty(self):
        """The unscaled group Lasso sum over this layer's components."""
        if self._family is None:
            raise UncoupledRegularizerError(
                "ISSRegularizer is not coupled to its model, so it cannot see the input "
                "kernel or the consumer rows of its units. Call iss_keras.couple(model) "
                "after building the model (and after keras.saving.load_model).")
        return group_lasso(self._family, self._variables, EPSILON)

    def __call__(self, x):
        value = self.strength * self.penalty()
        value = ops.stop_gradient(value) if self.proximal else value
        return value + self.elementwise(x) if self.elementwise is not None else value

    def get_config(self):
        return {"strength": self.strength, "proximal": self.proximal,
                "elementwise": keras.regularizers.serialize(self.elementwise)
                if self.elementwise is not None else None}


def iss_regularizers(model):
    """Map family name -> the ISSRegularizer attached to that layer (coupled or not)."""
    found = {}
    for name, where in recurrent_layers_by_family(model).items():
        cell = where.rnn.cell
        for attr in ("kernel", "bias"):
            var = getattr(cell, attr, None)
            if var is not None and isinstance(var.regularizer, ISSRegularizer):
                raise ValueError(
                    f"Layer {name!r} has ISSRegularizer as its {attr}_regularizer. Attach it "
                    "as recurrent_regularizer only: it already covers the whole component.")
        reg = getattr(getattr(cell, "recurrent_kernel", None), "regularizer", None)
        if isinstance(reg, ISSRegularizer):
            found[name] = reg
    return found


def couple(model, groups=None):
    """Discover the ISS components of `model` and bind every ISSRegularizer to them.

    Call once after the model is built, and again after loading it. Safe to
    call repeatedly.

    Args:
        model: a built Sequential or Functional `keras.Model`.
        groups: its `GroupSet`, when already discovered.

    Returns:
        The `GroupSet` of the model's components.

    Raises:
        UnsupportedLayerError: if a consumer of hidden units is not supported.
        ValueError: if one ISSRegularizer instance is attached to two layers.
    """
    groups = discover_groups(model) if groups is None else groups
    variables = variables_by_path(model)
    regs = iss_regularizers(model)
    owners = {}
    for name, reg in regs.items():
        if id(reg) in owners:
            raise ValueError(
                f"The same ISSRegularizer instance is attached to layers {owners[id(reg)]!r} "
                f"and {name!r}. Create one ISSRegularizer per layer.")
        owners[id(reg)] = name
        reg.bind(groups[name], variables)
    return groups


def iss_penalty(model):
    """Total ISS penalty (strength-weighted) of all coupled regularizers in `model`."""
    total = 0.0
    for reg in iss_regularizers(model).values():
        total = total + reg.strength * reg.penalty()
    return total


def component_multipliers(family, factors, shapes):
    """Per-variable multipliers that scale component k by `factors[k]`.

    A recurrent weight `R[i, g*H + j]` belongs to component i (its row) and to
    component j (its column), so it is scaled by both factors; a weight that
    belongs to one component through two footprints is scaled once.

    Built with `keras.ops` from index arrays known when the model is built, so
    it also runs inside a compiled train step with `factors` a tensor.

    Args:
        family: a `UnitFamily`.
        factors: array or tensor of shape `(family.size,)`.
        shapes: dict variable path -> its shape.

    Returns:
        dict path -> float32 tensor of that variable's shape.
    """
    return {path: ops.broadcast_to(mult, tuple(shapes[path]))
            for path, mult in _multipliers(family, factors, shapes).items()}


def _multipliers(family, factors, shapes, binary=False):
    """`component_multipliers`, each only broadcastable to its variable's shape (a product of
    one vector per indexed axis: no full-size tensor is built for an elementwise multiply).

    With `binary=True` (every factor 0 or 1) a weight in two footprints of one component is
    left to both, as f * f = f: no full-size scatter for the crossings.
    """
    factors = ops.convert_to_tensor(factors, "float32")
    axis_vectors = {}
    for fp in family.penalized:
        index = fp.indices(family.size)
        vector = ops.scatter_update(ops.ones((shapes[fp.variable][fp.axis],)),
                                    index.reshape(-1, 1), ops.repeat(factors, index.shape[1]))
        vectors = axis_vectors.setdefault(fp.variable, {})
        vectors[fp.axis] = vectors[fp.axis] * vector if fp.axis in vectors else vector
    multipliers = {}
    for path, vectors in axis_vectors.items():
        shape = tuple(shapes[path])
        mult = None
        for axis, vector in vectors.items():
            vector = ops.reshape(vector, [n if a == axis else 1 for a, n in enumerate(shape)])
            mult = vector if mult is None else mult * vector
        multipliers[path] = mult
    if binary:
        return multipliers
    for path, r, c in crossings(family, family.penalized):
        rows, cols = np.broadcast_arrays(r, c)
        index = np.stack([rows.reshape(-1), cols.reshape(-1)], axis=1)
        multipliers[path] = ops.scatter_update(
            ops.broadcast_to(multipliers[path], tuple(shapes[path])), index,
            ops.repeat(factors, rows[0].size))
    return multipliers


def _compiled(fn):
    """`fn` (tensors in, tensors out) traced once by the backend's compiler, where it has one."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.function(fn)
    if backend == "jax":
        import jax
        return jax.jit(fn)
    return fn


def _distributed(model):
    """True when `model` trains under a `tf.distribute` strategy (Keras keeps the one it was
    built in; `fit` itself runs outside its scope)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf
    return (getattr(model, "_distribute_strategy", None) is not None
            or tf.distribute.has_strategy())


class ComponentEnforcer(keras.callbacks.Callback):
    """Zero, shrink and freeze whole ISS components after each training step.

    Args:
        groups: the model's `GroupSet` (from `iss_keras.couple(model)`).
        mode: `"threshold"` zeroes every component whose L2 norm is below
            `threshold`; `"proximal"` multiplies component k by
            `max(0, 1 - lr * strength / ||component k||)` (exact proximal
            gradient step for plain SGD), taking `strength` from the layer's
            `ISSRegularizer` (create it with `proximal=True`) and `lr` from the
            optimizer; `"none"` only freezes.
        threshold: norm threshold for `"threshold"` mode.
        freeze: keep components that reached zero at zero for the rest of
            training (their gradient would otherwise revive them).
        every_n_steps: enforce every N steps (1 = after every step).
        strengths: for `"proximal"` on groups that are not ISS units (e.g. gate
            groups), dict family name -> strength; by default each family's
            strength is its layer's `ISSRegularizer`'s.
        in_step: where the enforcement runs during `fit`. `True`: inside the
            train step (compiled on TensorFlow; op by op under torch, whose
            step is eager), right after the optimizer's update (the
            callback wraps `model.optimizer.apply` once and switches itself on
            for the length of each `fit`), so a step needs no host copy and no
            Python after it. `False`: from this callback after each step (two
            compiled calls). `"auto"` (default): in the step on TensorFlow when
            `every_n_steps` is 1 and the model is not under a `tf.distribute`
            strategy, else after it (JAX updates variables statelessly, so the
            frozen mask could not be carried through its step). Both give the
            same weights, to float rounding, with one step per execution and
            no other callback changing weights after a step (in the step, the
            enforcement runs before every callback). [ours]

    Example:

    >>> groups = iss_keras.couple(model)
    >>> model.fit(x, y, callbacks=[ComponentEnforcer(groups, threshold=1e-4)])
    """

    MODES = ("threshold", "proximal", "none")

    def __init__(self, groups, mode="threshold", threshold=1e-4, freeze=True, every_n_steps=1,
                 strengths=None, in_step="auto"):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}. Received: mode={mode!r}")
        if mode == "threshold" and not float(threshold) > 0:
            raise ValueError(f"threshold must be > 0. Received: threshold={threshold}")
        if int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps must be >= 1. Received: every_n_steps={every_n_steps}")
        if in_step not in (True, False, "auto"):
            raise ValueError(
                f"in_step must be True, False or 'auto'. Received: in_step={in_step!r}")
        if in_step is True and int(every_n_steps) != 1:
            raise ValueError(
                f"in_step=True enforces after every step; every_n_steps must be 1. "
                f"Received: every_n_steps={every_n_steps}")
        self.groups = groups
        self.mode = mode
        self.threshold = float(threshold)
        self.freeze = bool(freeze)
        self.every_n_steps = int(every_n_steps)
        self.strengths = None if strengths is None else {k: float(v) for k, v in strengths.items()}
        self.in_step = in_step
        self._frozen = None
        self._norms_fn = None
        self._enforce_fn = None
        self._installed = None
        self._active = None
        self._strength_variables = {}
        self._in_step_model = None
        self._step = 0

    @property
    def frozen(self):
        """Family name -> NumPy bool array: the components held at zero."""
        return {name: np.asarray(ops.convert_to_numpy(v))
                for name, v in self._frozen_state().items()}

    def _frozen_state(self):
        if self._frozen is None:
            self._frozen = {f.name: keras.Variable(np.zeros(f.size, bool), dtype="bool",
                                                   trainable=False, name=f"frozen_{i}")
                            for i, f in enumerate(self.groups)}
        return self._frozen

    def _strengths(self):
        if self.mode != "proximal":
            return {}
        if self.strengths is not None:
            return self.strengths
        regs = iss_regularizers(self.model)
        missing = [f.name for f in self.groups if f.name not in regs]
        if missing:
            raise ValueError(
                f"ComponentEnforcer(mode='proximal') needs an ISSRegularizer on every "
                f"recurrent layer to know its strength; missing on {missing}.")
        return {name: reg.strength for name, reg in regs.items()}

    def start(self):
        """Freeze the components that are zero now (e.g. when resuming); `fit` calls it."""
        norms = self._all_norms(variables_by_path(self.model))
        for name, frozen in self._frozen_state().items():
            frozen.assign(norms[name] == 0.0)
        self._step = 0

    def on_train_begin(self, logs=None):
        self.start()
        if self._runs_in_step():
            self._install()

    def on_train_end(self, logs=None):
        self._uninstall()

    def _runs_in_step(self):
        if getattr(self.model, "optimizer", None) is None:
            return False  # called outside fit, on a model that has no train step
        if self.in_step == "auto":
            return (keras.backend.backend() == "tensorflow" and self.every_n_steps == 1
                    and not _distributed(self.model))
        return self.in_step

    def _paths(self, variables):
        paths = sorted({fp.variable for family in self.groups for fp in family.penalized})
        return paths, tuple(tuple(variables[p].shape) for p in paths)

    def _all_norms(self, variables):
        """Family name -> its components' L2 norms (float64 NumPy).

        All families' squared norms come from one compiled call and reach the host in
        one copy (computed op by op, they cost several times a compiled call).
        """
        key = self._paths(variables)
        if self._norms_fn is None or self._norms_fn[0] != key:
            families = list(self.groups)

            def squared_norms(values):
                return ops.concatenate([group_sq_norms(f, values) for f in families], axis=0)

            self._norms_fn = (key, _compiled(squared_norms))
        flat = self._norms_fn[1]({p: variables[p].value for p in key[0]})
        flat = np.sqrt(np.asarray(ops.convert_to_numpy(flat), np.float64))
        ends = np.cumsum([family.size for family in self.groups])
        return {family.name: part for family, part in
                zip(self.groups, np.split(flat, ends[:-1]))}

    def _decided(self, values, frozen, lr, strengths, active=None):
        """What to do, as a function of tensors: (factors, new frozen masks, zero count, changed).

        `values`: path -> tensor of every penalized variable; `frozen`: family name -> bool
        tensor; `lr` and `strengths` (family name -> scalar) matter in `"proximal"` mode;
        `active`, a bool scalar tensor, turns it into a no-op where False. `factors`: family
        name -> the factor of each component; `changed`: whether any weight would change,
        i.e. a component that is not zero gets a factor other than 1.
        """
        factors, new_frozen, zeros, changed = {}, {}, 0, False
        for family in self.groups:
            norms = ops.sqrt(group_sq_norms(family, values))
            if self.mode == "threshold":
                f = ops.where(norms < self.threshold, 0.0, 1.0)
            elif self.mode == "proximal":
                positive = norms > 0
                step = ops.cast(lr, "float32") * ops.cast(strengths[family.name], "float32")
                shrink = 1.0 - step / ops.where(positive, norms, 1.0)
                f = ops.where(positive, ops.maximum(0.0, shrink), 0.0)
            else:
                f = ops.ones((family.size,))
            if self.freeze:
                f = ops.where(frozen[family.name], 0.0, f)
            if active is not None:
                f = ops.where(active, f, 1.0)
            if self.freeze:
                new_frozen[family.name] = ops.logical_or(f == 0.0, frozen[family.name])
            zeros = zeros + ops.sum(ops.cast(f == 0.0, "int32"))
            changed = ops.logical_or(changed, ops.any(ops.logical_and(f != 1.0, norms > 0)))
            factors[family.name] = f
        return factors, new_frozen, zeros, changed

    def _scaled(self, values, factors):
        """`values` (path -> tensor) with component k of each family scaled by its factor."""
        shapes = {path: tuple(v.shape) for path, v in values.items()}
        multipliers = {}
        for family in self.groups:
            for path, mult in _multipliers(family, factors[family.name], shapes,
                                           binary=self.mode != "proximal").items():
                multipliers[path] = mult if path not in multipliers else multipliers[path] * mult
        return {path: values[path] * ops.cast(mult, values[path].dtype)
                for path, mult in multipliers.items()}

    def _assign(self, variables, new_values):
        # Multiplied on the device: no copy of the weights to NumPy and back.
        for path, value in new_values.items():
            variables[path].assign(value)

    def _inputs(self, variables, paths):
        strengths = {name: ops.convert_to_tensor(s, "float32")
                     for name, s in self._strengths().items()}
        lr = ops.convert_to_tensor(
            self.model.optimizer.learning_rate if strengths else 0.0, "float32")
        frozen = {name: v.value for name, v in self._frozen_state().items()}
        return {p: variables[p].value for p in paths}, frozen, lr, strengths

    def _enforce_now(self):
        """Compiled calls after a step (the weights are scaled only where one changes); returns
        the zero count as a device scalar."""
        variables = variables_by_path(self.model)
        key = self._paths(variables)
        if self._enforce_fn is None or self._enforce_fn[0] != key:
            def decide(values, frozen, lr, strengths):
                factors, new_frozen, zeros, changed = self._decided(values, frozen, lr, strengths)
                refrozen = False
                for name, mask in new_frozen.items():
                    refrozen = ops.logical_or(refrozen, ops.any(mask != frozen[name]))
                return factors, new_frozen, zeros, ops.stack([changed, refrozen])

            self._enforce_fn = (key, _compiled(decide), _compiled(self._scaled))
        values, frozen, lr, strengths = self._inputs(variables, key[0])
        factors, new_frozen, zeros, flags = self._enforce_fn[1](values, frozen, lr, strengths)
        changed, refrozen = np.asarray(ops.convert_to_numpy(flags))  # one copy to the host
        if refrozen:
            for name, value in new_frozen.items():
                self._frozen[name].assign(value)
        if changed:
            self._assign(variables, self._enforce_fn[2](values, factors))
        return zeros

    def enforce(self):
        """Apply the enforcement once, now. Returns the number of zero components."""
        return int(ops.convert_to_numpy(self._enforce_now()))

    def _install(self):
        """Run the enforcement inside the train step, after the optimizer's update.

        The optimizer's `apply` is wrapped once and stays wrapped; the enforcement in it is
        switched on by `on_train_begin` and off by `on_train_end` (a device flag), so fitting
        again neither traces nor compiles the step again, and a later `fit` without this
        callback does not enforce (unless a `fit` with it raised before its end).
        """
        if keras.backend.backend() == "jax":
            raise ValueError(
                "ComponentEnforcer(in_step=True) cannot run under JAX: its train step updates "
                "variables statelessly and would drop the frozen mask. Use in_step='auto' or "
                "False.")
        if _distributed(self.model):
            raise ValueError(
                "ComponentEnforcer(in_step=True) cannot run under a tf.distribute strategy: "
                "the replicas' step cannot assign mirrored weights. Use in_step='auto' or False.")
        if self._in_step_model is not None and self._in_step_model is not self.model:
            raise ValueError(
                "This ComponentEnforcer already enforces inside another model's train step; "
                "create one ComponentEnforcer per model.")
        optimizer = self.model.optimizer
        enforcers = getattr(optimizer, "_iss_enforcers", None)
        if enforcers is None:
            enforcers, original = [], optimizer.apply

            def apply(grads, trainable_variables=None):
                result = original(grads, trainable_variables)
                for enforcer in enforcers:
                    enforcer._enforce_in_step()
                return result

            # Plain attributes: Keras's attribute tracking must not wrap the list.
            object.__setattr__(optimizer, "_iss_enforcers", enforcers)
            object.__setattr__(optimizer, "apply", apply)
        if self._active is None:
            self._active = keras.Variable(False, dtype="bool", trainable=False, name="enforcing")
            self._strength_variables = {
                name: keras.Variable(s, dtype="float32", trainable=False, name=f"strength_{i}")
                for i, (name, s) in enumerate(sorted(self._strengths().items()))}
        for name, s in self._strengths().items():  # read again at every fit
            self._strength_variables[name].assign(s)
        self._frozen_state()
        self._in_step_model = self.model
        if self not in enforcers:
            enforcers.append(self)
            self.model.make_train_function(force=True)  # trace the step again, with it
        self._active.assign(True)
        self._installed = optimizer

    def _enforce_in_step(self):
        model = self._in_step_model
        variables = variables_by_path(model)
        paths, _ = self._paths(variables)
        values = {p: variables[p].value for p in paths}
        strengths = {name: v.value for name, v in self._strength_variables.items()}
        factors, new_frozen, _, changed = self._decided(
            values, {name: v.value for name, v in self._frozen.items()},
            model.optimizer.learning_rate if strengths else 0.0, strengths,
            active=self._active.value)
        for name, value in new_frozen.items():
            self._frozen[name].assign(value)

        def scale():
            self._assign(variables, self._scaled(values, factors))
            return ops.convert_to_tensor(True)

        # Scaled only where a weight changes, as after the step; a pass over the weights less.
        ops.cond(changed, scale, lambda: ops.convert_to_tensor(False))

    def _uninstall(self):
        if self._installed is not None:
            self._active.assign(False)
            self._installed = None

    def on_train_batch_end(self, batch, logs=None):
        if self._installed is not None:
            return
        self._step += 1
        if self._step % self.every_n_steps == 0:
            self._enforce_now()
