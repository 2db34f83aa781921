"""Gate and neuron pruning (W, W+N, W+G+N; Lobacheva et al.'s levels) by proximal group Lasso.

The pruning framework beside the Bayesian one (`iss_keras.sparsity.bayesian`),
over the same structures (`iss_keras.gate_discovery`):

* W: every weight of the embeddings, recurrent kernels and dense kernels is
  soft-thresholded after each step, `w <- sign(w) max(0, |w| - lr * weight_strength)`
  (the proximal step of L1);
* N: the group soft-threshold of `iss_keras.ComponentEnforcer` on each input
  neuron (kernel row) and each hidden neuron (its outgoing weights: recurrent
  row and consumer rows), strength `group_strength`;
* G: the same on each gate's preactivation (kernel and recurrent column).

Applied in that order after every optimizer step (proximal steps of a sum of
overlapping penalties applied one after another: a splitting, not the exact
proximal operator of the sum). [ours: the papers sparsify by variational
dropout; this is the group-Lasso route the project offers for pruning.] With
momentum or Adam the steps are the plain-SGD proximal steps at the
optimizer's learning rate, a heuristic. The rebuild removes dead units and
channels and folds constant gates (`compress_structured`).
"""

import dataclasses

import keras
from keras import ops

from iss_keras.gate_discovery import gate_groups, input_neuron_groups
from iss_keras.gates import CELL_KINDS
from iss_keras.groups import Footprint, GroupSet, UnitFamily
from iss_keras.keras_internals import all_layers
from iss_keras.options import check_at_least, option
from iss_keras.sparsity.base import SparsityMethod, check_strength
from iss_keras.sparsity.components import ComponentEnforcer
from iss_keras.sparsity.structured import LEVELS, StructuredRebuild

@dataclasses.dataclass
class GateNeuronOptions:
    wgn_levels: str = option(
        "", "Gate and neuron pruning (Lobacheva et al.'s levels) by proximal group Lasso: W "
        "(each weight), W+N (+ input and hidden neurons), W+G+N (+ each gate's "
        "preactivation). Empty: off.", choices=("",) + LEVELS, ours=True)
    wgn_weight_strength: float = option(0.0, "L1 strength of the W level (per unit of the "
                                        "training loss).", ours=True)
    wgn_group_strength: float = option(0.0, "Group Lasso strength of the N and G groups.",
                                       ours=True)

    def __post_init__(self):
        check_at_least(self, 0.0, "wgn_weight_strength", "wgn_group_strength")
        if self.wgn_levels and not (self.wgn_weight_strength or self.wgn_group_strength):
            raise ValueError(f"wgn_levels={self.wgn_levels!r} needs wgn_weight_strength and/or "
                             "wgn_group_strength > 0.")
        if self.wgn_levels == "W" and self.wgn_group_strength:
            raise ValueError("wgn_levels='W' has no groups: drop wgn_group_strength or choose "
                             "W+N / W+G+N.")


def hidden_neuron_groups(model, groups):
    """Per recurrent family, hidden neuron j's outgoing weights (recurrent row, consumer rows)."""
    return GroupSet([UnitFamily(f"{f.name}/hidden", f.size, [
        Footprint.from_config({**fp.get_config(), "penalized": True}) for fp in f.outgoing])
        for f in groups if f.outgoing])


class _SoftThreshold(keras.callbacks.Callback):
    """W level: the L1 proximal step on every 2-D weight of the given paths."""

    def __init__(self, paths, strength):
        super().__init__()
        self.paths = set(paths)
        self.strength = strength

    def on_train_batch_end(self, batch, logs=None):
        step = float(ops.convert_to_numpy(self.model.optimizer.learning_rate)) * self.strength
        for v in self.model.trainable_variables:
            if v.path in self.paths:
                v.assign(ops.sign(v) * ops.maximum(ops.abs(v) - step, 0.0))


class GateNeuronPruning(StructuredRebuild, SparsityMethod):
    """W / W+N / W+G+N pruning by proximal group Lasso (see the module docstring).

    Args:
        levels: "W", "W+N" or "W+G+N".
        weight_strength: the W level's L1 strength.
        group_strength: the N and G groups' strength.

    Example:

    >>> sparsity = GateNeuronPruning("W+G+N", weight_strength=1e-4, group_strength=1e-3)
    """

    name = "gate_neuron"
    sparsifies = True
    Options = GateNeuronOptions

    def __init__(self, levels, weight_strength=0.0, group_strength=0.0):
        if levels not in LEVELS:
            raise ValueError(f"levels must be one of {LEVELS}. Received: levels={levels!r}")
        self.levels = levels
        self.weight_strength = check_strength(weight_strength, "weight_strength")
        self.group_strength = check_strength(group_strength, "group_strength")
        self._groups = {}

    @classmethod
    def from_options(cls, options, context, chosen=()):
        if not options.wgn_levels:
            return None
        return cls(options.wgn_levels, options.wgn_weight_strength / context.loss_scale,
                   options.wgn_group_strength / context.loss_scale)

    @classmethod
    def describe(cls, config):
        return f"pruning {config['levels']}"

    def bind(self, model, groups):
        self._groups = {}
        if "N" in self.levels:
            self._groups["inputs"] = input_neuron_groups(model)
            self._groups["hidden"] = hidden_neuron_groups(model, groups)
        if "G" in self.levels:
            self._groups["gates"] = gate_groups(model)
        self._weight_paths = [v.path for layer in all_layers(model)
                              for v in _matrices(layer)]

    def callbacks(self, run):
        out = []
        if self.weight_strength:
            out.append(_SoftThreshold(self._weight_paths, self.weight_strength))
        for kind in ("inputs", "hidden", "gates"):
            families = self._groups.get(kind)
            if families and self.group_strength:
                # After the step, in this order: the element-wise prox, then each group's
                # (inside the step the group prox would run before the callbacks).
                out.append(ComponentEnforcer(families, mode="proximal", freeze=False,
                                             strengths={f.name: self.group_strength
                                                        for f in families}, in_step=False))
        return out

    def get_config(self):
        return {"levels": self.levels, "weight_strength": self.weight_strength,
                "group_strength": self.group_strength}


def _matrices(layer):
    """The weight matrices of a layer that the W level acts on."""
    if isinstance(layer, keras.layers.Embedding):
        return [layer.embeddings]
    if isinstance(layer, keras.layers.Dense):
        return [layer.kernel]
    if isinstance(layer, tuple(CELL_KINDS)):  # Keras's cells and their subclasses
        return [layer.kernel, layer.recurrent_kernel]
    return []
