"""Automatic discovery of ISS components in Sequential and Functional models.

For every LSTM / GRU / SimpleRNN (also inside `Bidirectional`) the hidden
state is followed through the graph to the layers that consume it. Each
consumer contributes the rows of its input kernel that read the unit; layers
that only pass values through channel by channel (Dropout, Activation, ...) are
walked through, `Concatenate` shifts the unit's channel offset, and
`Multiply` passes a unit on when every input carries it on the same channel
(checked once the family is traced). Anything
else raises `UnsupportedLayerError` naming the layer: a silently smaller group
would under-regularize, which is the failure this library exists to prevent.

Both ends are open protocols. A recurrent cell describes its own variables
with `iss_footprints()` (see `rnn_cell`); a layer that reads hidden units
says how with `iss_consume(consumption)` (see `Consumption`). Keras's own
layers go through the same consumer interface (the built-in rules below).
"""

import collections

import keras
import numpy as np

from iss_keras.gates import cell_kind, num_gates
from iss_keras.groups import Footprint, GroupSet, UnitFamily
from iss_keras.keras_internals import all_layers, graph_nodes, is_graph_model, sequential_graph


class UnsupportedLayerError(ValueError):
    """A layer consumes hidden units in a way iss_keras cannot account for."""


# Layers that map channel k of their input to channel k of their output and
# have no weights: a unit's outgoing weights are found behind them unchanged.
# Other such layers say so with a class attribute `iss_channelwise = True`.
PASS_THROUGH_LAYERS = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.Activation,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalMaxPooling1D,
)

SUPPORTED_CONSUMERS = (
    "Dense, TimeDistributed(Dense), LSTM, GRU, SimpleRNN, RNN(RHNCell), Bidirectional(concat), "
    "ReversibleEmbedding(reverse=True) (softmax), "
    "Concatenate (last axis), Multiply (of inputs carrying the same units on the same "
    "channels, or of width 1), and channel-wise layers without weights ("
    + ", ".join(c.__name__ for c in PASS_THROUGH_LAYERS)
    + ", or any layer with iss_channelwise = True), and any layer with an "
    "iss_consume(consumption) method (see Consumption)")


def rnn_cell(layer):
    """The cell of a supported recurrent layer, or None if `layer` is not one.

    Besides Keras's own cells, any cell is supported that has

    * `units`: its state width, a key of its config that shrink rewrites, and
    * `iss_footprints()`: the `Footprint`s of its own variables (roles
      `"incoming"` for gate columns, `"recurrent"` for the rows that read the
      state, `"bias"`), for a cell whose input kernel is `cell.kernel` (rows
      = input channels), as `iss_keras.models.rhn.RHNCell` does.
    """
    cell = getattr(layer, "cell", None)
    if not isinstance(layer, keras.layers.RNN):
        return None
    if cell_kind(cell) is not None or _follows_cell_protocol(cell):
        return cell
    return None


def _follows_cell_protocol(cell):
    return callable(getattr(cell, "iss_footprints", None)) and hasattr(cell, "units")


class RecurrentLayerAt(collections.namedtuple("RecurrentLayerAt", "rnn layer config_key")):
    """Where a family's recurrent layer sits: the RNN itself (one direction), the
    model's layer holding it (the RNN or its Bidirectional), and the key of the
    RNN's config inside that layer's config (`"layer"`, `"backward_layer"`, or
    None when the layer is the RNN)."""


def recurrent_layers_by_family(model):
    """Map family name -> `RecurrentLayerAt` for every recurrent layer of `model`."""
    out = {}
    for layer in functional_graph(model).operations:
        if isinstance(layer, keras.layers.Bidirectional):
            out[f"{layer.name}/forward"] = RecurrentLayerAt(layer.forward_layer, layer, "layer")
            out[f"{layer.name}/backward"] = RecurrentLayerAt(layer.backward_layer, layer,
                                                             "backward_layer")
        elif rnn_cell(layer) is not None:
            out[layer.name] = RecurrentLayerAt(layer, layer, None)
    return out


def functional_graph(model):
    """The Functional object behind a Sequential or Functional model."""
    if isinstance(model, keras.Sequential):
        graph = sequential_graph(model)
        if graph is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no known input shape, so its "
                "layers are not connected yet. Start it with keras.Input(shape=...) "
                "or call model.build(input_shape) first.")
        return graph
    if isinstance(model, keras.Model) and is_graph_model(model):
        return model
    raise ValueError(
        f"iss_keras needs a Sequential or Functional keras.Model; received "
        f"{type(model).__name__} {getattr(model, 'name', model)!r}. Subclassed models "
        "hide their graph: build the same network with the Functional API.")


