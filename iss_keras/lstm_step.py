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


def _time_loop(step, init, xs, output_width=None):
    """`(carry, stacked outputs)` of `step(carry, x) -> (carry, y)` over the leading axis of
    every array in `xs`: a `tf.while_loop` with the carry as loop variables under TensorFlow
    (no per-step bookkeeping of the carry), `keras.ops.scan` elsewhere. (Reading `x[t]` in
    the loop instead of a TensorArray measured 4x slower per read.)

    `y` has the shape of `init[0]`, or that shape with the last axis `output_width`. (The
    TensorArray is given it: TFLite's XNNPack delegate cannot prepare a loop whose output
    shape is left to the first write.)"""
    if keras.backend.backend() != "tensorflow":
        return ops.scan(step, init, xs)
    import tensorflow as tf

    steps = tf.shape(xs[0])[0]
    arrays = [tf.TensorArray(x.dtype, size=steps, element_shape=x.shape[1:]).unstack(x)
              for x in xs]
    shape = init[0].shape if output_width is None else init[0].shape[:-1] + [output_width]
    outputs = tf.TensorArray(init[0].dtype, size=steps, element_shape=shape)

    def body(t, carry, outputs):
        carry, y = step(carry, [x.read(t) for x in arrays])
        return t + 1, carry, outputs.write(t, y)

    _, carry, outputs = tf.while_loop(lambda t, *_: t < steps, body,
                                      (tf.constant(0), tuple(init), outputs),
                                      parallel_iterations=32)
    return carry, outputs.stack()


def fused_bidirectional_lstm(forward, backward, x_forward, x_backward, mask=None,
                             training=False):
    """Both directions of a bidirectional LSTM in one time loop, each direction's input
    projection computed for all steps before it.

    What `keras.layers.Bidirectional(LSTM(return_sequences=True), backward_layer=LSTM(
    go_backwards=True))` computes with zero initial states and `mask` (masked steps output
    zeros and carry the state, as Bidirectional sets `zero_output_for_mask`), with half the
    loop iterations and only the recurrent products inside the loop (each direction's state
    times its recurrent kernel).

    In training under TensorFlow with tanh and sigmoid (BiDAF's cells) and a mask that is
    right padding (every row: ones, then zeros; checked at run time) the loop carries no mask
    and its gradient is written out (`_tf_fused`); any other mask, and inference, take the
    masked loop (TFLite's XNNPack delegate cannot prepare the run-time choice between them).

    Args:
        forward, backward: the two `keras.layers.LSTM` layers (built; `backward` runs over the
            reversed sequence, as `go_backwards=True`). Cell dropout is not supported.
        x_forward, x_backward: `(batch, time, width)` inputs of each direction (different
            when each drops its inputs with its own mask).
        mask: `(batch, time)` bool, or None.
        training: whether gradients will be taken (the written-out gradient's path).

    Returns:
        `(batch, time, 2 units)`: the forward outputs, then the backward ones in input order.
    """
    f_cell = forward.cell
    recurrent = ops.stack([f_cell.recurrent_kernel.value,
                           backward.cell.recurrent_kernel.value])  # (2, u, 4u)
    if not (training and keras.backend.backend() == "tensorflow"
            and f_cell.activation is keras.activations.tanh
            and f_cell.recurrent_activation is keras.activations.sigmoid):
        return _masked_fused(forward, backward, recurrent, x_forward, x_backward, mask)
    import tensorflow as tf

    if mask is None:
        return _tf_fused(forward, backward, recurrent, x_forward, x_backward, None)
    mask = tf.cast(mask, tf.bool)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    right_padded = tf.reduce_all(tf.equal(mask, tf.sequence_mask(lengths, tf.shape(mask)[1])))
    return tf.cond(
        right_padded,
        lambda: _tf_fused(forward, backward, recurrent, x_forward, x_backward, mask),
        lambda: _masked_fused(forward, backward, recurrent, x_forward, x_backward, mask))


