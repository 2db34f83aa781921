"""[ours] Target-size ISS: ask for a size, not a lambda.

The original repository leaves lambda to be tuned by hand for each size
(users kept asking how). `TargetSize` adapts the ISS strength during training
so the model arrives at a requested size at a chosen step and then fine-tunes
at that size:

1. Until `reach_step`, the size follows a planned trajectory from the dense
   size to the target, falling fast at first and slowly at the end (the cubic
   schedule of Zhu & Gupta 2017, "To prune, or not to prune"). Every
   `check_every` steps the strength is multiplied by `gain` when the model is
   above the plan and divided by it when below. The penalty is applied by
   proximal steps (`ComponentEnforcer(mode="proximal")`), so components reach
   exact zeros with no threshold.
2. At `reach_step` the remaining excess, if any, is removed by zeroing the
   weakest components (smallest norm relative to the median of the layer's
   active ones) until the size is within `tolerance` of the target. A model
   that gets there earlier stops there (checked every `check_every` steps;
   within `approach` of the goal, after every step and with the strength
   held at most at its starting value, so that a burst of strong proximal
   steps cannot carry the model far past the target; and after every step
   too once the model falls fast enough that two more check intervals at
   the last interval's pace would take it past the goal, since units whose
   norms shrank together can all die between two checks).
3. Afterwards the strength is 0 and zero components are frozen: the rest of
   training fine-tunes the network at the reached size.

Sizes are multiply-adds per token of the whole model (`macs_ratio`: dense /
target) or hidden units per recurrent layer (`units`), as counted by
`iss_keras.sparsity_report` (what shrink will build).
"""

import keras
import numpy as np

from iss_keras.groups import group_sq_norms, variables_by_path
from iss_keras.report import sparsity_report
from iss_keras.sparsity.components import (ComponentEnforcer, component_multipliers,
                                           iss_regularizers)


def zero_components(family, units, variables):
    """Set the whole (penalized) component of each unit in `units` to zero."""
    factors = np.ones(family.size)
    factors[list(units)] = 0.0
    shapes = {fp.variable: tuple(variables[fp.variable].shape) for fp in family.penalized}
    for path, mult in component_multipliers(family, factors, shapes).items():
        variable = variables[path]
        variable.assign(variable * keras.ops.convert_to_tensor(mult, dtype=variable.dtype))


