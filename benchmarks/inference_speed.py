"""Inference speed of a dense LSTM LM against its shrunk version, side by side.

Defaults reproduce the paper's headline pair: a 2-layer PTB LM with a 10k
vocabulary and 1500-wide embedding, hidden 1500/1500 (dense) against 373/315
(ISS). Paper: 10.59x faster on an Intel MKL CPU, 7.48x fewer multiply-adds.
Weights are random: speed does not depend on their values.

Both models run in one process, interleaved, and medians are reported for:
  * Keras (TensorFlow graph, `predict_on_batch`) and TFLite (`ai_edge_litert`,
    builtin ops with XNNPACK);
  * batch 1 streaming: one token per call, the LSTM state carried between calls;
  * batch 10 x 30 steps: one call over a 30-token window.

    python benchmarks/inference_speed.py                      # paper pair
    python benchmarks/inference_speed.py --model=runs/ptb/quick_iss/sparse.keras \\
        --shrunk=runs/ptb/quick_iss/shrunk.keras              # any trained pair
    python benchmarks/inference_speed.py --quick              # smoke test (tiny)
"""

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from iss_keras import export  # noqa: E402
from iss_keras.models.lstm_lm import hidden_sizes, lstm_language_model  # noqa: E402
from iss_keras.tasks.language_model import zero_states  # noqa: E402
from iss_keras.report import sparsity_report  # noqa: E402
from iss_keras.timing import interleaved_medians  # noqa: E402
from iss_keras.files import write_text  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab_size", type=int, default=10000)
    p.add_argument("--embedding_size", type=int, default=1500)
    p.add_argument("--dense", default="1500,1500", help="hidden sizes of the dense model")
    p.add_argument("--sparse", default="373,315", help="hidden sizes of the shrunk model")
    p.add_argument("--model", help="a streaming .keras LM (e.g. a run's sparse.keras) instead")
    p.add_argument("--shrunk", help="its shrunk version (e.g. the run's shrunk.keras)")
    p.add_argument("--repeats", type=int, default=15, help="timed rounds (medians)")
    p.add_argument("--stream_tokens", type=int, default=30, help="tokens per streaming round")
    p.add_argument("--no_tflite", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny models, 2 rounds: a smoke test")
    p.add_argument("--out", default="runs/benchmarks/inference_speed.json")
    args = p.parse_args(argv)
    if bool(args.model) != bool(args.shrunk):
        p.error("--model and --shrunk go together")
    if args.quick:
        args.vocab_size, args.embedding_size, args.dense, args.sparse = 300, 32, "32,32", "8,6"
        args.repeats, args.stream_tokens = 2, 3
    return args


def load_pair(args):
    if args.model:
        return [keras.saving.load_model(p, compile=False) for p in (args.model, args.shrunk)]
    return [lstm_language_model(args.vocab_size, [int(h) for h in sizes.split(",")],
                                embedding_size=args.embedding_size, streaming=True, seed=0,
                                name=name)
            for sizes, name in ((args.dense, "dense"), (args.sparse, "shrunk"))]


def keras_stream(model, tokens):
    def run():
        state = zero_states(model, 1)
        for t in range(tokens):
            out = model.predict_on_batch([np.full((1, 1), t, "int32")] + state)
            state = list(out[1:])
    return run


def keras_window(model, batch, steps):
    inputs = [np.ones((batch, steps), "int32")] + zero_states(model, batch)
    return lambda: model.predict_on_batch(inputs)


def tflite_runner(model, batch, steps):
    blob, _ = export.convert_to_tflite(model, batch_size=batch, steps=steps)
    interp = export.tflite_interpreter(model_content=blob)
    names = export.input_names(model)
    return interp, names, len(blob)


def tflite_stream(runner, model, tokens):
    interp, names, _ = runner

    def run():
        state = zero_states(model, 1)
        for t in range(tokens):
            out = export.run_tflite(interp, [np.full((1, 1), t, "int32")] + state, names,
                                    export.serving_output_names(model))
            state = out[1:]
    return run


def tflite_window(runner, model, batch, steps):
    interp, names, _ = runner
    inputs = [np.ones((batch, steps), "int32")] + zero_states(model, batch)
    outputs = export.serving_output_names(model)
    return lambda: export.run_tflite(interp, inputs, names, outputs)


def main(argv=None):
    args = parse_args(argv)
    dense, small = load_pair(args)
    macs = [sparsity_report(m).totals["macs_per_token"] for m in (dense, small)]
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "keras": keras.__version__},
        "hidden_sizes": {"dense": hidden_sizes(dense), "shrunk": hidden_sizes(small)},
        "macs_per_token": {"dense": macs[0], "shrunk": macs[1]},
        "macs_ratio": macs[0] / macs[1], "repeats": args.repeats, "timings": {},
    }
    workloads = {
        "keras_batch1_stream": lambda m: keras_stream(m, args.stream_tokens),
        "keras_batch10_steps30": lambda m: keras_window(m, 10, 30),
    }
    runners = {}
    if not args.no_tflite:
        runners = {(name, shape): tflite_runner(m, *shape)
                   for name, m in (("dense", dense), ("shrunk", small))
                   for shape in ((1, 1), (10, 30))}
        result["tflite_size_bytes"] = {name: runners[(name, (1, 1))][2] for name in ("dense", "shrunk")}
        workloads["tflite_batch1_stream"] = None
        workloads["tflite_batch10_steps30"] = None
    for workload in workloads:
        candidates = {}
        for name, m in (("dense", dense), ("shrunk", small)):
            if workload == "tflite_batch1_stream":
                candidates[name] = tflite_stream(runners[(name, (1, 1))], m, args.stream_tokens)
            elif workload == "tflite_batch10_steps30":
                candidates[name] = tflite_window(runners[(name, (10, 30))], m, 10, 30)
            else:
                candidates[name] = workloads[workload](m)
        medians = interleaved_medians(candidates, repeats=args.repeats)
        per = args.stream_tokens if "stream" in workload else 1
        result["timings"][workload] = {
            "dense_ms": medians["dense"] * 1e3 / per, "shrunk_ms": medians["shrunk"] * 1e3 / per,
            "unit": "ms per token" if per > 1 else "ms per call",
            "speedup": medians["dense"] / medians["shrunk"]}
    print(f"hidden {result['hidden_sizes']['dense']} -> {result['hidden_sizes']['shrunk']}, "
          f"multiply-adds {macs[0]:,} -> {macs[1]:,} per token ({result['macs_ratio']:.2f}x fewer)")
    print(f"{'workload':<26}{'dense':>12}{'shrunk':>12}{'speedup':>10}  unit")
    for workload, t in result["timings"].items():
        print(f"{workload:<26}{t['dense_ms']:>12.3f}{t['shrunk_ms']:>12.3f}{t['speedup']:>9.2f}x  "
              f"{t['unit']} (median of {args.repeats})")
    write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
