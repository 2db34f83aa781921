"""The layers of BiDAF (`iss_keras.models.bidaf`), and how each meets hidden units.

Custom layers that discovery (`iss_keras.discover_groups`) follows through,
each declaring how it treats the hidden units that reach it
(`iss_consume`, see docs/library.md): the attention pooling
`SoftmaxPooling` and `TileOverTime` pass unit k on as channel k,
`BiAttention` reads three rows of its kernel per unit and passes four
channels on, and a unit reaching a mask or the attention scores is refused.
They are the worked examples of a layer joining discovery without
registration.

The others have no `iss_consume`: the padding masks, the split word
embedding, the char CNN's pooling, the highway layers, the masked logits,
and `SharedBiLSTM`, the contextual BiLSTM called on the context and the
question with one set of weights (to discovery it is not a recurrent layer,
so it has no unit family and feeding it hidden units is refused).
`model.py:188` and `nn.py` are files of wenwei202/iss-rnns `bidaf/` (see
`iss_keras.models.bidaf`).
"""

import keras
import numpy as np
from keras import ops

from iss_keras.lstm_step import can_fuse, fused_bidirectional_lstm

VERY_NEGATIVE = -1e30  # the original's exp_mask constant (my/tensorflow/general.py:10-13, :110-124)


def _mask_to_float(mask, dtype):
    return ops.cast(mask, dtype)


def exp_mask(logits, mask):
    """`logits + (1 - mask) * -1e30`: padding gets a very negative score (the original's
    `exp_mask` adds rather than replaces, so a masked score stays finite)."""
    return logits + (1.0 - _mask_to_float(mask, logits.dtype)) * VERY_NEGATIVE


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj) if obj is not None else None


def _deserialize(config):
    return keras.saving.deserialize_keras_object(config) if config is not None else None


# ------------------------------------------------------------------- layers without units

class _EndsMasks:
    """Mixin: the layer takes Keras's implicit masks (no warning) and passes none on.

    The model carries its padding as explicit masks (`PaddingMask`), so no
    output of these layers keeps an implicit `_keras_mask` (which a loss
    would otherwise apply to the scores).
    """

    def compute_mask(self, inputs, mask=None):
        return None


@keras.saving.register_keras_serializable(package="iss_keras")
class PaddingMask(_EndsMasks, keras.layers.Layer):
    """`ids != 0`: the real positions of a batch of padded word ids (id 0 is `-NULL-`)."""

    def call(self, ids):
        return ops.not_equal(ids, 0)

    def compute_output_spec(self, ids):
        return keras.KerasTensor(ids.shape, dtype="bool")


