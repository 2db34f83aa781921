"""What W+G+N sparsity is worth, and the rebuild both its frameworks share.

`compress_structured(model)` removes dead hidden units and dead word-vector
channels (`iss_keras.shrink` over the ISS families and the embedding channel
families), then computes only the non-constant gate columns
(`iss_keras.compact.compress_gates`); both steps are verified on random
inputs. `gate_neuron_report(model)` gives, per recurrent layer, the hidden
units and input dimensions kept, the non-constant gates of each type, the
vocabulary kept, and for the model the weights (all, nonzero), the
multiply-adds per token before and after, and two compression ratios: ours,
all weights / nonzero weights (biases included), and Lobacheva et al.'s
"Overall compression" (`compression_theirs`, classification_net.py:27-59):
the weight matrices only (embeddings and kernels, no biases), every weight
of a dead word, input, unit or channel counted as removed even if nonzero
(nonzero entries of the shrunk model's matrices / entries of the sparse
model's). One difference from their code: there a pruned gate's column
still counts the weights its own noise kept; here such a column is folded
into the gate's constant and counts as removed. `gate_structure(model)` is
what the gate-structure pictures show (drawn by `iss_keras.training.plots`): the
gates the rebuilt model computes, on the sparse model's units; the report's
non-constant gate counts are `gate_counts` of the same data.
"""

import json

import numpy as np
from keras import ops

from iss_keras.compact import GatePlan, compress_gates, make_gate_plan
from iss_keras.discovery import discover_groups
from iss_keras.files import write_text
from iss_keras.gate_discovery import channel_groups, recurrent_cells
from iss_keras.gates import GATE_NAMES
from iss_keras.groups import GroupSet
from iss_keras.keras_internals import all_layers
from iss_keras.macs import macs_per_token
from iss_keras.rebuild import ShrinkPlan, shrink

# The levels of groups both W+G+N frameworks sparsify (Lobacheva et al.): each weight; + input
# and hidden neurons; + each gate's preactivation.
LEVELS = ("W", "W+N", "W+G+N")


class CompressionPlan:
    """The two steps of a W+G+N rebuild: the `ShrinkPlan` (units and channels kept) and the
    `GatePlan` (gate columns computed)."""

    def __init__(self, shrink_plan, gate_plan):
        self.shrink_plan = shrink_plan
        self.gate_plan = gate_plan

    def summary(self):
        """Hidden units before and after, per recurrent layer (as `ShrinkPlan.summary`)."""
        return {name: sizes for name, sizes in self.shrink_plan.summary().items()
                if not name.endswith("/channels")}

    def to_json(self, **kwargs):
        return json.dumps({"shrink": self.shrink_plan.get_config(),
                           "gates": json.loads(self.gate_plan.to_json())}, **kwargs)

    @classmethod
    def from_json(cls, text):
        config = json.loads(text)
        return cls(ShrinkPlan.from_config(config["shrink"]), GatePlan(config["gates"]["layers"]))

    def save(self, path):
        write_text(path, self.to_json(indent=1))


def structured_groups(model):
    """The hidden-unit families (ISS) and the embedding-channel families of `model`."""
    return GroupSet(list(discover_groups(model)) + list(channel_groups(model)))


def compress_structured(model, verify=True):
    """`(rebuilt model, CompressionPlan)`: dead units and channels removed, constant gates folded."""
    shrunk, shrink_plan = shrink(model, structured_groups(model), verify=verify)
    compact, gate_plan = compress_gates(shrunk, verify=verify)
    return compact, CompressionPlan(shrink_plan, gate_plan)


class StructuredRebuild:
    """What the W+G+N methods share (mixed into their `SparsityMethod`): the rebuild, the
    report in results.json and the gate-structure pictures."""

    compresses = True

    def compress(self, model, groups=None):
        return compress_structured(model)

    def result_fields(self, history, model=None):
        return {"gate_neuron": gate_neuron_report(model)} if model is not None else {}

    def pictures(self, model):
        return {"gate_structure": gate_structure(model)}