def _per_direction(h, matrices):
    """`(2, B, n) x [(n, m), (n, m)]`: each direction's state times its matrix. Two plain
    products: about 3x faster per step on CPU than one batched product at these sizes
    (oneDNN's batched kernel costs more per call)."""
    forward, backward = ops.unstack(h, 2)
    return ops.stack([ops.matmul(forward, matrices[0]), ops.matmul(backward, matrices[1])])


def _input_projections(forward, backward, x_forward, x_backward):
    """Each direction's gate preactivations from its inputs, all steps at once: `(B, T, 4u)`
    twice, the backward direction's in its own time order (flipped after the projection,
    which is narrower than BiDAF's inputs)."""
    f_cell, b_cell = forward.cell, backward.cell
    z_backward = ops.matmul(x_backward, b_cell.kernel) + b_cell.bias
    return ops.matmul(x_forward, f_cell.kernel) + f_cell.bias, ops.flip(z_backward, axis=1)


def _masked_fused(forward, backward, recurrent, x_forward, x_backward, mask):
    """`fused_bidirectional_lstm` for any mask and cell activations: the mask in the loop
    (a masked step carries the state and outputs zeros), gradients by autodiff."""
    f_cell = forward.cell
    units = f_cell.units
    activation, recurrent_activation = f_cell.activation, f_cell.recurrent_activation
    z = ops.stack(_input_projections(forward, backward, x_forward, x_backward))
    z = ops.transpose(z, (2, 0, 1, 3))                                   # (T, 2, B, 4u)
    # The mask as 0/1 numbers (a boolean transpose is a slow path of oneDNN, which says so).
    if mask is None:
        steps_mask = ops.ones(ops.shape(z)[:3] + (1,), dtype=z.dtype)
    else:
        mask = ops.cast(mask, z.dtype)
        steps_mask = ops.transpose(ops.stack([mask, ops.flip(mask, axis=1)]), (2, 0, 1))
        steps_mask = ops.expand_dims(steps_mask, -1)                     # (T, 2, B, 1)
    zeros = ops.zeros((2, ops.shape(z)[2], units), dtype=z.dtype)

    kernels = ops.unstack(recurrent, 2)

    def step(carry, inputs):
        h, c = carry
        z_t, m_t = inputs
        h_new, c_new = lstm_step(z_t + _per_direction(h, kernels), c, units, activation,
                                 recurrent_activation)
        # m_t is 1 or 0: the new state and output, or the old state and a zero output.
        keep = 1.0 - m_t
        return (m_t * h_new + keep * h, m_t * c_new + keep * c), m_t * h_new

    _, out = _time_loop(step, (zeros, zeros), [z, steps_mask])  # (T, 2, B, u)
    out = ops.transpose(out, (1, 2, 0, 3))                      # (2, B, T, u)
    return ops.concatenate([out[0], ops.flip(out[1], axis=1)], axis=-1)


def _tf_fused(forward, backward, recurrent, x_forward, x_backward, mask):
    """`fused_bidirectional_lstm` under TensorFlow with tanh and sigmoid for a mask of right
    padding (or none): no mask in the loop, the gradient written out (`_tf_recurrence`).

    The forward direction meets the padding after its real steps, where it changes no
    output that is kept (they are zeroed after the loop). The backward direction (the
    sequence flipped) meets it first: there its input gate is shut (preactivation at the
    dtype's lowest value, sigmoid exactly 0), so from zero states c stays exactly 0 and
    h = o tanh(0) = 0 until the first real token, as if those steps were skipped; their gate
    gradients are exactly 0 too.
    """
    import tensorflow as tf

    u = forward.cell.units
    z_forward, z_backward = _input_projections(forward, backward, x_forward, x_backward)
    if mask is not None:
        shut = tf.cast(tf.reverse(tf.logical_not(mask), [1]), z_backward.dtype)
        # An addition, not a slice and a select: its gradient is the identity (the slices'
        # gradients, zero-padded copies, cost more than the loop's product); lowest + z
        # stays finite for any finite z.
        lowest = tf.concat([tf.fill([u], z_backward.dtype.min),
                            tf.zeros([3 * u], z_backward.dtype)], 0)
        z_backward = z_backward + shut[..., None] * lowest
    z = tf.transpose(tf.stack([z_forward, z_backward]), (2, 0, 1, 3))      # (T, 2, B, 4u)
    forward_out, backward_out = tf.unstack(_tf_recurrence(z, recurrent, u), 2, axis=1)
    out = tf.concat([forward_out, tf.reverse(backward_out, [0])], -1)       # (T, B, 2u)
    out = tf.transpose(out, (1, 0, 2))
    if mask is None:
        return out
    return out * tf.cast(mask, out.dtype)[..., None]


