"""Recurrent Highway Networks (Zilly et al. 2017) with ISS, as the original's rhns/.

Each time step runs `depth` micro-steps on the state s; micro-step l computes

    h = tanh(x W_H [l = 0] + s R_H,l + b_H,l)
    t = sigmoid(x W_T [l = 0] + s R_T,l + b_T,l)
    s = h * t + s * (1 - t)                    (coupled carry gate, C = 1 - T)

and the output is the last s. Variables, laid out so that every ISS component
is a set of whole rows and columns of 2-D matrices:

* `kernel` (input_dim, 2 * units): [W_H | W_T], used by micro-step 0 only;
* `recurrent_kernel` (depth * units, 2 * units): rows l*units .. (l+1)*units - 1
  hold [R_H,l | R_T,l];
* `bias` (depth, 2 * units): [b_H,l | b_T,l]; b_T starts at `transform_bias`.

Component k (the original's groups_hidden830.json) is columns k and units + k of
`kernel` and `recurrent_kernel` (H and T of every micro-step), rows
l*units + k of `recurrent_kernel` (state row k of every micro-step), and, when
the softmax is `emb(h, reverse=True)` of the embedding that makes the input,
embedding column k (word-vector channel k and, tied, softmax row k) and
`kernel` row k (what reads that channel). See `iss_keras.discovery`.

Removal is exact once unit k's recurrent rows and its softmax row (embedding
column k) are zero: its own state still evolves from its biases, but nothing
reads it, and the word-vector channel k it shares is then all zeros, so
`kernel` row k may be anything ("incoming").
"""

import keras
from keras import ops

# keras.layers.RNN draws one dropout mask per sequence (and clears it after)
# only for cells deriving from this mixin, which Keras does not export.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from iss_keras.groups import Footprint
from iss_keras.options import check_fraction_value
from iss_keras.sparsity.base import as_sparsity


