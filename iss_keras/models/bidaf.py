"""BiDAF (Seo et al., ICLR 2017) as the ISS paper trains it on SQuAD, in Keras 3.

The network of wenwei202/iss-rnns `bidaf/` (a fork of allenai/bi-att-flow,
TF 1.1); `model.py:188` below is line 188 of its `bidaf/basic/model.py`,
`nn.py` is `bidaf/my/tensorflow/nn.py`, `cli.py` is `bidaf/basic/cli.py`.
With d the hidden size (100 in the original, cli.py:63):

    chars  -> char embedding (8) -> dropout -> Conv(100 filters, width 5) -> ReLU -> max over chars
    words  -> word embedding (GloVe rows fixed, the others trained)
    [chars; words] -> 2 highway layers (shared by context and question)
    contextual BiLSTM (shared)              h (context), u (question)        [2d]
    bi-attention                            G = [h; u~; h*u~; h*h~]          [8d]
    modeling BiLSTMs g0, then g1                                              [2d]
    start logits = Dense(1)([g1; G]) with -1e30 on padding
    a1 = softmax(start) . g1, tiled over the context                          [2d]
    output BiLSTM g2 over [G; g1; a1; g1*a1]                                  [2d]
    end logits = Dense(1)([g2; G]) with -1e30 on padding

ISS acts on g0, g1 and g2 (each direction: the six families of the
original's `groups_hidden100.json`), found by `iss_keras.discover_groups`
through the layers here, which declare how they treat hidden units
(`iss_consume`): the attention pooling `SoftmaxPooling` and `TileOverTime`
pass unit k on as channel k, `keras.layers.Multiply` of channel-aligned
tensors too, `BiAttention` reads three rows of its kernel per unit and
passes four channels on. The contextual BiLSTM is `SharedBiLSTM`, one layer
called on the context and on the question with the same weights: to
discovery it is not a recurrent layer (a recurrent layer called twice is
refused), so it has no unit family and ISS never touches it, as in the
original (its groups leave it out).

Sparsity comes in as one `sparsity=` object. The weights of the original's
"prepro" and "main" scopes (the contextual and the three modeling BiLSTMs,
the attention, both logits layers) ask it for their regularizer and
constraint, as the original puts exactly those variables in its sparsity
collection (`add_mixedlasso` on the two scopes, model.py:199-205 and
:248-254; zeroing below a threshold after every step, model.py:419-438);
the embeddings, char CNN and highway layers ask for neither.
"""

import keras
import numpy as np
from keras import ops

from iss_keras.sparsity.base import as_sparsity
from iss_keras.sparsity.elementwise import ZeroOut
from iss_keras.sparsity.iss import ISSRegularizer

VERY_NEGATIVE = -1e30  # the original's exp_mask constant (my/tensorflow/general.py:10-13, :110-124)
GATES = 4              # Keras LSTM kernels: gates i, f, c, o side by side


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


# ------------------------------------------------------------------- forget bias, TF1 style

def _forget_gate_ones(bias):
    """1 on the forget-gate quarter of a Keras LSTM bias (gates i, f, c, o), 0 elsewhere."""
    units = bias.shape[-1] // GATES
    return ops.concatenate([ops.zeros((units,), bias.dtype), ops.ones((units,), bias.dtype),
                            ops.zeros((2 * units,), bias.dtype)])


@keras.saving.register_keras_serializable(package="iss_keras")
class TF1BiasRegularizer(keras.regularizers.Regularizer):
    """A regularizer of the TF1 `BasicLSTMCell` bias, applied to a Keras LSTM bias.

    TF1's cell adds `forget_bias=1.0` inside the cell at every step and keeps
    its bias variable at 0 at the start; Keras's `unit_forget_bias=True`
    starts the forget-gate bias at 1 instead. The two compute the same and
    get the same gradients; they differ only where a penalty or a zeroing
    looks at the bias itself. This wrapper gives `inner` the TF1 bias (the
    Keras bias minus 1 on the forget gate), so L1 or zeroing act as in the
    original. The gate width is read from the bias, so a shrunk layer keeps it.

    Example:

    >>> keras.layers.LSTM(8, unit_forget_bias=True,
    ...                   bias_regularizer=TF1BiasRegularizer(keras.regularizers.L1(1e-4)))
    """

    def __init__(self, inner):
        self.inner = keras.regularizers.get(inner)

    def __call__(self, bias):
        return self.inner(bias - _forget_gate_ones(bias))

    def get_config(self):
        return {"inner": keras.regularizers.serialize(self.inner)}


