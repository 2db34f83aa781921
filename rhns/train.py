"""PTB word-level Recurrent Highway Network with ISS: train, shrink, export.

    python rhns/train.py --flagfile=rhns/configs/quick_iss.flags --data_dir=../shared/data/ptb

Mirrors the original's rhns/rhn_train.py (ptb_sota, ptb_iss_sota) on the same
training library and language-model task as ptb/train.py; the model is
iss_keras/models/rhn.py. Strengths are in the original's units. This file
holds the model's options only.
"""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info messages off unless asked

from iss_keras.startup import start_backend_quietly  # noqa: E402  (imports no Keras)

start_backend_quietly()  # before anything imports Keras: no C++ start-up noise, devices set up
from absl import app, flags  # noqa: E402

from iss_keras.models.rhn import rhn_language_model  # noqa: E402
from iss_keras.options import check_fraction, option  # noqa: E402
from iss_keras.tasks.language_model import LanguageModelConfig, ptb_task  # noqa: E402
from iss_keras.training import TrainConfig  # noqa: E402
from iss_keras.training.trainer import define_trainer_flags, trainer_main  # noqa: E402


@dataclasses.dataclass
class ModelConfig:
    """The original's RHN (rhns/rhn.py): one tied, variationally dropped-out RHN layer."""

    units: int = option(830, "RHN width (= embedding width when tied).")
    depth: int = option(10, "Recurrence depth (micro-steps per time step).")
    tied: bool = option(True, "Share the embedding with the softmax.")
    init_scale: float = option(0.1, "Weights start uniform in [-init_scale, init_scale].")
    transform_bias: float = option(-2.0, "Initial bias of the transform gates.")
    embedding_dropout: float = option(0.25, "Drops whole word vectors (the original's drop_x).")
    input_dropout: float = option(0.75, "Variational dropout on the RHN input (drop_i).")
    hidden_dropout: float = option(0.25, "Variational dropout on the state (drop_h).")
    output_dropout: float = option(0.75, "Variational dropout on the RHN output (drop_o).")

    def __post_init__(self):
        if self.units < 1 or self.depth < 1:
            raise ValueError(f"--units and --depth must be positive. Received: units={self.units}, "
                             f"depth={self.depth}")
        check_fraction(self, "embedding_dropout", "input_dropout", "hidden_dropout", "output_dropout")


def build_model(options, *, vocab_size, batch_size, steps, stateful, streaming, training,
                sparsity):
    model = options[ModelConfig]
    rates = {name: getattr(model, name) if training else 0.0 for name in (
        "embedding_dropout", "input_dropout", "hidden_dropout", "output_dropout")}
    return rhn_language_model(
        vocab_size, model.units, model.depth, batch_size=batch_size, steps=steps,
        stateful=stateful, streaming=streaming, tied=model.tied, init_scale=model.init_scale,
        transform_bias=model.transform_bias, sparsity=sparsity, seed=options[TrainConfig].seed,
        name="rhn_lm", **rates)


define_trainer_flags(ModelConfig, LanguageModelConfig)
# The original reports the best validation epoch's test perplexity (rhn_train.py:498-532).
flags.FLAGS.set_default("test_checkpoint", "best_valid")

if __name__ == "__main__":
    app.run(trainer_main(ptb_task(build_model), ModelConfig, LanguageModelConfig))
