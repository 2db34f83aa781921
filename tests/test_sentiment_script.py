"""sentiment/train.py end to end (train -> rebuild -> verify -> export) on 2 data-parallel
replicas, resumed on one device, and its errors."""

import json
import os
import re

import numpy as np
import pytest

from helpers import read_trainer_options, run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "sentiment", "configs", "tiny_test.flags")
DATA = os.path.join(ROOT, "..", "shared", "data")


@pytest.mark.slow
def test_tiny_set_run_end_to_end_on_two_replicas_then_resume_on_one_device(tmp_path):
    workdir = str(tmp_path / "run")
    out = run_script("sentiment/train.py", f"--flagfile={TINY}", f"--data_dir={DATA}",
                     f"--workdir={workdir}", "--distribution=data_parallel", "--devices=2",
                     devices=2)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "data parallel over 2 replicas" in out.stdout
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["run"]["distribution"]["replicas"] == 2
    assert results["run"]["distribution"]["engine"] == "tensorflow"
    assert results["epochs"] == 2 and 0.0 <= results["test_accuracy_sparse"] <= 1.0
    assert results["test_accuracy_shrunk"] == results["test_accuracy_sparse"]
    assert results["set"]["density"] == pytest.approx(0.2, rel=0.01)
    assert len(results["set"]["turnover"]) == 1  # before epoch 2
    storage = results["set"]["storage"]
    assert storage["sparse_bytes"] < storage["dense_bytes"]
    assert results["export"]["tflite"]["max_rel_diff"] <= 1e-4
    assert os.path.exists(os.path.join(workdir, "vocabulary.json"))
    assert results["test_checkpoint"] == "best_valid"  # the trainer's default
    # The checkpoint of 2 replicas resumes on 1 device.
    again = run_script("sentiment/train.py", f"--flagfile={os.path.join(workdir, 'flags.txt')}",
                       "--epochs=3", "--noexport", "--distribution=none")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "after epoch 2" in again.stdout
    assert [r["epoch"] for r in json.load(open(os.path.join(workdir, "history.json")))] == [1, 2, 3]
    assert json.load(open(os.path.join(workdir, "results.json")))["set"]["turnover"][:1] == \
        results["set"]["turnover"]


@pytest.mark.parametrize("flag,message", [("--dataset=yelp", "dataset"),
                                          ("--set_density=0.04", "not both"),
                                          ("--fold=12", "fold must be in 0..9")])
def test_bad_flags_are_named(tmp_path, flag, message):
    """Read in this process, as the trainer reads them (the next test: the user sees it)."""
    good = [f"--flagfile={TINY}", f"--data_dir={DATA}", f"--workdir={tmp_path / 'run'}"]
    extra = ["--set_epsilon=20"] if "set_density" in flag else []
    read_trainer_options("sentiment/train.py", *good)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_trainer_options("sentiment/train.py", *good, flag, *extra)


def test_a_bad_flag_reaches_the_user(tmp_path):
    out = run_script("sentiment/train.py", f"--flagfile={TINY}", f"--data_dir={DATA}",
                     f"--workdir={tmp_path / 'run'}", "--set_density=0.04", "--set_epsilon=20",
                     timeout=120)
    assert out.returncode != 0 and "not both" in out.stderr, out.stderr[-2000:]


def test_missing_data_is_named(tmp_path):
    out = run_script("sentiment/train.py", f"--flagfile={TINY}", f"--data_dir={tmp_path}",
                     f"--workdir={tmp_path / 'run'}", timeout=120)
    assert out.returncode != 0 and "amazon_cells_labelled.txt" in out.stderr, out.stderr[-2000:]


GLOVE = os.path.join(DATA, "glove", "glove.6B.50d.top50000.txt.gz")


def load_trainer_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sentiment_train",
                                                  os.path.join(ROOT, "sentiment", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines its absl flags: once per test process
    return module


def test_word_vectors_start_the_embedding_rows_of_the_words_glove_has():
    from conftest import shared_file
    from iss_keras.datasets.glove import load_glove, vectors_for
    from iss_keras.tasks.classification import ClassificationConfig
    from iss_keras.training import TrainConfig

    glove = shared_file("glove", "glove.6B.50d.top50000.txt.gz")
    ids, vectors = vectors_for(["<pad>", "<oov>", "The", "qqzzxq", "cat"], glove)
    words, table = load_glove(glove, words={"the", "cat"})
    assert ids.tolist() == [2, 4]
    for row, word in zip(vectors, ("the", "cat")):
        np.testing.assert_array_equal(row, table[words.index(word)])

    trainer = load_trainer_module()
    options = {trainer.ModelConfig: trainer.ModelConfig(embedding_size=50, units=4,
                                                        word_vectors=glove),
               ClassificationConfig: ClassificationConfig(data_dir=DATA, dataset="uci_amazon",
                                                          max_words=300, max_length=10),
               TrainConfig: TrainConfig()}
    task = trainer.make_task(options)
    embedding = np.asarray(task.build("train").get_layer("embedding").get_weights()[0])
    words = task.vocabulary.words
    ids, vectors = vectors_for(words, glove)
    assert 0 < len(ids) < len(words)
    np.testing.assert_array_equal(embedding[ids], vectors)
    others = np.setdiff1d(np.arange(len(words)), ids)
    assert np.abs(embedding[others]).max() <= 0.05  # the layer's own uniform init
    with pytest.raises(ValueError, match="--embedding_size=16"):
        trainer.make_task({**options, trainer.ModelConfig: trainer.ModelConfig(
            embedding_size=16, word_vectors=glove)})