@keras.saving.register_keras_serializable(package="iss_keras")
class TF1BiasConstraint(keras.constraints.Constraint):
    """A constraint (e.g. the zeroing `ZeroOut`) applied to the TF1 bias of a Keras LSTM
    bias: `inner(bias - f) + f`, with f = 1 on the forget gate (see `TF1BiasRegularizer`).

    Example:

    >>> TF1BiasConstraint(iss_keras.ZeroOut(4e-4))(np.array([1e-5, 1.0 + 1e-5, 0.5, 0.5]))
    [0.0, 1.0, 0.5, 0.5]
    """

    def __init__(self, inner):
        self.inner = keras.constraints.get(inner)

    def __call__(self, bias):
        bias = ops.convert_to_tensor(bias)
        ones = _forget_gate_ones(bias)
        return self.inner(bias - ones) + ones

    def get_config(self):
        return {"inner": keras.constraints.serialize(self.inner)}


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

def tf1_lstm_initializer(input_width, units, seed=None):
    """Glorot-uniform of TF1's one `[input + units, 4 units]` LSTM matrix, for both of
    Keras's kernels (BasicLSTMCell's `_linear` with the default initializer)."""
    limit = float(np.sqrt(6.0 / (input_width + units + GATES * units)))
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


def lstm_arguments(input_width, units, sparsity, seed, iss=True):
    """Keras LSTM arguments of one TF1 BasicLSTMCell of the original (forget bias 1,
    TF1 initialization, the sparsity method's regularizers and constraints).

    `iss=False` leaves the ISS group Lasso out (the contextual LSTM, which the
    original's groups do not cover) and keeps its element-wise part.
    """
    recurrent_reg = sparsity.regularizer("recurrent_kernel")
    if not iss and isinstance(recurrent_reg, ISSRegularizer):
        recurrent_reg = recurrent_reg.elementwise
    bias_reg, bias_constraint = sparsity.regularizer("bias"), sparsity.constraint("bias")
    return dict(
        units=units, return_sequences=True, unit_forget_bias=True,  # forget_bias=1.0, TF1 style
        kernel_initializer=tf1_lstm_initializer(input_width, units, seed),
        recurrent_initializer=tf1_lstm_initializer(input_width, units,
                                                   None if seed is None else seed + 1),
        kernel_regularizer=sparsity.regularizer("kernel"), recurrent_regularizer=recurrent_reg,
        bias_regularizer=TF1BiasRegularizer(bias_reg) if bias_reg is not None else None,
        kernel_constraint=sparsity.constraint("kernel"),
        recurrent_constraint=sparsity.constraint("recurrent_kernel"),
        bias_constraint=TF1BiasConstraint(bias_constraint) if bias_constraint is not None else None)