def _recurrent_input(node):
    """The sequence tensor of a recurrent layer's call node."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    if args:
        return args[0]
    for name in ("sequences", "inputs"):
        if name in kwargs:
            return kwargs[name]
    raise UnsupportedLayerError(f"Cannot find the input sequence of {node.operation.name!r}.")


def _initial_state_tensors(node):
    args, kwargs = node.arguments.args, node.arguments.kwargs
    state = kwargs.get("initial_state", args[1] if len(args) > 1 else None)
    if state is None:
        return []
    return list(keras.tree.flatten(state))


def is_reverse_call(node):
    """Whether a ReversibleEmbedding node is its reverse (logits) call."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    return bool(kwargs.get("reverse", args[1] if len(args) > 1 else False))


class _Tracer:
    def __init__(self, model):
        self.model = model
        self.graph = functional_graph(model)
        self.nodes = graph_nodes(self.graph)
        self.consumers = {}
        for node in self.nodes:
            for tensor in node.arguments.keras_tensors:
                self.consumers.setdefault(id(tensor), []).append(node)
        self.output_index = {id(t): i for i, t in enumerate(self.graph.outputs)}
        self.input_index = {id(t): i for i, t in enumerate(self.graph.inputs)}
        # Which tensors carry which family's units at which channel (see Consumption.aligned_with).
        self.carried = collections.defaultdict(set)
        self.alignments = collections.defaultdict(list)

    # -- families -----------------------------------------------------------

    def families(self):
        seen = {}
        families = []
        for node in self.nodes:
            layer = node.operation
            if isinstance(layer, keras.Model):
                self._reject_nested(layer)
                continue
            if not (rnn_cell(layer) or isinstance(layer, keras.layers.Bidirectional)):
                continue
            if id(layer) in seen:
                raise UnsupportedLayerError(
                    f"Recurrent layer {layer.name!r} is called more than once in the model; "
                    "its units would be shared between calls. Use one layer per call.")
            seen[id(layer)] = True
            if isinstance(layer, keras.layers.Bidirectional):
                found = self._bidirectional(node)
            else:
                found = [self._unidirectional(node)]
            for family in found:
                self._check_alignments(family)
            families.extend(found)
        return families

    def _check_alignments(self, family):
        """Every tensor a layer combined channel by channel with the family's units carries
        the same units at the same channels (`Consumption.aligned_with`)."""
        carried = self.carried[family.name]
        for layer_name, tensor, start in self.alignments[family.name]:
            if (id(tensor), start) not in carried:
                raise UnsupportedLayerError(
                    f"Layer {layer_name!r} combines the hidden units of {family.name!r} channel by "
                    f"channel with its input {tensor.name!r}, which does not carry those units at "
                    f"channels {start}..{start + family.size - 1}: removing a unit would drop its "
                    "channel from one input and not the other. Give that layer the same units on "
                    "every channel-aligned input (or an input of width 1, broadcast).")

    def _reject_nested(self, inner):
        for sub in all_layers(inner, include_self=False):
            if rnn_cell(sub) or isinstance(sub, keras.layers.Bidirectional):
                raise UnsupportedLayerError(
                    f"Recurrent layer {sub.name!r} sits inside nested model {inner.name!r}. "
                    "iss_keras traces one level of graph: rebuild the model flat.")

    def _own_footprints(self, rnn):
        cell = rnn.cell
        if callable(getattr(cell, "iss_footprints", None)):
            return list(cell.iss_footprints())
        gates = num_gates(cell)
        units = cell.units
        gate_offsets = [g * units for g in range(gates)]
        fps = [
            Footprint(cell.kernel.path, axis=1, offsets=gate_offsets, role="incoming"),
            Footprint(cell.recurrent_kernel.path, axis=1, offsets=gate_offsets, role="incoming"),
            Footprint(cell.recurrent_kernel.path, axis=0, role="recurrent"),
        ]
        if cell.use_bias:
            bias_axis = len(cell.bias.shape) - 1  # GRU reset_after bias is (2, 3H)
            fps.append(Footprint(cell.bias.path, axis=bias_axis, offsets=gate_offsets,
                                 penalized=False, role="bias"))
        return fps

    def _check_rnn(self, rnn):
        cell = rnn_cell(rnn)
        if cell is None:
            raise UnsupportedLayerError(
                f"Layer {rnn.name!r} ({type(rnn).__name__}) wraps cell "
                f"{type(getattr(rnn, 'cell', None)).__name__}; supported cells are "
                "LSTMCell, GRUCell, SimpleRNNCell and cells with `units` and an "
                "iss_footprints() method (such as iss_keras.models.rhn.RHNCell).")
        return cell

    def _unidirectional(self, node):
        rnn = node.operation
        cell = self._check_rnn(rnn)
        family = UnitFamily(rnn.name, cell.units, self._own_footprints(rnn))
        self._initial_states(node, family, 0)
        outputs = node.outputs
        self._trace(outputs[0], 0, family, state=False)
        for state in outputs[1:]:
            self._trace(state, 0, family, state=True)
        return family

    def _bidirectional(self, node):
        bidi = node.operation
        if bidi.merge_mode != "concat":
            raise UnsupportedLayerError(
                f"Bidirectional layer {bidi.name!r} has merge_mode={bidi.merge_mode!r}; "
                "only 'concat' keeps the two directions' units apart. Use merge_mode='concat'.")
        fwd, bwd = bidi.forward_layer, bidi.backward_layer
        families = []
        for direction, rnn in (("forward", fwd), ("backward", bwd)):
            cell = self._check_rnn(rnn)
            families.append(UnitFamily(f"{bidi.name}/{direction}", cell.units,
                                       self._own_footprints(rnn)))
        f_fam, b_fam = families
        outputs = node.outputs
        self._trace(outputs[0], 0, f_fam, state=False)
        self._trace(outputs[0], f_fam.size, b_fam, state=False)
        if len(outputs) > 1:
            n_states = (len(outputs) - 1) // 2
            for s in outputs[1:1 + n_states]:
                self._trace(s, 0, f_fam, state=True)
            for s in outputs[1 + n_states:]:
                self._trace(s, 0, b_fam, state=True)
        if _initial_state_tensors(node):
            raise UnsupportedLayerError(
                f"Bidirectional layer {bidi.name!r} is called with initial_state; "
                "that is not supported by iss_keras yet.")
        return families

    def _initial_states(self, node, family, start):
        for tensor in _initial_state_tensors(node):
            index = self.input_index.get(id(tensor))
            if index is None:
                raise UnsupportedLayerError(
                    f"The initial_state of {node.operation.name!r} is computed inside the "
                    "model, which ties its units to another layer's; iss_keras supports "
                    "initial states that are model inputs only.")
            family.resized_tensors.append({"kind": "input", "index": index, "start": start})

    # -- consumers ----------------------------------------------------------

    def _trace(self, tensor, start, family, state, role="outgoing"):
        """Follow channels `start..start+size-1` of `tensor` to what reads them.

        `role` is given to the consumer rows found: "outgoing" when the tensor
        carries the units' signal, "incoming" when it carries word-vector
        channels tied to the units (rows that only read the unit's own input).
        """
        self.carried[family.name].add((id(tensor), start))
        if id(tensor) in self.output_index:
            index = self.output_index[id(tensor)]
            if state:
                # A returned state is fed back by the caller: it shrinks with the layer.
                family.resized_tensors.append({"kind": "output", "index": index, "start": start})
            else:
                what = ("the hidden units directly" if role == "outgoing"
                        else "word-vector channels tied to the hidden units")
                family.removal_blockers.append(f"model output {index} exposes {what}")
        for node in self.consumers.get(id(tensor), []):
            self._consume(node, tensor, start, family, role)

    def _add(self, family, footprint):
        """Add `footprint` to the family, merged into one it shares a variable axis with
        (a unit read at several offsets of one kernel, e.g. `[g; g * a]`: one footprint per
        axis, with one offset per read)."""
        for i, f in enumerate(family.footprints):
            if f.key() == footprint.key():
                return
            if (f.variable, f.axis, f.step, f.penalized, f.role) == (
                    footprint.variable, footprint.axis, footprint.step, footprint.penalized,
                    footprint.role):
                family.footprints[i] = _merged(f, footprint, family)
                return
        family.footprints.append(footprint)

    def _consume(self, node, tensor, start, family, role):
        layer = node.operation
        inner = layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer
        rule = getattr(inner, "iss_consume", None) or _builtin_rule(inner)
        if rule is None:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) consumes the hidden units of "
                f"{family.name!r}, but iss_keras cannot tell which of its weights read "
                f"which unit, or removing a unit would change what it computes. "
                f"Supported consumers: {SUPPORTED_CONSUMERS}; a custom layer declares "
                "itself with an iss_consume(consumption) method (see iss_keras.discovery).")
        rule(Consumption(self, node, tensor, start, family, role))


