"""The LSTM step equations, once: the cells that compute an LSTM step their own way call them.

Keras's `LSTMCell` equations in its gate order (input, forget, candidate, output),
given the preactivations of the four gates: `iss_keras.compact.CompactCell` (which
computes only the non-constant gate columns) and
`iss_keras.sparsity.bayesian_layers.BayesianLSTMCell` (with noisy weights and
variables) use them.
"""


def lstm_step(z, c, units, activation, recurrent_activation):
    """One LSTM step: `(h, c')` from the gate preactivations and the previous cell state.

    Args:
        z: the preactivations `[batch, 4 units]`, gates i, f, c, o (bias included).
        c: the previous cell state `[batch, units]`.
        units: the state width.
        activation, recurrent_activation: the cell's (e.g. tanh and sigmoid).
    """
    u = units
    i = recurrent_activation(z[:, :u])
    f = recurrent_activation(z[:, u:2 * u])
    g = activation(z[:, 2 * u:3 * u])
    o = recurrent_activation(z[:, 3 * u:])
    c = f * c + i * g
    h = o * activation(c)
    return h, c
