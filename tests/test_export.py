"""SavedModel and TFLite export: equal outputs, builtin ops only, atomic writes."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import iss_keras
from iss_keras import export as export_lib


def streaming_lm(vocab=300, hidden=48):
    """Tokens plus carried LSTM state in, logits plus new state out."""
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    h0, c0 = keras.Input((hidden,), name="h0"), keras.Input((hidden,), name="c0")
    x = keras.layers.Embedding(vocab, hidden)(tokens)
    y, h, c = keras.layers.LSTM(hidden, return_sequences=True, return_state=True)(
        x, initial_state=[h0, c0])
    return keras.Model([tokens, h0, c0], [keras.layers.Dense(vocab)(y), h, c])


def sequence_lm(vocab=300, hidden=48):
    return keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(vocab, hidden),
                             keras.layers.LSTM(hidden, return_sequences=True),
                             keras.layers.LSTM(hidden, return_sequences=True),
                             keras.layers.Dense(vocab)])


def leftovers(directory):
    return [n for n in os.listdir(directory) if n.startswith(".")]


def test_saved_model_reloads_in_a_fresh_process_with_equal_outputs(tmp_path):
    model = sequence_lm()
    report = iss_keras.export_saved_model(model, str(tmp_path / "sm"))
    assert report.max_rel_diff <= 1e-5 and report.size_bytes > 0
    assert report.input_shapes == [[None, None]]
    rng = np.random.default_rng(1)
    cases = {f"x{b}_{t}": rng.integers(0, 300, (b, t)).astype("int32") for b, t in ((1, 5), (4, 13))}
    np.savez(tmp_path / "inputs.npz", **cases)
    np.savez(tmp_path / "expected.npz", **{k: keras.ops.convert_to_numpy(model(v)) for k, v in cases.items()})
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / 'sm')!r})
        inputs, expected = np.load({str(tmp_path / 'inputs.npz')!r}), np.load({str(tmp_path / 'expected.npz')!r})
        for k in inputs.files:
            got = loaded.serve(tf.constant(inputs[k]))["output_0"].numpy()
            assert got.shape == expected[k].shape, (k, got.shape)
            print(k, float(np.abs(got - expected[k]).max()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    diffs = [float(line.split()[1]) for line in out.stdout.strip().splitlines()]
    assert len(diffs) == 2 and max(diffs) <= 1e-5


def test_saved_model_with_static_signature_and_states(tmp_path):
    model = streaming_lm()
    report = iss_keras.export_saved_model(model, str(tmp_path / "sm"), batch_size=1, steps=1)
    assert report.input_shapes == [[1, 1], [1, 48], [1, 48]]
    assert report.max_abs_diff <= 1e-5


def test_outputs_are_named_beside_the_named_inputs(tmp_path):
    import tensorflow as tf

    model = streaming_lm()
    names = ["logits", "h0", "c0"]
    iss_keras.export_saved_model(model, str(tmp_path / "sm"), output_names=names)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    signature = loaded.signatures["serve"]
    assert sorted(signature.structured_outputs) == sorted(names)
    assert sorted(signature.structured_input_signature[1]) == ["c0", "h0", "tokens"]
    iss_keras.export_tflite(model, str(tmp_path / "m.tflite"), steps=1, output_names=names)
    runner = export_lib.tflite_interpreter(model_path=str(tmp_path / "m.tflite"))
    assert sorted(runner.get_signature_list()["serving_default"]["outputs"]) == sorted(names)
    # Without names: the model's output names, made unique.
    assert export_lib.serving_output_names(model) == ["dense", "lstm", "lstm_1"]
    with pytest.raises(ValueError, match="3 distinct names"):
        export_lib.serving_output_names(model, ["logits", "h", "h"])


def test_a_file_in_the_way_of_a_saved_model_is_not_replaced(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("precious")
    with pytest.raises(FileExistsError, match="not a SavedModel"):
        iss_keras.export_saved_model(sequence_lm(), str(target))
    assert target.read_text() == "precious"
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a SavedModel"):
        iss_keras.export_saved_model(sequence_lm(), str(other))
    assert (other / "a.jpg").exists()


def test_tflite_builtin_ops_only_and_equal_outputs(tmp_path):
    """One token per call: straight-line steps (no WHILE loop), equal to Keras within 1e-4."""
    model = streaming_lm()
    report = iss_keras.export_tflite(model, str(tmp_path / "m.tflite"), batch_size=1, steps=1)
    assert os.path.getsize(tmp_path / "m.tflite") == report.size_bytes
    assert report.form == "unrolled" and "WHILE" not in report.ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in report.ops)
    assert report.max_rel_diff <= export_lib.DEFAULT_TOLERANCES[None]
    assert not model.layers[-2].unroll  # only the exported trace was unrolled
    # Carried state: two one-token calls equal one two-token Keras call.
    interp = export_lib.tflite_interpreter(model_path=str(tmp_path / "m.tflite"))
    names = export_lib.input_names(model)
    tokens = np.array([[7, 123]], dtype="int32")
    state = [np.zeros((1, 48), "float32")] * 2
    for t in range(2):
        logits, h, c = export_lib.run_tflite(interp, [tokens[:, t:t + 1]] + state, names,
                                             export_lib.serving_output_names(model))
        state = [h, c]
    expected = keras.ops.convert_to_numpy(model([tokens] + [np.zeros((1, 48), "float32")] * 2)[0])
    np.testing.assert_allclose(logits[0, 0], expected[0, 1], atol=1e-4)


def token_windows(count, steps=10, vocab=500, seed=0):
    """Representative batches for a one-input LM: `count` windows of shape (1, steps)."""
    return np.random.default_rng(seed).integers(0, vocab, (count, 1, steps)).astype("int32")


# int8_full is unrolled: its ten steps' ops and scales add to the int8 weights.
@pytest.mark.parametrize("quantize,shrink_to", [("int8", 0.35), ("float16", 0.6),
                                                ("int8_full", 0.5)])
def test_quantized_tflite_is_smaller_and_within_stated_tolerance(tmp_path, quantize, shrink_to):
    keras.utils.set_random_seed(0)
    model = sequence_lm(vocab=500, hidden=64)
    full = iss_keras.export_tflite(model, str(tmp_path / "f.tflite"), steps=10)
    assert full.form == "while" and "WHILE" in full.ops  # windows keep Keras 3's loop
    data = token_windows(20) if quantize == "int8_full" else None
    small = iss_keras.export_tflite(model, str(tmp_path / "q.tflite"), steps=10, quantize=quantize,
                                    representative_data=data)
    assert small.size_bytes < shrink_to * full.size_bytes
    assert 0 < small.max_rel_diff <= export_lib.DEFAULT_TOLERANCES[quantize]
    assert small.max_rel_diff > full.max_rel_diff


def test_full_integer_streaming_export_is_within_its_tolerance(tmp_path):
    """int8 weights and activations, calibrated on states the model really carries."""
    keras.utils.set_random_seed(0)
    model = streaming_lm()
    rng, state, data = np.random.default_rng(0), [np.zeros((1, 48), "float32")] * 2, []
    for _ in range(40):
        batch = [rng.integers(0, 300, (1, 1)).astype("int32")] + state
        data.append(batch)
        state = [keras.ops.convert_to_numpy(s) for s in model(batch)[1:]]
    report = iss_keras.export_tflite(model, str(tmp_path / "q.tflite"), steps=1,
                                     quantize="int8_full", representative_data=iter(data))
    assert report.form == "unrolled" and "WHILE" not in report.ops
    assert 0 < report.max_rel_diff <= export_lib.DEFAULT_TOLERANCES["int8_full"]


@pytest.mark.parametrize("data,message", [
    (None, "needs representative_data"),
    ([], "representative_data is empty"),
    (token_windows(3, steps=7), r"batch 0: input .* has shape \[1, 7\]; the export's signature "
                                r"is \[1, 10\]"),
    ([[np.zeros((1, 10), "int32")] * 2], "has 2 inputs"),
])
def test_bad_representative_data_is_named_and_nothing_is_written(tmp_path, data, message):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError, match=message) as error:
        iss_keras.export_tflite(sequence_lm(vocab=500), str(target), steps=10,
                                quantize="int8_full", representative_data=data)
    assert "steps=" in str(error.value)  # the fix: batches with the export's shapes
    assert target.read_bytes() == b"previous" and leftovers(tmp_path) == []


def test_representative_data_without_full_integer_is_refused(tmp_path):
    with pytest.raises(ValueError, match="int8_full' only.*quantize='int8'"):
        iss_keras.export_tflite(sequence_lm(vocab=500), str(tmp_path / "m.tflite"), steps=10,
                                quantize="int8", representative_data=token_windows(2))


def test_tflite_needs_a_static_time_axis(tmp_path):
    with pytest.raises(ValueError, match="static input shape.*steps="):
        iss_keras.export_tflite(sequence_lm(), str(tmp_path / "m.tflite"))


def test_bad_quantization_is_named(tmp_path):
    with pytest.raises(ValueError, match="quantize='int4'"):
        iss_keras.export_tflite(sequence_lm(), str(tmp_path / "m.tflite"), steps=3, quantize="int4")


@pytest.mark.parametrize("steps", [4, 1])  # the WHILE form and the unrolled one
def test_failed_verification_keeps_the_previous_export(tmp_path, steps):
    model = sequence_lm()
    target = tmp_path / "m.tflite"
    iss_keras.export_tflite(model, str(target), steps=steps)
    before = target.read_bytes()
    model.layers[-1].kernel.assign(model.layers[-1].kernel + 1.0)  # a different model
    with pytest.raises(iss_keras.ExportVerificationError, match="tolerance"):
        iss_keras.export_tflite(model, str(target), steps=steps, tolerance=-1.0)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_interrupted_saved_model_export_keeps_the_previous_one(tmp_path, monkeypatch):
    model = sequence_lm()
    target = tmp_path / "sm"
    iss_keras.export_saved_model(model, str(target))
    files_before = sorted(os.listdir(target))
    pb_before = (target / "saved_model.pb").read_bytes()

    def interrupted(path, **kwargs):
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    real_archive = export_lib._archive

    def archive_interrupted_while_writing(*args, **kwargs):
        archive = real_archive(*args, **kwargs)
        archive.write_out = interrupted
        return archive

    monkeypatch.setattr(export_lib, "_archive", archive_interrupted_while_writing)
    with pytest.raises(KeyboardInterrupt):
        iss_keras.export_saved_model(model, str(target))
    assert sorted(os.listdir(target)) == files_before
    assert (target / "saved_model.pb").read_bytes() == pb_before
    assert leftovers(tmp_path) == []


def test_export_under_another_backend_says_how(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        iss_keras.export_saved_model(sequence_lm(), "unused")


def test_missing_export_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if not installed
    with pytest.raises(ImportError, match=r"iss_keras\[export\]"):
        export_lib.tflite_interpreter(model_content=b"")


def test_running_a_tflite_model_prints_no_cpp_messages(tmp_path):
    """LiteRT announces its XNNPACK delegate from C++ on stderr; `make demo` stays quiet."""
    path = tmp_path / "m.tflite"
    iss_keras.export_tflite(streaming_lm(), str(path), batch_size=1, steps=1)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    script = ("from iss_keras.startup import start_backend_quietly; start_backend_quietly(); "
              "from iss_keras import export; "
              f"i = export.tflite_interpreter(model_path={str(path)!r}); print(len(i.get_signature_list()))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    assert "XNNPACK" not in out.stderr and "INFO:" not in out.stderr, out.stderr