def _merged(a, b, family):
    """One footprint owning the indices of both `a` and `b` (same variable, axis and step)."""
    start = min(a.start, b.start)
    offsets = sorted({a.start - start + o for o in a.offsets} | {b.start - start + o
                                                                  for o in b.offsets})
    merged = Footprint(a.variable, axis=a.axis, start=start, offsets=offsets, step=a.step,
                       penalized=a.penalized, role=a.role)
    indices = merged.indices(family.size)
    if len(np.unique(indices)) != indices.size:
        raise UnsupportedLayerError(
            f"Units of {family.name!r} are read twice by the same slices of {a.variable!r} "
            f"(axis {a.axis}, at {a.start} and at {b.start}): one weight would belong to two "
            "units. Read each unit's channel once per consumer.")
    return merged


class Consumption:
    """One layer call that reads hidden units: the consumer protocol.

    Discovery hands each layer that reads a family's hidden units one
    `Consumption` and asks it to say how it reads them. A layer answers with
    its own `iss_consume(consumption)` method, or by the built-in rule for its
    class (`Dense`, recurrent layers, `Concatenate`, channel-wise layers, ...,
    each written against this same interface):

    * `consumption.reads(variable, axis=0)`: the slice of `variable` along
      `axis` at `start + k` belongs to unit k (e.g. the rows of a kernel);
      removing the unit removes that slice (`rebuild` slices it).
    * `consumption.passes_on(output, start)`: channel `start + k` of the
      layer's output `output` carries unit k (channel-wise layers, a
      concatenation's offset): discovery follows it further.
    * `consumption.aligned_with(tensor, start)`: the layer combines channel
      `start + k` of another input `tensor` with unit k element by element
      (a product `a * b`, an attention score over `h * u`), so `tensor` must
      carry unit k at that channel too; discovery checks it once the family
      is traced and raises `UnsupportedLayerError` otherwise.
    * `consumption.input_positions()`: where the traced tensor sits among the
      call's input tensors (`node.arguments.keras_tensors`), to tell a
      layer's inputs apart.

    A layer that can do neither must not define `iss_consume`: discovery then
    raises `UnsupportedLayerError` rather than under-regularize.

    Attributes:
        layer: the consuming layer (inside `TimeDistributed`: the wrapper).
        node: the call (`node.arguments`, `node.outputs`).
        tensor: the input tensor that carries the units.
        start: channel of unit 0 in `tensor` (units are `start .. start + size - 1`).
        size: number of units in the family.
        role: `"outgoing"`, or `"incoming"` for word-vector channels tied to
            the units (pass it on unchanged).

    Example:

    >>> class ScaledDense(keras.layers.Dense):   # reads its input like a Dense
    ...     def iss_consume(self, consumption):
    ...         consumption.reads(self.kernel, axis=0)
    """

    def __init__(self, tracer, node, tensor, start, family, role):
        self._tracer = tracer
        self._family = family
        self.node = node
        self.layer = node.operation
        self.tensor = tensor
        self.start = start
        self.size = family.size
        self.role = role

    def reads(self, variable, axis=0, start=None, role=None):
        """Unit k owns `variable`'s slice `start + k` along `axis`."""
        self._tracer._add(self._family, Footprint(
            variable.path, axis=axis, start=self.start if start is None else start,
            role=self.role if role is None else role))

    def passes_on(self, output, start=None, role=None):
        """Unit k is channel `start + k` of `output`: follow it to its own consumers."""
        self._tracer._trace(output, self.start if start is None else start, self._family,
                            state=False, role=self.role if role is None else role)

    def aligned_with(self, tensor, start=None):
        """`tensor` must carry unit k at channel `start + k` too (checked after tracing)."""
        self._tracer.alignments[self._family.name].append(
            (self.layer.name, tensor, self.start if start is None else start))

    def input_positions(self):
        """Indices of the traced tensor among the call's input tensors (several if it is
        passed more than once, e.g. self-attention)."""
        return [i for i, t in enumerate(self.node.arguments.keras_tensors) if t is self.tensor]

    def other_calls(self):
        """The other calls (nodes) of the same layer in the model."""
        return [n for n in self._tracer.nodes if n.operation is self.layer and n is not self.node]

    def reject(self, why):
        raise UnsupportedLayerError(f"Layer {self.layer.name!r} consumes the hidden units of "
                                    f"{self._family.name!r}: {why}")


