"""ptb/train.py end to end (train -> shrink -> export), on 2 data-parallel replicas and resumed on
one device, and its errors, as a user runs it."""

import json
import os
import re

import pytest

from helpers import read_trainer_options, run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "ptb", "configs", "tiny_test.flags")
TINY_WGN = os.path.join(ROOT, "ptb", "configs", "tiny_word_wgn.flags")


def run_trainer(*flags, **kwargs):
    return run_script("ptb/train.py", *flags, **kwargs)


@pytest.mark.slow
def test_tiny_config_end_to_end_on_two_replicas_then_resume_on_one_device(tmp_path, ptb_dir):
    """Trains data parallel on 2 virtual CPU devices (TensorFlow), exports, then resumes on one."""
    workdir = str(tmp_path / "run")
    out = run_trainer(f"--flagfile={TINY}", f"--data_dir={ptb_dir}", f"--workdir={workdir}",
                      "--distribution=data_parallel", "--devices=2", devices=2)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "data parallel over 2 replicas" in out.stdout
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["run"]["distribution"]["replicas"] == 2
    assert results["run"]["distribution"]["engine"] == "tensorflow"
    assert results["epochs"] == 2
    assert results["hidden_before"] == [16, 12]
    assert sum(results["hidden_after"]) < 28, "ISS removed no unit"
    sparse, small = results["test_perplexity_sparse"], results["test_perplexity_shrunk"]
    assert abs(small - sparse) <= 1e-3 * sparse and 1 < sparse < 200
    tflite = results["export"]["tflite"]
    assert os.path.getsize(tflite["path"]) == tflite["size_bytes"] and tflite["max_rel_diff"] <= 1e-4
    assert os.path.exists(os.path.join(workdir, "export", "saved_model", "saved_model.pb"))
    for name in ("metrics.csv", "history.json", "checkpoint.npz", "plan.json", "shrunk.keras",
                 "plots/progress.png", "plots/weights_lstm_0.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert len(open(os.path.join(workdir, "metrics.csv")).read().strip().splitlines()) == 3
    assert "test perplexity" in out.stdout

    # The saved flagfile replays the run; with one more epoch it resumes after epoch 2, and the
    # checkpoint of 2 replicas resumes on 1 device.
    flagfile = os.path.join(workdir, "flags.txt")
    assert f"--workdir={workdir}" in open(flagfile).read()
    again = run_trainer(f"--flagfile={flagfile}", "--epochs=3", "--noexport",
                        "--distribution=none")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from" in again.stdout and "after epoch 2" in again.stdout
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert [row["epoch"] for row in history] == [1, 2, 3]


@pytest.mark.slow
def test_word_level_sparse_vd_lm_end_to_end_then_resume(tmp_path, ptb_dir):
    """Lobacheva et al.'s word LM (one-hot input, W+G+N): train, fold, compress, verify, export."""
    workdir = str(tmp_path / "run")
    out = run_trainer(f"--flagfile={TINY_WGN}", f"--data_dir={ptb_dir}", f"--workdir={workdir}")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.load(open(os.path.join(workdir, "results.json")))
    sparse, small = results["test_perplexity_sparse"], results["test_perplexity_shrunk"]
    assert abs(small - sparse) <= 1e-3 * sparse and 1 < sparse < 200
    g = results["gate_neuron"]
    assert g["nonzero_weights"] < g["weights"] and g["macs_per_token_after"] < g["macs_per_token"]
    gates = g["layers"]["lstm_0"]["nonconstant_gates"]
    assert sum(gates.values()) < 4 * 16, "no gate became constant"
    assert results["export"]["tflite"]["max_rel_diff"] <= 1e-4
    assert os.path.exists(os.path.join(workdir, "plots", "gates_lstm_0.png"))
    again = run_trainer(f"--flagfile={os.path.join(workdir, 'flags.txt')}", "--epochs=3",
                        "--noexport")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "after epoch 2" in again.stdout
    assert [row["epoch"] for row in json.load(open(os.path.join(workdir, "history.json")))] == [
        1, 2, 3]


@pytest.mark.slow
def test_train_under_jax_then_export_under_tensorflow(tmp_path, ptb_dir):
    """The GPU-machine workflow: train where there is no TensorFlow, export afterwards."""
    pytest.importorskip("jax")
    workdir = str(tmp_path / "run")
    out = run_trainer(f"--flagfile={TINY}", f"--data_dir={ptb_dir}", f"--workdir={workdir}",
                      backend="jax")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Export skipped" in out.stdout
    assert "skipped" in json.load(open(os.path.join(workdir, "results.json")))["export"]
    again = run_trainer(f"--flagfile={os.path.join(workdir, 'flags.txt')}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "after epoch 2" in again.stdout
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["backend"] == "tensorflow" and results["export"]["tflite"]["max_rel_diff"] <= 1e-4


@pytest.mark.parametrize("flag,message", [
    ("--hidden_sizes=0,4", "hidden_sizes"),
    ("--lr_schedule=cosine", "lr_schedule"),
    ("--steps=0", "steps must be >= 1"),
    ("--quantize=int4", "quantize"),
    ("--loss_units=sum", "loss_units"),
])
def test_bad_flags_are_named(tmp_path, ptb_dir, flag, message):
    """Read in this process, as the trainer reads them (test_a_bad_flag_reaches_the_user: the
    message is what the user sees)."""
    good = [f"--flagfile={TINY}", f"--data_dir={ptb_dir}", f"--workdir={tmp_path / 'run'}"]
    read_trainer_options("ptb/train.py", *good)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_trainer_options("ptb/train.py", *good, flag)


def test_a_bad_flag_reaches_the_user(tmp_path, ptb_dir):
    out = run_trainer(f"--flagfile={TINY}", f"--data_dir={ptb_dir}",
                      f"--workdir={tmp_path / 'run'}", "--steps=0", timeout=120)
    assert out.returncode != 0
    assert "steps must be >= 1" in out.stderr


def test_bad_data_directory_names_the_files(tmp_path):
    out = run_trainer(f"--flagfile={TINY}", f"--data_dir={tmp_path}", f"--workdir={tmp_path / 'run'}",
                      timeout=120)
    assert out.returncode != 0
    assert "ptb.train.txt" in out.stderr and "--download" in out.stderr
