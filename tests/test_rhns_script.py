"""rhns/train.py end to end on the shared training library, and its model-flag errors."""

import json
import os

import pytest

from helpers import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "rhns", "configs", "tiny_test.flags")


def run_trainer(*flags, **kwargs):
    return run_script("rhns/train.py", *flags, **kwargs)


@pytest.mark.slow
def test_tiny_rhn_end_to_end(tmp_path, ptb_dir):
    workdir = str(tmp_path / "run")
    out = run_trainer(f"--flagfile={TINY}", f"--data_dir={ptb_dir}", f"--workdir={workdir}")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["hidden_before"] == [12] and results["hidden_after"][0] < 12
    sparse, small = results["test_perplexity_sparse"], results["test_perplexity_shrunk"]
    assert abs(small - sparse) <= 1e-3 * sparse
    assert results["export"]["tflite"]["max_rel_diff"] <= 1e-4
    assert os.path.exists(os.path.join(workdir, "plots", "weights_rhn.png"))


@pytest.mark.parametrize("flag,message", [("--depth=0", "depth"), ("--hidden_dropout=1.5", "hidden_dropout")])
def test_bad_rhn_flags_are_named(tmp_path, ptb_dir, flag, message):
    out = run_trainer(f"--flagfile={TINY}", f"--data_dir={ptb_dir}", f"--workdir={tmp_path / 'r'}",
                      flag, timeout=120)
    assert out.returncode != 0 and message in out.stderr
