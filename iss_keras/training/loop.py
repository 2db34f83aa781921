"""The task-neutral training loop: `Run` and `train_and_evaluate`.

One `model.fit` over the remaining epochs with Keras's own callbacks
(`LearningRateScheduler`, `TerminateOnNaN`, `TensorBoard`) and the package's
(`SparsityReportCallback`, the task's, the sparsity methods', the epoch log
and the checkpoints). Re-running the same command on the same workdir resumes
after the last completed epoch; `finish` (iss_keras.training.finish) then
tests, rebuilds, verifies and exports.
"""

import dataclasses
import math
import os

import keras

from iss_keras.discovery import discover_groups
from iss_keras.keras_internals import averaged_weights_callback, raw_weights, restart_averages
from iss_keras.report import SparsityReportCallback
from iss_keras.sparsity.base import as_sparsity
from iss_keras.training.callbacks import (EpochLog, EvaluateEachEpoch, StopOnNaN,
                                          tensorboard)
from iss_keras.training.checkpoints import (BEST, CHECKPOINT, EpochCheckpoints,
                                            initial_weights_from, load_checkpoint)
from iss_keras.training.distribution import Placement
from iss_keras.training.finish import finish


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclasses.dataclass
class RunInfo:
    """What a sparsity method's callbacks may need to know about the run.

    Attributes:
        model: the training model.
        groups: its `GroupSet`.
        steps_per_epoch: optimizer steps per epoch.
        initial_epoch: epochs already done (when resuming).
        epochs: the run's total epochs.
        train_size: terms of the training loss per epoch (examples; tokens for a
            language model), e.g. to scale a KL term (None: unknown).
    """

    model: object
    groups: object
    steps_per_epoch: int
    initial_epoch: int
    epochs: int
    train_size: int = None


