"""Sparsity report: what training has removed so far, and what it is worth.

Multiply-adds are counted per token (per time step) for matrix products only,
by the rule of `iss_keras.macs` (input and recurrent kernels of every
recurrent cell, Dense kernels, a tied softmax; embedding lookups and
element-wise work are not counted, as in the paper).
"""

import json

import keras
import numpy as np
from keras import ops

from iss_keras.discovery import discover_groups
from iss_keras.groups import all_zero_mask, variables_by_path
from iss_keras.macs import macs_per_token
from iss_keras.rebuild import index_maps, make_plan


class SparsityReport:
    """Per-layer units, model-wide weights and multiply-adds, per-variable sparsity.

    Attributes:
        layers: list of dicts `{name, units, active_units, removable,
            all_zero_units, blocked_by}`: `active_units` is what shrink keeps
            (ours: a unit goes once its outgoing weights are zero);
            `all_zero_units` counts units whose whole component is zero, the
            original repository's count (`match_map == 6`).
        totals: dict with `weights`, `nonzero_weights` (weights that are not
            exactly zero), `weights_after`, `macs_per_token`, `macs_per_token_after`.
        variables: list of dicts `{path, shape, size, zeros, sparsity}`.
    """

    def __init__(self, layers, totals, variables):
        self.layers = layers
        self.totals = totals
        self.variables = variables

    def to_dict(self):
        return {"layers": self.layers, "totals": self.totals, "variables": self.variables}

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def to_text(self):
        lines = [f"{'recurrent layer':<32}{'units':>8}{'active':>8}{'removable':>11}"]
        for row in self.layers:
            lines.append(f"{row['name']:<32}{row['units']:>8}{row['active_units']:>8}"
                         f"{len(row['removable']):>11}")
        t = self.totals
        lines.append("")
        lines.append(f"{'model':<32}{'before':>14}{'after':>14}{'ratio':>8}")
        for label, before, after in (
                ("weights", t["weights"], t["weights_after"]),
                ("multiply-adds per token", t["macs_per_token"], t["macs_per_token_after"])):
            ratio = before / after if after else float("inf")
            lines.append(f"{label:<32}{before:>14,}{after:>14,}{ratio:>7.2f}x")
        lines.append("")
        lines.append(f"{'variable':<52}{'shape':>16}{'zeros':>9}")
        for v in self.variables:
            lines.append(f"{v['path']:<52}{str(tuple(v['shape'])):>16}{v['sparsity']:>8.1%}")
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()


def sparsity_report(model, groups=None):
    """Measure the structured and element-wise sparsity of `model`.

    Args:
        model: a built Sequential or Functional model.
        groups: its `GroupSet` (discovered if not given).

    Returns:
        A `SparsityReport` (`print(report)` gives a table; `report.to_dict()`).
    """
    groups = discover_groups(model) if groups is None else groups
    plan = make_plan(model, groups)
    shapes = {v.path: tuple(v.shape) for v in model.weights}
    new_shapes = dict(shapes)
    for (path, axis), order in index_maps(plan, shapes).items():
        shape = list(new_shapes[path])
        shape[axis] = len(order)
        new_shapes[path] = tuple(shape)

    def count(shape_map, paths):
        return int(sum(np.prod(shape_map[p]) for p in paths))

    trainable = [v.path for v in model.weights if v.trainable]
    totals = {
        "weights": count(shapes, trainable),
        "nonzero_weights": int(sum(int(np.count_nonzero(ops.convert_to_numpy(v)))
                                   for v in model.weights if v.trainable)),
        "weights_after": count(new_shapes, trainable),
        "macs_per_token": macs_per_token(model, shapes),
        "macs_per_token_after": macs_per_token(model, new_shapes),
    }
    layers = []
    removed = plan.removed
    variables_at = variables_by_path(model)
    for family in groups:
        layers.append({"name": family.name, "units": family.size,
                       "active_units": len(plan.kept[family.name]),
                       "removable": removed[family.name],
                       "all_zero_units": int(all_zero_mask(family, variables_at).sum()),
                       "blocked_by": list(family.removal_blockers)})
    variables = []
    for v in model.weights:
        if not v.trainable:
            continue
        value = np.asarray(ops.convert_to_numpy(v))
        zeros = int((value == 0).sum())
        variables.append({"path": v.path, "shape": list(value.shape), "size": int(value.size),
                          "zeros": zeros, "sparsity": zeros / max(1, value.size)})
    return SparsityReport(layers, totals, variables)


def report_scalars(report):
    """Flatten a report into `{"iss/...": number}` for Keras logs."""
    logs = {}
    for row in report.layers:
        logs[f"iss/{row['name']}/active_units"] = row["active_units"]
    for key, value in report.totals.items():
        logs[f"iss/{key}"] = value
    return logs


class SparsityReportCallback(keras.callbacks.Callback):
    """Put the sparsity report into every epoch's logs (and so into History and TensorBoard).

    Adds `iss/<layer>/active_units`, `iss/weights`, `iss/weights_after`,
    `iss/macs_per_token` and `iss/macs_per_token_after` to the epoch logs, so
    `History` records them and a `keras.callbacks.TensorBoard` listed after
    this callback writes them (one writer for every scalar of the run).

    Args:
        groups: the model's `GroupSet` (discovered on train begin if None).
        verbose: print the text table every epoch.

    Example:

    >>> model.fit(x, y, callbacks=[SparsityReportCallback(groups),
    ...                            keras.callbacks.TensorBoard("tb")])
    """

    def __init__(self, groups=None, verbose=False):
        super().__init__()
        self.groups = groups
        self.verbose = verbose
        self.last_report = None

    def on_train_begin(self, logs=None):
        if self.groups is None:
            self.groups = discover_groups(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.last_report = sparsity_report(self.model, self.groups)
        if logs is not None:
            logs.update(report_scalars(self.last_report))
        if self.verbose:
            print(f"\nepoch {epoch + 1} sparsity:\n{self.last_report.to_text()}")
