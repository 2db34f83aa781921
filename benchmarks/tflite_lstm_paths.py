"""Which TFLite form of an LSTM LM is faster: Keras 3's WHILE loop or the fused op?

A Keras 3 LSTM converts to a WHILE loop of builtin ops; the same weights in a
`tf_keras` (Keras 2) LSTM convert to the fused UNIDIRECTIONAL_SEQUENCE_LSTM op.
Both are run in `ai_edge_litert` (default XNNPACK delegate), interleaved, and
compared with Keras. Needs `pip install tf_keras` (not a dependency of iss_keras).

    python benchmarks/tflite_lstm_paths.py --hidden=1500 --batch=1 --steps=30
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab_size", type=int, default=10000)
    p.add_argument("--hidden", type=int, default=1500)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default="runs/benchmarks/tflite_lstm_paths.json")
    args = p.parse_args(argv)
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
