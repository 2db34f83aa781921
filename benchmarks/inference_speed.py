"""Inference speed of a dense LSTM LM against its shrunk version, float and int8, side by side.

Defaults reproduce the paper's headline pair: a 2-layer PTB LM with a 10k
vocabulary and 1500-wide embedding, hidden 1500/1500 (dense) against 373/315
(ISS). Paper: 10.59x faster on an Intel MKL CPU, 7.48x fewer multiply-adds.
Weights are random: speed does not depend on their values.

Every model runs in one process, interleaved (medians), each as:
  * dense float, dense int8, shrunk float, shrunk int8 (TFLite only): both
    int8 forms, full-integer and dynamic-range, are timed; the table's int8 is
    the faster at batch-1 streaming for the shrunk model (`--int8=fastest`);
  * TFLite (`ai_edge_litert`, builtin ops, XNNPACK, `--threads`): batch 1
    streaming (one token per call, the LSTM state carried between calls; the
    exported step is straight-line ops; also with `--also_threads`) and batch
    10 x 30 steps in one call;
  * SavedModel (the TF Serving path) and Keras (`predict_on_batch`), batch 1
    streaming; Keras also batch 10 x 30.
Every TFLite model is exported with `export_tflite` (verified against Keras;
the full-integer ones calibrated on streamed states of random tokens). Every
time is also given as a speedup over dense float. The machine's load average
is recorded before, during and after (`shared`: something else was running).

    python benchmarks/inference_speed.py                      # paper pair
    python benchmarks/inference_speed.py --out=benchmarks/results/inference_speed.json
                                                  # the kept run docs/deploy.md shows
    python benchmarks/inference_speed.py --model=runs/ptb/quick_iss/sparse.keras \\
        --shrunk=runs/ptb/quick_iss/shrunk.keras              # any trained pair
    python benchmarks/inference_speed.py --quick              # smoke test (tiny)
    python benchmarks/inference_speed.py --profile --out=benchmarks/results/inference_profile.json
                                  # where the shrunk model's batch-1 token time goes, part by part
"""

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from iss_keras import export  # noqa: E402
from machine_state import load_average, machine_before, was_shared  # noqa: E402
from iss_keras.files import write_text  # noqa: E402
from iss_keras.models.lstm_lm import hidden_sizes, lstm_language_model  # noqa: E402
from iss_keras.provenance import provenance  # noqa: E402
from iss_keras.report import sparsity_report  # noqa: E402
from iss_keras.tasks.language_model import zero_states  # noqa: E402
from iss_keras.timing import interleaved_medians  # noqa: E402

INT8_FORMS = ("int8_full", "int8")  # full-integer, dynamic-range
WINDOW = (10, 30)  # batch x steps of the one-call workloads


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
    p.add_argument("--threads", type=int, default=2, help="TFLite interpreter threads")
    p.add_argument("--also_threads", type=int, default=1,
                   help="streaming also timed with this many threads (0: not), which shows "
                        "whether a shared machine's other processes stall the thread pool")
    p.add_argument("--int8", choices=("fastest",) + INT8_FORMS, default="fastest",
                   help="the int8 of the table: the faster of the two in this run (both are "
                        "timed), or one of them")
    p.add_argument("--representative", type=int, default=200,
                   help="streamed tokens that calibrate full-integer int8")
    p.add_argument("--profile", action="store_true",
                   help="only time the shrunk model's parts (op groups) at batch-1 streaming")
    p.add_argument("--quick", action="store_true",
                   help="tiny models, 2 rounds, one int8 form, float windows only: a smoke test")
    p.add_argument("--out", default="runs/benchmarks/inference_speed.json")
    args = p.parse_args(argv)
    if bool(args.model) != bool(args.shrunk):
        p.error("--model and --shrunk go together")
    if args.quick:
        args.vocab_size, args.embedding_size, args.dense, args.sparse = 300, 32, "32,32", "8,6"
        args.repeats, args.stream_tokens, args.representative = 2, 3, 4
        args.int8 = "int8_full" if args.int8 == "fastest" else args.int8  # one form only
    return args


def load_pair(args):
    if args.model:
        return [keras.saving.load_model(p, compile=False) for p in (args.model, args.shrunk)]
    return [lstm_language_model(args.vocab_size, [int(h) for h in sizes.split(",")],
                                embedding_size=args.embedding_size, streaming=True, seed=0,
                                name=name)
            for sizes, name in ((args.dense, "dense"), (args.sparse, "shrunk"))]


def vocabulary(model):
    return int(model.outputs[0].shape[-1])


def streamed_inputs(model, count, batch=1, steps=1, seed=0):
    """`count` input batches of a streaming LM: random tokens, each with the states Keras
    carried from the batch before (so calibration sees the ranges states really take)."""
    rng, state, batches = np.random.default_rng(seed), zero_states(model, batch), []
    for _ in range(count):
        inputs = [rng.integers(0, vocabulary(model), (batch, steps)).astype("int32")] + state
        batches.append(inputs)
        state = [np.asarray(s) for s in model.predict_on_batch(inputs)[1:]]
    return batches


