"""BiDAF question answering on SQuAD v1.1 with ISS on its six LSTMs: train, shrink, export.

    python bidaf/train.py --flagfile=bidaf/configs/quick.flags \
        --squad_dev=../shared/data/squad/dev-v1.1.json \
        --glove=../shared/data/glove/glove.6B.50d.top50000.txt.gz

The model is wenwei202/iss-rnns `bidaf/` (a fork of allenai/bi-att-flow):
iss_keras/models/bidaf.py (its layers: bidaf_layers.py); the task (data
protocol, batches, official EM/F1)
is iss_keras/tasks/question_answering.py. The training, sparsity and run
flags are the library's, with the original's defaults set below (Adam 1e-3,
no clipping, EMA 0.999, zero threshold 4e-4, 10 x 1,000 steps); this file
holds the model's options. Re-running the same command resumes.
"""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info messages off unless asked

from iss_keras.startup import start_backend_quietly  # noqa: E402  (imports no Keras)

start_backend_quietly()  # before anything imports Keras: no C++ start-up noise, devices set up
from absl import app, flags  # noqa: E402

from iss_keras.models.bidaf import bidaf, model_fields, zero_small_weights  # noqa: E402
from iss_keras.options import check_at_least, check_fraction, option  # noqa: E402
from iss_keras.sparsity.elementwise import WeightZeroingOptions  # noqa: E402
from iss_keras.tasks.question_answering import (QuestionAnsweringConfig,  # noqa: E402
                                                QuestionAnsweringTask, read_question_answering)
from iss_keras.training import TrainConfig  # noqa: E402
from iss_keras.training.trainer import define_trainer_flags, trainer_main  # noqa: E402


@dataclasses.dataclass
class ModelConfig:
    """BiDAF's sizes and dropout (the original's cli.py defaults)."""

    hidden_size: int = option(100, "d: units of every LSTM direction (cli.py:63).")
    char_out_size: int = option(100, "Char CNN filters (cli.py:64,66).")
    char_emb_size: int = option(8, "Char embedding width (cli.py:65).")
    filter_height: int = option(5, "Char CNN filter width in chars (cli.py:67).")
    highway_num_layers: int = option(2, "Highway layers (cli.py:70).")
    input_keep_prob: float = option(0.8, "Keep probability of the dropout before every LSTM "
                                    "and logits layer (cli.py:46); the ISS fine-tune uses 0.9.")
    char_keep_prob: float = option(0.8, "Keep probability of the char CNN's dropout (the "
                                   "original's --keep_prob, cli.py:47).")
    zero_every_run: bool = option(True, "Zero the attention, LSTM and logits weights below "
                                  "--zero_threshold after every step in every run, baseline "
                                  "included, as the original (model.py:419-438, trainer.py:87-89"
                                  "); off: only in sparsity runs (the library's rule).")

    def __post_init__(self):
        check_at_least(self, 1, "hidden_size", "char_out_size", "char_emb_size",
                       "filter_height", "highway_num_layers")
        check_fraction(self, "input_keep_prob", "char_keep_prob", low_open=True, high_open=False)


def make_task(options):
    model, data = options[ModelConfig], options[QuestionAnsweringConfig]
    seed = options[TrainConfig].seed
    zero = options[WeightZeroingOptions].zero_threshold if model.zero_every_run else 0.0
    squad_data, vocabulary, word_vectors = read_question_answering(data)

    def build(*, training, probabilities, question_len, sparsity, word_vectors):
        return bidaf(model.hidden_size, len(vocabulary["words"]),
                     vocabulary["num_trainable_words"], len(vocabulary["chars"]),
                     word_dim=data.glove_dim, char_dim=model.char_emb_size,
                     char_filters=model.char_out_size, char_width=model.filter_height,
                     max_word_len=data.word_size_th, highway_layers=model.highway_num_layers,
                     input_keep_prob=model.input_keep_prob, char_keep_prob=model.char_keep_prob,
                     question_len=question_len, training=training, probabilities=probabilities,
                     sparsity=sparsity, zero_threshold=zero if training else 0.0,
                     word_vectors=word_vectors, seed=seed)

    return QuestionAnsweringTask(build, squad_data, vocabulary, word_vectors, data, seed=seed,
                                 model_fields=model_fields,
                                 zero_small_weights=zero_small_weights)


define_trainer_flags(ModelConfig, QuestionAnsweringConfig)
# The original's training defaults (cli.py:39-45, :60, :73; trainer.py:59-60: Adam, no clipping).
for name, value in (("optimizer", "adam"), ("learning_rate", 1e-3), ("max_grad_norm", 0.0),
                    ("lr_schedule", "constant"), ("epochs", 10), ("ema", 0.999),
                    ("zero_threshold", 4e-4)):
    flags.FLAGS.set_default(name, value)

if __name__ == "__main__":
    app.run(trainer_main(make_task, ModelConfig, QuestionAnsweringConfig))