class TargetSize(keras.callbacks.Callback):
    """[ours] Drive ISS to a requested size by adapting its strength (see module doc).

    Needs an `ISSRegularizer(proximal=True)` on every recurrent layer (its
    strength is the starting lambda and is changed in place) and the groups
    from `iss_keras.couple(model)`.

    Args:
        groups: the model's `GroupSet`.
        reach_step: optimizer step (counted from the start of training) at
            which the target size must be reached.
        macs_ratio: dense multiply-adds per token / target (e.g. 2.0).
        units: target hidden units, a dict family name -> units or a list in
            the order of `groups`.
        check_every: steps between two adaptations of the strength.
        gain: factor by which the strength is raised or lowered (> 1).
        tolerance: relative tolerance on the final size (0.02: +-2%).
        approach: within this fraction above the goal the size is checked
            after every step and the strength is at most the starting one.
        initial_step: steps already done (when resuming).

    Example:

    >>> groups = iss_keras.couple(model)   # LSTMs with ISSRegularizer(1e-4, proximal=True)
    >>> target = TargetSize(groups, reach_step=6 * steps_per_epoch, macs_ratio=2.0)
    >>> model.fit(x, y, epochs=13, callbacks=[target])
    """

    def __init__(self, groups, reach_step, macs_ratio=None, units=None, check_every=50, gain=1.25,
                 tolerance=0.02, approach=0.1, initial_step=0):
        super().__init__()
        if (macs_ratio is None) == (units is None):
            raise ValueError("Give exactly one target: macs_ratio (e.g. 2.0) or units (per "
                             f"layer). Received: macs_ratio={macs_ratio!r}, units={units!r}")
        if macs_ratio is not None and not float(macs_ratio) >= 1.0:
            raise ValueError(f"macs_ratio must be >= 1 (dense / target multiply-adds). "
                             f"Received: macs_ratio={macs_ratio}")
        if int(reach_step) < 1:
            raise ValueError(f"reach_step must be >= 1. Received: reach_step={reach_step}")
        if not float(gain) > 1.0:
            raise ValueError(f"gain must be > 1. Received: gain={gain}")
        if int(check_every) < 1:
            raise ValueError(f"check_every must be >= 1. Received: check_every={check_every}")
        self.groups = groups
        self.macs_ratio = None if macs_ratio is None else float(macs_ratio)
        self.units = self._unit_targets(groups, units)
        self.reach_step = int(reach_step)
        self.check_every = int(check_every)
        self.gain = float(gain)
        self.tolerance = float(tolerance)
        self.approach = float(approach)
        self.near = {}  # families in the approach band: checked every step, strength capped
        # Once the size falls fast enough to pass the goal within two more check intervals,
        # every step is checked: units whose norms shrank together can all reach zero within
        # `check_every` steps and jump past the approach band (an RHN went from over 118 to 92
        # units between two checks when driven to 108).
        self.falling = False
        self._last_size = None
        self.step = int(initial_step)
        self.scale = {f.name: 1.0 for f in groups}  # strength / starting strength, per layer
        self.reached = None  # the size report once reached
        self._base = None
        self._start = None
        self._proximal = None
        self._freezer = None

    @staticmethod
    def _unit_targets(groups, units):
        if units is None:
            return None
        names = [f.name for f in groups]
        if not isinstance(units, dict):
            units = list(units)
            if len(units) != len(names):
                raise ValueError(f"units must give one size per recurrent layer {names}. "
                                 f"Received: units={units}")
            units = dict(zip(names, units))
        for family in groups:
            n = units.get(family.name)
            if n is None or not 1 <= int(n) <= family.size:
                raise ValueError(f"Target units for {family.name!r} must be in 1..{family.size}. "
                                 f"Received: {n!r}")
        return {name: int(n) for name, n in units.items()}

    # -- state kept in checkpoints -------------------------------------------------------

    def state(self):
        """JSON-ready state, for a checkpoint's history."""
        return {"step": self.step, "scale": self.scale, "reached": self.reached,
                "start": self._start, "near": sorted(self.near), "falling": self.falling,
                "last_size": self._last_size}

    def load_state(self, state):
        self.step = int(state["step"])
        self.scale = {name: float(s) for name, s in state["scale"].items()}
        self.reached = state.get("reached")
        self._start = state.get("start")
        self.near = dict.fromkeys(state.get("near", ()), True)
        self.falling = bool(state.get("falling", False))
        self._last_size = state.get("last_size")

    # -- sizes -----------------------------------------------------------------------------

    def _size(self):
        """Current size: multiply-adds per token, or {family: active units}."""
        report = sparsity_report(self.model, self.groups)
        if self.macs_ratio is not None:
            return report.totals["macs_per_token_after"], report
        return {row["name"]: row["active_units"] for row in report.layers}, report

    def _goal(self):
        if self.macs_ratio is not None:
            return self._start["macs"] / self.macs_ratio
        return self.units

    def planned(self, step):
        """The planned size at `step` (cubic from the dense size to the target)."""
        p = min(1.0, step / self.reach_step)
        fraction = 1.0 - (1.0 - p) ** 3
        if self.macs_ratio is not None:
            start, goal = self._start["macs"], self._goal()
            return start - (start - goal) * fraction
        return {name: self._start["units"][name] - (self._start["units"][name] - n) * fraction
                for name, n in self.units.items()}

    def _above_plan(self, size, plan):
        if self.macs_ratio is not None:
            return {f.name: size > plan for f in self.groups}
        return {name: size[name] > plan[name] for name in plan}

    # -- callback --------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        regs = iss_regularizers(self.model)
        missing = [f.name for f in self.groups if f.name not in regs]
        if missing or not all(regs[f.name].proximal for f in self.groups):
            raise ValueError(
                "TargetSize needs ISSRegularizer(strength, proximal=True) on every recurrent "
                f"layer (its strength is the starting lambda); missing or not proximal on "
                f"{missing or [f.name for f in self.groups]}.")
        self._regs = {f.name: regs[f.name] for f in self.groups}
        if self._base is None:
            self._base = {name: reg.strength for name, reg in self._regs.items()}
        if self._start is None:
            report = sparsity_report(self.model, self.groups)
            self._start = {"macs": report.totals["macs_per_token_after"],
                           "units": {row["name"]: row["active_units"] for row in report.layers}}
        self._proximal = ComponentEnforcer(self.groups, mode="proximal", freeze=False)
        self._freezer = ComponentEnforcer(self.groups, mode="none", freeze=True)
        for enforcer in (self._proximal, self._freezer):
            enforcer.set_model(self.model)
        self._apply_scale()
        if self.reached is not None:
            self._freezer.start()

    def _apply_scale(self):
        for name, reg in self._regs.items():
            reg.strength = 0.0 if self.reached is not None else self._base[name] * self.scale[name]

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.reached is not None:
            self._freezer.enforce()
            return
        self._proximal.enforce()
        if self.step >= self.reach_step:
            self._reach()
        elif self.near or self.falling or self.step % self.check_every == 0:
            size, _ = self._size()
            if not any(self._over(size).values()):
                self._reach()  # reached early: stop here rather than overshoot
                return
            self.falling = self.falling or self._fell(size)
            self._last_size = size
            near = self._in_approach(size)
            if self.step % self.check_every == 0:
                above = self._above_plan(size, self.planned(self.step))
                self.scale = {name: s * (self.gain if above[name] else 1.0 / self.gain)
                              for name, s in self.scale.items()}
            self.near = {name: True for name, is_near in near.items() if is_near}
            self.scale = {name: min(s, 1.0) if name in self.near else s
                          for name, s in self.scale.items()}
            self._apply_scale()

    def _fell(self, size):
        """Whether the fall since the last check, twice over, would pass the goal."""
        last, goal = self._last_size, self._goal()
        if last is None:
            return False
        if self.macs_ratio is not None:
            return 2 * (last - size) >= size - goal > 0
        return any(2 * (last.get(name, size[name]) - size[name]) >= size[name] - goal[name] > 0
                   for name in size)

    def _in_approach(self, size):
        goal = self._goal()
        if self.macs_ratio is not None:
            return {f.name: size <= goal * (1.0 + self.approach) for f in self.groups}
        return {name: size[name] <= goal[name] + max(1.0, self.approach * goal[name])
                for name in goal}

    def _over(self, size):
        goal = self._goal()
        if self.macs_ratio is not None:
            return {f.name: size > goal * (1.0 + self.tolerance) for f in self.groups}
        return {name: size[name] > goal[name] for name in goal}

    def _reach(self):
        """Zero the weakest components until the target holds, then freeze."""
        variables = variables_by_path(self.model)
        size, report = self._size()
        pruned = 0
        while any(self._over(size).values()):
            over = self._over(size)
            candidates = []
            for family in self.groups:
                if not over[family.name]:
                    continue
                norms = np.sqrt(np.asarray(keras.ops.convert_to_numpy(
                    group_sq_norms(family, variables)), np.float64))
                active = np.flatnonzero(norms > 0)
                if len(active) <= 1:
                    continue
                relative = norms[active] / np.median(norms[active])
                k = int(np.argmin(relative))
                candidates.append((relative[k], family, int(active[k])))
            if not candidates:
                break
            _, family, unit = min(candidates, key=lambda c: c[0])
            zero_components(family, [unit], variables)
            pruned += 1
            size, report = self._size()
        # A removable unit (outgoing weights zero) may still hold incoming weights and
        # regrow from them; zero its whole component so the freeze holds it.
        for family, row in zip(self.groups, report.layers):
            if row["removable"]:
                zero_components(family, row["removable"], variables)
        self.reached = {"step": self.step, "pruned_at_reach": pruned,
                        "macs_per_token": report.totals["macs_per_token_after"],
                        "macs_ratio": report.totals["macs_per_token"]
                        / max(1, report.totals["macs_per_token_after"]),
                        "active_units": [row["active_units"] for row in report.layers]}
        self._apply_scale()
        self._freezer.start()
