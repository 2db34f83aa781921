"""ISS, the method: group Lasso over each hidden unit's whole footprint, as a `SparsityMethod`.

The method of Wen et al. (ICLR 2018, wenwei202/iss-rnns), as the trainers
and model builders use it (see `iss_keras.sparsity.base`): `ISSOptions` (its
flags) and `ISS`, which puts an `ISSRegularizer` on every recurrent layer,
couples it at `bind` and adds the enforcement callbacks its options ask for.
The building blocks (the regularizer, `couple`, `ComponentEnforcer`) are in
`iss_keras.sparsity.components`; the target-size controller is
`iss_keras.sparsity.target.TargetSize`.
"""

import dataclasses

from iss_keras.options import check_at_least, option
from iss_keras.sparsity.base import SparsityMethod, check_strength
from iss_keras.sparsity.components import ComponentEnforcer, ISSRegularizer, couple
from iss_keras.sparsity.target import TargetSize


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

    @classmethod
    def describe(cls, config):
        target = config.get("target") or {}
        if target.get("units"):
            return f"ISS → {target['units']} units"
        if target.get("macs_ratio"):
            return f"ISS → {target['macs_ratio']:g}× fewer multiply-adds"
        return "ISS"

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
