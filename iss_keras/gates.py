"""Keras's gate layouts of LSTM, GRU and SimpleRNN cells, and what depends on them.

Keras lays the gates of a cell side by side along the last axis of its
`kernel`, `recurrent_kernel` and `bias`: gate g of unit j is column
`g * units + j`, with the gates in the order of `GATE_NAMES` (LSTMCell
i, f, c, o; GRUCell z, r, h; SimpleRNNCell its one preactivation h). This
table is the one place that says so. Among its readers:

* `iss_keras.discovery`: a hidden unit's ISS component owns one column per
  gate of the kernels and the bias (`num_gates`);
* `iss_keras.gate_discovery`: the gate-level (G) groups of the gated cells;
* `iss_keras.compact`: `CompactCell` rebuilds the full gate vector of an
  LSTM or GRU, and `GatePlan` names the constant gates.

A cell is one of these kinds only when it is exactly Keras's class: a
subclass may change the step, so it declares itself with its own protocol
(`iss_footprints`, see `iss_keras.discovery.rnn_cell`).
"""

import keras

# Gate letters by cell kind, in Keras's column order.
GATE_NAMES = {"lstm": ("i", "f", "c", "o"), "gru": ("z", "r", "h"), "simple_rnn": ("h",)}

# Gate blocks of Keras's LSTM kernels (i, f, c, o side by side): for builders of LSTM-shaped weights.
LSTM_GATES = len(GATE_NAMES["lstm"])

# The kinds whose gates are multiplied into the state (Lobacheva et al.'s G level applies).
GATED_KINDS = ("lstm", "gru")

CELL_KINDS = {keras.layers.LSTMCell: "lstm", keras.layers.GRUCell: "gru",
              keras.layers.SimpleRNNCell: "simple_rnn"}


def cell_kind(cell):
    """The kind of Keras's own `cell` ("lstm", "gru", "simple_rnn"); None for any other cell."""
    return CELL_KINDS.get(type(cell))


def gate_names(cell):
    """The gate letters of one of Keras's cells in column order, or None for another cell."""
    kind = cell_kind(cell)
    return None if kind is None else GATE_NAMES[kind]


def is_gated(cell):
    """Whether `cell` is Keras's LSTMCell or GRUCell."""
    return cell_kind(cell) in GATED_KINDS


def num_gates(cell):
    """How many gate blocks of `units` columns Keras's `cell` has (LSTM 4, GRU 3, SimpleRNN 1).

    Raises:
        ValueError: `cell` is not one of Keras's LSTMCell, GRUCell, SimpleRNNCell.
    """
    names = gate_names(cell)
    if names is None:
        raise ValueError(f"Gate layouts are known for Keras's "
                         f"{', '.join(c.__name__ for c in CELL_KINDS)}. "
                         f"Received: {type(cell).__name__} {cell!r}")
    return len(names)
