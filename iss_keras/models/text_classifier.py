"""An LSTM text classifier: word embedding -> LSTM (last state) -> one logit per class.

The model of the sentiment experiments (IMDB, SST-2, UCI; Lobacheva et al.'s
IMDB setup: 20k words, embedding 300, LSTM 128, 200 tokens). Sequences are
padded at the front (`iss_keras.datasets.text.encode_batch`), so the last time
step is a real word and no mask is needed (masks keep Keras off the fused
cuDNN path unless right-padded); `mask_padding=True` masks the padding anyway,
as Lobacheva et al.'s LSTM (its mask input), so the state starts at the first
real token.

Sparsity comes in as one `sparsity=` object: every weight asks it for its
regularizer and constraint; methods that act on whole layers (SET's masks)
attach themselves when bound to the built model.
"""

import keras

from iss_keras.options import check_fraction_value
from iss_keras.sparsity.base import as_sparsity


@keras.saving.register_keras_serializable(package="iss_keras")
class PerGate(keras.initializers.Initializer):
    """Initialize each gate's block of an LSTM kernel on its own (Lasagne's LSTM has one
    matrix per gate: Glorot's fan-out is `units`, an orthogonal block is square).

    Args:
        initializer: the initializer of one block (e.g. `GlorotUniform`).
        gates: blocks along the last axis (4 for an LSTM).
    """

    def __init__(self, initializer, gates=4):
        self.initializer = keras.initializers.get(initializer)
        self.gates = int(gates)

    def __call__(self, shape, dtype=None):
        rows, cols = shape
        width = cols // self.gates
        return keras.ops.concatenate([self.initializer((rows, width), dtype=dtype)
                                      for _ in range(self.gates)], axis=1)

    def get_config(self):
        return {"initializer": keras.initializers.serialize(self.initializer),
                "gates": self.gates}


def lstm_classifier(vocab_size, num_classes=2, embedding_size=300, units=128, max_length=200,
                    dropout=0.0, batch_size=None, recurrent_activation="sigmoid",
                    lasagne_init=False, mask_padding=False, sparsity=None, seed=None,
                    name="lstm_classifier"):
    """Embedding -> LSTM -> Dense logits (one for two classes, `num_classes` otherwise).

    Args:
        vocab_size: number of word ids (id 0 is padding).
        num_classes: 2 gives one logit (sigmoid); more gives softmax logits.
        embedding_size: word vector width.
        units: LSTM units.
        max_length: tokens per example (None: any length).
        dropout: dropout rate on the word vectors and on the LSTM's last state.
        batch_size: fixed batch size (None: any).
        recurrent_activation: the gates' activation ("sigmoid", Keras's; or
            `iss_keras.sparsity.bayesian.theano_hard_sigmoid`, Lobacheva et al.'s).
        lasagne_init: initialize as Lasagne's LSTM (Lobacheva et al.): each gate's
            input matrix Glorot-uniform on its own, each recurrent matrix
            orthogonal with gain 1.1; otherwise Keras's defaults.
        mask_padding: the embedding masks id 0 (`mask_zero`), so the LSTM skips
            the padding steps (Lobacheva et al.'s mask input).
        sparsity: a `SparsityMethod` or None; layers are made through it
            (`sparsity.layer`), so a method may use its own versions.
        seed: initializer seed.
        name: model name.

    Example:

    >>> model = lstm_classifier(20000, embedding_size=300, units=128, max_length=200)
    """
    if int(vocab_size) < 2 or int(num_classes) < 2:
        raise ValueError(f"vocab_size and num_classes must be >= 2. Received: "
                         f"vocab_size={vocab_size}, num_classes={num_classes}")
    if int(units) < 1 or int(embedding_size) < 1:
        raise ValueError(f"units and embedding_size must be positive. Received: units={units}, "
                         f"embedding_size={embedding_size}")
    check_fraction_value("dropout", float(dropout))
    sparsity = as_sparsity(sparsity)
    reg, constraint = sparsity.regularizer, sparsity.constraint
    seeds = iter(range(0 if seed is None else seed * 1000, 10 ** 9))

    def uniform():
        return keras.initializers.RandomUniform(-0.05, 0.05, seed=next(seeds))

    if lasagne_init:
        kernel_init = PerGate(keras.initializers.GlorotUniform(seed=next(seeds)))
        recurrent_init = PerGate(keras.initializers.Orthogonal(gain=1.1, seed=next(seeds)))
    else:
        kernel_init = keras.initializers.GlorotUniform(seed=next(seeds))
        recurrent_init = keras.initializers.Orthogonal(seed=next(seeds))
    tokens = keras.Input((max_length,), batch_size=batch_size, dtype="int32", name="tokens")
    x = sparsity.layer(keras.layers.Embedding, vocab_size, embedding_size,
                       embeddings_initializer=uniform(), embeddings_regularizer=reg("embeddings"),
                       embeddings_constraint=constraint("embeddings"),
                       mask_zero=bool(mask_padding), name="embedding")(tokens)
    if dropout:
        x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    x = sparsity.layer(
        keras.layers.LSTM, units, recurrent_activation=recurrent_activation,
        kernel_initializer=kernel_init, recurrent_initializer=recurrent_init,
        kernel_regularizer=reg("kernel"), recurrent_regularizer=reg("recurrent_kernel"),
        bias_regularizer=reg("bias"), kernel_constraint=constraint("kernel"),
        recurrent_constraint=constraint("recurrent_kernel"), bias_constraint=constraint("bias"),
        name="lstm")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="state_dropout")(x)
    logits = sparsity.layer(keras.layers.Dense, 1 if num_classes == 2 else num_classes,
                            kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                            kernel_regularizer=reg("kernel"), bias_regularizer=reg("bias"),
                            kernel_constraint=constraint("kernel"),
                            bias_constraint=constraint("bias"), name="logits")(x)
    return keras.Model(tokens, logits, name=name)
