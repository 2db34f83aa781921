"""Enforcement: making small weights and small components exactly zero.

Two levels:

* `ZeroOut` is a `keras.constraints.Constraint`: after every optimizer step
  weights with `|w| < threshold` become exactly 0, as the original repository
  does (default 1e-4). It runs inside the compiled train step.
* `ComponentEnforcer` is a callback that works on whole ISS components, which
  span several variables (a constraint only sees one): after every step it
  either zeroes components whose norm is below a threshold (`"threshold"`) or
  applies the group soft-threshold of proximal gradient descent
  (`"proximal"`), and with `freeze=True` keeps removed components at zero.

Subgradient + threshold is what the paper did; the proximal step reaches exact
zeros without a threshold to tune. See README ("Choosing an enforcement").
"""

import keras
import numpy as np
from keras import ops

from iss_keras.groups import crossings, group_sq_norms, variables_by_path
from iss_keras.penalties import iss_regularizers


@keras.saving.register_keras_serializable(package="iss_keras")
class ZeroOut(keras.constraints.Constraint):
    """Set weights with `|w| < threshold` to exactly zero after each update.

    Args:
        threshold: magnitude below which a weight becomes 0 (> 0).

    Example:

    >>> lstm = keras.layers.LSTM(64, kernel_constraint=ZeroOut(1e-4),
    ...                          recurrent_constraint=ZeroOut(1e-4))
    """

    def __init__(self, threshold=1e-4):
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise ValueError(f"threshold must be a number > 0. Received: threshold={threshold!r}")
        if not threshold > 0:
            raise ValueError(f"threshold must be a number > 0. Received: threshold={threshold}")
        self.threshold = threshold

    def __call__(self, w):
        w = ops.convert_to_tensor(w)
        return ops.where(ops.abs(w) < self.threshold, ops.zeros_like(w), w)

    def get_config(self):
        return {"threshold": self.threshold}


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

    Example:

    >>> groups = iss_keras.couple(model)
    >>> model.fit(x, y, callbacks=[ComponentEnforcer(groups, threshold=1e-4)])
    """

    MODES = ("threshold", "proximal", "none")

    def __init__(self, groups, mode="threshold", threshold=1e-4, freeze=True, every_n_steps=1):
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
        self.frozen = {}
        self._cache = {}
        self._step = 0

    def _strengths(self):
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
