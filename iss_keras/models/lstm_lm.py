"""Word-level LSTM language models (Zaremba et al. 2014), as in the ISS paper.

One builder gives the three shapes of the same network, with the same layer
names so weights move between them with `set_weights`:

* training: stateful (fixed batch size), the LSTM state carried from one batch
  to the next for truncated back-propagation through time;
* evaluation: stateful without regularizers, any batch size (batch 1 for test);
* streaming (`streaming=True`): stateless, the state of every layer is an
  explicit input and output, which is what servers and devices run (one token
  at a time with carried state) and what is exported.

Sparsity comes in as one `sparsity=` object (`iss_keras.sparsity`), asked for
each weight's regularizer and constraint; its strengths are per token (Keras
averages the loss over batch and time; `iss_keras.sparsity.from_options`
converts the original repository's units).
"""

import keras

from iss_keras.models.text_classifier import PerGate
from iss_keras.options import check_fraction_value
from iss_keras.sparsity.base import as_sparsity


@keras.saving.register_keras_serializable(package="iss_keras")
class OneHot(keras.layers.Layer):
    """Word ids `[batch, steps]` -> one-hot float vectors `[batch, steps, num_tokens]`, for any
    number of steps (`CategoryEncoding` drops a time axis of length 1).

    >>> OneHot(4)(np.array([[2, 0]])).shape
    TensorShape([1, 2, 4])
    """

    def __init__(self, num_tokens, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = int(num_tokens)
        if self.num_tokens < 1:
            raise ValueError(f"num_tokens must be positive. Received: num_tokens={num_tokens}")

    def call(self, ids):
        return keras.ops.one_hot(keras.ops.cast(ids, "int32"), self.num_tokens,
                                 dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.num_tokens,)

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens}


def _check_sizes(vocab_size, hidden_sizes):
    if int(vocab_size) < 2:
        raise ValueError(f"vocab_size must be >= 2. Received: vocab_size={vocab_size}")
    sizes = [int(h) for h in hidden_sizes]
    if not sizes or any(h < 1 for h in sizes):
        raise ValueError(f"hidden_sizes must be a non-empty list of positive sizes. "
                         f"Received: hidden_sizes={list(hidden_sizes)}")
    return sizes