def keras_stream(model, tokens):
    def run():
        state = zero_states(model, 1)
        for t in range(tokens):
            out = model.predict_on_batch([np.full((1, 1), t % vocabulary(model), "int32")] + state)
            state = list(out[1:])
    return run


def keras_window(model, batch, steps):
    inputs = [np.ones((batch, steps), "int32")] + zero_states(model, batch)
    return lambda: model.predict_on_batch(inputs)


def saved_model_stream(model, tokens, directory):
    """The SavedModel's batch-1 step (verified on export), called as TF Serving would."""
    import tensorflow as tf

    export.export_saved_model(model, directory, batch_size=1, steps=1)
    loaded = tf.saved_model.load(directory)
    names = export.serving_output_names(model)

    def run(loaded=loaded):
        state = [tf.constant(s) for s in zero_states(model, 1)]
        for t in range(tokens):
            out = loaded.serve(tf.constant(np.full((1, 1), t % vocabulary(model), "int32")),
                               *state)
            state = [out[n] for n in names[1:]]
    return run


def tflite_export(model, batch, steps, quantize, representative, directory):
    """An exported (verified) flatbuffer and its report."""
    data = None
    if quantize == "int8_full":
        data = streamed_inputs(model, max(2, representative // (batch * steps)), batch, steps)
    path = os.path.join(directory, f"{model.name}_{quantize}_{batch}x{steps}.tflite")
    report = export.export_tflite(model, path, batch_size=batch, steps=steps, quantize=quantize,
                                  representative_data=data)
    with open(path, "rb") as f:
        return f.read(), report


def tflite_stream(blob, model, tokens, threads):
    """One token per call with carried state; tensor indices resolved once, as a device
    loop would."""
    interp = export.tflite_interpreter(model_content=blob, num_threads=threads)
    runner = interp.get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    feed = [ins[n]["index"] for n in export.input_names(model)]
    fetch = [outs[n]["index"] for n in export.serving_output_names(model)]

    def run():
        state = zero_states(model, 1)
        for t in range(tokens):
            interp.set_tensor(feed[0], np.full((1, 1), t % vocabulary(model), "int32"))
            for index, value in zip(feed[1:], state):
                interp.set_tensor(index, value)
            interp.invoke()
            state = [interp.get_tensor(index) for index in fetch[1:]]
    return run


def tflite_window(blob, model, batch, steps, threads):
    interp = export.tflite_interpreter(model_content=blob, num_threads=threads)
    inputs = [np.ones((batch, steps), "int32")] + zero_states(model, batch)
    names, outputs = export.input_names(model), export.serving_output_names(model)
    return lambda: export.run_tflite(interp, inputs, names, outputs)


def profile(args, small):
    """Batch-1 streaming time of the shrunk model, its model without the softmax layer (the
    embedding lookup and the LSTM steps) and a 1-unit LM (the per-call floor: interpreter,
    copies in and out), float and both int8 forms, with `--threads` and 1 thread."""
    softmax = small.layers[-1]
    parts = {"whole": small,
             "without_softmax": keras.Model(small.inputs, [softmax.input] + small.outputs[1:],
                                            name="without_softmax"),
             "one_unit": lstm_language_model(10, [1], embedding_size=1, streaming=True, seed=0,
                                             name="one_unit")}
    candidates, weights = {}, {}
    with tempfile.TemporaryDirectory(prefix="inference_profile-") as tmp:
        for part, m in parts.items():
            weights[part] = int(sum(np.prod(w.shape) for w in m.weights))
            for quantize in (None,) + INT8_FORMS:
                blob, _ = tflite_export(m, 1, 1, quantize, args.representative, tmp)
                for threads in sorted({args.threads, 1}):
                    candidates[f"{part}_{quantize or 'float'}_{threads}thread"] = tflite_stream(
                        blob, m, args.stream_tokens, threads)
    medians = interleaved_medians(candidates, repeats=args.repeats)
    result = {"run": provenance(), "load": load_average(), "weights": weights,
              "us_per_token": {k: t * 1e6 / args.stream_tokens for k, t in medians.items()}}
    for name, us in result["us_per_token"].items():
        print(f"{name:<36}{us:>10.1f} us/token")
    return result


def main(argv=None):
    args = parse_args(argv)
    before = machine_before()
    if args.profile:
        result = {"load_before": before, **profile(args, load_pair(args)[1])}
        write_text(args.out, json.dumps(result, indent=1))
        return result
    dense, small = load_pair(args)
    models = {"dense": dense, "shrunk": small}
    macs = [sparsity_report(m).totals["macs_per_token"] for m in (dense, small)]
    result = {
        "run": provenance(), "load_before": before,
        "hidden_sizes": {"dense": hidden_sizes(dense), "shrunk": hidden_sizes(small)},
        "macs_per_token": {"dense": macs[0], "shrunk": macs[1]},
        "macs_ratio": macs[0] / macs[1], "repeats": args.repeats,
        "stream_tokens": args.stream_tokens, "tflite_threads": args.threads,
        "exports": {}, "timings": {}, "load_during": {},
    }
    shapes = {"stream": (1, 1), "window": WINDOW}
    blobs = {}
    int8_forms = INT8_FORMS if args.int8 == "fastest" else (args.int8,)
    with tempfile.TemporaryDirectory(prefix="inference_speed-") as tmp:
        for name, m in models.items():
            for quantize in (None,) + int8_forms:
                for shape, (batch, steps) in shapes.items():
                    if args.quick and quantize and shape == "window":
                        continue
                    variant = f"{name}_{quantize or 'float'}"
                    blob, report = tflite_export(m, batch, steps, quantize, args.representative,
                                                 tmp)
                    blobs[(variant, shape)] = blob
                    result["exports"][f"{variant}_{batch}x{steps}"] = {
                        "size_bytes": report.size_bytes, "form": report.form,
                        "max_rel_diff_vs_keras": report.max_rel_diff}
        stream = {variant: tflite_stream(blob, models[variant.split("_")[0]],
                                         args.stream_tokens, args.threads)
                  for (variant, shape), blob in blobs.items() if shape == "stream"}
        window = {variant: tflite_window(blob, models[variant.split("_")[0]], *WINDOW,
                                         args.threads)
                  for (variant, shape), blob in blobs.items() if shape == "window"}
        workloads = {
            "tflite_batch1_stream": stream,
            **({f"tflite_batch1_stream_{args.also_threads}thread": {
                variant: tflite_stream(blob, models[variant.split("_")[0]], args.stream_tokens,
                                       args.also_threads)
                for (variant, shape), blob in blobs.items() if shape == "stream"}}
               if args.also_threads else {}),
            f"tflite_batch{WINDOW[0]}_steps{WINDOW[1]}": window,
            "saved_model_batch1_stream": {
                f"{n}_float": saved_model_stream(m, args.stream_tokens, os.path.join(tmp, n))
                for n, m in models.items()},
            "keras_batch1_stream": {f"{n}_float": keras_stream(m, args.stream_tokens)
                                    for n, m in models.items()},
            f"keras_batch{WINDOW[0]}_steps{WINDOW[1]}": {
                f"{n}_float": keras_window(m, *WINDOW) for n, m in models.items()},
        }
        for workload, candidates in workloads.items():
            medians = interleaved_medians(candidates, repeats=args.repeats)
            per = args.stream_tokens if "stream" in workload else 1
            result["timings"][workload] = {
                "unit": "ms per token" if per > 1 else "ms per call",
                "ms": {v: t * 1e3 / per for v, t in medians.items()},
                "vs_dense_float": {v: medians["dense_float"] / t for v, t in medians.items()}}
            result["load_during"][workload] = load_average()["load"]
    result["load_after"] = load_average()
    result["shared"] = was_shared(before)
    stream_ms = result["timings"]["tflite_batch1_stream"]["ms"]
    result["int8"] = (min(int8_forms, key=lambda q: stream_ms[f"shrunk_{q}"])
                      if args.int8 == "fastest" else args.int8)
    result["int8_chosen_by"] = ("the faster shrunk int8 at TFLite batch-1 streaming in this run"
                                if args.int8 == "fastest" else "--int8")
    tflite = {w: t["vs_dense_float"] for w, t in result["timings"].items()
              if w.startswith("tflite")}
    result["goals"] = {
        "shrunk_int8_tflite_batch1_stream_vs_dense_float": {
            "got": tflite["tflite_batch1_stream"][f"shrunk_{result['int8']}"], "goal": 100.0},
        "shrunk_float_every_tflite_path_vs_dense_float": {
            "got": min(t["shrunk_float"] for t in tflite.values()), "goal": result["macs_ratio"]}}
    for goal in result["goals"].values():
        goal["met"] = goal["got"] >= goal["goal"]
    print(f"hidden {result['hidden_sizes']['dense']} -> {result['hidden_sizes']['shrunk']}, "
          f"multiply-adds {macs[0]:,} -> {macs[1]:,} per token "
          f"({result['macs_ratio']:.2f}x fewer); "
          f"load {before['load']} -> {result['load_after']['load']}")
    for workload, t in result["timings"].items():
        print(f"{workload} ({t['unit']}, median of {args.repeats}):")
        for variant, ms in t["ms"].items():
            print(f"  {variant:<20}{ms:>12.3f}{t['vs_dense_float'][variant]:>9.2f}x")
    for name, goal in result["goals"].items():
        print(f"goal {name}: {goal['got']:.2f} (>= {goal['goal']:.2f}: "
              f"{'met' if goal['met'] else 'NOT met'})")
    write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
