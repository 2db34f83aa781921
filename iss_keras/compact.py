"""Gate compression: LSTMs and GRUs rebuilt to compute only the gate columns that are not constant.

Gate-level sparsity (Lobacheva et al., "Structured Sparsification of Gated
Recurrent Neural Networks"): when every input weight of gate g of unit j (its
column of `kernel`) is zero, the input's contribution to that gate is the
constant 0, and likewise for the recurrent weights (its column of
`recurrent_kernel`); when both are zero the gate is the constant
`act(bias)`. `compress_gates(model)` rebuilds every LSTM / GRU (also inside
`Bidirectional`) as `keras.layers.RNN(CompactCell(...))`, whose kernels hold
only the nonzero columns, one product per side, and whose full gate vector is
put together by a gather with the constant columns: the same function, fewer
multiply-adds. Verified on random inputs like `iss_keras.shrink`.

As in `iss_keras.rebuild`, planning and executing are apart: `make_gate_plan`
returns a serializable `GatePlan` (the kept columns per layer), `apply_gate_plan`
builds the compact model.
"""

import json

import keras
import numpy as np
from keras import ops

from iss_keras.discovery import functional_graph, recurrent_layers_by_family
from iss_keras.files import write_text
from iss_keras.gates import GATE_NAMES, GATED_KINDS, cell_kind
from iss_keras.keras_internals import outputs_from_zero_state
from iss_keras.lstm_step import lstm_step
from iss_keras.rebuild import ShrinkVerificationError, output_difference, probe_inputs


def _kind(cell):
    """The kind ("lstm", "gru") of a cell gate compression rebuilds; None for one it leaves."""
    kind = cell_kind(cell)
    if kind == "gru" and not cell.reset_after:
        raise ValueError(f"GRU {cell.name!r} has reset_after=False; gate compression "
                         "supports reset_after=True (Keras's default, the cuDNN form).")
    return kind if kind in GATED_KINDS else None


@keras.saving.register_keras_serializable(package="iss_keras")
class CompactCell(keras.layers.Layer):
    """An LSTM or GRU step that computes only its non-constant gate columns.

    Args:
        kind: "lstm" or "gru" (Keras's equations; GRU with reset_after=True).
        units: state width.
        input_columns: indices (into the full gate vector of `gates * units`)
            of the columns the input contributes to; the others get 0.
        recurrent_columns: the same for the recurrent state.
        activation, recurrent_activation: as the Keras cell's.

    Its weights: `kernel` (input_dim, len(input_columns)), `recurrent_kernel`
    (units, len(recurrent_columns)) and `bias` (the full gate vector: LSTM
    (4 units,), GRU (2, 3 units) input and recurrent biases).

    Example:

    >>> layer = keras.layers.RNN(CompactCell("lstm", 64, input_columns=[0, 5, 70],
    ...                                      recurrent_columns=[3, 100]))
    """

    def __init__(self, kind, units, input_columns, recurrent_columns, activation="tanh",
                 recurrent_activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        if kind not in GATED_KINDS:
            raise ValueError(f"kind must be 'lstm' or 'gru'. Received: kind={kind!r}")
        self.kind = kind
        self.units = int(units)
        self.gates = len(GATE_NAMES[kind])
        width = self.gates * self.units
        self.input_columns = [int(c) for c in input_columns]
        self.recurrent_columns = [int(c) for c in recurrent_columns]
        for name, columns in (("input_columns", self.input_columns),
                              ("recurrent_columns", self.recurrent_columns)):
            if sorted(set(columns)) != columns or (columns and not 0 <= columns[0] <= columns[-1]
                                                   < width):
                raise ValueError(f"{name} must be sorted, unique indices in [0, {width}). "
                                 f"Received: {columns}")
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.state_size = [self.units, self.units] if kind == "lstm" else self.units
        self.output_size = self.units
        self._input_gather = self._gather_index(self.input_columns, width)
        self._recurrent_gather = self._gather_index(self.recurrent_columns, width)

    @staticmethod
    def _gather_index(columns, width):
        """Position of each full-vector column in [computed columns, 0]: the last is a zero."""
        index = np.full(width, len(columns), dtype="int32")
        index[columns] = np.arange(len(columns), dtype="int32")
        return index

    def build(self, input_shape):
        width = self.gates * self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], len(self.input_columns)),
                                      name="kernel", initializer="zeros")
        self.recurrent_kernel = self.add_weight(shape=(self.units, len(self.recurrent_columns)),
                                                name="recurrent_kernel", initializer="zeros")
        self.bias = self.add_weight(shape=(width,) if self.kind == "lstm" else (2, width),
                                    name="bias", initializer="zeros")

    def _full(self, computed, gather):
        """The full gate vector from the computed columns (zeros elsewhere)."""
        zero = ops.zeros((ops.shape(computed)[0], 1), dtype=computed.dtype)
        return ops.take(ops.concatenate([computed, zero], axis=1), gather, axis=1)

    def call(self, inputs, states, training=False):
        h = states[0] if isinstance(states, (list, tuple)) else states
        x_part = self._full(ops.matmul(inputs, self.kernel), self._input_gather)
        h_part = self._full(ops.matmul(h, self.recurrent_kernel), self._recurrent_gather)
        u = self.units
        if self.kind == "lstm":
            c = states[1]
            h, c = lstm_step(x_part + h_part + self.bias, c, u, self.activation,
                             self.recurrent_activation)
            return h, [h, c]
        x_part = x_part + self.bias[0]
        h_part = h_part + self.bias[1]
        z = self.recurrent_activation(x_part[:, :u] + h_part[:, :u])
        r = self.recurrent_activation(x_part[:, u:2 * u] + h_part[:, u:2 * u])
        hh = self.activation(x_part[:, 2 * u:] + r * h_part[:, 2 * u:])
        h = z * h + (1.0 - z) * hh
        return h, ([h] if isinstance(states, (list, tuple)) else h)

    def matmul_kernels(self):
        """The weights multiplied once per step (for the multiply-add count)."""
        return [self.kernel, self.recurrent_kernel]

    def get_initial_state(self, batch_size=None):
        zeros = ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
        return [zeros, zeros] if self.kind == "lstm" else [zeros]

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "units": self.units,
                "input_columns": self.input_columns, "recurrent_columns": self.recurrent_columns,
                "activation": keras.activations.serialize(self.activation),
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation)}