def lstm_language_model(vocab_size, hidden_sizes, embedding_size=None, dropout=0.0,
                        init_scale=0.05, batch_size=None, steps=None, stateful=False,
                        streaming=False, sparsity=None, seed=None, one_hot_input=False,
                        lasagne_init=False, name="lstm_lm"):
    """Embedding (or one-hot words) -> stacked LSTMs -> Dense softmax logits.

    Args:
        vocab_size: number of word ids.
        hidden_sizes: units of each LSTM layer, e.g. `[1500, 1500]` or `[373, 315]`.
        embedding_size: width of the word vectors (default: the first layer's size).
        dropout: non-recurrent dropout rate on the embedding and every LSTM output
            (1 - the original's keep_prob).
        init_scale: embedding, kernels and softmax (weights and bias) start
            uniform in [-init_scale, init_scale]; LSTM biases start at 0, as
            the original (TF1 `_linear`, bias_start=0.0).
        batch_size: fixed batch size (required when stateful).
        steps: fixed number of unrolled steps (None: any length).
        stateful: carry the LSTM state across batches.
        streaming: states as explicit inputs `h{i}, c{i}` and outputs.
        sparsity: a `SparsityMethod` (e.g. `iss_keras.sparsity.Sparsity([ISS(...),
            WeightZeroing(1e-4)])`) or None. Every weight gets its constraint
            (per-weight zeroing, embedding included); every weight but the
            embedding gets its regularizer, as the original applies L1 / L2 to
            `tf.trainable_variables()[1:]` (ptb_word_lm.py:341).
        seed: initializer seed.
        one_hot_input: no embedding: the first LSTM reads one-hot word vectors
            (`OneHot`), so its kernel is the word table, as Lobacheva
            et al.'s word-level LM (lm_net.py:18-20). Sparsity methods are told
            (`one_hot_input=True`), so SparseVD looks rows up instead of
            multiplying by zeros.
        lasagne_init: initialize as their Lasagne LM (lm_net.py:22-34): each
            gate's input and recurrent matrix orthogonal on its own, biases 0
            but the forget gate's 1, the softmax weights orthogonal and its bias
            0; otherwise uniform in [-init_scale, init_scale] (Zaremba's).
        name: model name.

    Returns:
        A Functional `keras.Model` returning logits (and, when streaming, the
        new states `[h0, c0, h1, c1, ...]`).

    Example:

    >>> model = lstm_language_model(10000, [650, 650], dropout=0.5, batch_size=20,
    ...                             steps=35, stateful=True,
    ...                             sparsity=iss_keras.sparsity.ISS(0.002 / 35))
    """
    sizes = _check_sizes(vocab_size, hidden_sizes)
    if stateful and streaming:
        raise ValueError("A model is either stateful (state kept inside) or streaming (state "
                         "passed in and out), not both.")
    if stateful and not batch_size:
        raise ValueError(f"A stateful model needs a fixed batch_size. Received: batch_size={batch_size}")
    check_fraction_value("dropout", float(dropout))
    seeds = iter(range(0 if seed is None else seed * 1000, 10 ** 9))

    def init():
        return keras.initializers.RandomUniform(-init_scale, init_scale, seed=next(seeds))

    def per_gate_orthogonal():
        return PerGate(keras.initializers.Orthogonal(seed=next(seeds)))

    sparsity = as_sparsity(sparsity)
    reg, constraint = sparsity.regularizer, sparsity.constraint

    tokens = keras.Input((steps,), batch_size=batch_size, dtype="int32", name="tokens")
    inputs, new_states = [tokens], []
    if one_hot_input:
        x = OneHot(vocab_size, name="one_hot")(tokens)
    else:
        x = keras.layers.Embedding(vocab_size, embedding_size or sizes[0],
                                   embeddings_initializer=init(),
                                   embeddings_constraint=constraint("embeddings"),
                                   name="embedding")(tokens)
    for i, units in enumerate(sizes):
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
        hint = {"one_hot_input": True} if one_hot_input and i == 0 else {}
        lstm = sparsity.layer(
            keras.layers.LSTM, units, return_sequences=True, return_state=streaming,
            stateful=stateful,
            # Zaremba's forget_bias=0.0; Lasagne's LM starts the forget gate at 1.
            unit_forget_bias=lasagne_init,
            kernel_initializer=per_gate_orthogonal() if lasagne_init else init(),
            recurrent_initializer=per_gate_orthogonal() if lasagne_init else init(),
            bias_initializer="zeros",
            kernel_regularizer=reg("kernel"), recurrent_regularizer=reg("recurrent_kernel"),
            bias_regularizer=reg("bias"), kernel_constraint=constraint("kernel"),
            recurrent_constraint=constraint("recurrent_kernel"),
            bias_constraint=constraint("bias"), name=f"lstm_{i}", **hint)
        if streaming:
            state = [keras.Input((units,), batch_size=batch_size, name=f"h{i}"),
                     keras.Input((units,), batch_size=batch_size, name=f"c{i}")]
            inputs.extend(state)
            x, h, c = lstm(x, initial_state=state)
            new_states.extend([h, c])
        else:
            x = lstm(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"dropout_{len(sizes)}")(x)
    logits = sparsity.layer(
        keras.layers.Dense, vocab_size,
        kernel_initializer=(keras.initializers.Orthogonal(seed=next(seeds)) if lasagne_init
                            else init()),
        bias_initializer="zeros" if lasagne_init else init(),
        kernel_regularizer=reg("kernel"), bias_regularizer=reg("bias"),
        kernel_constraint=constraint("kernel"), bias_constraint=constraint("bias"),
        name="softmax")(x)
    outputs = [logits] + new_states if streaming else logits
    return keras.Model(inputs if streaming else tokens, outputs, name=name)


def hidden_sizes(model):
    """Units of each LSTM layer of a model built by `lstm_language_model`, in order."""
    return [layer.cell.units for layer in model.layers if isinstance(layer, keras.layers.LSTM)]

