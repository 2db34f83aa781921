"""PTB word-level Recurrent Highway Network with ISS: train, shrink, export.

    python rhns/train.py --flagfile=rhns/configs/quick_iss.flags --data_dir=../shared/data/ptb

Mirrors the original's rhns/rhn_train.py (ptb_sota, ptb_iss_sota) on the same
training library as ptb/train.py; the shared flags are in iss_keras/cli.py and
the model in iss_keras/rhn.py. Strengths are in the original's units.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info messages off unless asked

import iss_keras  # noqa: E402,F401  (before Keras: it starts the backend without C++ noise)
from absl import app, flags  # noqa: E402

from iss_keras import cli  # noqa: E402
from iss_keras.rhn import rhn_language_model  # noqa: E402

cli.define_flags()
flags.adopt_module_key_flags(cli)
flags.DEFINE_integer("units", 830, "RHN width (= embedding width when tied).")
flags.DEFINE_integer("depth", 10, "Recurrence depth (micro-steps per time step).")
flags.DEFINE_bool("tied", True, "Share the embedding with the softmax.")
flags.DEFINE_float("transform_bias", -2.0, "Initial bias of the transform gates.")
flags.DEFINE_float("embedding_dropout", 0.25, "Drops whole word vectors (the original's drop_x).")
flags.DEFINE_float("input_dropout", 0.75, "Variational dropout on the RHN input (drop_i).")
flags.DEFINE_float("hidden_dropout", 0.25, "Variational dropout on the state (drop_h).")
flags.DEFINE_float("output_dropout", 0.75, "Variational dropout on the RHN output (drop_o).")
FLAGS = flags.FLAGS
# The original reports the best validation epoch's test perplexity (rhn_train.py:498-532).
FLAGS.set_default("test_checkpoint", "best_valid")


def check_model_flags():
    if FLAGS.units < 1 or FLAGS.depth < 1:
        raise ValueError(f"--units and --depth must be positive. Received: units={FLAGS.units}, "
                         f"depth={FLAGS.depth}")
    for name in ("embedding_dropout", "input_dropout", "hidden_dropout", "output_dropout"):
        if not 0.0 <= getattr(FLAGS, name) < 1.0:
            raise ValueError(f"--{name} must be in [0, 1). Received: {getattr(FLAGS, name)}")


def make_builder(vocab_size):
    def build(batch_size, steps, stateful, streaming, regularization):
        reg = regularization or {}
        training = regularization is not None
        return rhn_language_model(
            vocab_size, FLAGS.units, FLAGS.depth, batch_size=batch_size, steps=steps,
            stateful=stateful, streaming=streaming, tied=FLAGS.tied, init_scale=FLAGS.init_scale,
            transform_bias=FLAGS.transform_bias,
            embedding_dropout=FLAGS.embedding_dropout if training else 0.0,
            input_dropout=FLAGS.input_dropout if training else 0.0,
            hidden_dropout=FLAGS.hidden_dropout if training else 0.0,
            output_dropout=FLAGS.output_dropout if training else 0.0,
            iss_strength=reg.get("iss_strength", 0.0), proximal=reg.get("proximal", False),
            l1_strength=reg.get("l1_strength", 0.0), weight_decay=reg.get("weight_decay", 0.0),
            zero_threshold=reg.get("zero_threshold"), seed=FLAGS.seed, name="rhn_lm")

    return build


if __name__ == "__main__":
    app.run(cli.main(make_builder, check_model_flags=check_model_flags))