class GatePlan:
    """Which gate columns each recurrent layer (direction) keeps computing.

    Args:
        layers: dict family name (as `iss_keras.discovery.recurrent_layers_by_family`)
            -> {"kind", "units", "input_columns", "recurrent_columns"}.
    """

    def __init__(self, layers):
        self.layers = {name: dict(entry) for name, entry in layers.items()}

    def active(self, name):
        """Boolean array [gate types (`GATE_NAMES`), units]: the gate is computed (its kernel
        or its recurrent column holds a nonzero weight), not constant."""
        entry = self.layers[name]
        names, units = GATE_NAMES[entry["kind"]], entry["units"]
        active = np.zeros(len(names) * units, bool)
        active[entry["input_columns"]] = True
        active[entry["recurrent_columns"]] = True
        return active.reshape(len(names), units)

    def constant_gates(self, name):
        """Per gate type, how many units' gate is constant (both columns zero)."""
        names = GATE_NAMES[self.layers[name]["kind"]]
        return {g: int((~row).sum()) for g, row in zip(names, self.active(name))}

    def summary(self):
        """dict name -> {"input_columns": kept/total, "recurrent_columns": kept/total,
        "nonconstant_gates": {gate: count}}."""
        out = {}
        for name, entry in self.layers.items():
            width = len(GATE_NAMES[entry["kind"]]) * entry["units"]
            constant = self.constant_gates(name)
            out[name] = {"input_columns": f"{len(entry['input_columns'])}/{width}",
                         "recurrent_columns": f"{len(entry['recurrent_columns'])}/{width}",
                         "nonconstant_gates": {g: entry["units"] - n for g, n in constant.items()}}
        return out

    def to_json(self, **kwargs):
        return json.dumps({"layers": self.layers}, **kwargs)

    @classmethod
    def from_json(cls, text):
        return cls(json.loads(text)["layers"])

    def save(self, path):
        write_text(path, self.to_json(indent=1))

    def __repr__(self):
        return f"GatePlan({self.summary()})"


def _nonzero_columns(weight):
    return np.flatnonzero(np.abs(np.asarray(ops.convert_to_numpy(weight))).max(axis=0) > 0).tolist()