@keras.saving.register_keras_serializable(package="iss_keras")
class RHNCell(keras.layers.Layer, DropoutRNNCell):
    """One Recurrent Highway Network step, for `keras.layers.RNN`.

    Args:
        units: state width (> 0).
        depth: micro-steps per time step (recurrence depth, > 0).
        init_scale: weights start uniform in [-init_scale, init_scale] (0.04 in
            the original).
        transform_bias: initial bias of the transform gates T (-2.0 in the
            original, so cells start by carrying their state).
        dropout: variational dropout rate on the input (one mask per sequence).
        recurrent_dropout: variational dropout rate on the state fed to each
            micro-step (one mask per sequence, shared by all micro-steps).
        kernel_regularizer, recurrent_regularizer, bias_regularizer: Keras
            regularizers (put `ISSRegularizer` in `recurrent_regularizer`).
        kernel_constraint, recurrent_constraint: Keras constraints (`ZeroOut`).
        seed: seed for the initializers and dropout.

    Example:

    >>> layer = keras.layers.RNN(RHNCell(830, depth=10), return_sequences=True)
    """

    def __init__(self, units, depth, init_scale=0.04, transform_bias=-2.0, dropout=0.0,
                 recurrent_dropout=0.0, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be a positive integer. Received: units={units}")
        if int(depth) < 1:
            raise ValueError(f"depth must be a positive integer. Received: depth={depth}")
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            check_fraction_value(name, float(rate))
        self.units = int(units)
        self.depth = int(depth)
        self.init_scale = float(init_scale)
        self.transform_bias = float(transform_bias)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.state_size = self.units
        self.output_size = self.units

    def _uniform(self, offset):
        seed = None if self.seed is None else self.seed + offset
        return keras.initializers.RandomUniform(-self.init_scale, self.init_scale, seed=seed)

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], 2 * u), name="kernel", initializer=self._uniform(0),
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(
            shape=(self.depth * u, 2 * u), name="recurrent_kernel", initializer=self._uniform(1),
            regularizer=self.recurrent_regularizer, constraint=self.recurrent_constraint)
        uniform = self._uniform(2)

        def bias_init(shape, dtype=None):
            h = uniform((shape[0], u), dtype=dtype)
            t = ops.full((shape[0], u), self.transform_bias, dtype=dtype)
            return ops.concatenate([h, t], axis=1)

        self.bias = self.add_weight(shape=(self.depth, 2 * u), name="bias", initializer=bias_init,
                                    regularizer=self.bias_regularizer)

    def call(self, inputs, states, training=False):
        s = states[0] if isinstance(states, (list, tuple)) else states
        u = self.units
        if training and self.dropout > 0:
            inputs = inputs * self.get_dropout_mask(inputs)
        state_mask = (self.get_recurrent_dropout_mask(s)
                      if training and self.recurrent_dropout > 0 else None)
        x_part = ops.matmul(inputs, self.kernel)
        for level in range(self.depth):
            fed = s * state_mask if state_mask is not None else s
            z = ops.matmul(fed, self.recurrent_kernel[level * u:(level + 1) * u]) + self.bias[level]
            if level == 0:
                z = z + x_part
            h = ops.tanh(z[:, :u])
            t = ops.sigmoid(z[:, u:])
            s = h * t + s * (1.0 - t)
        new_state = [s] if isinstance(states, (list, tuple)) else s
        return s, new_state

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def iss_footprints(self):
        """The cell's own part of each ISS component (see the module docstring)."""
        u = self.units
        columns = (0, u)  # H and T
        return [
            Footprint(self.kernel.path, axis=1, offsets=columns, role="incoming"),
            Footprint(self.recurrent_kernel.path, axis=1, offsets=columns, role="incoming"),
            Footprint(self.recurrent_kernel.path, axis=0,
                      offsets=[level * u for level in range(self.depth)], role="recurrent"),
            Footprint(self.bias.path, axis=1, offsets=columns, penalized=False, role="bias"),
        ]

    def get_config(self):
        return {
            **super().get_config(), "units": self.units, "depth": self.depth,
            "init_scale": self.init_scale, "transform_bias": self.transform_bias,
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": keras.constraints.serialize(self.recurrent_constraint),
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="iss_keras")
class WordDropout(keras.layers.Layer):
    """Drops word types: all occurrences of a word in a sequence share one mask.

    The original's `drop_x`: per sequence, each word of the vocabulary is kept
    (its vectors scaled by 1 / (1 - rate)) or dropped everywhere it occurs.
    Called as `WordDropout(rate, vocab_size)(word_vectors, tokens)`; the
    identity when not training. Channel k stays channel k, so ISS discovery
    walks through it (`iss_channelwise`).

    Args:
        rate: fraction of word types dropped, in [0, 1).
        vocab_size: number of word ids (> 0).
        seed: dropout seed.

    Example:

    >>> x = WordDropout(0.25, 10000)(embedding(tokens), tokens)
    """

    iss_channelwise = True

    def __init__(self, rate, vocab_size, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_fraction_value("rate", float(rate))
        if int(vocab_size) < 1:
            raise ValueError(f"vocab_size must be a positive integer. Received: "
                             f"vocab_size={vocab_size}")
        self.rate = float(rate)
        self.vocab_size = int(vocab_size)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)

    def call(self, inputs, tokens, training=False):
        if not training or self.rate == 0.0:
            return inputs
        # One draw per (sequence, word type), then looked up at every position.
        draws = keras.random.uniform((ops.shape(tokens)[0], self.vocab_size),
                                     seed=self.seed_generator)
        keep = ops.cast(draws >= self.rate, inputs.dtype) / (1.0 - self.rate)
        mask = ops.take_along_axis(keep, ops.cast(tokens, "int32"), axis=1)
        return inputs * ops.expand_dims(mask, -1)

    def compute_output_shape(self, inputs_shape, tokens_shape):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "vocab_size": self.vocab_size,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="iss_keras")
class LogitBias(keras.layers.Layer):
    """Adds a trainable bias over the last axis (the tied softmax's `softmax_b`).

    `ReversibleEmbedding(reverse=True)` has no bias; the original adds one
    per word. It reads logits, not hidden units, so it takes no part in ISS.

    Args:
        initializer, regularizer: for the bias vector.

    Example:

    >>> logits = LogitBias()(embedding(h, reverse=True))
    """

    def __init__(self, initializer="zeros", regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)
        self.regularizer = keras.regularizers.get(regularizer)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), name="bias",
                                    initializer=self.initializer, regularizer=self.regularizer)

    def call(self, inputs):
        return inputs + self.bias

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(),
                "initializer": keras.initializers.serialize(self.initializer),
                "regularizer": keras.regularizers.serialize(self.regularizer)}


