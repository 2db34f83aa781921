"""PTB word-level LSTM language model with ISS: train, shrink, export.

    python ptb/train.py --flagfile=ptb/configs/quick_iss.flags --data_dir=../shared/data/ptb

Configs in ptb/configs/ mirror the original repository (wenwei202/iss-rnns,
ptb_word_lm.py and its JSON files). Learning rate, clip norm and strengths
are in the original's units (loss summed over the unrolled steps); see
iss_keras/training/config.py. Re-running the same command on an existing
--workdir resumes from its last checkpoint. This file holds the model's
options only; the training, sparsity and data flags are the library's.
"""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info messages off unless asked

from iss_keras.startup import start_backend_quietly  # noqa: E402  (imports no Keras)

start_backend_quietly()  # before anything imports Keras: no C++ start-up noise, devices set up
from absl import app  # noqa: E402

from iss_keras.models.lstm_lm import lstm_language_model  # noqa: E402
from iss_keras.options import check_fraction, option  # noqa: E402
from iss_keras.tasks.language_model import LanguageModelConfig, ptb_task  # noqa: E402
from iss_keras.training import TrainConfig  # noqa: E402
from iss_keras.training.trainer import define_trainer_flags, trainer_main  # noqa: E402


@dataclasses.dataclass
class ModelConfig:
    """The Zaremba et al. LSTM language model (the original's ptb_word_lm.py PTBModel)."""

    hidden_sizes: tuple = option((200, 200), "Units of each LSTM layer, e.g. 1500,1500 or 373,315.")
    embedding_size: int = option(0, "Word vector width (0: the first layer's size).")
    dropout: float = option(0.0, "Non-recurrent dropout rate (1 - the original's keep_prob).")
    init_scale: float = option(0.1, "Weights start uniform in [-init_scale, init_scale]; LSTM "
                               "biases start at 0.")
    one_hot_input: bool = option(False, "No embedding: the LSTM reads one-hot words, its kernel "
                                 "the word table (Lobacheva et al.'s word-level LM).")
    lasagne_init: bool = option(False, "Initialize as Lobacheva et al.'s Lasagne LM: every "
                                "gate's matrices orthogonal on their own, forget bias 1, "
                                "softmax orthogonal with bias 0 (instead of --init_scale).")

    def __post_init__(self):
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"--hidden_sizes must be positive integers. Received: "
                             f"{list(self.hidden_sizes)}")
        check_fraction(self, "dropout")


def build_model(options, *, vocab_size, batch_size, steps, stateful, streaming, training,
                sparsity):
    model = options[ModelConfig]
    return lstm_language_model(
        vocab_size, model.hidden_sizes, embedding_size=model.embedding_size or None,
        dropout=model.dropout if training else 0.0, init_scale=model.init_scale,
        batch_size=batch_size, steps=steps, stateful=stateful, streaming=streaming,
        sparsity=sparsity, seed=options[TrainConfig].seed, one_hot_input=model.one_hot_input,
        lasagne_init=model.lasagne_init, name="ptb_lm")


define_trainer_flags(ModelConfig, LanguageModelConfig)

if __name__ == "__main__":
    app.run(trainer_main(ptb_task(build_model), ModelConfig, LanguageModelConfig))