def make_gate_plan(model):
    """Keep, for every LSTM / GRU, the kernel and recurrent columns that hold a nonzero weight."""
    layers = {}
    for name, where in recurrent_layers_by_family(model).items():
        cell = where.rnn.cell
        kind = _kind(cell)
        if kind is None:
            continue
        layers[name] = {"kind": kind, "units": int(cell.units),
                        "input_columns": _nonzero_columns(cell.kernel),
                        "recurrent_columns": _nonzero_columns(cell.recurrent_kernel)}
    return GatePlan(layers)


def _compact_rnn(rnn, entry, name=None):
    cell = rnn.cell
    compact = CompactCell(entry["kind"], entry["units"], entry["input_columns"],
                          entry["recurrent_columns"], activation=cell.activation,
                          recurrent_activation=cell.recurrent_activation)
    return keras.layers.RNN(compact, return_sequences=rnn.return_sequences,
                            return_state=rnn.return_state, go_backwards=rnn.go_backwards,
                            stateful=rnn.stateful, name=name or rnn.name)


def apply_gate_plan(model, plan):
    """The model with each planned recurrent layer as `RNN(CompactCell)`, weights copied."""
    by_layer = {}
    for name, where in recurrent_layers_by_family(model).items():
        if name in plan.layers:
            by_layer.setdefault(id(where.layer), {})[where.config_key] = (where.rnn,
                                                                         plan.layers[name])

    def clone_layer(layer):
        planned = by_layer.get(id(layer))
        if planned is None:
            return layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.Bidirectional):
            (f_rnn, f_entry), (b_rnn, b_entry) = planned["layer"], planned["backward_layer"]
            return keras.layers.Bidirectional(
                _compact_rnn(f_rnn, f_entry), backward_layer=_compact_rnn(b_rnn, b_entry),
                merge_mode=layer.merge_mode, name=layer.name)
        rnn, entry = planned[None]
        return _compact_rnn(rnn, entry)

    compact = keras.models.clone_model(model, clone_function=clone_layer)
    old = {layer.name: layer for layer in functional_graph(model).operations}
    for layer in compact.layers:
        source = old.get(layer.name)
        if source is None:  # an input layer
            continue
        if id(source) not in by_layer:
            layer.set_weights(source.get_weights())
            continue
        for key, (rnn, entry) in by_layer[id(source)].items():
            target = (layer if key is None else
                      layer.forward_layer if key == "layer" else layer.backward_layer)
            _copy_compact(rnn.cell, target.cell, entry)
    return compact


def _copy_compact(cell, compact, entry):
    kernel = np.asarray(ops.convert_to_numpy(cell.kernel))
    recurrent = np.asarray(ops.convert_to_numpy(cell.recurrent_kernel))
    width = compact.gates * compact.units
    bias = (np.asarray(ops.convert_to_numpy(cell.bias)) if cell.use_bias else
            np.zeros((width,) if entry["kind"] == "lstm" else (2, width), "float32"))
    if entry["kind"] == "gru" and bias.ndim == 1:
        bias = np.stack([bias, np.zeros_like(bias)])
    compact.kernel.assign(kernel[:, entry["input_columns"]])
    compact.recurrent_kernel.assign(recurrent[:, entry["recurrent_columns"]])
    compact.bias.assign(bias)


def compress_gates(model, verify=True, tolerance=1e-5, trials=2):
    """`(compact model, plan)`: every LSTM / GRU computing only its nonzero gate columns.

    Raises:
        ShrinkVerificationError: the compact model's outputs differ from
            `model`'s on random inputs by more than `tolerance` (relative).
    """
    plan = make_gate_plan(model)
    compact = apply_gate_plan(model, plan)
    if verify:
        for trial in range(trials):
            inputs = probe_inputs(model, seed=trial)
            for i, (e, g) in enumerate(zip(outputs_from_zero_state(model, inputs),
                                           outputs_from_zero_state(compact, inputs))):
                _, diff = output_difference(e, g)
                if not diff <= tolerance:
                    raise ShrinkVerificationError(
                        f"Output {i} of the gate-compressed model differs by {diff:.3g} "
                        f"(relative), above {tolerance}: a bug, please report it.")
    return compact, plan

