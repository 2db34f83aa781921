"""ISS: group Lasso over each hidden unit's whole footprint, and its enforcement.

The method of Wen et al. (ICLR 2018, wenwei202/iss-rnns). Its pieces:

* `ISSRegularizer`, attached to a recurrent layer as its
  `recurrent_regularizer`. Keras hands a regularizer only that one variable,
  but an ISS component also spans the input kernel and the rows of every
  consumer, so the regularizer is *coupled* to the whole model once with
  `couple(model)`. Until then it refuses to compute anything: a penalty over
  the recurrent kernel alone would silently under-regularize.
* `ComponentEnforcer`, a callback working on whole components (which span
  several variables; a constraint sees one): after every step it zeroes
  components whose norm is below a threshold (`"threshold"`), or applies the
  group soft-threshold of proximal gradient descent (`"proximal"`), and with
  `freeze=True` keeps removed components at zero. [ours: the paper uses the
  subgradient with per-weight zeroing, `WeightZeroing`.]
* `ISS`, the method object the trainers and model builders use (see
  `iss_keras.sparsity.base`); the target-size controller is
  `iss_keras.sparsity.target.TargetSize`.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from iss_keras.discovery import discover_groups, recurrent_layers_by_family
from iss_keras.groups import (check_footprints, crossings, group_lasso, group_sq_norms,
                              variables_by_path)
from iss_keras.options import check_at_least, option
from iss_keras.sparsity.base import SparsityMethod, check_strength

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
        variables = variables_by_path(self.model)
        for family in self.groups:
            norms = self._norms(family, variables)
            self.frozen[family.name] = norms == 0.0
        self._step = 0

    def _norms(self, family, variables):
        return np.sqrt(np.asarray(ops.convert_to_numpy(group_sq_norms(family, variables)), np.float64))

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
        for family in self.groups:
            norms = self._norms(family, variables)
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


# -- the method ---------------------------------------------------------------------------------

@dataclasses.dataclass
class ISSOptions:
    """ISS's options in the original repository's units (loss summed over the unrolled steps)."""

    iss_strength: float = option(0.0, "ISS group Lasso lambda (original's units, e.g. 0.00245).")
    proximal: bool = option(False, "Apply ISS by proximal (group soft-threshold) steps instead "
                            "of its subgradient.", ours=True)
    component_threshold: float = option(0.0, "Whole ISS components with a smaller norm are "
                                        "zeroed after every step (0: off).", ours=True)
    freeze: bool = option(False, "Keep removed components at zero. The original lets a zeroed "
                          "unit regrow (its --freeze_mode was unset for the paper).", ours=True)
    target_macs_ratio: float = option(
        0.0, "Target-size mode: adapt the ISS strength (starting at --iss_strength, applied by "
        "proximal steps) so the model ends with this many times fewer multiply-adds per token, "
        "reached at the end of --target_reach_epoch, then fine-tunes at that size (within 2%). "
        "0: off.", ours=True)
    target_units: tuple = option((), "Target-size mode with hidden units per recurrent layer "
                                 "instead, e.g. 100,100.", ours=True, element=int)
    target_reach_epoch: int = option(0, "Epoch at whose end the target size is reached (0: "
                                     "half of --epochs).", ours=True)

    def __post_init__(self):
        check_at_least(self, 0.0, "iss_strength", "component_threshold", "target_macs_ratio")
        check_at_least(self, 0, "target_reach_epoch")
        self.target_units = tuple(int(u) for u in self.target_units)
        if any(u < 1 for u in self.target_units):
            raise ValueError(f"target_units must be positive integers. Received: "
                             f"target_units={list(self.target_units)}")
        if self.target_macs_ratio and self.target_units:
            raise ValueError("Give one target: target_macs_ratio or target_units, not both. "
                             f"Received: target_macs_ratio={self.target_macs_ratio}, "
                             f"target_units={list(self.target_units)}")
        if self.target_macs_ratio and not self.target_macs_ratio > 1.0:
            raise ValueError("target_macs_ratio is dense / target multiply-adds and must be > 1. "
                             f"Received: target_macs_ratio={self.target_macs_ratio}")
        if self.targeting and not self.iss_strength:
            raise ValueError("The target-size mode adapts the ISS strength: set iss_strength > 0 "
                             "as its starting value (e.g. the original's units, 0.002).")
        if self.targeting and self.component_threshold:
            raise ValueError("The target-size mode prunes by proximal steps; drop "
                             f"component_threshold={self.component_threshold}.")
        if self.proximal and not self.iss_strength:
            raise ValueError("proximal=True applies the ISS penalty by proximal steps; set "
                             "iss_strength > 0 too.")

    @property
    def targeting(self):
        return bool(self.target_macs_ratio or self.target_units)


class ISS(SparsityMethod):
    """Intrinsic Sparse Structures: group Lasso on whole hidden-unit components.

    Adds an `ISSRegularizer` to every recurrent layer's `recurrent_kernel`
    slot, couples it to the model's unit groups at `bind`, and (options that
    are ours) enforces whole components after every step.

    Args:
        strength: group Lasso coefficient per unit of the training loss
            (Keras's mean; the trainers divide the original's lambda by the
            unrolled steps). 0 with `threshold` or `freeze`: no penalty, only
            the enforcement.
        proximal: [ours] apply the penalty by proximal steps
            (`ComponentEnforcer(mode="proximal")`) instead of its subgradient.
        threshold: [ours] zero whole components whose norm is below this
            after every step (0: off).
        freeze: [ours] keep zeroed components at zero.
        target: [ours] target-size mode, a dict of `TargetSize` arguments
            (`macs_ratio` or `units`, and `reach_epoch`); implies proximal.

    Example:

    >>> sparsity = ISS(0.00245 / 35)        # the paper's lambda, per token
    >>> model = lstm_language_model(10000, [1500, 1500], sparsity=sparsity)
    >>> groups = sparsity.bind(model, iss_keras.discover_groups(model))
    """

    name = "iss"
    Options = ISSOptions
    original_zeroing = True

    def __init__(self, strength=0.0, proximal=False, threshold=0.0, freeze=False, target=None):
        self.strength = check_strength(strength)
        self.threshold = check_strength(threshold, "threshold")
        self.freeze = bool(freeze)
        self.target = dict(target) if target else None
        self.proximal = bool(proximal) or self.target is not None
        if self.proximal and not self.strength:
            raise ValueError("Proximal ISS (and the target-size mode) needs strength > 0.")
        self._target_callback = None
        self._pending_state = {}

    @classmethod
    def from_options(cls, options, context, chosen=()):
        others_sparsify = any(m.sparsifies for m in chosen)
        if not (options.iss_strength or options.component_threshold
                or (options.freeze and others_sparsify)):
            return None
        target = None
        if options.targeting:
            reach = options.target_reach_epoch or max(1, context.epochs // 2)
            if context.epochs and not reach <= context.epochs:
                raise ValueError(f"target_reach_epoch must be in 0..epochs ({context.epochs}). "
                                 f"Received: target_reach_epoch={options.target_reach_epoch}")
            target = {"macs_ratio": options.target_macs_ratio or None,
                      "units": list(options.target_units) or None, "reach_epoch": reach}
        return cls(options.iss_strength / context.loss_scale, proximal=options.proximal,
                   threshold=options.component_threshold, freeze=options.freeze, target=target)

    @property
    def sparsifies(self):
        return bool(self.strength or self.threshold)

    def regularizer(self, slot):
        if slot == "recurrent_kernel" and self.strength:
            return ISSRegularizer(self.strength, proximal=self.proximal)
        return None

    def bind(self, model, groups):
        couple(model, groups)

    def callbacks(self, run):
        if self.target is not None:
            from iss_keras.sparsity.target import TargetSize

            self._target_callback = TargetSize(
                run.groups, reach_step=self.target["reach_epoch"] * run.steps_per_epoch,
                macs_ratio=self.target["macs_ratio"], units=self.target["units"],
                initial_step=run.initial_epoch * run.steps_per_epoch)
            if self._pending_state.get("target"):
                self._target_callback.load_state(self._pending_state["target"])
            return [self._target_callback]
        if self.proximal:
            return [ComponentEnforcer(run.groups, mode="proximal", freeze=self.freeze)]
        if self.threshold:
            return [ComponentEnforcer(run.groups, mode="threshold", threshold=self.threshold,
                                      freeze=self.freeze)]
        if self.freeze:
            return [ComponentEnforcer(run.groups, mode="none", freeze=True)]
        return []

    def get_state(self):
        if self._target_callback is not None:
            return {"target": self._target_callback.state()}
        return dict(self._pending_state)

    def set_state(self, state):
        self._pending_state = dict(state or {})

    def epoch_summary(self):
        return self.get_state()

    def may_be_best(self, row):
        """In the target-size mode, only an epoch at the reached size is a candidate."""
        return self.target is None or bool(row.get("target", {}).get("reached"))

    def result_fields(self, history, model=None):
        if self.target is None:
            return {}
        last = history[-1].get("target", {}) if history else {}
        return {"target": {**self.target, "reached": last.get("reached")}}

    def get_config(self):
        return {"strength": self.strength, "proximal": self.proximal, "threshold": self.threshold,
                "freeze": self.freeze, "target": self.target}
