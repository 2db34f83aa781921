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
  `freeze=True` keeps removed components at zero. [ours: the paper uses the
  subgradient with per-weight zeroing, `WeightZeroing`.]
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
    """Per-variable multiplier arrays that scale component k by `factors[k]`.

    A recurrent weight `R[i, g*H + j]` belongs to component i (its row) and to
    component j (its column), so it is scaled by both factors; a weight that
    belongs to one component through two footprints is scaled once.
    """
    axis_factors = {}
    for fp in family.penalized:
        shape = shapes[fp.variable]
        vectors = axis_factors.setdefault(fp.variable, [np.ones(n) for n in shape])
        index = fp.indices(family.size)
        vectors[fp.axis][index] *= factors[:, None]
    multipliers = {}
    for path, vectors in axis_factors.items():
        mult = vectors[0]
        for vec in vectors[1:]:
            mult = np.multiply.outer(mult, vec)
        multipliers[path] = mult
    for path, r, c in crossings(family, family.penalized):
        multipliers[path][r, c] = factors[:, None, None] * np.ones_like(r * c)
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

    Example:

    >>> groups = iss_keras.couple(model)
    >>> model.fit(x, y, callbacks=[ComponentEnforcer(groups, threshold=1e-4)])
    """

    MODES = ("threshold", "proximal", "none")

    def __init__(self, groups, mode="threshold", threshold=1e-4, freeze=True, every_n_steps=1,
                 strengths=None):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}. Received: mode={mode!r}")
        if mode == "threshold" and not float(threshold) > 0:
            raise ValueError(f"threshold must be > 0. Received: threshold={threshold}")
        if int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps must be >= 1. Received: every_n_steps={every_n_steps}")
        self.groups = groups
        self.mode = mode
        self.threshold = float(threshold)
        self.freeze = bool(freeze)
        self.every_n_steps = int(every_n_steps)
        self.strengths = None if strengths is None else {k: float(v) for k, v in strengths.items()}
        self.frozen = {}
        self._cache = {}
        self._norms_fn = None
        self._step = 0

    def _strengths(self):
        if self.strengths is not None:
            return self.strengths
        regs = iss_regularizers(self.model)
        missing = [f.name for f in self.groups if f.name not in regs]
        if missing:
            raise ValueError(
                f"ComponentEnforcer(mode='proximal') needs an ISSRegularizer on every "
                f"recurrent layer to know its strength; missing on {missing}.")
        return {name: reg.strength for name, reg in regs.items()}

    def on_train_begin(self, logs=None):
        # Components already at zero (e.g. when resuming) stay frozen.
        norms = self._all_norms(variables_by_path(self.model))
        for family in self.groups:
            self.frozen[family.name] = norms[family.name] == 0.0
        self._step = 0

    def _all_norms(self, variables):
        """Family name -> its components' L2 norms (float64 NumPy), after every step.

        All families' squared norms come from one compiled call and reach the host in
        one copy (computed op by op, they cost several times a compiled call, every step).
        """
        paths = sorted({fp.variable for family in self.groups for fp in family.penalized})
        shapes = tuple(tuple(variables[p].shape) for p in paths)
        if self._norms_fn is None or self._norms_fn[0] != (paths, shapes):
            families = list(self.groups)

            def squared_norms(values):
                return ops.concatenate([group_sq_norms(f, values) for f in families], axis=0)

            self._norms_fn = ((paths, shapes), _compiled(squared_norms))
        flat = self._norms_fn[1]({p: variables[p].value for p in paths})
        flat = np.sqrt(np.asarray(ops.convert_to_numpy(flat), np.float64))
        ends = np.cumsum([family.size for family in self.groups])
        return {family.name: part for family, part in
                zip(self.groups, np.split(flat, ends[:-1]))}

    def _multipliers(self, family, factors, variables):
        """Device tensors scaling each variable; cached for 0/1 patterns (thresholding, freezing)."""
        binary = bool(np.all((factors == 0.0) | (factors == 1.0)))
        key = factors.astype(bool).tobytes() if binary else None
        cached = self._cache.get(family.name)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        shapes = {fp.variable: tuple(variables[fp.variable].shape) for fp in family.penalized}
        mults = {path: ops.convert_to_tensor(mult, dtype=variables[path].dtype)
                 for path, mult in component_multipliers(family, factors, shapes).items()}
        if key is not None:
            self._cache[family.name] = (key, mults)
        return mults

    def enforce(self):
        """Apply the enforcement once, now. Returns the number of zero components."""
        variables = variables_by_path(self.model)
        strengths = self._strengths() if self.mode == "proximal" else {}
        lr = float(ops.convert_to_numpy(self.model.optimizer.learning_rate)) if strengths else 0.0
        zero_total = 0
        multipliers = {}
        all_norms = self._all_norms(variables)
        for family in self.groups:
            norms = all_norms[family.name]
            factors = np.ones(family.size)
            if self.mode == "threshold":
                factors[norms < self.threshold] = 0.0
            elif self.mode == "proximal":
                step = lr * strengths[family.name]
                safe = np.where(norms > 0, norms, 1.0)
                factors = np.where(norms > 0, np.maximum(0.0, 1.0 - step / safe), 0.0)
            if self.freeze:
                frozen = self.frozen.get(family.name, np.zeros(family.size, bool))
                factors[frozen] = 0.0
                self.frozen[family.name] = frozen | (factors == 0.0)
            zero_total += int((factors == 0.0).sum())
            if np.all((factors == 1.0) | (norms == 0.0)):
                continue  # scaling only components that are already zero changes nothing
            for path, mult in self._multipliers(family, factors, variables).items():
                multipliers[path] = mult if path not in multipliers else ops.multiply(
                    multipliers[path], mult)
        # Multiply on the device: no copy of the weights to NumPy and back.
        for path, mult in multipliers.items():
            variables[path].assign(ops.multiply(variables[path], mult))
        return zero_total

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every_n_steps == 0:
            self.enforce()
