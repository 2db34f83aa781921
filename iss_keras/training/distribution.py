"""Data-parallel training on the engines Keras already has, applied in one place.

`placement(distribution, devices)` returns a `Placement` that the training
loop (`iss_keras.training.Run`) consults at each point where devices matter:
where the training model and its optimizer are built, how a batch reaches the
replicas, where evaluation runs, and which process writes files.

* JAX: `keras.distribution.DataParallel` over the devices (multi-host: set
  `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
  `KERAS_DISTRIBUTION_PROCESS_ID`; the trainers' `start_backend_quietly()`
  connects the processes before JAX starts). One program over the global batch: the penalty, the
  clip and the enforcement see the one global copy of the weights.
* TensorFlow: `tf.distribute.MirroredStrategy` (one host, several devices).
  The model and optimizer are built in the strategy's scope. Keras scales each
  replica's loss and regularization by 1/N, so the summed gradient is the
  global batch's and the penalty is counted once; the global-norm clip is
  moved after the sum (`keras_internals.clip_after_all_reduce`). Each replica
  runs a model of the per-replica batch; a carried state lives per replica
  (on-read variables), and replica r always gets rows r*b .. (r+1)*b - 1 of
  every global batch, so consecutive batches continue row by row. Several
  hosts (`TF_CONFIG` with several workers) are refused: Keras 3's `fit` fails
  under `MultiWorkerMirroredStrategy` (tensorflow/tensorflow#72388); JAX runs
  them.
* torch: Keras has no data-parallel engine for it (its multi-GPU route is
  `torch.nn.parallel.DistributedDataParallel` in a custom training step), so
  `data_parallel` is refused with that explanation.

Batch sizes are global: with N replicas each computes 1/N of every batch, and
one step on N replicas is one step on one device with the same batch (the
learning rate is not rescaled). Evaluation, the rebuild and export run once,
on one device, with the gathered weights.
"""

import contextlib
import dataclasses
import json
import os

import keras
import numpy as np

from iss_keras.keras_internals import all_layers, clip_after_all_reduce, replace_rnn_states
from iss_keras.options import option

DISTRIBUTIONS = ("auto", "none", "data_parallel")


class DistributionError(ValueError):
    """The devices asked for cannot run this training as asked (a fixable setting)."""


@dataclasses.dataclass
class DistributionOptions:
    """How many devices train, and with which engine."""

    distribution: str = option(
        "auto", "auto: data parallel over every accelerator when there are several, else one "
        "device (said in the log and results.json); none: one device; data_parallel: over "
        "--devices devices (JAX: keras.distribution.DataParallel, also over several hosts; "
        "TensorFlow: tf.distribute.MirroredStrategy, one host). --batch_size is the global "
        "batch, split evenly over the replicas; the learning rate is not rescaled.",
        choices=DISTRIBUTIONS)
    devices: int = option(0, "Devices for data_parallel (0: all). On a CPU-only machine, "
                          "ISS_KERAS_CPU_DEVICES=N before starting makes N virtual CPU "
                          "devices (for trying and testing; the trainers set them up, a script "
                          "of yours calls iss_keras.startup.start_backend_quietly() first).")

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}. "
                             f"Received: distribution={self.distribution!r}")
        if self.devices < 0:
            raise ValueError(f"devices must be >= 0. Received: devices={self.devices}")


def _accelerators():
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [d for d in keras.distribution.list_devices() if not d.startswith("cpu")]