def _tf_recurrence(z, recurrent, units):
    """`(T, 2, B, u)` outputs of the two directions' LSTM recurrence from zero states, with
    tanh and sigmoid under TensorFlow, its gradient written out.

    Autodiff of a `tf.while_loop` keeps every intermediate of every step and runs about three
    times the forward's ops per step backwards. Here the forward loop keeps only the states;
    the backward pass recomputes the gates for all steps at once, and its loop does only what
    is sequential: the state gradients through the recurrent product and the forget gate.
    With h, c the states, R the recurrent kernels, dy the output gradient:

        dh = dy + dh_next,            dc = dc_next + dh o (1 - tanh^2 c)
        dz = [dc g i(1-i), dc c_prev f(1-f), dc i (1-g^2), dh tanh(c) o(1-o)]
        dh_prev = dz R^T,             dc_prev = dc f,           dR = sum of h_prev^T dz

    The BiDAF test pins outputs and gradients to Keras's LSTMs.
    """
    import tensorflow as tf

    u = units

    @tf.custom_gradient
    def recurrence(z, recurrent):
        zeros = tf.zeros_like(z[0, ..., :u])
        kernels = ops.unstack(recurrent, 2)

        def step(carry, inputs):
            h, c = lstm_step(inputs[0] + _per_direction(carry[0], kernels), carry[1], u,
                             tf.tanh, tf.sigmoid)
            return (h, c), tf.concat([h, c], -1)

        _, states = _time_loop(step, (zeros, zeros), [z], 2 * u)  # (T, 2, B, 2u)
        h_all, c_all = states[..., :u], states[..., u:]

        def grad(dy):
            first = tf.zeros_like(h_all[:1])
            h_prev = tf.concat([first, h_all[:-1]], 0)
            c_prev = tf.concat([first, c_all[:-1]], 0)
            gates = z + tf.matmul(h_prev, recurrent)
            i, f = tf.sigmoid(gates[..., :u]), tf.sigmoid(gates[..., u:2 * u])
            g, o = tf.tanh(gates[..., 2 * u:3 * u]), tf.sigmoid(gates[..., 3 * u:])
            tanh_c = tf.tanh(c_all)
            to_c = o * (1.0 - tanh_c * tanh_c)
            local = tf.concat([g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g),
                               tanh_c * o * (1.0 - o)], -1)
            kernels_t = ops.unstack(tf.transpose(recurrent, (0, 2, 1)), 2)

            def back(carry, inputs):
                dy_t, to_c_t, local_t, f_t = inputs
                dh = dy_t + carry[0]
                dc = carry[1] + dh * to_c_t
                dz = tf.concat([dc, dc, dc, dh], -1) * local_t
                return (_per_direction(dz, kernels_t), dc * f_t), dz

            _, dz = _time_loop(back, (zeros, zeros),
                               [tf.reverse(t, [0]) for t in (dy, to_c, local, f)], 4 * u)
            dz = tf.reverse(dz, [0])                                    # (T, 2, B, 4u)
            flat = lambda t: tf.reshape(tf.transpose(t, (1, 0, 2, 3)), (2, -1, t.shape[-1]))
            return dz, tf.matmul(flat(h_prev), flat(dz), transpose_a=True)

        return h_all, grad

    return recurrence(z, recurrent)


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
