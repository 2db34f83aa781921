"""Gate- and neuron-level structures of gated recurrent layers (W+G+N), found in a model.

Lobacheva et al.'s three levels, as the same serializable `UnitFamily` /
`Footprint` groups ISS uses, so penalties, enforcement and reports work alike:

* W: each weight (no group needed: element-wise L1 or noise);
* G: each gate's preactivation, per unit: gate g of unit j owns column
  `g * units + j` of `kernel` and of `recurrent_kernel` (`gate_groups`);
* N: each neuron: an input neuron `x_i` owns row i of `kernel` across all gates
  (`input_neuron_groups`); a hidden neuron `h_j` owns its outgoing weights,
  its recurrent row and its rows in every consumer, which is the ISS family's
  outgoing part (`iss_keras.discover_groups`).

An input neuron of a recurrent layer fed by an `Embedding` is a word-vector
channel: once its kernel row is zero, the embedding's column can go too.
`channel_groups` describes that as a family rebuilt by `iss_keras.shrink`
(embedding column k with the rows that read channel k).
"""

import keras

from iss_keras.discovery import (_Tracer, UnsupportedLayerError, recurrent_layers_by_family,
                                 rnn_cell)
from iss_keras.gates import is_gated, num_gates
from iss_keras.groups import Footprint, GroupSet, UnitFamily


def gate_groups(model):
    """One family per gated recurrent layer (direction): component g*units + j is gate g of
    unit j (its kernel and recurrent-kernel columns). Named "<layer>/gates"."""
    families = []
    for name, where in recurrent_layers_by_family(model).items():
        cell = where.rnn.cell
        if not is_gated(cell):
            continue
        size = num_gates(cell) * cell.units
        families.append(UnitFamily(f"{name}/gates", size, [
            Footprint(cell.kernel.path, axis=1, role="incoming"),
            Footprint(cell.recurrent_kernel.path, axis=1, role="incoming")]))
    return GroupSet(families)


def input_neuron_groups(model):
    """One family per gated recurrent layer (direction): component i is input neuron i (row i
    of the kernel, all gates). Named "<layer>/inputs"."""
    families = []
    for name, where in recurrent_layers_by_family(model).items():
        cell = where.rnn.cell
        if not is_gated(cell):
            continue
        families.append(UnitFamily(f"{name}/inputs", int(cell.kernel.shape[0]), [
            Footprint(cell.kernel.path, axis=0, role="incoming")]))
    return GroupSet(families)


def channel_groups(model):
    """One family per `Embedding` whose vectors only feed layers that read them row by row:
    channel k owns embedding column k (removed with it) and the rows reading channel k
    (its outgoing weights). Named "<embedding>/channels".

    An embedding whose vectors reach a model output or a layer discovery cannot
    account for gets no family (its width is kept), rather than an error.
    """
    tracer = _Tracer(model)
    families = []
    for node in tracer.nodes:
        layer = node.operation
        if type(layer) is not keras.layers.Embedding:  # ReversibleEmbedding: tied, see ISS
            continue
        family = UnitFamily(f"{layer.name}/channels", layer.output_dim, [
            Footprint(layer.embeddings.path, axis=1, penalized=False, role="incoming")])
        try:
            tracer._trace(node.outputs[0], 0, family, state=False)
        except UnsupportedLayerError:
            continue
        if len(family.footprints) > 1:
            families.append(family)
    return GroupSet(families)


def recurrent_cells(model):
    """family name -> cell of every gated recurrent layer (direction) of `model`."""
    return {name: where.rnn.cell for name, where in recurrent_layers_by_family(model).items()
            if is_gated(where.rnn.cell) and rnn_cell(where.rnn) is not None}
