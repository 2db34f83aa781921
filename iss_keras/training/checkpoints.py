"""Checkpoints: weights, optimizer variables, history and method state in one file.

A checkpoint is written atomically after every epoch (temporary file, then
rename), so a killed run resumes from its last completed epoch by re-running
the same command. A file that cannot be read back raises
`CorruptCheckpointError`: training never restarts from scratch silently.
"""

import json
import os
import zipfile

import keras
import numpy as np
from keras import ops

from iss_keras.files import atomic_path

CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"


class CorruptCheckpointError(ValueError):
    """A checkpoint file cannot be read back (truncated, overwritten, not a checkpoint)."""


def _random_states(model):
    """The state of the model's random streams (dropout, noise): the variables Keras keeps
    beside the weights (`model.variables`), so a resumed run draws what it would have."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def save_checkpoint(path, model, epoch, history, sparsity_state=None):
    """Write the model's weights, optimizer variables, random-stream states, the epoch done
    (0-based), the history rows and the sparsity methods' state, atomically."""
    arrays = {f"w{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.weights)}
    arrays.update({f"s{i}": ops.convert_to_numpy(v) for i, v in enumerate(_random_states(model))})
    if model.optimizer is not None and model.optimizer.built:
        arrays.update({f"o{i}": ops.convert_to_numpy(v)
                       for i, v in enumerate(model.optimizer.variables)})
    meta = {"epoch": int(epoch), "history": history, "sparsity_state": sparsity_state or {},
            "weights": [v.path for v in model.weights]}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _read_checkpoint(path):
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
    states = _random_states(model)
    saved = [data[f"s{i}"] for i in range(len(states)) if f"s{i}" in data]
    if len(saved) == len(states) and all(tuple(s.shape) == tuple(v.shape)
                                         for s, v in zip(saved, states)):
        for v, s in zip(states, saved):  # (a checkpoint without them keeps fresh streams)
            v.assign(s)
    if optimizer and model.optimizer is not None:
        opt_keys = sorted((k for k in data if k.startswith("o")), key=lambda k: int(k[1:]))
        if opt_keys:
            model.optimizer.build(model.trainable_variables)
            for v, k in zip(model.optimizer.variables, opt_keys):
                v.assign(data[k])
    return meta


def initial_weights_from(path, model):
    """Load weights to fine-tune from: a workdir (its checkpoint), a `.npz` checkpoint or
    a Keras weights file. Returns the file read."""
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"restore_from={path!r} is neither a checkpoint file nor a "
                                f"workdir holding {CHECKPOINT}.")
    if path.endswith(".npz"):
        load_checkpoint(path, model, optimizer=False)
    else:
        model.load_weights(path)
    return path


class EpochCheckpoints(keras.callbacks.Callback):
    """Save `checkpoint.npz` after every epoch, and `best.npz` at each best validation.

    A BackupAndRestore in the package's format: the file also holds the
    history and the sparsity state, and `run.restore()` resumes from it.

    Args:
        run: the `iss_keras.training.Run` (its workdir, history, sparsity).
        keep_best: also keep the best epoch by the task's monitor.
        skip: a callable; when it returns True the epoch is not saved (a
            diverged epoch).
    """

    def __init__(self, run, keep_best=False, skip=lambda: False):
        super().__init__()
        self.run = run
        self.keep_best = keep_best
        self.skip = skip

    def on_epoch_end(self, epoch, logs=None):
        if self.skip():
            return
        run = self.run
        state = run.sparsity.get_state()
        if self.keep_best and run.is_best(run.history[-1]):
            # Before the last-epoch checkpoint: a run killed in between resumes
            # that epoch and writes both again.
            save_checkpoint(os.path.join(run.workdir, BEST), self.model, epoch, run.history, state)
        save_checkpoint(os.path.join(run.workdir, CHECKPOINT), self.model, epoch, run.history,
                        state)