def gate_structure(model):
    """Which gates of which units the rebuilt model still computes, and which units it keeps,
    per gated recurrent layer of the sparse `model`, on `model`'s unit indices (the data of its
    gate-structure picture; `gate_neuron_report` counts its non-constant gates from the same
    data, via `gate_counts`).

    A unit the rebuild removes (its outgoing weights are zero) computes no gate, whatever its
    gate columns hold, so its gates are not active here.

    Returns:
        dict layer name -> {"gates": the gate names (`GATE_NAMES`), "active": a boolean array
        [gates, units] (the rebuilt model computes the gate: the unit is kept and the gate
        column is not constant), "kept": a boolean array [units]}.
    """
    shrunk, plan = shrink(model, structured_groups(model), verify=False)
    return _rebuilt_gate_structure(plan, make_gate_plan(shrunk))


def _rebuilt_gate_structure(shrink_plan, gates):
    """`gate_structure` from the `ShrinkPlan` of the sparse model and the `GatePlan` of the
    shrunk one: the shrunk model's kept units are `shrink_plan.kept` in order, then zero-filled
    padding (constant gates)."""
    sizes = {family.name: family.size for family in shrink_plan.groups}
    structure = {}
    for name, entry in gates.layers.items():
        units = sizes.get(name, entry["units"])
        kept = shrink_plan.kept.get(name, list(range(units)))
        active = np.zeros((len(GATE_NAMES[entry["kind"]]), units), bool)
        active[:, kept] = gates.active(name)[:, :len(kept)]
        alive = np.zeros(units, bool)
        alive[kept] = True
        structure[name] = {"gates": GATE_NAMES[entry["kind"]], "active": active, "kept": alive}
    return structure


def gate_counts(layer):
    """{gate name: units whose gate is computed} of one layer of `gate_structure`."""
    return {g: int(row.sum()) for g, row in zip(layer["gates"], np.asarray(layer["active"]))}


def _nonzero(variable):
    return int(np.count_nonzero(np.asarray(ops.convert_to_numpy(variable))))


def gate_neuron_report(model):
    """The W+G+N picture of a sparse (masked, noise-off) model; see the module docstring."""
    shrunk, plan = shrink(model, structured_groups(model), verify=False)
    structure = _rebuilt_gate_structure(plan, make_gate_plan(shrunk))
    compact, _ = compress_gates(shrunk, verify=False)
    layers = {}
    for name, cell in recurrent_cells(model).items():
        kernel = np.asarray(ops.convert_to_numpy(cell.kernel))
        layers[name] = {
            "hidden": f"{len(plan.kept[name])}/{cell.units}",
            "inputs": f"{int((np.abs(kernel).max(axis=1) > 0).sum())}/{kernel.shape[0]}",
            "nonconstant_gates": gate_counts(structure[name]) if name in structure else {},
        }
    vocabulary = {}
    for layer in all_layers(model):
        if hasattr(layer, "embeddings") and getattr(layer, "input_dim", None):
            rows = np.abs(np.asarray(ops.convert_to_numpy(layer.embeddings))).max(axis=1) > 0
            vocabulary[layer.name] = f"{int(rows.sum())}/{rows.size}"
    weights = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    nonzero = sum(_nonzero(v) for v in model.trainable_weights)
    matrices = sum(int(np.prod(v.shape)) for v in model.trainable_weights if len(v.shape) == 2)
    kept_in_matrices = sum(_nonzero(v) for v in shrunk.trainable_weights if len(v.shape) == 2)
    return {"layers": layers, "vocabulary": vocabulary, "weights": weights,
            "nonzero_weights": nonzero, "compression": weights / max(1, nonzero),
            "matrix_weights": matrices, "matrix_weights_kept": kept_in_matrices,
            "compression_theirs": matrices / max(1, kept_in_matrices),
            "macs_per_token": macs_per_token(model), "macs_per_token_after": macs_per_token(compact),
            "weights_after_rebuild": sum(int(np.prod(v.shape)) for v in compact.trainable_weights)}
