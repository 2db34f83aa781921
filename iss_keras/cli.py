"""The flags and `main` shared by the absl trainers (ptb/, rhns/, ...).

A trainer script calls `define_flags()`, defines only its model flags and a
model builder, then runs `main(make_builder)`; data, schedule, sparsity,
checkpointing and the shrink-and-export step are the same for every model.
Importing this module registers no flag and nothing here calls `sys.exit`:
errors a user can fix come back from `main` as a message, which absl prints
before it exits with status 1.
"""

import os
import sys

from absl import app, flags, logging

from iss_keras import training
from iss_keras.datasets import download_ptb, load_ptb
from iss_keras.files import write_text

FLAGS = flags.FLAGS
# One source of truth: the training flags' defaults are TrainConfig's.
_DEFAULT = training.TrainConfig()
FLAGS_FILE = "flags.txt"

def define_flags():
    """Register the shared training flags on absl's FLAGS (once; importing this module does not).

    A trainer script calls it, then `flags.adopt_module_key_flags(cli)`.
    """
    if "data_dir" in FLAGS:
        return
    flags.DEFINE_string("data_dir", None, "Directory with ptb.train.txt, ptb.valid.txt, ptb.test.txt.")
    flags.DEFINE_bool("download", False, "Download simple-examples.tgz if --data_dir lacks the files "
                      "(needs internet).")
    flags.DEFINE_string("workdir", None, "Checkpoints, logs, exports and results.json go here.")
    flags.DEFINE_integer("vocab_size", 0, "0: the whole training vocabulary with the original reader's "
                         "ids (PTB: 10,000 words, none merged). N < 10,000: the N-1 most frequent words "
                         "keep their ids and every other word maps to one OOV id (not a paper recipe).")
    flags.DEFINE_float("init_scale", 0.1, "Weights start uniform in [-init_scale, init_scale].")
    flags.DEFINE_integer("steps", _DEFAULT.steps, "Unrolled time steps (truncated BPTT length).")
    flags.DEFINE_integer("batch_size", _DEFAULT.batch_size, "Training (and validation) batch size.")
    flags.DEFINE_integer("test_batch_size", _DEFAULT.test_batch_size, "Test batch size (1 as the original).")
    flags.DEFINE_integer("epochs", _DEFAULT.epochs, "Total epochs (the original's max_max_epoch).")
    flags.DEFINE_float("learning_rate", _DEFAULT.learning_rate, "Initial SGD learning rate (original's units).")
    flags.DEFINE_enum("lr_schedule", _DEFAULT.lr_schedule, training.SCHEDULES,
                      "zaremba: decay every epoch after --max_epoch; step: decay every "
                      "--lr_step_epochs (the ISS sparselarge schedule); constant.")
    flags.DEFINE_float("lr_decay", _DEFAULT.lr_decay, "Learning-rate decay factor.")
    flags.DEFINE_integer("max_epoch", _DEFAULT.max_epoch, "Epochs at the initial learning rate (zaremba schedule).")
    flags.DEFINE_integer("lr_step_epochs", _DEFAULT.lr_step_epochs, "Epochs per decay step (step schedule; 0: epochs // 3).")
    flags.DEFINE_float("max_grad_norm", _DEFAULT.max_grad_norm, "Global gradient-norm clip (original's units).")
    flags.DEFINE_float("iss_strength", _DEFAULT.iss_strength, "ISS group Lasso lambda (original's units, e.g. 0.00245).")
    flags.DEFINE_float("l1_strength", _DEFAULT.l1_strength, "L1 coefficient on all weights but the embedding.")
    flags.DEFINE_float("weight_decay", _DEFAULT.weight_decay, "L2 coefficient (original's units).")
    flags.DEFINE_bool("proximal", _DEFAULT.proximal, "[ours, not in the paper] Apply ISS by proximal "
                      "(group soft-threshold) steps instead of its subgradient.")
    flags.DEFINE_float("zero_threshold", _DEFAULT.zero_threshold,
                       "Sparsity runs only (ISS or L1 on), as the original: every weight (embedding "
                       "and biases too) below max(zero_threshold, 2 x l1_strength) is zeroed after "
                       "every step. Baselines zero nothing. 0: off.")
    flags.DEFINE_float("component_threshold", _DEFAULT.component_threshold,
                       "[ours, not in the paper] Whole ISS components with a smaller norm are zeroed "
                       "after every step (0: off).")
    flags.DEFINE_bool("freeze", _DEFAULT.freeze,
                      "[ours, not in the paper] Keep removed components at zero. The original lets a "
                      "zeroed unit regrow (its --freeze_mode was unset for the paper).")
    flags.DEFINE_integer("train_tokens", _DEFAULT.train_tokens, "Use only the first N training tokens (0: all).")
    flags.DEFINE_integer("seed", _DEFAULT.seed, "Random seed.")
    flags.DEFINE_float("target_macs_ratio", _DEFAULT.target_macs_ratio,
                       "[ours, not in the paper] Target-size mode: adapt the ISS strength (starting at "
                       "--iss_strength, applied by proximal steps) so the model ends with this many "
                       "times fewer multiply-adds per token, reached at the end of "
                       "--target_reach_epoch, then fine-tunes at that size (within 2%). 0: off.")
    flags.DEFINE_list("target_units", [], "[ours] Target-size mode with hidden units per recurrent "
                      "layer instead, e.g. 100,100.")
    flags.DEFINE_integer("target_reach_epoch", _DEFAULT.target_reach_epoch, "[ours] Epoch at whose end the target size is "
                         "reached (0: half of --epochs).")
    flags.DEFINE_enum("test_checkpoint", _DEFAULT.test_checkpoint, training.TEST_CHECKPOINTS,
                      "Weights tested, shrunk and exported: the last epoch's (the ptb original) or "
                      "the best validation epoch's (the rhns original), kept in best.npz.")
    flags.DEFINE_string("restore_from", None, "Workdir or checkpoint to start from (fine-tuning).")
    flags.DEFINE_bool("export", True, "Shrink-and-export step at the end (SavedModel, TFLite).")
    flags.DEFINE_list("quantize", [], "Extra TFLite exports: int8, float16.")
    flags.DEFINE_integer("verbose", 1, "1: Keras progress bar, 2: one line per epoch, 0: quiet.")