@keras.saving.register_keras_serializable(package="iss_keras")
class SplitEmbedding(_EndsMasks, keras.layers.Layer):
    """Word vectors with trained rows first and fixed (GloVe) rows after them.

    Ids `0 .. num_trainable - 1` look up a trained table (`-NULL-`, `-UNK-`
    and frequent training words missing from GloVe), ids from
    `num_trainable` on a fixed one: the original's `word_emb_mat`
    concatenated with the fed `new_emb_mat` (model.py:138-144). Both start
    at zero; `set_word_vectors` fills them.

    Args:
        input_dim: all ids (trained + fixed rows).
        output_dim: vector width (the GloVe size).
        num_trainable: rows that are trained.

    Example:

    >>> emb = SplitEmbedding(50002, 50, num_trainable=120)
    >>> emb.build(None); emb.set_word_vectors(matrix)   # matrix: (50002, 50)
    """

    def __init__(self, input_dim, output_dim, num_trainable, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= int(num_trainable) <= int(input_dim):
            raise ValueError(f"num_trainable must be in 1..input_dim ({input_dim}). Received: "
                             f"num_trainable={num_trainable}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.num_trainable = int(num_trainable)

    def build(self, input_shape=None):
        self.trained = self.add_weight(shape=(self.num_trainable, self.output_dim),
                                       initializer="zeros", name="trained")
        fixed = self.input_dim - self.num_trainable
        self.fixed = (self.add_weight(shape=(fixed, self.output_dim), initializer="zeros",
                                      trainable=False, name="fixed") if fixed else None)

    def set_word_vectors(self, matrix):
        """Fill both tables from one `(input_dim, output_dim)` matrix."""
        matrix = np.asarray(matrix, dtype="float32")
        if matrix.shape != (self.input_dim, self.output_dim):
            expected = (self.input_dim, self.output_dim)
            raise ValueError(f"The word vectors must be of shape {expected}. Received: "
                             f"{matrix.shape}")
        self.trained.assign(matrix[:self.num_trainable])
        if self.fixed is not None:
            self.fixed.assign(matrix[self.num_trainable:])

    def call(self, ids):
        ids = ops.cast(ids, "int32")
        trained = ops.take(self.trained, ops.minimum(ids, self.num_trainable - 1), axis=0)
        if self.fixed is None:
            return trained
        fixed = ops.take(self.fixed, ops.maximum(ids - self.num_trainable, 0), axis=0)
        return ops.where(ops.expand_dims(ids < self.num_trainable, -1), trained, fixed)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim, "num_trainable": self.num_trainable}


@keras.saving.register_keras_serializable(package="iss_keras")
class MaxOverCharacters(_EndsMasks, keras.layers.Layer):
    """`max` over the character axis: `(batch, words, chars, filters) -> (batch, words,
    filters)` (the char CNN's pooling, nn.py:166)."""

    def call(self, x):
        return ops.max(x, axis=-2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-2]) + (input_shape[-1],)


