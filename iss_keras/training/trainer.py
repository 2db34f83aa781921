"""The absl `main` shared by the trainer scripts (ptb/, rhns/, ...).

A trainer script defines its own options as dataclasses (its model, its
task's data), calls `define_trainer_flags(...)` with them, and runs
`app.run(trainer_main(make_task, ...))`, where `make_task(options)` reads the
data and returns an `iss_keras.tasks.Task`. The training, sparsity and run
flags are generated from `TrainConfig`, every registered sparsity method's
options and `RunOptions`, so they are the same for every trainer and their
defaults are the library's. Importing this module registers no flag, and
nothing here calls `sys.exit`: errors a user can fix come back from `main` as
a message, which absl prints before it exits with status 1.
"""

import os
import sys

from absl import app, flags, logging

from iss_keras import sparsity as sparsity_lib
from iss_keras.files import write_text
from iss_keras.options import define_flags, read_flags
from iss_keras.training.checkpoints import CorruptCheckpointError
from iss_keras.training.config import RunOptions, TrainConfig
from iss_keras.training.distribution import (DistributionError, DistributionOptions,
                                             placement_from_options)
from iss_keras.training.finish import finish, results_table
from iss_keras.training.loop import Run

FLAGS = flags.FLAGS
FLAGS_FILE = "flags.txt"


def shared_option_classes():
    """The option dataclasses every trainer has: training, run, devices, each sparsity method's."""
    return (TrainConfig, RunOptions, DistributionOptions) + sparsity_lib.option_classes()


def define_trainer_flags(*own_options):
    """Register the shared flags and the trainer's own (`own_options` dataclasses), once.

    They belong to the running script (`--help` lists them; flags.txt saves them).
    """
    define_flags(*shared_option_classes(), *own_options, module_name=sys.argv[0])


class RunError(Exception):
    """A problem the user can fix (missing data, unreadable checkpoint), said in one message."""


def save_flags(workdir, script=None):
    """Write the script's flags to `workdir/flags.txt` (replay with --flagfile)."""
    flagfile = os.path.join(workdir, FLAGS_FILE)
    current = "".join(f"{f.serialize()}\n" for f in FLAGS.get_key_flags_for_module(
        script or sys.argv[0]) if f.serialize())  # an unset string flag serializes to ""
    if os.path.exists(flagfile):
        with open(flagfile) as f:
            if f.read() != current:
                print(f"Note: flags differ from those saved in {flagfile} (kept as "
                      f"{FLAGS_FILE}.previous).")
                os.replace(flagfile, flagfile + ".previous")
    write_text(flagfile, current)
    return flagfile


def trainer_main(make_task, *own_options):
    """A trainer script's `main(argv)` for `absl.app.run`; see `run_trainer`."""

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments {argv[1:]}; every setting is a --flag.")
        try:
            return run_trainer(make_task, own_options)
        except RunError as e:
            return f"Error: {e}"  # absl's app.run prints it and exits with status 1

    return main


def run_trainer(make_task, own_options):
    """Read the options, make the task (its data), train, rebuild, export, print the table.

    Args:
        make_task: `make_task(options)` -> Task, where `options` maps each
            option dataclass (the shared ones and `own_options`) to its value.
        own_options: the trainer's own option dataclasses.
    """
    logging.set_verbosity(logging.WARNING)  # TensorFlow's export chatter
    classes = shared_option_classes() + tuple(own_options)
    try:
        options = {cls: read_flags(cls) for cls in classes}
        if not options[RunOptions].workdir:
            raise ValueError("--workdir is required: checkpoints, logs and exports go there.")
    except ValueError as e:
        raise app.UsageError(str(e))
    try:
        task = make_task(options)
    except (FileNotFoundError, ValueError) as e:
        raise RunError(e) from e
    config, run_options = options[TrainConfig], options[RunOptions]
    try:
        sparsity = sparsity_lib.from_options(
            [options[cls] for cls in sparsity_lib.option_classes()],
            sparsity_lib.OptionContext(loss_scale=task.loss_scale, epochs=config.epochs,
                                       seed=config.seed))
        where = placement_from_options(options[DistributionOptions])
    except ValueError as e:
        raise app.UsageError(str(e))
    print(f"Training on {where}.")
    os.makedirs(run_options.workdir, exist_ok=True)
    flagfile = save_flags(run_options.workdir) if where.is_chief else None
    run = Run(task, sparsity, config, run_options.workdir, verbose=run_options.verbose,
              placement=where)
    try:
        model = run.train(restore_from=run_options.restore_from)
    except (CorruptCheckpointError, DistributionError) as e:
        raise RunError(e) from e
    if not where.is_chief:
        return 0  # the chief tests, rebuilds and exports, once
    results = finish(run, model, export=run_options.export, quantize=run_options.quantize,
                     options=[options[cls] for cls in classes if cls is not TrainConfig])
    print("\n" + results_table(results))
    print(f"\nresults: {os.path.join(run_options.workdir, 'results.json')} (replay: python "
          f"{sys.argv[0]} --flagfile={flagfile})")
    return 0
