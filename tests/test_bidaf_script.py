"""bidaf/train.py end to end (train -> shrink -> verify) on the dev-article split, data parallel
under JAX with moving averages; its resume on one device under TensorFlow, with the export; and
its errors, as a user runs it."""

import json
import os

import pytest

from conftest import SHARED_DATA, shared_file
from helpers import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "bidaf", "configs", "tiny_test.flags")


def data_flags():
    return [f"--squad_dev={shared_file('squad', 'dev-v1.1.json')}",
            f"--glove={shared_file('glove', 'glove.6B.50d.top50000.txt.gz')}"]


@pytest.mark.slow
def test_tiny_config_end_to_end_on_two_jax_replicas_then_resume_and_export_on_one_device(tmp_path):
    """Its moving averages of the weights (--ema) are swapped in each epoch, which reads the
    variables JAX shards. One context bucket and fixed question length (--nolen_opt: one
    compiled shape per step function) keeps it short."""
    pytest.importorskip("jax")
    workdir = str(tmp_path / "run")
    out = run_script("bidaf/train.py", f"--flagfile={TINY}", *data_flags(),
                     f"--workdir={workdir}", "--context_buckets=400", "--nolen_opt", "--nocluster",
                     "--noexport",
                     "--distribution=data_parallel", "--devices=2", backend="jax", devices=2)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "data parallel over 2 replicas" in out.stdout
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["run"]["distribution"] == {**results["run"]["distribution"], "replicas": 2,
                                              "engine": "jax"}
    assert results["run"]["config"]["ema"] > 0
    assert results["split"] == "dev_articles" and results["eval_questions"] == 30
    assert results["hidden_before"] == [4] * 6 and results["hidden_after"] == [2] * 6
    assert results["lstm_units_after"] == {f"g{i}/{d}": 2 for i in range(3)
                                           for d in ("forward", "backward")}
    assert results["non_embedding_weights_after"] < results["non_embedding_weights"]
    for metric in ("test_em", "test_f1"):   # the shrunk model answers as the sparse one
        assert results[f"{metric}_shrunk"] == results[f"{metric}_sparse"]
    assert results["same_answers_shrunk"] is True
    # The official script's inputs: the scored questions and {id: answer}.
    from iss_keras.datasets import squad
    scores = squad.evaluate_file(os.path.join(workdir, "eval-v1.1.json"),
                                 os.path.join(workdir, "predictions.json"))
    assert scores["f1"] == pytest.approx(results["test_f1_sparse"])
    for name in ("metrics.csv", "history.json", "checkpoint.npz", "plan.json", "shrunk.keras",
                 "vocabulary.json", "predictions_shrunk.json", "plots/progress.png"):
        assert os.path.exists(os.path.join(workdir, name)), name

    again = run_script("bidaf/train.py", f"--flagfile={os.path.join(workdir, 'flags.txt')}",
                       "--epochs=3", "--export", "--distribution=none",
                       # the original's procedure: raw weights validated, averages tested, and the
                       # README's test with small weights zeroed
                       "--noema_validation", "--test_zero_threshold=0.02")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from" in again.stdout and "after epoch 2" in again.stdout
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert [row["epoch"] for row in history] == [1, 2, 3]
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["backend"] == "tensorflow"
    for metric in ("test_em", "test_f1"):
        assert results[f"{metric}_shrunk"] == results[f"{metric}_sparse"]
    assert results["export"]["tflite"]["max_rel_diff"] <= 1e-4
    assert os.path.exists(os.path.join(workdir, "export", "saved_model", "saved_model.pb"))
    assert results["test_zero_threshold"] == 0.02
    assert results["test_f1_shrunk_test_zeroed"] == results["test_f1_test_zeroed"]
    assert sum(results["hidden_after_test_zeroed"]) <= sum(results["hidden_after"])
    assert results["non_embedding_weights_after_test_zeroed"] <= results["non_embedding_weights"]


@pytest.mark.parametrize("flags, message", [
    ([], "--squad_dev is required"),
    (["--squad_dev=/nonexistent/dev-v1.1.json"], "/nonexistent/dev-v1.1.json"),
    (["--input_keep_prob=1.5"], "input_keep_prob must be in (0, 1]"),
])
def test_errors_name_the_problem(tmp_path, flags, message):
    glove = os.path.join(SHARED_DATA, "glove", "glove.6B.50d.top50000.txt.gz")
    out = run_script("bidaf/train.py", f"--flagfile={TINY}", f"--glove={glove}",
                     f"--workdir={tmp_path / 'run'}", *flags, timeout=300)
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]