def rhn_language_model(vocab_size, units, depth, batch_size=None, steps=None, stateful=False,
                       streaming=False, tied=True, init_scale=0.04, transform_bias=-2.0,
                       embedding_dropout=0.0, input_dropout=0.0, hidden_dropout=0.0,
                       output_dropout=0.0, softmax_bias=True, sparsity=None, seed=None,
                       name="rhn_lm"):
    """Word-level RHN language model: embedding -> RNN(RHNCell) -> softmax.

    Args:
        vocab_size: number of word ids.
        units: RHN width (= the embedding width when `tied`).
        depth: recurrence depth.
        batch_size, steps, stateful, streaming: as `iss_keras.models.lstm_lm.lstm_language_model`
            (streaming: the state is input `s0` and the second output).
        tied: share the embedding matrix with the softmax (`ReversibleEmbedding`).
        embedding_dropout: drops word types: every occurrence of a word in a
            sequence loses its whole vector (`WordDropout`, the original's drop_x).
        input_dropout, hidden_dropout: the cell's variational input / state dropout.
        output_dropout: variational dropout of the RHN output (one channel mask
            per sequence, `SpatialDropout1D`).
        softmax_bias: a per-word bias on the logits (the original's softmax_b;
            `LogitBias` when tied, the Dense bias when not).
        sparsity: a `SparsityMethod` or None. Every weight gets its
            regularizer (the original's weight decay covers all trainable
            variables, rhns/rhn.py:134-136); its constraint (per-weight
            zeroing) goes to the variables the original zeroes, those in its
            group file (SPARSITY_VARS, rhns/rhn.py:112-122): the embedding,
            the RHN kernels and the softmax matrix.
        seed: initializer and dropout seed.
        name: model name.

    Returns:
        A Functional `keras.Model` returning logits (and the new state when streaming).

    Example:

    >>> model = rhn_language_model(10000, 830, depth=10, embedding_dropout=0.25,
    ...                            input_dropout=0.75, hidden_dropout=0.25,
    ...                            output_dropout=0.75, sparsity=iss_keras.sparsity.ISS(1e-4))
    >>> groups = iss_keras.couple(model)
    """
    if stateful and streaming:
        raise ValueError("A model is either stateful or streaming, not both. Received: "
                         "stateful=True, streaming=True")
    if int(vocab_size) < 2:
        raise ValueError(f"vocab_size must be >= 2. Received: vocab_size={vocab_size}")
    sparsity = as_sparsity(sparsity)
    reg, constraint = sparsity.regularizer, sparsity.constraint
    tokens = keras.Input((steps,), batch_size=batch_size, dtype="int32", name="tokens")
    init = keras.initializers.RandomUniform(-init_scale, init_scale, seed=seed)
    # Its own seed: a seeded initializer repeats its draws for every variable.
    bias_init = keras.initializers.RandomUniform(-init_scale, init_scale,
                                                 seed=None if seed is None else seed + 7)
    if tied:
        embedding = keras.layers.ReversibleEmbedding(
            vocab_size, units, embeddings_initializer=init,
            embeddings_regularizer=reg("embeddings"),
            embeddings_constraint=constraint("embeddings"), name="embedding")
    else:
        embedding = keras.layers.Embedding(vocab_size, units, embeddings_initializer=init,
                                           embeddings_regularizer=reg("embeddings"),
                                           name="embedding")
    x = embedding(tokens)
    if embedding_dropout:
        x = WordDropout(embedding_dropout, vocab_size, seed=seed, name="embedding_dropout")(x, tokens)
    cell = RHNCell(units, depth, init_scale=init_scale, transform_bias=transform_bias,
                   dropout=input_dropout, recurrent_dropout=hidden_dropout,
                   recurrent_regularizer=reg("recurrent_kernel"), kernel_regularizer=reg("kernel"),
                   bias_regularizer=reg("bias"), kernel_constraint=constraint("kernel"),
                   recurrent_constraint=constraint("recurrent_kernel"), seed=seed)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=streaming, stateful=stateful,
                           name="rhn")
    inputs = [tokens]
    if streaming:
        state = keras.Input((units,), batch_size=batch_size, name="s0")
        inputs.append(state)
        y, new_state = rnn(x, initial_state=[state])
    else:
        y = rnn(x)
    if output_dropout:
        y = keras.layers.SpatialDropout1D(output_dropout, name="output_dropout")(y)
    if tied:
        logits = embedding(y, reverse=True)
        if softmax_bias:
            logits = LogitBias(bias_init, regularizer=reg("bias"), name="softmax_bias")(logits)
    else:
        logits = keras.layers.Dense(vocab_size, use_bias=softmax_bias, kernel_initializer=init,
                                    bias_initializer=bias_init, kernel_regularizer=reg("kernel"),
                                    bias_regularizer=reg("bias"),
                                    kernel_constraint=constraint("kernel"), name="softmax")(y)
    if streaming:
        return keras.Model(inputs, [logits, new_state], name=name)
    return keras.Model(tokens, logits, name=name)