def bidirectional_lstm(input_width, units, sparsity, seed, name, iss=True):
    """A `Bidirectional(LSTM)` (merge "concat") of the original's cells, both directions
    seeded apart; the LSTMs are made by `sparsity.layer` (a method may bring its own)."""
    forward = sparsity.layer(keras.layers.LSTM,
                             **lstm_arguments(input_width, units, sparsity, seed, iss),
                             name=f"forward_{name}")
    backward = sparsity.layer(keras.layers.LSTM,
                              **lstm_arguments(input_width, units, sparsity,
                                               None if seed is None else seed + 2, iss),
                              go_backwards=True, name=f"backward_{name}")
    return keras.layers.Bidirectional(forward, backward_layer=backward, name=name)


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

    Call: `layer(x, mask=mask)` with `x (batch, time, width)` and a bool mask.
    """

    def __init__(self, units, lstm=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
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
        self.bidirectional = keras.layers.Bidirectional(
            keras.layers.LSTM(**options, name="forward_lstm"),
            backward_layer=keras.layers.LSTM(**backward, go_backwards=True, name="backward_lstm"),
            name="bidirectional")

    def build(self, input_shape):
        self.bidirectional.build(input_shape)

    def call(self, x, mask=None):
        return self.bidirectional(x, mask=mask)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2 * self.units,)

    def get_config(self):
        lstm = {k: _serialize(v) if hasattr(v, "get_config") else v for k, v in self.lstm.items()}
        return {**super().get_config(), "units": self.units, "lstm": lstm}


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


# ------------------------------------------------------------------- the model

class Seeds:
    """Distinct initializer / dropout seeds drawn from one run seed."""

    def __init__(self, seed):
        self._next = 0 if seed is None else int(seed) * 1000
        self.none = seed is None

    def __call__(self):
        if self.none:
            return None
        self._next += 10
        return self._next


def _check(hidden_size, word_vocab_size, num_trainable_words, char_vocab_size, keep_probs):
    for name, value in (("hidden_size", hidden_size), ("word_vocab_size", word_vocab_size),
                        ("char_vocab_size", char_vocab_size)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1. Received: {name}={value}")
    if not 1 <= int(num_trainable_words) <= int(word_vocab_size):
        raise ValueError(f"num_trainable_words must be in 1..word_vocab_size ({word_vocab_size})"
                         f". Received: num_trainable_words={num_trainable_words}")
    for name, value in keep_probs.items():
        if not 0.0 < float(value) <= 1.0:
            raise ValueError(f"{name} must be in (0, 1]. Received: {name}={value}")


class _Builder:
    """The pieces of `bidaf`, each a small method; see its docstring."""

    def __init__(self, sparsity, seed, training, input_keep_prob, char_keep_prob,
                 zero_threshold):
        self.sparsity = as_sparsity(sparsity)
        self.seeds = Seeds(seed)
        self.training = training
        self.input_keep_prob = float(input_keep_prob)
        self.char_keep_prob = float(char_keep_prob)
        self.zero_threshold = zero_threshold

    # The original's sparsity collection (prepro and main scopes) asks the method; the
    # zeroing is the method's, or the original's always-on one (model.py:419-438).
    def regularizer(self, slot):
        return self.sparsity.regularizer(slot)

    def layer(self, cls, *args, **kwargs):
        return self.sparsity.layer(cls, *args, **kwargs)

    def constraint(self, slot):
        found = self.sparsity.constraint(slot)
        if found is None and self.zero_threshold:
            return ZeroOut(self.zero_threshold)
        return found

    def dropout(self, x, keep, name):
        if not self.training or keep >= 1.0:
            return x
        return keras.layers.Dropout(1.0 - keep, seed=self.seeds(), name=name)(x)

    def dense_logits(self, x, name):
        return self.layer(
            keras.layers.Dense, 1,
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.seeds()),
            kernel_regularizer=self.regularizer("kernel"),
            bias_regularizer=self.regularizer("bias"), kernel_constraint=self.constraint("kernel"),
            bias_constraint=self.constraint("bias"), name=name)(x)

    def bilstm(self, x, mask, units, name, iss=True):
        layer = bidirectional_lstm(x.shape[-1], units, self, self.seeds(), name, iss)
        return layer(x, mask=mask)


def _embed(b, words, chars, word_embedding, char_embedding, conv, pooling, suffix):
    """[char CNN; word vectors] of one sequence (the layers are shared)."""
    c = char_embedding(chars)
    c = b.dropout(c, b.char_keep_prob, f"char_dropout_{suffix}")  # nn.py:163-164
    c = pooling(conv(c))
    return keras.layers.Concatenate(name=f"embedded_{suffix}")([c, word_embedding(words)])


def bidaf(hidden_size, word_vocab_size, num_trainable_words, char_vocab_size, word_dim=100,
          char_dim=8, char_filters=100, char_width=5, max_word_len=16, highway_layers=2,
          input_keep_prob=0.8, char_keep_prob=0.8, question_len=None, training=False,
          probabilities=False, sparsity=None, zero_threshold=0.0, word_vectors=None, seed=None,
          name="bidaf"):
    """The BiDAF model of the ISS paper's SQuAD experiment (see the module docstring).

    Args:
        hidden_size: d, units of every LSTM direction (the original's 100).
        word_vocab_size: all word ids (trained and fixed rows).
        num_trainable_words: ids below this are trained word vectors (`-NULL-`,
            `-UNK-`, frequent words without GloVe); the others are fixed GloVe.
        char_vocab_size: char ids (0 `-NULL-`, 1 `-UNK-`).
        word_dim: GloVe size (the original's 100; the offline copy has 50).
        char_dim, char_filters, char_width: char embedding 8, 100 filters of
            width 5 (cli.py:64-67).
        max_word_len: chars per word (cli.py:98); the char input's last axis.
        highway_layers: 2 (cli.py:70).
        input_keep_prob: keep probability of the dropout before each LSTM and
            logits layer (cli.py:46; 0.9 in the ISS fine-tune).
        char_keep_prob: keep probability on the char embeddings (the
            original's --keep_prob, cli.py:47).
        question_len: fixed question length (None: any).
        training: dropout on (the training model); the original's
            `is_train`.
        probabilities: outputs are the start and end softmax
            (`start_probabilities`, `end_probabilities`) instead of the masked
            logits (`start_logits`, `end_logits`), for evaluation, serving and
            `shrink`'s check (finite outputs).
        sparsity: a `SparsityMethod` or None; asked for the original's
            sparsity variables only (see the module docstring).
        zero_threshold: when the method gives a weight no constraint, zero
            |w| below this after every step anyway (the original does so in
            every run, baseline included, model.py:419-438 and
            trainer.py:87-89). 0: off.
        word_vectors: initial word vectors `(word_vocab_size, word_dim)` (GloVe
            rows and N(0, 1) samples, `iss_keras.datasets.squad.word_embedding_matrix`).
        seed: initializer and dropout seed.
        name: model name.

    Returns:
        A Functional `keras.Model` with inputs `context_words (batch, T)`,
        `context_chars (batch, T, max_word_len)`, `question_words (batch, J)`,
        `question_chars (batch, J, max_word_len)` (int32, 0 = padding) and
        outputs `(batch, T)` start and end scores.

    Example:

    >>> model = bidaf(100, len(vocab["words"]), vocab["num_trainable_words"],
    ...               len(vocab["chars"]), word_dim=50, training=True,
    ...               sparsity=iss_keras.sparsity.ISS(0.001))
    """
    _check(hidden_size, word_vocab_size, num_trainable_words, char_vocab_size,
           {"input_keep_prob": input_keep_prob, "char_keep_prob": char_keep_prob})
    d = int(hidden_size)
    b = _Builder(sparsity, seed, training, input_keep_prob, char_keep_prob, zero_threshold)
    keep = b.input_keep_prob

    context_words = keras.Input((None,), dtype="int32", name="context_words")
    context_chars = keras.Input((None, max_word_len), dtype="int32", name="context_chars")
    question_words = keras.Input((question_len,), dtype="int32", name="question_words")
    question_chars = keras.Input((question_len, max_word_len), dtype="int32",
                                 name="question_chars")
    context_mask = PaddingMask(name="context_mask")(context_words)
    question_mask = PaddingMask(name="question_mask")(question_words)

    # Embeddings and highway: outside the original's sparsity collection (scope "emb", "highway").
    word_embedding = SplitEmbedding(word_vocab_size, word_dim, num_trainable_words,
                                    name="word_embedding")
    char_embedding = keras.layers.Embedding(
        char_vocab_size, char_dim, name="char_embedding",
        embeddings_initializer=keras.initializers.GlorotUniform(seed=b.seeds()))  # model.py:116
    conv = keras.layers.Conv2D(
        char_filters, (1, char_width), padding="valid", activation="relu", name="char_conv",
        kernel_initializer=keras.initializers.GlorotUniform(seed=b.seeds()),
        bias_initializer=keras.initializers.RandomUniform(  # TF1 Glorot of a 1-D variable
            -np.sqrt(3.0 / char_filters), np.sqrt(3.0 / char_filters), seed=b.seeds()))
    pooling = MaxOverCharacters(name="char_max")
    xx = _embed(b, context_words, context_chars, word_embedding, char_embedding, conv, pooling,
                "context")
    qq = _embed(b, question_words, question_chars, word_embedding, char_embedding, conv,
                pooling, "question")
    for i in range(highway_layers):
        highway = Highway(seed=b.seeds(), name=f"highway_{i}")
        xx, qq = highway(xx), highway(qq)

    # Contextual BiLSTM: dropout on the question's input only (model.py:188 vs :192).
    contextual = SharedBiLSTM(d, lstm=lstm_arguments(xx.shape[-1], d, b, b.seeds(),
                                                     iss=False), name="contextual")
    h = contextual(xx, mask=context_mask)
    u = contextual(b.dropout(qq, keep, "contextual_dropout_question"), mask=question_mask)

    g = BiAttention(kernel_initializer=keras.initializers.GlorotUniform(seed=b.seeds()),
                    kernel_regularizer=b.regularizer("kernel"),
                    bias_regularizer=b.regularizer("bias"),
                    kernel_constraint=b.constraint("kernel"), bias_constraint=b.constraint("bias"),
                    name="attention")([h, u, context_mask, question_mask])
    g0 = b.bilstm(b.dropout(g, keep, "g0_dropout"), context_mask, d, "g0")
    g1 = b.bilstm(b.dropout(g0, keep, "g1_dropout"), context_mask, d, "g1")

    start_in = keras.layers.Concatenate(name="start_input")([g1, g])
    start = MaskedLogits(name="start_logits")(
        [b.dense_logits(b.dropout(start_in, keep, "start_dropout"), "start_dense"), context_mask])
    a1 = SoftmaxPooling(name="a1")([start, g1])
    a1 = TileOverTime(name="a1_tiled")([a1, context_mask])
    g1_a1 = keras.layers.Multiply(name="g1_a1")([g1, a1])
    g2_in = keras.layers.Concatenate(name="g2_input")([g, g1, a1, g1_a1])
    g2 = b.bilstm(b.dropout(g2_in, keep, "g2_dropout"), context_mask, d, "g2")

    end_in = keras.layers.Concatenate(name="end_input")([g2, g])
    end = MaskedLogits(name="end_logits")(
        [b.dense_logits(b.dropout(end_in, keep, "end_dropout"), "end_dense"), context_mask])
    if probabilities:
        start = keras.layers.Softmax(name="start_probabilities")(start)
        end = keras.layers.Softmax(name="end_probabilities")(end)
    model = keras.Model([context_words, context_chars, question_words, question_chars],
                        [start, end], name=name)
    if word_vectors is not None:
        word_embedding.set_word_vectors(word_vectors)
    return model


EMBEDDING_LAYERS = ("word_embedding", "char_embedding")


def non_embedding_weights(model):
    """Trainable weights outside the embedding tables (the original's 2,570,703 at d = 100
    with 100-d GloVe)."""
    skip = {v.path for name in EMBEDDING_LAYERS for v in model.get_layer(name).weights}
    return int(sum(np.prod(v.shape) for v in model.trainable_weights if v.path not in skip))


def lstm_units(model):
    """Units of the six ISS LSTMs by direction: `{"g0/forward": 100, ...}`."""
    out = {}
    for name in ("g0", "g1", "g2"):
        layer = model.get_layer(name)
        out[f"{name}/forward"] = layer.forward_layer.units
        out[f"{name}/backward"] = layer.backward_layer.units
    return out
