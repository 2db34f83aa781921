"""Sentiment classification with a sparse LSTM: dense, SET, ISS or L1; train, rebuild, export.

    python sentiment/train.py --flagfile=sentiment/configs/quick_set.flags --data_dir=../shared/data

One trainer for IMDB, SST-2/SST-5 and the UCI sentences (`--dataset`), on the
same training library as ptb/ and rhns/: the task is
iss_keras/tasks/classification.py, the model iss_keras/models/text_classifier.py,
and every sparsity method's flags are here (SET: --set_density or
--set_epsilon). This file holds the model's options only.
"""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info messages off unless asked

from iss_keras.startup import start_backend_quietly  # noqa: E402  (imports no Keras)

start_backend_quietly()  # before anything imports Keras: no C++ start-up noise, devices set up
import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from iss_keras.datasets.glove import vectors_for  # noqa: E402
from iss_keras.models.text_classifier import lstm_classifier  # noqa: E402
from iss_keras.options import check_fraction, option  # noqa: E402
from iss_keras.sparsity.bayesian import theano_hard_sigmoid  # noqa: E402
from iss_keras.tasks.classification import (ClassificationConfig,  # noqa: E402
                                            TextClassificationTask, read_sentiment)
from iss_keras.training import TrainConfig  # noqa: E402
from iss_keras.training.trainer import define_trainer_flags, trainer_main  # noqa: E402


@dataclasses.dataclass
class ModelConfig:
    """Embedding -> LSTM (last state) -> logits."""

    embedding_size: int = option(300, "Word vector width.")
    units: int = option(128, "LSTM units.")
    dropout: float = option(0.0, "Dropout on the word vectors and on the LSTM's last state.")
    recurrent_activation: str = option("sigmoid", "The gates' activation: sigmoid (Keras) or "
                                       "theano_hard_sigmoid (Lobacheva et al.'s Lasagne LSTM).",
                                       choices=("sigmoid", "theano_hard_sigmoid"))
    lasagne_init: bool = option(False, "Initialize as Lasagne's LSTM (each gate's matrices on "
                                "their own; recurrent orthogonal, gain 1.1), as Lobacheva et al.")
    mask_padding: bool = option(False, "Mask the padding (id 0), so the LSTM starts at the "
                                "first real token, as Lobacheva et al.'s mask input (with "
                                "--start_token --truncating=post: their IMDB input).")
    word_vectors: str = option("", "Ours: start the word vectors of the words it has from this "
                               "GloVe file (its width must equal --embedding_size). Lobacheva et "
                               "al.'s logged IMDB runs started from word2vec (GoogleNews, 300d), "
                               "which is not here; the offline copy is "
                               "glove/glove.6B.50d.top50000.txt.gz (--embedding_size=50).")

    def __post_init__(self):
        if self.embedding_size < 1 or self.units < 1:
            raise ValueError(f"--embedding_size and --units must be positive. Received: "
                             f"{self.embedding_size}, {self.units}")
        check_fraction(self, "dropout")


def make_task(options):
    model, data = options[ModelConfig], options[ClassificationConfig]
    seed = options[TrainConfig].seed
    pretrained = {}  # ids and vectors, read once the task has its vocabulary

    def build(*, vocab_size, num_classes, max_length, batch_size, training, sparsity):
        activation = (theano_hard_sigmoid if model.recurrent_activation == "theano_hard_sigmoid"
                      else model.recurrent_activation)
        built = lstm_classifier(vocab_size, num_classes, embedding_size=model.embedding_size,
                                units=model.units, max_length=max_length,
                                dropout=model.dropout if training else 0.0,
                                batch_size=batch_size, recurrent_activation=activation,
                                lasagne_init=model.lasagne_init,
                                mask_padding=model.mask_padding, sparsity=sparsity, seed=seed,
                                name="sentiment_lstm")
        if training and pretrained:  # a resumed run then loads its checkpoint over these
            table = built.get_layer("embedding").embeddings
            rows = np.array(keras.ops.convert_to_numpy(table))
            rows[pretrained["ids"]] = pretrained["vectors"]
            table.assign(rows)
        return built

    task = TextClassificationTask(build, read_sentiment(data), data)
    if model.word_vectors:
        try:
            ids, vectors = vectors_for(task.vocabulary.words, model.word_vectors,
                                       dim=model.embedding_size)
        except ValueError as e:
            raise ValueError(f"--word_vectors={model.word_vectors!r}: {e} Its vectors must be "
                             f"--embedding_size={model.embedding_size} wide (glove.6B.50d: "
                             "--embedding_size=50).") from None
        if not len(ids):
            raise ValueError(f"--word_vectors={model.word_vectors!r} has none of the "
                             "vocabulary's words; pass a GloVe file of the same language.")
        pretrained.update(ids=ids, vectors=vectors)
        print(f"Word vectors from {model.word_vectors}: {len(ids)} of "
              f"{task.vocabulary.size} words.", flush=True)
    return task


define_trainer_flags(ModelConfig, ClassificationConfig)
# Classification defaults (the LM defaults are Zaremba's): Adam, no clipping, the best epoch.
for name, value in (("optimizer", "adam"), ("learning_rate", 1e-3), ("max_grad_norm", 0.0),
                    ("lr_schedule", "constant"), ("epochs", 10),
                    ("test_checkpoint", "best_valid")):
    flags.FLAGS.set_default(name, value)

if __name__ == "__main__":
    app.run(trainer_main(make_task, ModelConfig, ClassificationConfig))
