"""PTB word-level LSTM language model with ISS: train, shrink, export.

    python ptb/train.py --flagfile=ptb/configs/quick_iss.flags --data_dir=../shared/data/ptb

Configs in ptb/configs/ mirror the original repository (wenwei202/iss-rnns,
ptb_word_lm.py and its JSON files). Learning rate, clip norm and strengths
are in the original's units (loss summed over the unrolled steps); see
iss_keras/training.py. Re-running the same command on an existing --workdir
resumes from its last checkpoint. The shared flags are in iss_keras/cli.py.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info messages off unless asked

import iss_keras  # noqa: E402,F401  (before Keras: it starts the backend without C++ noise)
from absl import app, flags  # noqa: E402

from iss_keras import cli  # noqa: E402
from iss_keras.lm import lstm_language_model  # noqa: E402

cli.define_flags()
flags.adopt_module_key_flags(cli)
flags.DEFINE_list("hidden_sizes", ["200", "200"], "Units of each LSTM layer, e.g. 1500,1500 or 373,315.")
flags.DEFINE_integer("embedding_size", 0, "Word vector width (0: the first layer's size).")
flags.DEFINE_float("dropout", 0.0, "Non-recurrent dropout rate (1 - the original's keep_prob).")
FLAGS = flags.FLAGS


def hidden_sizes():
    try:
        sizes = [int(h) for h in FLAGS.hidden_sizes]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--hidden_sizes must be positive integers. Received: {FLAGS.hidden_sizes}")
    return sizes


def make_builder(vocab_size):
    sizes = hidden_sizes()

    def build(batch_size, steps, stateful, streaming, regularization):
        reg = regularization or {}
        return lstm_language_model(
            vocab_size, sizes, embedding_size=FLAGS.embedding_size or None,
            dropout=FLAGS.dropout if regularization else 0.0, init_scale=FLAGS.init_scale,
            batch_size=batch_size, steps=steps, stateful=stateful, streaming=streaming,
            iss_strength=reg.get("iss_strength", 0.0), proximal=reg.get("proximal", False),
            l1_strength=reg.get("l1_strength", 0.0), weight_decay=reg.get("weight_decay", 0.0),
            zero_threshold=reg.get("zero_threshold"), seed=FLAGS.seed, name="ptb_lm")

    return build


if __name__ == "__main__":
    app.run(cli.main(make_builder, check_model_flags=hidden_sizes))
