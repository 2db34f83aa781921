"""rhns/train.py end to end on the shared training library (data parallel under JAX, resumed and
exported on one device under TensorFlow), and its model-flag errors."""

import json
import os
import re

import pytest

from helpers import read_trainer_options, run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "rhns", "configs", "tiny_test.flags")


def run_trainer(*flags, **kwargs):
    return run_script("rhns/train.py", *flags, **kwargs)


@pytest.mark.slow
def test_tiny_rhn_end_to_end_on_two_jax_replicas_then_exported_on_one_device(tmp_path, ptb_dir):
    pytest.importorskip("jax")
    workdir = str(tmp_path / "run")
    out = run_trainer(f"--flagfile={TINY}", f"--data_dir={ptb_dir}", f"--workdir={workdir}",
                      "--noexport", "--distribution=data_parallel", "--devices=2", backend="jax",
                      devices=2)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "data parallel over 2 replicas" in out.stdout
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["run"]["distribution"]["replicas"] == 2
    assert results["run"]["distribution"]["engine"] == "jax"
    assert results["hidden_before"] == [12] and results["hidden_after"][0] < 12
    sparse, small = results["test_perplexity_sparse"], results["test_perplexity_shrunk"]
    assert abs(small - sparse) <= 1e-3 * sparse
    assert os.path.exists(os.path.join(workdir, "plots", "weights_rhn.png"))
    # The checkpoint of 2 replicas resumes on 1 device (and another backend), and exports.
    again = run_trainer(f"--flagfile={os.path.join(workdir, 'flags.txt')}", "--epochs=3",
                        "--export", "--distribution=none")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "after epoch 2" in again.stdout
    assert [r["epoch"] for r in json.load(open(os.path.join(workdir, "history.json")))] == [1, 2, 3]
    results = json.load(open(os.path.join(workdir, "results.json")))
    sparse, small = results["test_perplexity_sparse"], results["test_perplexity_shrunk"]
    assert abs(small - sparse) <= 1e-3 * sparse
    assert results["export"]["tflite"]["max_rel_diff"] <= 1e-4


@pytest.mark.parametrize("flag,message", [("--depth=0", "depth"), ("--hidden_dropout=1.5", "hidden_dropout")])
def test_bad_rhn_flags_are_named(tmp_path, ptb_dir, flag, message):
    """Read in this process, as the trainer reads them (the next test: the user sees it)."""
    good = [f"--flagfile={TINY}", f"--data_dir={ptb_dir}", f"--workdir={tmp_path / 'r'}"]
    read_trainer_options("rhns/train.py", *good)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_trainer_options("rhns/train.py", *good, flag)


def test_a_bad_rhn_flag_reaches_the_user(tmp_path, ptb_dir):
    out = run_trainer(f"--flagfile={TINY}", f"--data_dir={ptb_dir}", f"--workdir={tmp_path / 'r'}",
                      "--depth=0", timeout=120)
    assert out.returncode != 0 and "depth" in out.stderr
