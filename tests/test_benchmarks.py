"""Smoke tests of the benchmark scripts (--quick): they run and write JSON; never timed."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_enforcement_modes_quick_writes_summary(tmp_path, ptb_dir):
    out = tmp_path / "modes"
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "enforcement_modes.py"),
                    f"--data_dir={ptb_dir}", f"--out={out}", "--quick"], check=True, timeout=600,
                   capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    for mode in ("threshold", "proximal"):
        assert summary[mode]["valid_perplexity_shrunk"] > 1
        assert len(summary[mode]["hidden_after"]) == 2


def run_benchmark(script, tmp_path, *flags):
    out = tmp_path / f"{script}.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", f"{script}.py"),
                           "--quick", f"--out={out}", *flags], timeout=600, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_inference_speed_quick_writes_side_by_side_timings(tmp_path):
    result = run_benchmark("inference_speed", tmp_path)
    assert result["hidden_sizes"] == {"dense": [32, 32], "shrunk": [8, 6]}
    assert result["macs_ratio"] > 1
    timings = result["timings"]
    assert set(timings) == {"keras_batch1_stream", "keras_batch10_steps30",
                            "saved_model_batch1_stream", "tflite_batch1_stream",
                            "tflite_batch1_stream_1thread",
                            "tflite_batch10_steps30"}
    variants = {"dense_float", "dense_int8_full", "shrunk_float", "shrunk_int8_full"}
    assert set(timings["tflite_batch1_stream"]["ms"]) == variants
    assert set(timings["keras_batch1_stream"]["ms"]) == {"dense_float", "shrunk_float"}
    for t in timings.values():
        assert all(ms > 0 for ms in t["ms"].values())
        for variant, ms in t["ms"].items():  # each ratio is dense float's time over its own
            assert t["vs_dense_float"][variant] == pytest.approx(t["ms"]["dense_float"] / ms)
    exports = result["exports"]
    assert exports["shrunk_int8_full_1x1"]["form"] == "unrolled"
    assert exports["shrunk_float_10x30"]["form"] == "while"
    assert set(result["goals"]) == {"shrunk_int8_tflite_batch1_stream_vs_dense_float",
                                    "shrunk_float_every_tflite_path_vs_dense_float"}
    assert isinstance(result["shared"], bool) and len(result["load_before"]["load"]) == 3


@pytest.mark.slow
def test_equal_size_speed_quick_times_each_deployed_shape(tmp_path):
    result = run_benchmark("equal_size_speed", tmp_path)
    models = result["models"]
    assert set(models) == {"dense", "units_8_6", "zeroed_0p5"}
    dense, small, zeroed = models["dense"], models["units_8_6"], models["zeroed_0p5"]
    assert small["hidden"] == [8, 6] and small["macs_per_token"] < dense["macs_per_token"]
    # Zeros in dense kernels change neither the shapes nor the multiply-adds, only the count
    # of nonzero weights: half of every pruned weight (embedding, kernels, softmax kernel).
    assert zeroed["weights"] == dense["weights"] and zeroed["macs_per_token"] == \
        dense["macs_per_token"]
    biases = 4 * 32 * 2 + 300
    pruned = dense["weights"] - biases
    assert zeroed["nonzero_weights"] == pytest.approx(dense["nonzero_weights"] - pruned / 2,
                                                      abs=2)
    for entry in models.values():
        t = entry["ms_per_token"]
        assert 0 < t["min"] <= t["median"] <= t["max"]
        assert entry["speedup_vs_dense"] == pytest.approx(dense["ms_per_token"]["median"]
                                                          / t["median"])
        assert entry["max_rel_diff_vs_keras"] < 1e-3


@pytest.mark.slow
def test_bidaf_step_quick_trains_both_variants_on_the_same_questions(tmp_path):
    result = run_benchmark("bidaf_step", tmp_path)
    (model,) = result["models"]
    previous, fast = model["previous"], model["fast"]
    assert model["hidden_size"] == 4 and model["train_questions"] == 8
    # The same questions, batched two ways: buckets and 30-token questions pad more.
    assert previous["context_padding"] > fast["context_padding"] >= 1.0
    for key in ("train_questions_per_second", "eval_questions_per_second"):
        assert model[f"{key}_speedup"] == pytest.approx(fast[key] / previous[key])
        assert previous[key] > 0 and fast[key] > 0
    assert set(result["goals"]) == {"train_speedup_d4"}


@pytest.mark.slow
def test_train_overhead_quick_reports_ratios(tmp_path):
    result = run_benchmark("train_overhead", tmp_path)
    assert set(result["tokens_per_second"]) >= {"plain", "iss_penalty", "iss_full"}
    for name, rounds in result["tokens_per_second_rounds"].items():  # how stable the rounds were
        assert rounds["min"] <= result["tokens_per_second"][name] <= rounds["max"]
    for clock in ("wall", "cpu"):
        ratio = result["round_ratio_vs_plain"][clock]["iss_full"]
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    assert len(result["machine"]["load_average_before"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_data_parallel_quick_measures_both_paths(tmp_path, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    out = tmp_path / "data_parallel.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    env.pop("ISS_KERAS_CPU_DEVICES", None)  # the script makes its virtual devices itself
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "data_parallel.py"),
                           "--quick", f"--out={out}"], timeout=600, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["machine"]["devices"] == ["cpu:0", "cpu:1"]
    assert set(result["tokens_per_second"]) == {"one_device", "data_parallel"}
    assert result["data_parallel_step_time_vs_one_device"] > 0
