"""TFLite batch-1 speed of the small PTB LM at the sizes of the four-way comparison, one run.

The README's four-way table (ISS, direct design, unit-level magnitude pruning, unstructured
gradual magnitude pruning, each at the size `small_target2x` / `small_target3x` reached) needs
one speed per deployed model, measured side by side in one process so that the machine's
state is the same for all. What the deployed models compute depends only on their shapes:

  * the dense small model (vocabulary 10k, embedding 200, hidden 200/200);
  * smaller dense models at the sizes ISS, direct design and unit pruning deploy (46/118,
    42/81): `shrink` and direct design give exactly these shapes;
  * the dense-shaped model with a fraction of every pruned weight zeroed by magnitude (the
    stripped GMP model: zeros stored in dense kernels; TFLite's builtin fully-connected op
    multiplies them all).

Weights are random (timing does not depend on their values; the zeroed fraction is set by
`magnitude_mask`, as `strip_pruning` leaves it). Each model is exported with
`export_tflite(steps=1)` (verified against Keras) and timed one token per call with the state
carried (the device loop), interleaved, medians. The load average is recorded: a run with
something else on the CPUs says `shared: true`.

    python benchmarks/equal_size_speed.py --out=benchmarks/results/equal_size_speed.json
    python benchmarks/equal_size_speed.py --quick           # smoke test (tiny)
"""

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from iss_keras.startup import start_backend_quietly  # noqa: E402

start_backend_quietly()  # no C++ start-up noise on the first screen

import numpy as np  # noqa: E402

from inference_speed import tflite_export, tflite_stream  # noqa: E402
from machine_state import load_average, machine_before, was_shared  # noqa: E402
from iss_keras.files import write_text  # noqa: E402
from iss_keras.models.lstm_lm import lstm_language_model  # noqa: E402
from iss_keras.provenance import provenance  # noqa: E402
from iss_keras.report import sparsity_report  # noqa: E402
from iss_keras.sparsity.magnitude import magnitude_mask, prunable_weights  # noqa: E402
from iss_keras.timing import interleaved_times, spread  # noqa: E402


def sizes_list(text):
    """"46,118 42,81" -> [[46, 118], [42, 81]]."""
    out = [[int(h) for h in item.split(",")] for item in text.split()]
    if not out or any(not s or min(s) < 1 for s in out):
        raise argparse.ArgumentTypeError(f"sizes must be comma lists of units >= 1, separated "
                                         f"by spaces. Received: {text!r}")
    return out


def fractions_list(text):
    out = [float(f) for f in text.split(",") if f.strip()]
    if any(not 0.0 <= f < 1.0 for f in out):
        raise argparse.ArgumentTypeError(f"zeroed fractions must be in [0, 1). Received: "
                                         f"{text!r}")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab_size", type=int, default=10000)
    p.add_argument("--embedding_size", type=int, default=200)
    p.add_argument("--dense", type=sizes_list, default=[[200, 200]],
                   help="hidden sizes of the dense model")
    p.add_argument("--sizes", type=sizes_list, default=[[46, 118], [42, 81]],
                   help="hidden sizes of the smaller dense models (shrunk or direct)")
    p.add_argument("--zeroed", type=fractions_list, default=[0.288217, 0.377046],
                   help="fractions of every pruned weight of the dense model zeroed by "
                        "magnitude (the GMP configs' final sparsities)")
    p.add_argument("--repeats", type=int, default=21, help="timed rounds (medians)")
    p.add_argument("--stream_tokens", type=int, default=50, help="tokens per round")
    p.add_argument("--threads", type=int, default=2, help="TFLite interpreter threads")
    p.add_argument("--quick", action="store_true", help="tiny models, 2 rounds: a smoke test")
    p.add_argument("--out", default="runs/benchmarks/equal_size_speed.json")
    args = p.parse_args(argv)
    if args.quick:
        args.vocab_size, args.embedding_size = 300, 32
        args.dense, args.sizes, args.zeroed = [[32, 32]], [[8, 6]], [0.5]
        args.repeats, args.stream_tokens = 2, 3
    return args


def zeroed(model, fraction):
    """`model` with `fraction` of every weight TF-MOT prunes set to zero by magnitude."""
    for variable in prunable_weights(model):
        value = np.asarray(variable.numpy())
        variable.assign(value * magnitude_mask(value, fraction))
    return model


def build(args):
    """name -> (model, description)."""
    def lm(sizes, name):
        return lstm_language_model(args.vocab_size, sizes, embedding_size=args.embedding_size,
                                   streaming=True, seed=0, name=name)

    dense = args.dense[0]
    models = {"dense": (lm(dense, "dense"), {"hidden": dense, "zeroed": 0.0})}
    for sizes in args.sizes:
        name = "units_" + "_".join(map(str, sizes))
        models[name] = (lm(sizes, name), {"hidden": sizes, "zeroed": 0.0})
    for fraction in args.zeroed:
        name = f"zeroed_{fraction:g}".replace(".", "p")
        models[name] = (zeroed(lm(dense, name), fraction), {"hidden": dense, "zeroed": fraction})
    return models


def main(argv=None):
    args = parse_args(argv)
    before = machine_before()
    models = build(args)
    result = {"run": provenance(), "load_before": before, "repeats": args.repeats,
              "stream_tokens": args.stream_tokens, "tflite_threads": args.threads,
              "vocab_size": args.vocab_size, "embedding_size": args.embedding_size,
              "models": {}}
    candidates = {}
    with tempfile.TemporaryDirectory(prefix="equal_size_speed-") as tmp:
        for name, (model, about) in models.items():
            blob, report = tflite_export(model, 1, 1, None, 0, tmp)
            nonzero = int(sum(int(np.count_nonzero(w.numpy())) for w in model.weights))
            result["models"][name] = {
                **about, "weights": int(sum(int(np.prod(w.shape)) for w in model.weights)),
                "nonzero_weights": nonzero,
                "macs_per_token": sparsity_report(model).totals["macs_per_token"],
                "tflite_bytes": report.size_bytes, "max_rel_diff_vs_keras": report.max_rel_diff}
            candidates[name] = tflite_stream(blob, model, args.stream_tokens, args.threads)
        times = interleaved_times(candidates, repeats=args.repeats)
    ms = {n: {k: v * 1e3 / args.stream_tokens for k, v in spread(t["wall"]).items()
              if k in ("min", "median", "max")} for n, t in times.items()}
    for name, entry in result["models"].items():
        entry["ms_per_token"] = ms[name]
        entry["speedup_vs_dense"] = ms["dense"]["median"] / ms[name]["median"]
    result["load_after"] = load_average()
    result["shared"] = was_shared(before)
    for name, entry in result["models"].items():
        print(f"{name:<18} hidden {'/'.join(map(str, entry['hidden'])):<9} zeroed "
              f"{entry['zeroed']:.3f}  {entry['ms_per_token']['median']:.4f} ms/token  "
              f"{entry['speedup_vs_dense']:.2f}x")
    print(f"load {before['load']} -> {result['load_after']['load']}"
          + (" (shared: something else was running)" if result["shared"] else ""))
    write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