def config_from_flags():
    return training.TrainConfig(
        steps=FLAGS.steps, batch_size=FLAGS.batch_size, eval_batch_size=FLAGS.batch_size,
        test_batch_size=FLAGS.test_batch_size, epochs=FLAGS.epochs,
        learning_rate=FLAGS.learning_rate, lr_schedule=FLAGS.lr_schedule, lr_decay=FLAGS.lr_decay,
        max_epoch=FLAGS.max_epoch, lr_step_epochs=FLAGS.lr_step_epochs,
        max_grad_norm=FLAGS.max_grad_norm, iss_strength=FLAGS.iss_strength,
        l1_strength=FLAGS.l1_strength, weight_decay=FLAGS.weight_decay, proximal=FLAGS.proximal,
        zero_threshold=FLAGS.zero_threshold, component_threshold=FLAGS.component_threshold,
        freeze=FLAGS.freeze, train_tokens=FLAGS.train_tokens, seed=FLAGS.seed,
        test_checkpoint=FLAGS.test_checkpoint, target_macs_ratio=FLAGS.target_macs_ratio,
        target_units=tuple(_positive_ints("target_units", FLAGS.target_units)),
        target_reach_epoch=FLAGS.target_reach_epoch)


def _positive_ints(name, values):
    try:
        ints = [int(v) for v in values]
    except ValueError:
        ints = [0]
    if any(i < 1 for i in ints):
        raise ValueError(f"--{name} must be positive integers. Received: {values}")
    return ints


def read_ptb():
    """`(splits, vocabulary)` of the PTB files named by the flags."""
    try:
        return load_ptb(FLAGS.data_dir, FLAGS.vocab_size)
    except FileNotFoundError as e:
        if not FLAGS.download:
            raise FileNotFoundError(f"{e} Or add --download to fetch them.") from e
    return load_ptb(download_ptb(), FLAGS.vocab_size)


def _save_flags(script):
    flagfile = os.path.join(FLAGS.workdir, FLAGS_FILE)
    current = "".join(f"{f.serialize()}\n" for f in FLAGS.get_key_flags_for_module(script)
                      if f.serialize())  # an unset string flag serializes to ""
    if os.path.exists(flagfile):
        with open(flagfile) as f:
            if f.read() != current:
                print(f"Note: flags differ from those saved in {flagfile} (kept as "
                      f"{FLAGS_FILE}.previous).")
                os.replace(flagfile, flagfile + ".previous")
    write_text(flagfile, current)
    return flagfile


class RunError(Exception):
    """A problem the user can fix (missing data, unreadable checkpoint), said in one message."""


def main(make_builder, check_model_flags=None):
    """A trainer script's `main(argv)` for `absl.app.run`; see `run_language_model`."""

    def trainer_main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments {argv[1:]}; every setting is a --flag.")
        try:
            return run_language_model(make_builder, check_model_flags)
        except RunError as e:
            return f"Error: {e}"  # absl's app.run prints it and exits with status 1

    return trainer_main


def run_language_model(make_builder, check_model_flags=None):
    """The body of a trainer's `main`: validate, load PTB, train, shrink, export.

    Args:
        make_builder: `make_builder(vocab_size)` returns the
            `LanguageModelTrainer` model builder for the current flags.
        check_model_flags: optional callable raising ValueError on bad model flags.
    """
    logging.set_verbosity(logging.WARNING)  # TensorFlow's export chatter
    try:
        config = config_from_flags()
        if check_model_flags is not None:
            check_model_flags()
        bad = sorted(set(FLAGS.quantize) - {"int8", "float16"})
        if bad:
            raise ValueError(f"--quantize takes int8 and/or float16. Received: {bad}")
        if not FLAGS.data_dir:
            raise ValueError("--data_dir is required: the directory holding ptb.train.txt, "
                             "ptb.valid.txt and ptb.test.txt (add --download to fetch them).")
        if not FLAGS.workdir:
            raise ValueError("--workdir is required: checkpoints, logs and exports go there.")
    except ValueError as e:
        raise app.UsageError(str(e))
    try:
        splits, vocabulary = read_ptb()
    except (FileNotFoundError, ValueError) as e:
        raise RunError(e) from e
    os.makedirs(FLAGS.workdir, exist_ok=True)
    flagfile = _save_flags(sys.argv[0])
    trainer = training.LanguageModelTrainer(make_builder(len(vocabulary)), config, splits, FLAGS.workdir,
                                            verbose=FLAGS.verbose)
    try:
        model = trainer.train(restore_from=FLAGS.restore_from)
    except training.CorruptCheckpointError as e:
        raise RunError(e) from e
    results = trainer.finish(model, export=FLAGS.export, quantize=tuple(FLAGS.quantize))
    print("\n" + training.results_table(results))
    print(f"\nresults: {os.path.join(FLAGS.workdir, 'results.json')} (replay: python "
          f"{sys.argv[0]} --flagfile={flagfile})")
    return 0
