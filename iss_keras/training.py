"""The training library shared by the ptb/, rhns/ and bidaf/ trainers.

`LanguageModelTrainer` runs the recipe of the original repository on any model
builder: SGD with global-norm clipping, truncated back-propagation through time
with the state carried across the consecutive batches of an epoch, per-epoch
learning-rate schedules, ISS / L1 / weight decay, zeroing and freezing; every
epoch it evaluates, reports sparsity, logs (stdout, CSV, JSON, TensorBoard) and
checkpoints atomically, so re-running the same command resumes. `finish()` is
the shrink-and-export step.

Units. The original sums the cross-entropy over the unrolled steps (and
averages over the batch); Keras averages over both. With `T` steps, the same
updates follow from learning rate `lr * T`, clip norm `max_grad_norm / T` and
regularization strengths `lambda / T`. `TrainConfig` takes the original's
numbers and `keras_units()` converts them, in this one place.
"""

import csv
import dataclasses
import io
import json
import math
import os
import time

import keras
import numpy as np
from keras import ops

from iss_keras.enforcement import ComponentEnforcer
from iss_keras.files import atomic_path, write_text
from iss_keras.keras_internals import reset_states
from iss_keras.penalties import couple
from iss_keras.provenance import provenance
from iss_keras.report import sparsity_report
from iss_keras.rebuild import ShrinkVerificationError, shrink

