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
through the layers of `iss_keras.models.bidaf_layers`, which declare how
they treat hidden units (`iss_consume`); `keras.layers.Multiply` of
channel-aligned tensors passes them on too. The contextual BiLSTM is
`SharedBiLSTM`, one layer called on the context and on the question with
the same weights: to discovery it is not a recurrent layer, so it has no
unit family and ISS never touches it, as in the original (its groups leave
it out).

This module holds the original's LSTM cells in Keras terms (the TF1
forget bias, initializer and sparsity arguments) and the builder `bidaf`.

Sparsity comes in as one `sparsity=` object. The weights of the original's
"prepro" and "main" scopes (the contextual and the three modeling BiLSTMs,
the attention, both logits layers) ask it for their regularizer and
constraint, as the original puts exactly those variables in its sparsity
collection (`add_mixedlasso` on the two scopes, model.py:199-205 and
:248-254; zeroing below a threshold after every step, model.py:419-438);
the embeddings, char CNN and highway layers ask for neither. A weight
outside every unit family (the contextual BiLSTM's) takes only the
element-wise part of a regularizer that needs the unit groups
(`elementwise_part`).
"""

import keras
import numpy as np
from keras import ops

from iss_keras.gates import LSTM_GATES as GATES
from iss_keras.models.bidaf_layers import (BiAttention, DropoutBidirectional, Highway,
                                           MaskedLogits, MaxOverCharacters,
                                           PaddingMask, SharedBiLSTM, SoftmaxPooling,
                                           SplitEmbedding, TileOverTime)
from iss_keras.options import check_fraction_value
from iss_keras.sparsity.base import as_sparsity, elementwise_part
from iss_keras.sparsity.elementwise import ZeroOut


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


# ------------------------------------------------------------------- the original's LSTM cells

def tf1_lstm_initializer(input_width, units, seed=None):
    """Glorot-uniform of TF1's one `[input + units, 4 units]` LSTM matrix, for both of
    Keras's kernels (BasicLSTMCell's `_linear` with the default initializer)."""
    limit = float(np.sqrt(6.0 / (input_width + units + GATES * units)))
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


def lstm_arguments(input_width, units, sparsity, seed, grouped=True):
    """Keras LSTM arguments of one TF1 BasicLSTMCell of the original (forget bias 1,
    TF1 initialization, the sparsity method's regularizers and constraints).

    `grouped=False`: a layer outside the unit groups (the contextual LSTM,
    which the original's groups do not cover either) keeps only the
    element-wise part of each regularizer (`elementwise_part`), e.g. ISS's
    group Lasso goes and an L1 beside it stays.
    """
    part = (lambda reg: reg) if grouped else elementwise_part
    recurrent_reg = part(sparsity.regularizer("recurrent_kernel"))
    bias_reg, bias_constraint = part(sparsity.regularizer("bias")), sparsity.constraint("bias")
    return dict(
        units=units, return_sequences=True, unit_forget_bias=True,  # forget_bias=1.0, TF1 style
        kernel_initializer=tf1_lstm_initializer(input_width, units, seed),
        recurrent_initializer=tf1_lstm_initializer(input_width, units,
                                                   None if seed is None else seed + 1),
        kernel_regularizer=part(sparsity.regularizer("kernel")),
        recurrent_regularizer=recurrent_reg,
        bias_regularizer=TF1BiasRegularizer(bias_reg) if bias_reg is not None else None,
        kernel_constraint=sparsity.constraint("kernel"),
        recurrent_constraint=sparsity.constraint("recurrent_kernel"),
        bias_constraint=TF1BiasConstraint(bias_constraint) if bias_constraint is not None else None)


def bidirectional_lstm(input_width, units, sparsity, seed, name, input_dropout=0.0,
                       dropout_seed=None):
    """A `DropoutBidirectional` (merge "concat") of the original's cells, both directions
    seeded apart, each with its own input dropout mask (`input_dropout` > 0), both run in one
    time loop; the LSTMs are made by `sparsity.layer` (a method may bring its own: then
    Keras's two loops run them)."""
    forward = sparsity.layer(keras.layers.LSTM,
                             **lstm_arguments(input_width, units, sparsity, seed),
                             name=f"forward_{name}")
    backward = sparsity.layer(keras.layers.LSTM,
                              **lstm_arguments(input_width, units, sparsity,
                                               None if seed is None else seed + 2),
                              go_backwards=True, name=f"backward_{name}")
    return DropoutBidirectional(forward, backward_layer=backward, name=name,
                                input_dropout=input_dropout, seed=dropout_seed)


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
        check_fraction_value(name, float(value), low_open=True, high_open=False)


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

    def input_dropout(self, keep):
        """The dropout rate of a layer's input in this model (0 outside training)."""
        return 1.0 - keep if self.training and keep < 1.0 else 0.0

    def bilstm(self, x, mask, units, name, keep):
        """A BiLSTM whose directions drop their inputs with masks of their own (model.py:
        174-183: one SwitchableDropoutWrapper per cell)."""
        rate = self.input_dropout(keep)
        dropout_seed = self.seeds() if rate else None  # drawn where the shared mask's was
        layer = bidirectional_lstm(x.shape[-1], units, self, self.seeds(), name,
                                   input_dropout=rate, dropout_seed=dropout_seed)
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

    # Contextual BiLSTM: dropout on the question's input only (model.py:188 vs :192), each
    # direction with its own mask (model.py:170-171).
    rate = b.input_dropout(keep)
    contextual = SharedBiLSTM(d, lstm=lstm_arguments(xx.shape[-1], d, b, b.seeds(),
                                                     grouped=False),
                              input_dropout=rate, seed=b.seeds() if rate else None,
                              name="contextual")
    h = contextual(xx, mask=context_mask)
    u = contextual(qq, mask=question_mask, drop_inputs=True)

    g = BiAttention(kernel_initializer=keras.initializers.GlorotUniform(seed=b.seeds()),
                    kernel_regularizer=b.regularizer("kernel"),
                    bias_regularizer=b.regularizer("bias"),
                    kernel_constraint=b.constraint("kernel"), bias_constraint=b.constraint("bias"),
                    name="attention")([h, u, context_mask, question_mask])
    g0 = b.bilstm(g, context_mask, d, "g0", keep)
    g1 = b.bilstm(g0, context_mask, d, "g1", keep)

    start_in = keras.layers.Concatenate(name="start_input")([g1, g])
    start = MaskedLogits(name="start_logits")(
        [b.dense_logits(b.dropout(start_in, keep, "start_dropout"), "start_dense"), context_mask])
    a1 = SoftmaxPooling(name="a1")([start, g1])
    a1 = TileOverTime(name="a1_tiled")([a1, context_mask])
    g1_a1 = keras.layers.Multiply(name="g1_a1")([g1, a1])
    g2_in = keras.layers.Concatenate(name="g2_input")([g, g1, a1, g1_a1])
    g2 = b.bilstm(g2_in, context_mask, d, "g2", keep)

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
# The original's sparsity collection, zeroed below --zero_threshold after every step and at
# load (its `prepro` and `main` scopes, model.py:199-205, :248-254, :419-438).
ZEROED_LAYERS = ("contextual", "attention", "g0", "g1", "g2", "start_dense", "end_dense")


def zero_small_weights(model, threshold):
    """Zero in place every weight of `ZEROED_LAYERS` whose magnitude is below `threshold`
    (an LSTM bias in TF1 terms, `TF1BiasConstraint`), as the original does when it loads a
    model to test (graph_handler.py:26-28). Returns `model`."""
    zero = ZeroOut(threshold)
    for name in ZEROED_LAYERS:
        for variable in model.get_layer(name).weights:
            lstm_bias = "lstm_cell" in variable.path and variable.path.endswith("bias")
            variable.assign((TF1BiasConstraint(zero) if lstm_bias else zero)(variable.value))
    return model


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


def model_fields(model):
    """What results.json records of a BiDAF model (the task's `model_fields`): its
    `non_embedding_weights` and the `lstm_units` of its six ISS LSTMs."""
    return {"non_embedding_weights": non_embedding_weights(model),
            "lstm_units": lstm_units(model)}