# -- built-in consumer rules (the protocol above, for Keras's own layers) --------------------

def _pass_through(c):
    for out in c.node.outputs:
        c.passes_on(out)


def _dense(c):
    inner = c.layer.layer if isinstance(c.layer, keras.layers.TimeDistributed) else c.layer
    c.reads(inner.kernel, axis=0)


def _recurrent(c):
    if _recurrent_input(c.node) is not c.tensor:
        c.reject("its hidden state is the initial_state of this layer; coupling the units of "
                 "two recurrent layers through their states is not supported yet.")
    layer = c.layer
    rnns = ([layer.forward_layer, layer.backward_layer]
            if isinstance(layer, keras.layers.Bidirectional) else [layer])
    for rnn in rnns:
        c.reads(c._tracer._check_rnn(rnn).kernel, axis=0)


def _concatenate(c):
    layer = c.layer
    rank = len(c.tensor.shape)
    if layer.axis not in (-1, rank - 1):
        c.reject(f"it joins along axis {layer.axis}; only the last (feature) axis keeps "
                 "units apart.")
    offset = 0
    for t in c.node.arguments.keras_tensors:
        if t is c.tensor:
            c.passes_on(c.node.outputs[0], offset + c.start)
        offset += int(t.shape[-1])


def _multiply(c):
    # out[..., j] = a[..., j] * b[..., j]: channel start + k still carries unit k, and every
    # other input must carry unit k at the same channel (or be broadcast, width 1), so that
    # removing the unit removes that channel from all of them.
    width = c.tensor.shape[-1]
    if width != c.node.outputs[0].shape[-1]:
        c.reject(f"its input of width {width} carrying the units is broadcast to width "
                 f"{c.node.outputs[0].shape[-1]}, so every output channel reads them.")
    for t in c.node.arguments.keras_tensors:
        if t is not c.tensor and t.shape[-1] != 1:
            c.aligned_with(t)
    c.passes_on(c.node.outputs[0])