SCHEDULES = ("zaremba", "step", "constant")
TEST_CHECKPOINTS = ("last", "best_valid")


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters in the original repository's units (loss summed over steps).

    Attributes:
        steps: unrolled time steps (truncated BPTT length).
        batch_size: training batch size.
        eval_batch_size: validation batch size (the original uses the training one).
        test_batch_size: test batch size (the original uses 1).
        epochs: total epochs (the original's max_max_epoch).
        learning_rate: initial SGD learning rate.
        lr_schedule: "zaremba" (decay after max_epoch), "step" (decay every
            lr_step_epochs, the ISS sparselarge schedule) or "constant".
        lr_decay: multiplicative decay.
        max_epoch: epochs at the initial rate ("zaremba").
        lr_step_epochs: epochs per step ("step"; 0 means epochs // 3 as the original).
        max_grad_norm: global-norm gradient clip.
        iss_strength: ISS group Lasso lambda.
        l1_strength: L1 coefficient (the original's weight_decay with the L1 regularizer).
        weight_decay: L2 coefficient.
        proximal: apply ISS by proximal steps instead of its subgradient.
        zero_threshold: in sparsity runs only (ISS or L1 on), every weight below
            `max(zero_threshold, 2 * l1_strength)` is zeroed after every step,
            embedding and biases included, as the original
            (ptb_word_lm.py:380-389); baselines zero nothing. 0: off.
        component_threshold: [ours] whole ISS components below this norm are
            zeroed after every step (0: off).
        freeze: [ours] keep zeroed components at zero. The original never
            freezes (its --freeze_mode was unset for the paper): a zeroed unit
            may regrow.
        train_tokens: use only the first N training tokens (0: all).
        seed: random seed.
        target_macs_ratio: [ours] target-size mode: the ISS strength (starting
            at `iss_strength`, applied by proximal steps) is adapted so the
            model has this many times fewer multiply-adds per token at the end
            of epoch `target_reach_epoch`, then fine-tunes at that size
            (`iss_keras.target.TargetSize`). 0: off.
        target_units: [ours] the same with hidden units per recurrent layer.
        target_reach_epoch: epoch at whose end the target is reached
            (0: half of the epochs).
        test_checkpoint: which weights are tested, shrunk and exported:
            "last" (the ptb original) or "best_valid", the epoch with the
            lowest validation perplexity (the rhns original,
            rhn_train.py:498-532), kept in `best.npz` beside the checkpoint.
    """

    steps: int = 20
    batch_size: int = 20
    eval_batch_size: int = 20
    test_batch_size: int = 1
    epochs: int = 13
    learning_rate: float = 1.0
    lr_schedule: str = "zaremba"
    lr_decay: float = 0.5
    max_epoch: int = 4
    lr_step_epochs: int = 0
    max_grad_norm: float = 5.0
    iss_strength: float = 0.0
    l1_strength: float = 0.0
    weight_decay: float = 0.0
    proximal: bool = False
    zero_threshold: float = 1e-4
    component_threshold: float = 0.0
    freeze: bool = False
    train_tokens: int = 0
    seed: int = 0
    test_checkpoint: str = "last"
    target_macs_ratio: float = 0.0
    target_units: tuple = ()
    target_reach_epoch: int = 0

    def __post_init__(self):
        positive = ("steps", "batch_size", "eval_batch_size", "test_batch_size", "epochs")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        for name in ("learning_rate", "max_grad_norm"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0. Received: {name}={getattr(self, name)}")
        for name in ("iss_strength", "l1_strength", "weight_decay", "zero_threshold",
                     "component_threshold", "train_tokens", "max_epoch", "lr_step_epochs"):
            if getattr(self, name) < 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be >= 0. Received: {name}={getattr(self, name)}")
        self.target_units = tuple(int(u) for u in self.target_units)
        if self.target_macs_ratio and self.target_units:
            raise ValueError("Give one target: target_macs_ratio or target_units, not both. "
                             f"Received: target_macs_ratio={self.target_macs_ratio}, "
                             f"target_units={list(self.target_units)}")
        if self.target_macs_ratio and not self.target_macs_ratio > 1.0:
            raise ValueError("target_macs_ratio is dense / target multiply-adds and must be > 1. "
                             f"Received: target_macs_ratio={self.target_macs_ratio}")
        if self.targeting and not self.iss_strength:
            raise ValueError("The target-size mode adapts the ISS strength: set iss_strength > 0 "
                             "as its starting value (e.g. the original's units, 0.002).")
        if self.targeting and self.component_threshold:
            raise ValueError("The target-size mode prunes by proximal steps; drop "
                             f"component_threshold={self.component_threshold}.")
        if not 0 <= self.target_reach_epoch <= self.epochs:
            raise ValueError(f"target_reach_epoch must be in 0..epochs ({self.epochs}). "
                             f"Received: target_reach_epoch={self.target_reach_epoch}")
        if self.test_checkpoint not in TEST_CHECKPOINTS:
            raise ValueError(f"test_checkpoint must be one of {TEST_CHECKPOINTS}. "
                             f"Received: test_checkpoint={self.test_checkpoint!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}. "
                             f"Received: lr_schedule={self.lr_schedule!r}")
        if self.proximal and not self.iss_strength:
            raise ValueError("proximal=True applies the ISS penalty by proximal steps; set "
                             "iss_strength > 0 too.")

    def learning_rate_at(self, epoch):
        """Learning rate of 0-based `epoch`, as the original computes it."""
        if self.lr_schedule == "zaremba":
            return self.learning_rate * self.lr_decay ** max(epoch + 1 - self.max_epoch, 0)
        if self.lr_schedule == "step":
            every = self.lr_step_epochs or max(1, self.epochs // 3)
            return self.learning_rate * self.lr_decay ** (epoch // every)
        return self.learning_rate

    def keras_units(self):
        """Learning rate multiplier, clip norm and strengths for Keras's mean loss."""
        t = float(self.steps)
        return {"lr_scale": t, "clipnorm": self.max_grad_norm / t,
                "iss_strength": self.iss_strength / t, "l1_strength": self.l1_strength / t,
                "weight_decay": self.weight_decay / t,
                "proximal": self.proximal or self.targeting,
                "zero_threshold": self.weight_zero_threshold}

    @property
    def weight_zero_threshold(self):
        """The per-weight zeroing threshold, None when this run zeroes nothing.

        The original zeroes only when a sparsity regularizer is on, below
        max(1e-4, 2 x weight_decay) (ptb_word_lm.py:380-389).
        """
        if not (self.iss_strength or self.l1_strength) or not self.zero_threshold:
            return None
        return max(self.zero_threshold, 2.0 * self.l1_strength)

    @property
    def targeting(self):
        return bool(self.target_macs_ratio or self.target_units)

    @property
    def reach_epoch(self):
        return self.target_reach_epoch or max(1, self.epochs // 2)

    @property
    def sparsifying(self):
        return bool(self.iss_strength or self.l1_strength or self.component_threshold)


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


def stream_batches(ids, batch_size, steps):
    """Lay a token stream out for truncated BPTT with carried state, as `ptb_producer`.

    The stream is cut into `batch_size` rows of `len // batch_size` tokens;
    batch i holds columns `[i*steps, (i+1)*steps)` of every row and its
    targets the columns one further, so row b of batch i continues row b of
    batch i-1. There are `(row_len - 1) // steps` batches, exactly the
    original reader's (reader.py `ptb_producer`, ptb_word_lm.py:260). Returns
    `(x, y)` of shape `(num_batches * batch_size, steps)` in that order, for
    `fit(shuffle=False)`.
    """
    ids = np.asarray(ids, dtype=np.int32)
    row_len = len(ids) // batch_size
    num_batches = (row_len - 1) // steps
    if num_batches < 1:
        raise ValueError(f"{len(ids)} tokens are too few for batch_size={batch_size} and "
                         f"steps={steps}: need more than {batch_size * (steps + 1)}.")
    rows = ids[:batch_size * row_len].reshape(batch_size, row_len)

    def lay_out(a):
        a = a[:, :num_batches * steps].reshape(batch_size, num_batches, steps)
        return a.transpose(1, 0, 2).reshape(num_batches * batch_size, steps)

    return lay_out(rows[:, :-1]), lay_out(rows[:, 1:])




def _compile_eval(model):
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def perplexity(model, ids, batch_size, steps):
    """exp(mean cross-entropy) of a stateful model over a token stream laid out
    by `stream_batches` (the tokens past the last whole batch are not scored)."""
    x, y = stream_batches(ids, batch_size, steps)
    reset_states(model)
    loss = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    reset_states(model)
    return float(np.exp(loss))


def every_token_perplexity(model, ids, steps):
    """exp(mean cross-entropy) over every token of a stream, as the original's test.

    The original tests at batch 1 x 1 step (ptb_word_lm.py:700-701), scoring
    all `len(ids) - 1` next-token predictions. With the state carried, feeding
    `steps` tokens at a time computes the same numbers faster; the last
    `(len(ids) - 1) % steps` tokens go in one shorter call. `model` must be
    stateful with batch size 1 and any sequence length (built with `steps=None`).
    """
    ids = np.asarray(ids, dtype=np.int32)
    total = len(ids) - 1
    if total < 1:
        raise ValueError(f"Need at least 2 tokens to score; received {len(ids)}.")
    whole = total // steps * steps
    reset_states(model)
    loss_sum = 0.0
    if whole:
        x = ids[:whole].reshape(-1, steps)
        y = ids[1:whole + 1].reshape(-1, steps)
        loss_sum += model.evaluate(x, y, batch_size=1, verbose=0) * whole
    if total > whole:
        x, y = ids[whole:total][None], ids[whole + 1:total + 1][None]
        loss_sum += float(model.test_on_batch(x, y)) * (total - whole)
    reset_states(model)
    return float(np.exp(loss_sum / total))


class _StopOnNonFinite(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.bad_batch = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_batch = batch
            self.model.stop_training = True


class _OneEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


class _ResetStatesEachEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        reset_states(self.model)


def save_checkpoint(path, model, epoch, history):
    """Weights, optimizer variables, the epoch done and the history, in one file."""
    arrays = {f"w{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.weights)}
    if model.optimizer is not None and model.optimizer.built:
        arrays.update({f"o{i}": ops.convert_to_numpy(v)
                       for i, v in enumerate(model.optimizer.variables)})
    meta = {"epoch": int(epoch), "history": history,
            "weights": [v.path for v in model.weights]}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


class CorruptCheckpointError(ValueError):
    """A checkpoint file cannot be read back (truncated, overwritten, not a checkpoint)."""


def _read_checkpoint(path):
    import zipfile

    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise CorruptCheckpointError(
            f"Checkpoint {path!r} cannot be read ({type(e).__name__}: {e}). Training was not "
            "restarted from scratch. Move the file away to start this run again, or point "
            "--workdir elsewhere.") from e
    return meta, arrays


def load_checkpoint(path, model, optimizer=True):
    """Restore weights (and optimizer variables) saved by `save_checkpoint`; returns its meta.

    Raises:
        CorruptCheckpointError: the file cannot be read back.
        ValueError: its weights do not fit `model`.
    """
    meta, data = _read_checkpoint(path)
    weights = [data[f"w{i}"] for i in range(len(meta["weights"]))]
    if len(weights) != len(model.weights) or any(
            tuple(w.shape) != tuple(v.shape) for w, v in zip(weights, model.weights)):
        raise ValueError(
            f"Checkpoint {path!r} holds weights of shapes "
            f"{[tuple(w.shape) for w in weights]}, but the model built from the flags has "
            f"{[tuple(v.shape) for v in model.weights]}. Use the flags the checkpoint was "
            "trained with (its workdir has them in flags.txt) or another --workdir.")
    for v, w in zip(model.weights, weights):
        v.assign(w)
    if optimizer and model.optimizer is not None:
        opt_keys = sorted((k for k in data if k.startswith("o")), key=lambda k: int(k[1:]))
        if opt_keys:
            model.optimizer.build(model.trainable_variables)
            for v, k in zip(model.optimizer.variables, opt_keys):
                v.assign(data[k])
    return meta


class _Logs:
    """metrics.csv, history.json and TensorBoard scalars in the workdir."""

    def __init__(self, workdir):
        self.workdir = workdir
        self._writer = None
        try:
            import tensorflow as tf

            self._tf = tf
        except ImportError:  # e.g. a JAX-only GPU machine: CSV and JSON still written
            self._tf = None

    def write(self, history):
        fields = []
        for row in history:
            fields.extend(k for k in row if k not in fields and not isinstance(row[k], (list, dict)))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        write_text(os.path.join(self.workdir, "metrics.csv"), buffer.getvalue())
        write_text(os.path.join(self.workdir, "history.json"), json.dumps(history, indent=1))
        if self._tf is not None:
            if self._writer is None:
                self._writer = self._tf.summary.create_file_writer(os.path.join(self.workdir, "tb"))
            row = history[-1]
            with self._writer.as_default(step=row["epoch"]):
                for key, value in row.items():
                    if isinstance(value, (int, float)) and key != "epoch":
                        self._tf.summary.scalar(key, value)
                for i, units in enumerate(row.get("active_units", [])):
                    self._tf.summary.scalar(f"active_units/layer_{i}", units)
            self._writer.flush()


class LanguageModelTrainer:
    """Train, evaluate, checkpoint and shrink a language model.

    Args:
        build: `build(batch_size, steps, stateful, streaming, regularization)` ->
            keras.Model. `regularization` is None for evaluation models, else a
            dict of per-token strengths (`TrainConfig.keras_units()`); dropout
            should be active only then.
        config: a `TrainConfig`.
        data: dict with "train", "valid", "test" int32 token streams.
        workdir: directory for checkpoints, logs, exports and results.
        verbose: Keras progress bar (1), one line per epoch (2) or silent (0).

    Example:

    >>> trainer = LanguageModelTrainer(build, TrainConfig(epochs=2), splits, "runs/x")
    >>> model = trainer.train()
    >>> results = trainer.finish(model)
    """

    CHECKPOINT = "checkpoint.npz"
    BEST = "best.npz"

    def __init__(self, build, config, data, workdir, verbose=1):
        self.build = build
        self.config = config
        self.data = dict(data)
        if config.train_tokens:
            self.data["train"] = self.data["train"][:config.train_tokens]
        self.workdir = workdir
        self.verbose = verbose
        self.history = []
        self.groups = None
        self._evaluators = {}
        os.makedirs(workdir, exist_ok=True)

    @property
    def checkpoint_path(self):
        return os.path.join(self.workdir, self.CHECKPOINT)

    def _eval_model(self, model, batch_size, steps=None):
        """A stateful evaluation copy of `model` (`steps=None`: any length)."""
        key = (batch_size, steps)
        if key not in self._evaluators:
            self._evaluators[key] = _compile_eval(self.build(batch_size, steps, True, False, None))
        evaluator = self._evaluators[key]
        evaluator.set_weights(model.get_weights())
        return evaluator

    def training_model(self):
        c = self.config
        units = c.keras_units()
        model = self.build(c.batch_size, c.steps, True, False, units)
        groups = couple(model)
        model.compile(
            keras.optimizers.SGD(c.learning_rate * units["lr_scale"],
                                 global_clipnorm=units["clipnorm"]),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="xent")])
        model.optimizer.build(model.trainable_variables)
        return model, groups

    def _enforcer(self, groups, steps_per_epoch=1, start_epoch=0):
        c = self.config
        if c.targeting:
            from iss_keras.target import TargetSize

            target = TargetSize(groups, reach_step=c.reach_epoch * steps_per_epoch,
                                macs_ratio=c.target_macs_ratio or None,
                                units=list(c.target_units) or None,
                                initial_step=start_epoch * steps_per_epoch)
            if self.history and "target" in self.history[-1]:
                target.load_state(self.history[-1]["target"])
            return target
        if c.proximal:
            return ComponentEnforcer(groups, mode="proximal", freeze=c.freeze)
        if c.component_threshold:
            return ComponentEnforcer(groups, mode="threshold", threshold=c.component_threshold,
                                     freeze=c.freeze)
        if c.sparsifying and c.freeze:
            return ComponentEnforcer(groups, mode="none", freeze=True)
        return None

    def restore(self, model, restore_from=None):
        """Resume from the workdir's checkpoint, else load `restore_from` weights (fine-tuning).

        Returns the first epoch to run.
        """
        if os.path.exists(self.checkpoint_path):
            meta = load_checkpoint(self.checkpoint_path, model)
            self.history = meta["history"]
            print(f"Resuming from {self.checkpoint_path} after epoch {meta['epoch'] + 1}.")
            return meta["epoch"] + 1
        if restore_from:
            path = os.path.join(restore_from, self.CHECKPOINT) if os.path.isdir(restore_from) \
                else restore_from
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"restore_from={restore_from!r} is neither a checkpoint file nor a workdir "
                    f"holding {self.CHECKPOINT}.")
            if path.endswith(".npz"):
                load_checkpoint(path, model, optimizer=False)
            else:
                model.load_weights(path)
            print(f"Initialized from {path} (fine-tuning).")
        return 0

    def train(self, restore_from=None):
        """Run the remaining epochs; returns the trained training model."""
        c = self.config
        keras.utils.set_random_seed(c.seed)
        model, self.groups = self.training_model()
        start = self.restore(model, restore_from)
        x, y = stream_batches(self.data["train"], c.batch_size, c.steps)
        logs = _Logs(self.workdir)
        enforcer = self._enforcer(self.groups, len(x) // c.batch_size, start)
        stopper = _StopOnNonFinite()
        callbacks = [_ResetStatesEachEpoch(), stopper] + ([enforcer] if enforcer else [])
        for epoch in range(start, c.epochs):
            lr = c.learning_rate_at(epoch)
            model.optimizer.learning_rate.assign(lr * c.keras_units()["lr_scale"])
            began = time.time()
            # epochs=c.epochs so Keras's progress line reads "Epoch 3/13"; one epoch runs.
            fit = model.fit(x, y, batch_size=c.batch_size, epochs=c.epochs, initial_epoch=epoch,
                            shuffle=False, callbacks=callbacks + [_OneEpoch()],
                            verbose=self.verbose)
            if stopper.bad_batch is not None:
                last = (f"the checkpoint after epoch {epoch} in {self.checkpoint_path} is kept"
                        if os.path.exists(self.checkpoint_path) else "no checkpoint was written")
                raise TrainingDivergedError(
                    f"Training loss became NaN/inf at epoch {epoch + 1}, batch "
                    f"{stopper.bad_batch + 1}; {last}. Lower the learning rate or the clip "
                    "norm (--learning_rate, --max_grad_norm) and re-run the same command.")
            seconds = time.time() - began
            row = self._epoch_row(model, epoch, lr, fit.history, seconds)
            row["eval_seconds"] = round(time.time() - began - seconds, 2)
            if c.targeting:
                row["target"] = enforcer.state()
            self.history.append(row)
            logs.write(self.history)
            if c.test_checkpoint == "best_valid" and row["valid_perplexity"] <= min(
                    r["valid_perplexity"] for r in self.history):
                # Before the last-epoch checkpoint: a run killed in between
                # resumes that epoch and writes both again.
                save_checkpoint(os.path.join(self.workdir, self.BEST), model, epoch, self.history)
            save_checkpoint(self.checkpoint_path, model, epoch, self.history)
            self._print_row(row)
        return model

    def tested_weights(self, model):
        """Load the weights `finish` should test into `model`; returns the epoch (1-based)."""
        if self.config.test_checkpoint == "best_valid" and self.history:
            meta = load_checkpoint(os.path.join(self.workdir, self.BEST), model, optimizer=False)
            return meta["epoch"] + 1
        return len(self.history)

    def _epoch_row(self, model, epoch, lr, fit_history, seconds):
        c = self.config
        valid = perplexity(self._eval_model(model, c.eval_batch_size, c.steps), self.data["valid"],
                           c.eval_batch_size, c.steps)
        report = sparsity_report(model, self.groups)
        xent = fit_history["xent"][-1]
        return {
            "epoch": epoch + 1, "learning_rate": lr, "train_perplexity": float(np.exp(xent)),
            "train_loss_with_penalty": float(fit_history["loss"][-1]),
            "valid_perplexity": valid, "seconds": round(seconds, 2),
            "tokens_per_second": round(len(self.data["train"]) / max(seconds, 1e-9), 1),
            "active_units": [row["active_units"] for row in report.layers],
            "all_zero_units": [row["all_zero_units"] for row in report.layers],
            "weights_after": report.totals["weights_after"],
            "macs_per_token_after": report.totals["macs_per_token_after"],
            "weights": report.totals["weights"], "macs_per_token": report.totals["macs_per_token"],
        }

    def _print_row(self, row):
        if self.verbose:
            print(f"epoch {row['epoch']} (lr {row['learning_rate']:.4g}): train ppl "
                  f"{row['train_perplexity']:.2f}, valid ppl "
                  f"{row['valid_perplexity']:.2f}, active units {row['active_units']}, "
                  f"multiply-adds/token {row['macs_per_token_after']:,} of "
                  f"{row['macs_per_token']:,} ({row['tokens_per_second']:,.0f} tokens/s)")

    # -- shrink and export ------------------------------------------------------

    def finish(self, model, export=True, tflite=True, quantize=(), measure_speed=True):
        """Test, shrink (verified), test again, export; writes results.json and plots.

        Returns the results dict.

        Raises:
            ShrinkVerificationError: the shrunk model's test perplexity differs
                from the sparse model's by more than 1e-3 relative.
        """
        c = self.config
        began = time.time()
        tested_epoch = self.tested_weights(model)
        every_token = c.test_batch_size == 1
        tester = self._eval_model(model, c.test_batch_size, None if every_token else c.steps)

        def test_perplexity(m):
            if every_token:  # the original's batch 1 x 1 step: every test token scored
                return every_token_perplexity(m, self.data["test"], c.steps)
            return perplexity(m, self.data["test"], c.test_batch_size, c.steps)

        sparse_ppl = test_perplexity(tester)
        small_tester, plan = shrink(tester)
        small_ppl = test_perplexity(_compile_eval(small_tester))
        if not abs(small_ppl - sparse_ppl) <= 1e-3 * sparse_ppl:
            raise ShrinkVerificationError(
                f"Test perplexity of the shrunk model is {small_ppl:.4f}, the sparse model's "
                f"{sparse_ppl:.4f}: more than 1e-3 apart. Please report this model.")
        plan.save(os.path.join(self.workdir, "plan.json"))
        report = sparsity_report(model, self.groups)
        results = {
            "test_perplexity_sparse": sparse_ppl, "test_perplexity_shrunk": small_ppl,
            "valid_perplexity": (self.history[tested_epoch - 1]["valid_perplexity"]
                                 if tested_epoch else None),
            "epochs": len(self.history), "tested_epoch": tested_epoch,
            "test_checkpoint": c.test_checkpoint,
            "hidden_before": [a for a, _ in plan.summary().values()],
            "hidden_after": [b for _, b in plan.summary().values()],
            # The original's count (whole component zero, match_map == 6) beside ours.
            "all_zero_units": [row["all_zero_units"] for row in report.layers],
            "weights": report.totals["weights"], "weights_after": report.totals["weights_after"],
            "macs_per_token": report.totals["macs_per_token"],
            "macs_per_token_after": report.totals["macs_per_token_after"],
            "backend": keras.backend.backend(),
        }
        results["macs_ratio"] = results["macs_per_token"] / max(1, results["macs_per_token_after"])
        if c.targeting:
            results["target"] = {
                "macs_ratio": c.target_macs_ratio or None, "units": list(c.target_units) or None,
                "reach_epoch": c.reach_epoch,
                "reached": self.history[-1].get("target", {}).get("reached") if self.history else None}
        dense_stream = self.build(None, None, False, True, None)
        dense_stream.set_weights(model.get_weights())
        small_stream, _ = shrink(dense_stream)
        # Streaming (state in, state out) models, for serving and benchmarks/inference_speed.py.
        for m, name in ((dense_stream, "sparse.keras"), (small_stream, "shrunk.keras")):
            with atomic_path(os.path.join(self.workdir, name)) as tmp:
                m.save(tmp)
        if measure_speed:
            results["speed"] = streaming_speed(dense_stream, small_stream)
        if export:
            results["export"] = self._export(small_stream, dense_stream, tflite, quantize)
        results["run"] = provenance(
            train_seconds=round(sum(row["seconds"] for row in self.history), 1),
            eval_seconds=round(sum(row.get("eval_seconds", 0.0) for row in self.history), 1),
            finish_seconds=round(time.time() - began, 1), config=dataclasses.asdict(c))
        write_text(os.path.join(self.workdir, "results.json"), json.dumps(results, indent=1))
        plot_training(self.history, model, self.groups, os.path.join(self.workdir, "plots"))
        return results

    def _export(self, small, dense, tflite, quantize):
        from iss_keras.export import export_saved_model, export_tflite
        from iss_keras.lm import streaming_output_names

        out = {}
        directory = os.path.join(self.workdir, "export")
        if keras.backend.backend() != "tensorflow":
            print("Export skipped: it runs under KERAS_BACKEND=tensorflow. Re-run the same "
                  "command there to export from the last checkpoint.")
            return {"skipped": f"backend {keras.backend.backend()}"}
        names = streaming_output_names(small)  # logits, h0, c0, ... beside inputs tokens, h0, c0
        out["saved_model"] = export_saved_model(small, os.path.join(directory, "saved_model"),
                                                output_names=names).to_dict()
        if tflite:
            for q in (None,) + tuple(quantize):
                suffix = f"_{q}" if q else ""
                out[f"tflite{suffix}"] = export_tflite(
                    small, os.path.join(directory, f"model{suffix}.tflite"), batch_size=1,
                    steps=1, output_names=names).to_dict()
            dense_blob = _tflite_blob(dense)
            out["tflite_dense_size_bytes"] = len(dense_blob)
            with open(out["tflite"]["path"], "rb") as f:
                out["tflite_speed"] = tflite_streaming_speed(dense, dense_blob, small, f.read())
        for key, value in out.items():
            if isinstance(value, dict) and "path" in value:
                print(f"exported {key}: {value['path']} ({value['size_bytes'] / 1e6:.2f} MB, "
                      f"max |diff| {value['max_abs_diff']:.2g})")
        return out


def _tflite_blob(model):
    from iss_keras.export import convert_to_tflite
    from iss_keras.lm import streaming_output_names

    return convert_to_tflite(model, batch_size=1, steps=1,
                             output_names=streaming_output_names(model))[0]


def streaming_speed(dense, small, repeats=30, batches=(1,)):
    """Median seconds per one-token step (carried state) of two streaming models, interleaved."""
    from iss_keras.lm import zero_states
    from iss_keras.timing import interleaved_medians

    out = {}
    for batch in batches:
        candidates = {}
        for name, m in (("dense", dense), ("shrunk", small)):
            inputs = [np.zeros((batch, 1), "int32")] + zero_states(m, batch)
            candidates[name] = (lambda m=m, inputs=inputs: m.predict_on_batch(inputs))
        medians = interleaved_medians(candidates, repeats=repeats)
        out[f"batch{batch}_step_seconds"] = medians
        out[f"batch{batch}_speedup"] = medians["dense"] / medians["shrunk"]
    return out


def tflite_streaming_speed(dense, dense_blob, small, small_blob, repeats=50):
    """Median seconds per one-token step of two TFLite models (batch 1), interleaved.

    Both flatbuffers are converted with `streaming_output_names` (as the trainer exports).
    """
    from iss_keras.export import input_names, run_tflite, tflite_interpreter
    from iss_keras.lm import streaming_output_names, zero_states
    from iss_keras.timing import interleaved_medians

    candidates = {}
    for name, m, blob in (("dense", dense, dense_blob), ("shrunk", small, small_blob)):
        interp = tflite_interpreter(model_content=blob)
        inputs = [np.zeros((1, 1), "int32")] + zero_states(m, 1)
        candidates[name] = (lambda i=interp, x=inputs, n=input_names(m), o=streaming_output_names(m):
                            run_tflite(i, x, n, o))
    medians = interleaved_medians(candidates, repeats=repeats)
    return {"batch1_step_seconds": medians, "batch1_speedup": medians["dense"] / medians["shrunk"]}


def plot_training(history, model, groups, directory):
    """PNG plots: each recurrent layer's weight pattern, active units and perplexity per epoch."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("Plots skipped: matplotlib is not installed (pip install 'iss_keras[plots]').")
        return []
    os.makedirs(directory, exist_ok=True)
    written = []
    from iss_keras.groups import variables_by_path

    variables = variables_by_path(model)
    for family in groups:
        incoming = [fp for fp in family.footprints if fp.role == "incoming"]
        if not incoming:
            continue
        # The unit-by-unit picture of the paper: the stacked input and recurrent
        # kernels; removed units show as white columns (all gates) and rows.
        matrix = np.concatenate([np.asarray(ops.convert_to_numpy(variables[fp.variable]))
                                 for fp in incoming], axis=0)
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.imshow(matrix != 0, aspect="auto", cmap="Greys", interpolation="nearest")
        ax.set_title(f"{family.name}: nonzero weights (input and recurrent kernels)")
        ax.set_xlabel("gate columns (one block per gate)")
        ax.set_ylabel("input rows, then recurrent rows")
        path = os.path.join(directory, f"weights_{family.name.replace('/', '_')}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if history:
        epochs = [row["epoch"] for row in history]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for i, name in enumerate(f.name for f in groups):
            left.plot(epochs, [row["active_units"][i] for row in history], marker="o", label=name)
        left.set_xlabel("epoch"), left.set_ylabel("active units"), left.legend()
        right.plot(epochs, [row["train_perplexity"] for row in history], marker="o", label="train")
        right.plot(epochs, [row["valid_perplexity"] for row in history], marker="o", label="valid")
        right.set_xlabel("epoch"), right.set_ylabel("perplexity"), right.set_yscale("log")
        right.legend()
        fig.tight_layout()
        path = os.path.join(directory, "progress.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def results_table(results):
    """The sparse-versus-shrunk table printed at the end of a run."""
    rows = [("hidden units", str(results["hidden_before"]), str(results["hidden_after"])),
            ("weights", f"{results['weights']:,}", f"{results['weights_after']:,}"),
            ("multiply-adds per token", f"{results['macs_per_token']:,}",
             f"{results['macs_per_token_after']:,}"),
            ("test perplexity", f"{results['test_perplexity_sparse']:.2f}",
             f"{results['test_perplexity_shrunk']:.2f}")]
    speed = results.get("speed", {})
    if "batch1_step_seconds" in speed:
        s = speed["batch1_step_seconds"]
        rows.append(("ms per token (batch 1)", f"{s['dense'] * 1e3:.3f}", f"{s['shrunk'] * 1e3:.3f}"))
    export = results.get("export", {})
    if "tflite" in export:
        rows.append(("TFLite size (MB)", f"{export['tflite_dense_size_bytes'] / 1e6:.2f}",
                     f"{export['tflite']['size_bytes'] / 1e6:.2f}"))
        s = export["tflite_speed"]["batch1_step_seconds"]
        rows.append(("TFLite ms per token", f"{s['dense'] * 1e3:.3f}", f"{s['shrunk'] * 1e3:.3f}"))
    lines = [f"{'':<26}{'sparse/dense':>16}{'shrunk':>16}"]
    lines += [f"{label:<26}{a:>16}{b:>16}" for label, a, b in rows]
    lines.append(f"multiply-add ratio {results['macs_ratio']:.2f}x"
                 + (f", measured speedup {speed['batch1_speedup']:.2f}x (batch 1, Keras)"
                    if "batch1_speedup" in speed else "")
                 + (f", {export['tflite_speed']['batch1_speedup']:.2f}x (batch 1, TFLite)"
                    if "tflite_speed" in export else ""))
    return "\n".join(lines)
