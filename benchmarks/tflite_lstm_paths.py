"""Which TFLite form of an LSTM LM is faster: WHILE loop, unrolled steps or the fused op?

Windows (default): a Keras 3 LSTM converts to a WHILE loop of builtin ops; the
same weights in a `tf_keras` (Keras 2) LSTM convert to the fused
UNIDIRECTIONAL_SEQUENCE_LSTM op. Both are run in `ai_edge_litert` (default
XNNPACK delegate), interleaved, and compared with Keras. Needs
`pip install tf_keras` (not a dependency of iss_keras).

Streaming (`--streaming`): one token per call with carried state, the per-token
time of a streaming LM exported as a WHILE loop and as unrolled straight-line
steps (`export.convert_to_tflite(form=...)`), each checked against Keras; a
1-unit model shows the per-token overhead of each form.

    python benchmarks/tflite_lstm_paths.py --hidden=1500 --batch=1 --steps=30
    python benchmarks/tflite_lstm_paths.py --streaming --hidden=1 --vocab_size=10
    python benchmarks/tflite_lstm_paths.py --streaming --hidden=373,315 --embedding_size=1500
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from iss_keras import export  # noqa: E402
from iss_keras.timing import interleaved_medians  # noqa: E402
from iss_keras.files import write_text  # noqa: E402


def streaming_forms(args):
    """Per-token time of the WHILE and the unrolled export of a streaming LM (1 x 1 calls)."""
    from inference_speed import tflite_stream  # the benchmarks' one streaming loop

    from iss_keras.keras_internals import outputs_from_zero_state
    from iss_keras.models.lstm_lm import lstm_language_model
    from iss_keras.rebuild import output_difference
    from iss_keras.tasks.language_model import zero_states

    sizes = [int(h) for h in str(args.hidden).split(",")]
    model = lstm_language_model(args.vocab_size, sizes, embedding_size=args.embedding_size,
                                streaming=True, seed=0)
    inputs = [np.array([[1]], "int32")] + [s + 0.1 for s in zero_states(model, 1)]
    expected = outputs_from_zero_state(model, inputs)
    result = {"shape": {"vocab": args.vocab_size, "hidden": sizes, "batch": 1, "steps": 1},
              "threads": args.threads, "paths": {}}
    candidates = {}
    for form in ("while", "unrolled"):
        blob, _ = export.convert_to_tflite(model, 1, 1, form=form)
        got = export.run_tflite(export.tflite_interpreter(model_content=blob), inputs,
                                export.input_names(model), export.serving_output_names(model))
        result["paths"][form] = {
            "ops": export.tflite_ops(blob), "size_bytes": len(blob),
            "max_rel_diff": max(output_difference(e, g)[1] for e, g in zip(expected, got))}
        candidates[form] = tflite_stream(blob, model, args.tokens, args.threads)
    medians = interleaved_medians(candidates, repeats=args.repeats)
    for form, seconds in medians.items():
        result["paths"][form]["us_per_token"] = seconds * 1e6 / args.tokens
    result["while_over_unrolled_time"] = medians["while"] / medians["unrolled"]
    for name, r in result["paths"].items():
        print(f"{name:<9} {r['us_per_token']:9.1f} us/token  max rel diff {r['max_rel_diff']:.2g}  "
              f"ops {r['ops']}")
    print(f"while / unrolled time: {result['while_over_unrolled_time']:.2f}")
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab_size", type=int, default=10000)
    p.add_argument("--hidden", default="1500",
                   help="units of each of the 2 layers (windows); comma-separated layer sizes "
                        "(--streaming)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--streaming", action="store_true", help="one token per call: WHILE vs unrolled")
    p.add_argument("--embedding_size", type=int, default=None,
                   help="--streaming: word vector width")
    p.add_argument("--tokens", type=int, default=30, help="--streaming: tokens per timed round")
    p.add_argument("--threads", type=int, default=2, help="--streaming: interpreter threads")
    p.add_argument("--out", default="runs/benchmarks/tflite_lstm_paths.json")
    args = p.parse_args(argv)
    if args.streaming:
        result = streaming_forms(args)
        write_text(args.out, json.dumps(result, indent=1))
        return result
    args.hidden = int(args.hidden)
    try:
        import tensorflow as tf
        import tf_keras
    except ImportError:
        sys.exit("This benchmark needs tf_keras: pip install tf_keras")

    v, h, b, t = args.vocab_size, args.hidden, args.batch, args.steps
    model = keras.Sequential([keras.Input((t,), batch_size=b, dtype="int32"),
                              keras.layers.Embedding(v, h),
                              keras.layers.LSTM(h, return_sequences=True),
                              keras.layers.LSTM(h, return_sequences=True), keras.layers.Dense(v)])
    twin = tf_keras.Sequential([tf_keras.Input((t,), batch_size=b, dtype="int32"),
                                tf_keras.layers.Embedding(v, h),
                                tf_keras.layers.LSTM(h, return_sequences=True),
                                tf_keras.layers.LSTM(h, return_sequences=True),
                                tf_keras.layers.Dense(v)])
    twin.set_weights(model.get_weights())
    while_blob, _ = export.convert_to_tflite(model, batch_size=b, steps=t)
    fused_blob = tf.lite.TFLiteConverter.from_keras_model(twin).convert()
    x = np.random.default_rng(0).integers(0, v, (b, t)).astype("int32")
    expected = keras.ops.convert_to_numpy(model(x))
    result = {"shape": {"vocab": v, "hidden": [h, h], "batch": b, "steps": t}, "paths": {}}
    candidates = {}
    for name, blob in (("while", while_blob), ("fused", fused_blob)):
        interp = export.tflite_interpreter(model_content=blob)
        runner = interp.get_signature_runner()
        key = runner.get_input_details()
        feed = {next(iter(key)): x}
        got = list(runner(**feed).values())[0]
        result["paths"][name] = {"ops": export.tflite_ops(blob),
                                 "max_abs_diff": float(np.abs(got - expected).max())}
        candidates[name] = (lambda r=runner, f=feed: r(**f))
    medians = interleaved_medians(candidates, repeats=args.repeats)
    for name in medians:
        result["paths"][name]["median_ms"] = medians[name] * 1e3
    result["fused_over_while_time"] = medians["fused"] / medians["while"]
    for name, r in result["paths"].items():
        print(f"{name:<6} {r['median_ms']:9.3f} ms  max|diff| {r['max_abs_diff']:.2g}  ops {r['ops']}")
    print(f"fused / while time: {result['fused_over_while_time']:.2f}")
    write_text(args.out, json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
