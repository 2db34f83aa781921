"""The LSTM step equations, once: the cells that compute an LSTM step their own way call them.

Keras's `LSTMCell` equations in its gate order (input, forget, candidate, output),
given the preactivations of the four gates: `iss_keras.compact.CompactCell` (which
computes only the non-constant gate columns) and
`iss_keras.sparsity.bayesian_layers.BayesianLSTMCell` (with noisy weights and
variables) use them; `fused_bidirectional_lstm` runs both directions of a bidirectional
LSTM in one time loop with the step (BiDAF's fast training step).
"""

import keras
from keras import ops


def lstm_step(z, c, units, activation, recurrent_activation):
    """One LSTM step: `(h, c')` from the gate preactivations and the previous cell state.

    Args:
        z: the preactivations `[..., 4 units]`, gates i, f, c, o (bias included).
        c: the previous cell state `[..., units]`.
        units: the state width.
        activation, recurrent_activation: the cell's (e.g. tanh and sigmoid).
    """
    u = units
    i = recurrent_activation(z[..., :u])
    f = recurrent_activation(z[..., u:2 * u])
    g = activation(z[..., 2 * u:3 * u])
    o = recurrent_activation(z[..., 3 * u:])
    c = f * c + i * g
    h = o * activation(c)
    return h, c


def _time_loop(step, init, xs):
    """`(carry, stacked outputs)` of `step(carry, x) -> (carry, y)` over the leading axis of
    every array in `xs`: a `tf.while_loop` with the carry as loop variables under TensorFlow
    (no per-step bookkeeping of the carry), `keras.ops.scan` elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return ops.scan(step, init, xs)
    import tensorflow as tf

    steps = tf.shape(xs[0])[0]
    inputs = [tf.TensorArray(x.dtype, size=steps, element_shape=x.shape[1:]).unstack(x)
              for x in xs]
    outputs = tf.TensorArray(init[0].dtype, size=steps, element_shape=init[0].shape)

    def body(t, carry, outputs):
        carry, y = step(carry, [x.read(t) for x in inputs])
        return t + 1, carry, outputs.write(t, y)

    _, carry, outputs = tf.while_loop(lambda t, *_: t < steps, body,
                                      (tf.constant(0), tuple(init), outputs),
                                      parallel_iterations=32)
    return carry, outputs.stack()


def fused_bidirectional_lstm(forward, backward, x_forward, x_backward, mask=None):
    """Both directions of a bidirectional LSTM in one time loop, each direction's input
    projection computed for all steps before it.

    What `keras.layers.Bidirectional(LSTM(return_sequences=True), backward_layer=LSTM(
    go_backwards=True))` computes with zero initial states and `mask` (masked steps output
    zeros and carry the state, as Bidirectional sets `zero_output_for_mask`), with half the
    loop iterations and one matrix product per step instead of four: the step multiplies
    both directions' states by their recurrent kernels at once (a batched product).

    Args:
        forward, backward: the two `keras.layers.LSTM` layers (built; `backward` runs over the
            reversed sequence, as `go_backwards=True`). Cell dropout is not supported.
        x_forward, x_backward: `(batch, time, width)` inputs of each direction (different
            when each drops its inputs with its own mask).
        mask: `(batch, time)` bool, or None.

    Returns:
        `(batch, time, 2 units)`: the forward outputs, then the backward ones in input order.
    """
    f_cell, b_cell = forward.cell, backward.cell
    units = f_cell.units
    x_backward = ops.flip(x_backward, axis=1)
    z = ops.stack([ops.matmul(x_forward, f_cell.kernel) + f_cell.bias,
                   ops.matmul(x_backward, b_cell.kernel) + b_cell.bias])  # (2, B, T, 4u)
    z = ops.transpose(z, (2, 0, 1, 3))                                   # (T, 2, B, 4u)
    recurrent = ops.stack([f_cell.recurrent_kernel.value,
                           b_cell.recurrent_kernel.value])  # (2, u, 4u)
    batch = ops.shape(z)[2]
    zeros = ops.zeros((2, batch, units), dtype=z.dtype)
    # The mask as 0/1 numbers (a boolean transpose is a slow path of oneDNN, which says so).
    if mask is None:
        steps_mask = ops.ones(ops.shape(z)[:3] + (1,), dtype=z.dtype)
    else:
        mask = ops.cast(mask, z.dtype)
        steps_mask = ops.transpose(ops.stack([mask, ops.flip(mask, axis=1)]), (2, 0, 1))
        steps_mask = ops.expand_dims(steps_mask, -1)                     # (T, 2, B, 1)
    activation, recurrent_activation = f_cell.activation, f_cell.recurrent_activation

    def step(carry, inputs):
        h, c = carry
        z_t, m_t = inputs
        h_new, c_new = lstm_step(z_t + ops.matmul(h, recurrent), c, units, activation,
                                 recurrent_activation)
        # m_t is 1 or 0: the new state and output, or the old state and a zero output.
        keep = 1.0 - m_t
        return (m_t * h_new + keep * h, m_t * c_new + keep * c), m_t * h_new

    _, out = _time_loop(step, (zeros, zeros), [z, steps_mask])  # (T, 2, B, u)
    out = ops.transpose(out, (1, 2, 0, 3))                      # (2, B, T, u)
    return ops.concatenate([out[0], ops.flip(out[1], axis=1)], axis=-1)


def can_fuse(forward, backward):
    """Whether `fused_bidirectional_lstm` computes what the two layers compute."""
    for layer in (forward, backward):
        if type(layer) is not keras.layers.LSTM or layer.stateful or layer.unroll:
            return False
        cell = layer.cell
        if cell.dropout or cell.recurrent_dropout or not cell.use_bias:
            return False
    same = (forward.cell.units == backward.cell.units
            and forward.cell.activation is backward.cell.activation
            and forward.cell.recurrent_activation is backward.cell.recurrent_activation)
    return (same and not forward.go_backwards and backward.go_backwards
            and forward.return_sequences and backward.return_sequences)