def _reversible_embedding(c):
    # emb(h, reverse=True) is a softmax whose row k reads unit k. Its width
    # is the embedding's output_dim, so removing unit k also removes channel
    # k of every word vector: embedding column k joins the component, and
    # so do the rows of whatever reads the word vectors (usually this very
    # recurrent layer's input kernel). With tied weights column k is also
    # the softmax row. The unit may go only when column k is zero; the rows
    # reading channel k then read zeros, so they are "incoming".
    layer = c.layer
    if not is_reverse_call(c.node) or c.role != "outgoing":
        c.reject("it looks up word vectors with the hidden units as ids.")
    if getattr(layer, "quantization_mode", None):
        raise UnsupportedLayerError(
            f"ReversibleEmbedding {layer.name!r} is quantized "
            f"(quantization_mode={layer.quantization_mode!r}); find the groups and "
            "shrink before quantizing.")
    column = Footprint(layer.embeddings.path, axis=1, start=c.start)
    if any(f.key() == column.key() for f in c._family.footprints):
        return
    c.reads(layer.embeddings, axis=1, role="outgoing")
    if not layer.tie_weights:
        c.reads(layer.reverse_embeddings, axis=0, role="outgoing")
    for node in c.other_calls():
        if not is_reverse_call(node):
            for out in node.outputs:
                c.passes_on(out, role="incoming")


def _builtin_rule(layer):
    """The built-in consumer rule for `layer`, or None."""
    if isinstance(layer, PASS_THROUGH_LAYERS) or getattr(layer, "iss_channelwise", False):
        return _pass_through
    if isinstance(layer, keras.layers.Dense):
        return _dense
    if isinstance(layer, keras.layers.ReversibleEmbedding):
        return _reversible_embedding
    if isinstance(layer, keras.layers.Concatenate):
        return _concatenate
    if isinstance(layer, keras.layers.Multiply):
        return _multiply
    if rnn_cell(layer) is not None or isinstance(layer, keras.layers.Bidirectional):
        return _recurrent
    return None


def discover_groups(model):
    """Find the ISS components of every recurrent layer in `model`.

    Args:
        model: a built Sequential or Functional `keras.Model`.

    Returns:
        A `GroupSet` with one `UnitFamily` per recurrent layer (two for a
        `Bidirectional`: `"<name>/forward"` and `"<name>/backward"`).

    Raises:
        UnsupportedLayerError: if a layer consumes hidden units in a way that
            cannot be accounted for.

    Example:

    >>> model = keras.Sequential([keras.Input((None, 8)), keras.layers.LSTM(16),
    ...                           keras.layers.Dense(3)])
    >>> [f.name for f in discover_groups(model)]
    ['lstm']
    """
    return GroupSet(_Tracer(model).families())