class Placement:
    """Where one training run's work happens (see the module docstring).

    Attributes:
        engine: "none", "jax" (keras.distribution) or "tensorflow" (tf.distribute).
        devices: the devices used.
        replicas: copies of the model computing a share of each batch.
        batch_split: how many parts of each global batch one model call sees
            (TensorFlow: the replicas; JAX computes the global batch as one
            program: 1).
        is_chief: this process writes checkpoints, logs and results.
    """

    def __init__(self, engine="none", devices=(), strategy=None, distribution=None, note=""):
        self.engine = engine
        self.devices = list(devices)
        self.strategy = strategy
        self.distribution = distribution
        self.note = note
        self.replicas = max(1, len(self.devices)) if engine != "none" else 1
        if strategy is not None:
            self.replicas = strategy.num_replicas_in_sync

    @property
    def batch_split(self):
        return self.replicas if self.engine == "tensorflow" else 1

    @property
    def process_index(self):
        """This process's index among the JAX processes (0 elsewhere)."""
        if self.engine == "jax":
            import jax

            return jax.process_index()
        return 0

    @property
    def process_count(self):
        if self.engine == "jax":
            import jax

            return jax.process_count()
        return 1

    @property
    def is_chief(self):
        return self.process_index == 0

    def check_batch(self, global_batch):
        """Raise unless the global batch splits evenly over the replicas."""
        if global_batch % self.replicas:
            raise DistributionError(f"The global batch size {global_batch} does not split over "
                             f"{self.replicas} replicas; use a multiple of {self.replicas} "
                             "(--batch_size) or another --devices.")
        return global_batch // self.replicas

    # -- the points the training loop asks about ------------------------------------------

    def build_scope(self):
        """Where the training model and its optimizer are created."""
        if self.engine == "tensorflow":
            return self.strategy.scope()
        if self.engine == "jax":
            return self.distribution.scope()
        return contextlib.nullcontext()

    def fit_scope(self):
        """Around `fit` (JAX reads the distribution to shard each batch)."""
        return self.distribution.scope() if self.engine == "jax" else contextlib.nullcontext()

    @contextlib.contextmanager
    def single_device(self):
        """Around evaluation during training: models built here are not distributed."""
        if self.engine != "jax":
            yield
            return
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)

    def adapt_model(self, model):
        """Per-replica carried state (TensorFlow): each replica keeps its own rows' state."""
        if self.engine != "tensorflow" or self.replicas == 1:
            return model
        with self.strategy.scope():
            for layer in all_layers(model):
                if getattr(layer, "stateful", False) and getattr(layer, "states", None):
                    replace_rnn_states(layer, lambda old: keras.Variable(
                        np.zeros(tuple(old.shape), old.dtype), trainable=False,
                        synchronization="on_read", aggregation="only_first_replica",
                        name="rnn_state"))
        return model

    def optimizer(self, optimizer):
        """The optimizer to compile with (TensorFlow: clip after the sum over replicas)."""
        if self.engine == "tensorflow" and self.replicas > 1 and optimizer.global_clipnorm:
            with self.strategy.scope():
                return clip_after_all_reduce(optimizer)
        return optimizer

    def fit_arguments(self, data):
        """`model.fit` keyword arguments for the task's `fit_data()`.

        Unshuffled data (a carried state) reaches the replicas row by row:
        replica r gets rows r*b .. (r+1)*b - 1 of every global batch of b*N.
        """
        data = dict(data)
        if self.engine == "none" or self.replicas == 1 or data.get("shuffle", True):
            return data
        batch = data["batch_size"]
        per_replica = self.check_batch(batch)
        x, y = np.asarray(data["x"]), np.asarray(data["y"])
        steps = len(x) // batch
        if self.engine == "jax":
            if self.process_count == 1:
                return data  # one program: Keras shards each batch over the devices in order
            return {**data, **_process_rows(x, y, batch, self.process_index, self.process_count)}
        return {"x": _replica_datasets(self.strategy, x, y, batch, per_replica),
                "steps_per_epoch": steps}

    def describe(self):
        """What was chosen, for the log and results.json."""
        return {"engine": self.engine, "replicas": self.replicas, "devices": self.devices,
                "processes": self.process_count, "note": self.note}

    def __str__(self):
        if self.engine == "none":
            return f"one device{f' ({self.note})' if self.note else ''}"
        return (f"data parallel over {self.replicas} replicas ({self.engine}: "
                f"{', '.join(self.devices)}){f'; {self.note}' if self.note else ''}")


