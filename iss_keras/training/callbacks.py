"""The training loop's callbacks (Keras's own where they fit, ours where they do not).

Order at the end of an epoch: `EvaluateEachEpoch` (validation metrics into
the logs), `iss_keras.SparsityReportCallback` (units, weights,
multiply-adds), `EpochLog` (the history row: metrics.csv, history.json and a
printed line), `EpochCheckpoints`, then `keras.callbacks.TensorBoard`, which
writes every scalar the earlier ones put in the logs.

Why not `keras.callbacks.CSVLogger`: it appends to the file, so a run killed
between a row and its checkpoint repeats that row on resume, a kill during a
write leaves a half line, and it drops columns that appear after the first
epoch. `EpochLog` rewrites the file from the history atomically instead.
"""

import contextlib
import csv
import io
import json
import math
import os
import time

import keras

from iss_keras.files import write_text
from iss_keras.startup import quietly


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` that remembers where: `diverged` is `(epoch, batch)` or None.

    Keras still ends the epoch after stopping; the callbacks below skip a
    diverged epoch, so its NaN weights are never checkpointed.
    """

    def __init__(self):
        super().__init__()
        self.diverged = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.diverged is None:
            self.diverged = (self._epoch, batch)
        super().on_batch_end(batch, logs)


class EvaluateEachEpoch(keras.callbacks.Callback):
    """Put the task's validation metrics, and the epoch's timings, into the epoch logs.

    `weights(model)`: a context manager under which the validated weights are in the
    model (e.g. `iss_keras.keras_internals.raw_weights`; default: what the model holds).
    """

    def __init__(self, task, skip=lambda: False, where=contextlib.nullcontext, finalize=None,
                 weights=None):
        super().__init__()
        self.task = task
        self.skip = skip
        self.where = where
        self.finalize = finalize or (lambda model: model)
        self.weights = weights or (lambda model: contextlib.nullcontext())
        self.last = {}
        self._began = None

    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if self.skip() or logs is None:
            return
        trained = time.time() - self._began
        with self.where(), self.weights(self.model):  # one device, the gathered weights
            # As it will be tested: e.g. SparseVD's noise off and its variables folded in.
            metrics = dict(self.task.evaluate(self.finalize(self.model)))
        metrics["seconds"] = round(trained, 2)
        metrics["eval_seconds"] = round(time.time() - self._began - trained, 2)
        self.last = metrics
        logs.update(metrics)


class EpochLog(keras.callbacks.Callback):
    """Append the epoch's row to `run.history`; rewrite metrics.csv and history.json.

    A row: epoch, learning rate (original's units), the task's training
    summary, its validation metrics, timings, units per recurrent layer (ours
    and the original's count), weights and multiply-adds, and what the
    sparsity methods report (e.g. the target-size controller's state).
    """

    def __init__(self, run, evaluation, report_callback, skip=lambda: False):
        super().__init__()
        self.run = run
        self.evaluation = evaluation
        self.report_callback = report_callback
        self.skip = skip

    def on_epoch_end(self, epoch, logs=None):
        if self.skip() or logs is None:
            return
        run = self.run
        row = {"epoch": epoch + 1, "learning_rate": run.config.learning_rate_at(epoch)}
        row.update(run.task.epoch_summary(logs, self.evaluation.last["seconds"]))
        row.update(self.evaluation.last)
        report = self.report_callback.last_report
        row.update({
            "active_units": [r["active_units"] for r in report.layers],
            "all_zero_units": [r["all_zero_units"] for r in report.layers],
            "weights_after": report.totals["weights_after"],
            "macs_per_token_after": report.totals["macs_per_token_after"],
            "weights": report.totals["weights"], "macs_per_token": report.totals["macs_per_token"],
        })
        row.update(run.sparsity.epoch_summary())
        run.history.append(_plain(row))
        write_history(run.workdir, run.history)
        if run.verbose:
            print(describe_row(row, run.task.monitor))


def _plain(value):
    """`value` with NumPy and backend scalars made Python numbers (for JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def write_history(workdir, history):
    """metrics.csv (one column per scalar) and history.json, each written atomically."""
    fields = []
    for row in history:
        fields.extend(k for k in row if k not in fields and not isinstance(row[k], (list, dict)))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text(os.path.join(workdir, "metrics.csv"), buffer.getvalue())
    write_text(os.path.join(workdir, "history.json"), json.dumps(history, indent=1))


def describe_row(row, monitor=None):
    """One line for an epoch's row."""
    parts = [f"epoch {row['epoch']} (lr {row['learning_rate']:.4g}):"]
    for key in ("train_perplexity", monitor):
        if key and key in row:
            parts.append(f"{key.replace('_', ' ')} {row[key]:.2f},")
    parts.append(f"active units {row['active_units']}, multiply-adds/token "
                 f"{row['macs_per_token_after']:,} of {row['macs_per_token']:,}")
    if "sparse_vd_kept_weights" in row:
        parts[-1] += ","
        parts.append(f"SparseVD weights kept {row['sparse_vd_kept_weights']:,} of "
                     f"{row['sparse_vd_noisy_weights']:,} ({row['sparse_vd_compression']:,.1f}x)")
    if "tokens_per_second" in row:
        parts.append(f"({row['tokens_per_second']:,.0f} tokens/s)")
    return " ".join(parts)


def tensorboard(log_dir):
    """`keras.callbacks.TensorBoard` for epoch scalars, or None without TensorFlow installed."""
    try:
        with quietly():  # under JAX or torch, TensorFlow starts here: no CUDA noise
            import tensorflow  # noqa: F401  (Keras's TensorBoard writes through tf.summary)
    except ImportError:  # e.g. a JAX-only GPU machine: CSV and JSON are still written
        return None
    return keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, update_freq="epoch")
