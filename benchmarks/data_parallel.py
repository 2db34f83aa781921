"""Data-parallel training speed: tokens/s on one device and on N replicas, in one process.

The ISS LSTM language model of ptb/ (ISS, per-weight zeroing, global-norm clip,
carried state) trains on equal chunks of random-token batches, in turns, on
  * one_device: `placement("none")`;
  * data_parallel: `placement("data_parallel", N)`, the trainers' path
    (JAX keras.distribution.DataParallel / TensorFlow MirroredStrategy).
With `--devices=1` the second candidate is the distributed path on a single
device: its overhead (goal on a GPU: at most 3%).

On a CPU-only machine the script restarts itself with ISS_KERAS_CPU_DEVICES=N
(N virtual CPU devices sharing the same cores): that checks the path and
measures its cost, not a speedup.

    python benchmarks/data_parallel.py                 # 2 replicas, 2x200, batch 20 x 20 steps
    KERAS_BACKEND=jax python benchmarks/data_parallel.py
    python benchmarks/data_parallel.py --quick         # smoke test
"""

import json
import os
import platform
import subprocess
import sys

import training_common  # beside this script


def parse_args(argv=None):
    p = training_common.parser(__doc__.split("\n")[0], "runs/benchmarks/data_parallel.json",
                                chunk_batches=30, repeats=5)
    p.add_argument("--devices", type=int, default=2)
    return training_common.parse(p, argv, quick_chunk_batches=4)


def restart_with_virtual_devices(args):
    """Re-run this script with N virtual CPU devices when the machine has no accelerators."""
    env = {**os.environ, "ISS_KERAS_CPU_DEVICES": str(max(2, args.devices))}
    return subprocess.run([sys.executable, *sys.argv], env=env).returncode


def candidate(args, where, x, y):
    import keras

    from iss_keras.discovery import discover_groups
    from iss_keras.models.lstm_lm import lstm_language_model
    from iss_keras.sparsity import ISS, Sparsity, WeightZeroing

    t = args.steps
    sparsity = Sparsity([ISS(0.00245 / t), WeightZeroing(1e-4)])
    with where.build_scope():
        model = lstm_language_model(args.vocab_size, [args.hidden] * 2,
                                    batch_size=args.batch_size // where.batch_split, steps=t,
                                    stateful=True, sparsity=sparsity, seed=0)
        where.adapt_model(model)
        sparsity.bind(model, discover_groups(model))
        model.compile(where.optimizer(keras.optimizers.SGD(1.0 * t, global_clipnorm=5.0 / t)),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit = where.fit_arguments({"x": x, "y": y, "batch_size": args.batch_size, "shuffle": False})

    def run():
        with where.fit_scope():
            model.fit(**fit, epochs=1, verbose=0)
    return run


def main(argv=None):
    args = parse_args(argv)
    from iss_keras.startup import start_backend_quietly

    start_backend_quietly()  # sets up virtual devices before the backend starts
    import keras
    import numpy as np

    from iss_keras.timing import interleaved_medians

    from iss_keras.files import write_text
    from iss_keras.tasks.language_model import stream_batches
    from iss_keras.training import distribution

    accelerators = [d for d in keras.distribution.list_devices() if not d.startswith("cpu")]
    devices = accelerators or keras.distribution.list_devices("cpu")
    if len(devices) < args.devices:
        if accelerators or os.environ.get("ISS_KERAS_CPU_DEVICES"):
            raise SystemExit(f"Asked for {args.devices} devices; found {devices}.")
        return restart_with_virtual_devices(args)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab_size, args.chunk_batches * args.batch_size * args.steps + 1)
    x, y = stream_batches(ids, args.batch_size, args.steps)
    candidates = {"one_device": candidate(args, distribution.placement("none"), x, y),
                  "data_parallel": candidate(
                      args, distribution.data_parallel(devices[:args.devices]), x, y)}
    medians = interleaved_medians(candidates, args.repeats, warmup=1)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "backend": keras.backend.backend(), "keras": keras.__version__,
                    "devices": devices[:args.devices], "virtual_cpu_devices":
                    not accelerators},
        "shape": {"vocab_size": args.vocab_size, "hidden": [args.hidden] * 2,
                  "steps": args.steps, "global_batch": args.batch_size,
                  "tokens_per_chunk": int(x.size)},
        "repeats": args.repeats,
        "tokens_per_second": {n: x.size / m for n, m in medians.items()},
        "data_parallel_step_time_vs_one_device": medians["data_parallel"] / medians["one_device"],
    }
    for name in candidates:
        print(f"{name:<16}{result['tokens_per_second'][name]:>12,.0f} tokens/s")
    print(f"data_parallel step time / one device: "
          f"{result['data_parallel_step_time_vs_one_device']:.3f}")
    write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    sys.exit(main())