class Run:
    """One training run: a task, its sparsity, the training options and a workdir.

    Args:
        task: an `iss_keras.tasks.Task`.
        sparsity: a `SparsityMethod` (e.g. from `iss_keras.sparsity.from_options`) or None.
        config: a `TrainConfig`.
        workdir: checkpoints, logs, exports and results go here.
        verbose: Keras progress bar (1), one line per epoch (2) or silent (0).
        placement: where the work runs (`iss_keras.training.distribution.placement`;
            default one device).

    Attributes:
        history: one dict per completed epoch (see `EpochLog`).
        groups: the training model's `GroupSet` (after `train`).

    Example:

    >>> run = Run(task, sparsity, TrainConfig(epochs=2), "runs/x")
    >>> model = run.train()
    >>> results = iss_keras.training.finish(run, model)
    """

    def __init__(self, task, sparsity, config, workdir, verbose=1, placement=None):
        self.task = task
        self.sparsity = as_sparsity(sparsity)
        self.config = config
        self.workdir = workdir
        self.placement = placement or Placement()
        self.verbose = verbose if self.placement.is_chief else 0
        self.history = []
        self.groups = None
        os.makedirs(workdir, exist_ok=True)

    @property
    def checkpoint_path(self):
        return os.path.join(self.workdir, CHECKPOINT)

    def build(self):
        """The compiled training model, its sparsity bound to its groups, built where the
        placement says (the one place where devices enter the loop)."""
        place = self.placement
        with place.build_scope():
            model = self.task.build("train", sparsity=self.sparsity, batch_split=place.batch_split)
            place.adapt_model(model)
            self.groups = discover_groups(model)
            self.sparsity.bind(model, self.groups)
            optimizer = place.optimizer(self.config.make_optimizer(self.task.loss_scale))
            model.compile(optimizer, self.task.loss(), metrics=self.task.metrics(),
                          jit_compile=self.config.jit_compile())
            model.optimizer.build(model.trainable_variables)
        return model

    def restore(self, model, restore_from=None):
        """Resume from the workdir's checkpoint, else load `restore_from` weights (fine-tuning).

        Returns the first epoch to run.
        """
        if os.path.exists(self.checkpoint_path):
            meta = load_checkpoint(self.checkpoint_path, model)
            self.history = meta["history"]
            self.sparsity.set_state(meta.get("sparsity_state", {}))
            print(f"Resuming from {self.checkpoint_path} after epoch {meta['epoch'] + 1}.")
            return meta["epoch"] + 1
        if restore_from:
            print(f"Initialized from {initial_weights_from(restore_from, model)} (fine-tuning).")
            if self.config.ema:
                restart_averages(model.optimizer, model.trainable_variables)
        return 0

    def is_best(self, row):
        """Whether `row` has the best value of the task's monitor so far, among the epochs
        the sparsity allows (e.g. a target-size run: those at the reached size)."""
        if not self.sparsity.may_be_best(row):
            return False
        key = self.task.monitor
        values = [r[key] for r in self.history if self.sparsity.may_be_best(r)]
        return row[key] == (min(values) if self.task.monitor_mode == "min" else max(values))

    def train(self, restore_from=None):
        """Run the remaining epochs; returns the trained training model."""
        c = self.config
        keras.utils.set_random_seed(c.seed)
        model = self.build()
        start = self.restore(model, restore_from)
        data = self.task.fit_data()
        if "batch_size" in data:  # arrays
            self.placement.check_batch(data["batch_size"])
            steps_per_epoch = math.ceil(len(data["x"]) / data["batch_size"])
        else:  # a keras.utils.PyDataset (e.g. length buckets): its length is its batches
            steps_per_epoch = len(data["x"])
        stopper = StopOnNaN()
        diverged = lambda: stopper.diverged is not None  # noqa: E731
        evaluation = EvaluateEachEpoch(self.task, skip=diverged,
                                       where=self.placement.single_device,
                                       finalize=self.sparsity.finalize,
                                       weights=raw_weights if c.ema and not c.ema_validation
                                       else None)
        report = SparsityReportCallback(self.groups)
        info = RunInfo(model, self.groups, steps_per_epoch, start, c.epochs,
                       self.task.train_size())
        scale = self.task.loss_scale
        # First: each epoch ends on the averaged weights before anything reads them, and
        # begins on the raw ones before anything changes them.
        averaged = [averaged_weights_callback(resumed=start > 0)] if c.ema else []
        callbacks = (
            averaged + self.task.callbacks()
            + [keras.callbacks.LearningRateScheduler(lambda e, lr: c.keras_learning_rate(e, scale))]
            + self.sparsity.callbacks(info)
            + [stopper, evaluation, report])
        if self.placement.is_chief:  # files are written once
            callbacks += [EpochLog(self, evaluation, report, skip=diverged),
                          EpochCheckpoints(self, keep_best=c.test_checkpoint == "best_valid",
                                           skip=diverged)]
            board = tensorboard(os.path.join(self.workdir, "tb"))
            callbacks += [board] if board is not None else []
        if start < c.epochs:
            # One fit over the remaining epochs; Keras's line reads "Epoch 3/13".
            with self.placement.fit_scope():
                model.fit(**self.placement.fit_arguments(data), epochs=c.epochs,
                          initial_epoch=start, callbacks=callbacks, verbose=self.verbose)
        if stopper.diverged is not None:
            epoch, batch = stopper.diverged
            last = (f"the checkpoint after epoch {epoch} in {self.checkpoint_path} is kept"
                    if os.path.exists(self.checkpoint_path) else "no checkpoint was written")
            raise TrainingDivergedError(
                f"Training loss became NaN/inf at epoch {epoch + 1}, batch {batch + 1}; {last}. "
                "Lower the learning rate or the clip norm (--learning_rate, --max_grad_norm) "
                "and re-run the same command.")
        return model

    def tested_weights(self, model):
        """Load the weights `finish` tests into `model`; returns their epoch (1-based)."""
        if self.config.test_checkpoint == "best_valid" and self.history:
            best = os.path.join(self.workdir, BEST)
            if not os.path.exists(best):  # no epoch qualified (e.g. a target never reached)
                print("No epoch qualified as the best one; testing the last epoch's weights.")
                return len(self.history)
            meta = load_checkpoint(best, model, optimizer=False)
            return meta["epoch"] + 1
        return len(self.history)


def train_and_evaluate(task, sparsity, config, workdir, restore_from=None, verbose=1,
                       **finish_options):
    """Train `task` with `sparsity` under `config` in `workdir`, then `finish` it.

    Returns the results dict (also written to `workdir/results.json`);
    `finish_options` go to `iss_keras.training.finish` (export, quantize, ...).

    Example:

    >>> task = LanguageModelTask(build, splits, LanguageModelConfig(steps=20))
    >>> sparsity = iss_keras.sparsity.from_options([ISSOptions(iss_strength=0.004)],
    ...                                            OptionContext(task.loss_scale, 13))
    >>> results = train_and_evaluate(task, sparsity, TrainConfig(), "runs/small_iss")
    """
    run = Run(task, sparsity, config, workdir, verbose=verbose)
    model = run.train(restore_from=restore_from)
    return finish(run, model, **finish_options)