@keras.saving.register_keras_serializable(package="iss_keras")
class Highway(_EndsMasks, keras.layers.Layer):
    """One highway layer: `g * relu(x W_t + b_t) + (1 - g) * x`, `g = sigmoid(x W_g + b_g)`
    (nn.py:135-143; square kernels, Glorot-uniform, biases at 0)."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed

    def build(self, input_shape):
        width = input_shape[-1]
        seed = self.seed

        def glorot(offset):
            return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)

        self.trans_kernel = self.add_weight(shape=(width, width), initializer=glorot(0),
                                            name="trans_kernel")
        self.trans_bias = self.add_weight(shape=(width,), initializer="zeros", name="trans_bias")
        self.gate_kernel = self.add_weight(shape=(width, width), initializer=glorot(1),
                                           name="gate_kernel")
        self.gate_bias = self.add_weight(shape=(width,), initializer="zeros", name="gate_bias")

    def call(self, x):
        trans = ops.relu(ops.matmul(x, self.trans_kernel) + self.trans_bias)
        gate = ops.sigmoid(ops.matmul(x, self.gate_kernel) + self.gate_bias)
        return gate * trans + (1.0 - gate) * x

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


# ------------------------------------------------------------------- the contextual encoder

@keras.saving.register_keras_serializable(package="iss_keras")
class DropoutBidirectional(keras.layers.Bidirectional):
    """`Bidirectional` (concat, sequences) whose two directions read their input through
    masks of their own in training, as the original's two `SwitchableDropoutWrapper` cells
    (model.py:170-183, my/tensorflow/rnn_cell.py:8-25); one shared mask before the layer
    would drop the same inputs for both. Outside training it is `Bidirectional`.

    Two stock LSTMs run in one time loop (`iss_keras.lstm_step.fused_bidirectional_lstm`:
    each direction's input projection computed for all steps before the loop, both states
    advanced by one batched product per step) unless `fused=False`; the weights, their
    regularizers and constraints stay the two LSTMs' (discovery, `shrink` and the exports see
    a `Bidirectional`). Other layers, and calls with an initial state, take Keras's two loops.

    Args:
        layer, backward_layer, ...: as `keras.layers.Bidirectional`.
        input_dropout: the rate of each direction's input dropout (1 - input_keep_prob).
        seed: the forward mask's seed; the backward's is `seed + 1`.
        fused: one time loop for both directions (the same numbers as two).
    """

    def __init__(self, layer, input_dropout=0.0, seed=None, fused=True, **kwargs):
        super().__init__(layer, **kwargs)
        self.fused = bool(fused)
        if self.merge_mode != "concat" or not self.return_sequences or self.return_state:
            raise ValueError("DropoutBidirectional concatenates sequences. Received: "
                             f"merge_mode={self.merge_mode!r}, return_sequences="
                             f"{self.return_sequences}, return_state={self.return_state}")
        self.input_dropout = float(input_dropout)
        self.seed = seed
        self.forward_dropout = keras.layers.Dropout(self.input_dropout, seed=seed)
        self.backward_dropout = keras.layers.Dropout(
            self.input_dropout, seed=None if seed is None else seed + 1)

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if training and self.input_dropout and initial_state is not None:
            raise ValueError("DropoutBidirectional draws its own masks from zero initial states; "
                             "it takes no initial_state in training. Received: initial_state="
                             f"{initial_state!r}")
        dropping = bool(training) and self.input_dropout > 0
        if (self.fused and initial_state is None
                and can_fuse(self.forward_layer, self.backward_layer)):
            x_forward, x_backward = sequences, sequences
            if dropping:
                x_forward = self.forward_dropout(sequences, training=training)
                x_backward = self.backward_dropout(sequences, training=training)
            return ops.cast(fused_bidirectional_lstm(self.forward_layer, self.backward_layer,
                                                     x_forward, x_backward, mask,
                                                     training=bool(training)),
                            self.compute_dtype)
        if not dropping:
            return super().call(sequences, initial_state=initial_state, mask=mask,
                                training=training)
        kwargs = {}
        if self.forward_layer._call_has_training_arg:
            kwargs["training"] = training
        if self.forward_layer._call_has_mask_arg:
            kwargs["mask"] = mask
        y = self.forward_layer(self.forward_dropout(sequences, training=training), **kwargs)
        y_rev = self.backward_layer(self.backward_dropout(sequences, training=training),
                                    **kwargs)
        return ops.concatenate([ops.cast(y, self.compute_dtype),
                                ops.flip(ops.cast(y_rev, self.compute_dtype), axis=1)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "input_dropout": self.input_dropout, "seed": self.seed,
                "fused": self.fused}


@keras.saving.register_keras_serializable(package="iss_keras")
class SharedBiLSTM(_EndsMasks, keras.layers.Layer):
    """The contextual BiLSTM: one set of weights for the context and the question.

    The original runs the same cells on both (`share_lstm_weights`,
    model.py:187-196). A Keras recurrent layer called twice is refused by
    `discover_groups` (its units would belong to two calls), so the
    Bidirectional lives inside this layer, which is called twice: discovery
    sees a layer without hidden units of its own. ISS therefore never acts
    on it, as in the original, whose groups leave it out. A model that feeds
    hidden units *into* it is refused (it has no `iss_consume`).

    Args:
        units: hidden units per direction.
        lstm: keyword arguments of both directions' `keras.layers.LSTM`
            (initializers, regularizers, constraints; serializable objects).
        input_dropout, seed: each direction's own input dropout in training, for the
            calls with `drop_inputs=True` (the question's, model.py:188; see
            `DropoutBidirectional`).

    Call: `layer(x, mask=mask, drop_inputs=False)` with `x (batch, time, width)` and a
    bool mask.
    """

    def __init__(self, units, lstm=None, input_dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.input_dropout = float(input_dropout)
        self.seed = seed
        self.lstm = dict(lstm or {})
        options = {k: _deserialize(v) if isinstance(v, dict) else v for k, v in self.lstm.items()}
        options.update(units=self.units, return_sequences=True)
        backward = dict(options)
        for key in ("kernel_initializer", "recurrent_initializer"):  # the backward cell's own draw
            init = backward.get(key)
            if isinstance(init, keras.initializers.Initializer):
                config = init.get_config()
                if config.get("seed") is not None:
                    config["seed"] += 2
                backward[key] = init.__class__.from_config(config)
        self.bidirectional = DropoutBidirectional(
            keras.layers.LSTM(**options, name="forward_lstm"),
            backward_layer=keras.layers.LSTM(**backward, go_backwards=True, name="backward_lstm"),
            input_dropout=self.input_dropout, seed=seed, name="bidirectional")

    def build(self, input_shape):
        self.bidirectional.build(input_shape)

    def call(self, x, mask=None, training=None, drop_inputs=False):
        return self.bidirectional(x, mask=mask, training=training if drop_inputs else False)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2 * self.units,)

    def get_config(self):
        lstm = {k: _serialize(v) if hasattr(v, "get_config") else v for k, v in self.lstm.items()}
        return {**super().get_config(), "units": self.units, "lstm": lstm,
                "input_dropout": self.input_dropout, "seed": self.seed}


# ------------------------------------------------------------------- layers that meet hidden units

def _first_position(consumption):
    positions = consumption.input_positions()
    return positions[0] if positions else None


@keras.saving.register_keras_serializable(package="iss_keras")
class BiAttention(_EndsMasks, keras.layers.Layer):
    """Bi-directional attention flow: `[h, u, h_mask, u_mask] -> G = [h; u~; h*u~; h*h~]`.

    Similarity `S[t, j] = w . [h_t; u_j; h_t * u_j] + b` (the tri-linear
    `get_logits`, nn.py:126-130, one `(3C, 1)` kernel and a bias), with
    -1e30 added where the context or the question position is padding
    (model.py:622-630). c2q: `u~_t = sum_j softmax_j(S[t]) u_j`; q2c:
    `h~ = sum_t softmax_t(max_j S[t, j]) h_t`, tiled over the context
    (model.py:631-633, :657). Computed without the original's
    `(batch, T, J, 6d)` tensor: `S = h w_h + (u w_u)^T + (h * w_hu) u^T + b`.
    No dropout (the original passes no keep probability here, model.py:629).

    Hidden units (`iss_consume`): if `h` and `u` carry unit k at channel k
    (the same units on both, e.g. self-attention), the unit owns kernel rows
    k, C + k and 2C + k and is passed on as channels k, C + k, 2C + k and
    3C + k of G: with those rows zero, S and every softmax ignore it, and
    each of its G channels reads only it. Units on one input only are
    refused (discovery's `aligned_with` check), as are units reaching the
    masks.

    Example:

    >>> g = BiAttention(name="attention")([h, u, h_mask, u_mask])   # (batch, T, 4C)
    """

    def __init__(self, kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def build(self, input_shape):
        h_shape, u_shape = input_shape[0], input_shape[1]
        if h_shape[-1] != u_shape[-1]:
            raise ValueError(f"BiAttention needs context and question vectors of one width. "
                             f"Received: {h_shape[-1]} and {u_shape[-1]}")
        width = h_shape[-1]
        self.kernel = self.add_weight(shape=(3 * width, 1), initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint, name="kernel")
        self.bias = self.add_weight(shape=(1,), initializer="zeros",
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint, name="bias")

    def similarity(self, h, u, h_mask, u_mask):
        """`S (batch, T, J)` with -1e30 added where either position is padding."""
        width = h.shape[-1]
        w_h, w_u, w_hu = (self.kernel[i * width:(i + 1) * width, 0] for i in range(3))
        scores = (ops.expand_dims(ops.matmul(h, ops.expand_dims(w_h, -1))[..., 0], 2)
                  + ops.expand_dims(ops.matmul(u, ops.expand_dims(w_u, -1))[..., 0], 1)
                  + ops.matmul(h * w_hu, ops.transpose(u, (0, 2, 1))) + self.bias[0])
        both = ops.logical_and(ops.expand_dims(h_mask, 2), ops.expand_dims(u_mask, 1))
        return exp_mask(scores, both)

    def call(self, inputs):
        h, u, h_mask, u_mask = inputs
        scores = self.similarity(h, u, h_mask, u_mask)
        u_tilde = ops.matmul(ops.softmax(scores, axis=-1), u)                # c2q (batch, T, C)
        q2c = ops.softmax(ops.max(scores, axis=-1), axis=-1)                 # (batch, T)
        h_tilde = ops.sum(ops.expand_dims(q2c, -1) * h, axis=1, keepdims=True)  # (batch, 1, C)
        return ops.concatenate([h, u_tilde, h * u_tilde, h * h_tilde], axis=-1)

    def compute_output_shape(self, input_shape):
        h_shape = input_shape[0]
        return tuple(h_shape[:-1]) + (4 * h_shape[-1],)

    def iss_consume(self, consumption):
        position = _first_position(consumption)
        if position not in (0, 1):
            consumption.reject("hidden units reach its masks.")
        h, u = consumption.node.arguments.keras_tensors[:2]
        consumption.aligned_with(h)
        consumption.aligned_with(u)
        width = h.shape[-1]
        for block in range(3):  # rows of w_h, w_u, w_hu
            consumption.reads(self.kernel, axis=0, start=block * width + consumption.start)
        for block in range(4):  # h, u~, h*u~, h*h~
            consumption.passes_on(consumption.node.outputs[0],
                                  start=block * width + consumption.start)

    def get_config(self):
        return {**super().get_config(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint)}


@keras.saving.register_keras_serializable(package="iss_keras")
class MaskedLogits(_EndsMasks, keras.layers.Layer):
    """`[logits (batch, T, 1), mask (batch, T)] -> (batch, T)` with -1e30 added on padding
    (`linear_logits` with `exp_mask`, nn.py:78-84)."""

    def call(self, inputs):
        logits, mask = inputs
        return exp_mask(logits[..., 0], mask)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1])


@keras.saving.register_keras_serializable(package="iss_keras")
class SoftmaxPooling(_EndsMasks, keras.layers.Layer):
    """`[scores (batch, T), values (batch, T, C)] -> sum_t softmax(scores)_t values_t`.

    The original's `softsel` (nn.py:51-64), here `a1 = softsel(g1, start
    logits)` (model.py:234): the scores carry the padding mask as -1e30
    (`MaskedLogits`), so padding gets weight 0.

    Hidden units (`iss_consume`): unit k of `values` is channel k of the
    output (a weighted sum over time of that channel alone). Units reaching
    the scores are refused: the softmax over time would mix them all.
    """

    def call(self, inputs):
        scores, values = inputs
        weights = ops.softmax(scores, axis=-1)
        return ops.sum(ops.expand_dims(weights, -1) * values, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], input_shape[1][-1])

    def iss_consume(self, consumption):
        if 0 in consumption.input_positions():
            consumption.reject("hidden units reach its attention scores; the softmax over time "
                               "mixes every unit, so none can be removed on its own.")
        consumption.passes_on(consumption.node.outputs[0])


@keras.saving.register_keras_serializable(package="iss_keras")
class TileOverTime(_EndsMasks, keras.layers.Layer):
    """`[vector (batch, C), mask (batch, T)] -> (batch, T, C)`: the vector at every position
    (the original tiles a1 over the context, model.py:235; the mask gives the length).

    Hidden units (`iss_consume`): channel k of the vector stays channel k.
    """

    def call(self, inputs):
        vector, reference = inputs
        ones = ops.expand_dims(ops.ones_like(ops.cast(reference, vector.dtype)), -1)
        return ones * ops.expand_dims(vector, 1)  # (batch, T, 1) * (batch, 1, C), exact

    def compute_output_shape(self, input_shape):
        vector, reference = input_shape
        return (vector[0], reference[1], vector[-1])

    def iss_consume(self, consumption):
        if 1 in consumption.input_positions():
            consumption.reject("hidden units reach the tensor that only gives its length.")
        consumption.passes_on(consumption.node.outputs[0])