def tf_workers(environ=None):
    """How many chief and worker tasks TF_CONFIG's cluster names (0 without TF_CONFIG)."""
    environ = os.environ if environ is None else environ
    try:
        cluster = json.loads(environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as e:
        raise DistributionError(f"TF_CONFIG is not valid JSON ({e}); see "
                                "https://www.tensorflow.org/guide/distributed_training") from None
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def _process_rows(x, y, batch, index, count):
    """This process's rows of every global batch (multi-host JAX feeds local shards)."""
    local = batch // count
    rows = slice(index * local, (index + 1) * local)

    def take(a):
        a = a[:len(a) // batch * batch].reshape((-1, batch) + a.shape[1:])
        return a[:, rows].reshape((-1,) + a.shape[2:])

    return {"x": take(x), "y": take(y), "batch_size": local}


def _replica_datasets(strategy, x, y, batch, per_replica):
    """A distributed dataset giving global replica r rows r*b .. (r+1)*b - 1 of every batch."""
    import tensorflow as tf

    x = x[:len(x) // batch * batch].reshape((-1, batch) + x.shape[1:])
    y = y[:len(y) // batch * batch].reshape((-1, batch) + y.shape[1:])

    def dataset_fn(context):
        local = strategy.num_replicas_in_sync // context.num_input_pipelines
        first = context.input_pipeline_id * local
        parts = [(x[:, (first + r) * per_replica:(first + r + 1) * per_replica],
                  y[:, (first + r) * per_replica:(first + r + 1) * per_replica])
                 for r in range(local)]
        # Batch i of local replica r is element i * local + r: replicas take turns.
        xs = np.stack([p[0] for p in parts], axis=1).reshape((-1, per_replica) + x.shape[2:])
        ys = np.stack([p[1] for p in parts], axis=1).reshape((-1, per_replica) + y.shape[2:])
        # Repeated: Keras keeps one iterator across epochs when steps_per_epoch is given,
        # and an epoch is exactly one pass.
        return tf.data.Dataset.from_tensor_slices((xs, ys)).repeat()

    options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
    return strategy.distribute_datasets_from_function(dataset_fn, options)


def placement(distribution="auto", devices=0):
    """The `Placement` for `--distribution` and `--devices` under the current backend.

    Raises:
        ValueError: data_parallel asked for with fewer than 2 devices, or
            under torch, or a global batch that does not split (later).
    """
    backend = keras.backend.backend()
    accelerators = _accelerators()
    if distribution == "none":
        return Placement(note="--distribution=none")
    if distribution == "auto":
        if len(accelerators) < 2:
            return Placement(note=f"auto: {len(accelerators)} accelerator(s) found")
        devices = 0
    if backend == "torch":
        if distribution == "auto":
            return Placement(note=f"auto: {len(accelerators)} GPUs found, but Keras has no "
                             "data-parallel engine for torch; one device")
        raise DistributionError(
            "--distribution=data_parallel is not available under KERAS_BACKEND=torch: Keras's "
            "engines are keras.distribution (JAX) and tf.distribute (TensorFlow), and for torch "
            "it leaves multi-GPU training to DistributedDataParallel in a custom train step. "
            "Train with KERAS_BACKEND=jax or tensorflow, or on one device.")
    available = accelerators or keras.distribution.list_devices("cpu")
    if backend == "tensorflow" and tf_workers() > 1:
        raise DistributionError(
            "TF_CONFIG names several workers, but Keras 3's fit cannot run under "
            "MultiWorkerMirroredStrategy: its training step averages the scalar logs over "
            "workers along axis 0 and fails (tensorflow/tensorflow#72388). For several hosts "
            "use KERAS_BACKEND=jax with KERAS_DISTRIBUTION_JOB_ADDRESSES, "
            "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID set on each "
            "host (see docs/devices.md); one host with several GPUs works under TensorFlow.")
    chosen = available[:devices] if devices else available
    if len(chosen) < 2 or (devices and len(available) < devices):
        raise DistributionError(
            f"--distribution=data_parallel needs at least 2 devices; found {len(available)} "
            f"({', '.join(available)}){f' for --devices={devices}' if devices else ''}. On a "
            "CPU-only machine, start with ISS_KERAS_CPU_DEVICES=2 to try it on 2 virtual "
            "CPU devices (a script of yours: call iss_keras.startup.start_backend_quietly() "
            "before anything imports Keras, as the trainers do).")
    return data_parallel(chosen)


def data_parallel(devices):
    """Data parallel over exactly `devices` (Keras names, e.g. ["gpu:0", "gpu:1"]) on one host.

    One device is allowed here: it measures what the distributed path costs
    (benchmarks/data_parallel.py).
    """
    if keras.backend.backend() == "jax":
        return Placement("jax", devices, distribution=keras.distribution.DataParallel(
            devices=list(devices)))
    import tensorflow as tf

    names = ["/" + d.replace("cpu", "CPU").replace("gpu", "GPU") for d in devices]
    return Placement("tensorflow", devices, strategy=tf.distribute.MirroredStrategy(names))


def placement_from_options(options):
    """`placement(...)` for a `DistributionOptions`."""
    return placement(options.distribution, options.devices)
