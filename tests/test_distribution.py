"""Data-parallel training on Keras's engines: one step on 2 replicas is one step on 1 device.

Each case runs in a fresh process with ISS_KERAS_CPU_DEVICES=2 (two virtual CPU devices,
set up before the backend starts; see iss_keras/startup.py).
"""

import json
import os
import subprocess
import sys

import keras
import pytest

from helpers import run_script
from iss_keras.training import distribution

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def two_devices(backend):
    return {**os.environ, "ISS_KERAS_CPU_DEVICES": "2", "KERAS_BACKEND": backend,
            "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.path.join(ROOT, "tests")}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
@pytest.mark.parametrize("variant", ["threshold", "proximal"])
def test_an_epoch_on_two_replicas_equals_one_device(tmp_path, backend, variant):
    """ISS penalty, L1, per-weight zeroing, component threshold or proximal steps, freezing and
    a global-norm clip that acts on every step, with the LSTM state carried across batches."""
    if backend == "jax":
        pytest.importorskip("jax")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "distributed_step.py"),
                          variant, str(tmp_path)], capture_output=True, text=True, timeout=600,
                         env=two_devices(backend))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["engine"] == backend
    assert result["max_weight_diff"] <= 1e-5
    assert result["valid_two"] == pytest.approx(result["valid_one"], rel=1e-5)
    assert result["units_two"] == result["units_one"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer,backend", [("ptb", "tensorflow"), ("rhns", "jax"),
                                             ("sentiment", "tensorflow")])
def test_trainers_run_data_parallel_end_to_end_and_resume_on_one_device(tmp_path, ptb_dir,
                                                                        trainer, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    workdir = str(tmp_path / "run")
    data_dir = os.path.dirname(ptb_dir) if trainer == "sentiment" else ptb_dir
    flags = [f"--flagfile={os.path.join(ROOT, trainer, 'configs', 'tiny_test.flags')}",
             f"--data_dir={data_dir}", f"--workdir={workdir}", "--epochs=1",
             f"--{'' if backend == 'tensorflow' else 'no'}export"]
    env = two_devices(backend)
    out = subprocess.run([sys.executable, os.path.join(ROOT, trainer, "train.py"), *flags,
                          "--distribution=data_parallel", "--devices=2"],
                         capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "data parallel over 2 replicas" in out.stdout
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["run"]["distribution"]["replicas"] == 2
    assert results["run"]["distribution"]["engine"] == backend
    metric = "test_accuracy" if trainer == "sentiment" else "test_perplexity"
    assert abs(results[f"{metric}_shrunk"] - results[f"{metric}_sparse"]) \
        <= 1e-3 * results[f"{metric}_sparse"]
    # The checkpoint of 2 replicas resumes on 1 device.
    again = run_script(f"{trainer}/train.py", *flags[:3], "--epochs=2", "--noexport",
                       "--distribution=none", backend=backend)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "after epoch 1" in again.stdout
    assert [r["epoch"] for r in json.load(open(os.path.join(workdir, "history.json")))] == [1, 2]


def test_data_parallel_on_one_device_says_how_to_try_it():
    if len(keras.distribution.list_devices("cpu")) > 1:
        pytest.skip("this process has several CPU devices")
    with pytest.raises(ValueError, match="ISS_KERAS_CPU_DEVICES=2"):
        distribution.placement("data_parallel", 2)


def test_auto_on_a_cpu_machine_is_one_device_and_says_why():
    where = distribution.placement("auto")
    assert where.engine == "none" and where.replicas == 1 and where.is_chief
    assert "accelerator" in str(where) and where.describe()["replicas"] == 1


def test_torch_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    monkeypatch.setattr(distribution, "_accelerators", lambda: ["cuda:0", "cuda:1"])
    with pytest.raises(ValueError, match="DistributedDataParallel"):
        distribution.placement("data_parallel", 2)
    assert distribution.placement("auto").engine == "none"


def test_a_batch_that_does_not_split_is_named():
    where = distribution.Placement("jax", ["cpu:0", "cpu:1", "cpu:2"])
    with pytest.raises(ValueError, match="batch size 20 does not split over 3 replicas"):
        where.check_batch(20)


def test_bad_options_and_device_variable_are_named():
    from iss_keras.startup import cpu_device_count

    with pytest.raises(ValueError, match="devices must be >= 0"):
        distribution.DistributionOptions(devices=-1)
    with pytest.raises(ValueError, match="ISS_KERAS_CPU_DEVICES must be a positive integer"):
        cpu_device_count({"ISS_KERAS_CPU_DEVICES": "two"})
    assert cpu_device_count({}) == 0 and cpu_device_count({"ISS_KERAS_CPU_DEVICES": "4"}) == 4


def test_multi_host_jax_feeds_each_process_its_rows():
    import numpy as np

    x = np.arange(4 * 6).reshape(-1, 1)  # 4 batches of 6 rows
    rows = distribution._process_rows(x, x + 100, batch=6, index=1, count=2)
    assert rows["batch_size"] == 3
    np.testing.assert_array_equal(rows["x"][:, 0], [3, 4, 5, 9, 10, 11, 15, 16, 17, 21, 22, 23])


def test_several_tensorflow_workers_are_refused_with_the_upstream_issue(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker",
                                                                     "index": 0}}))
    with pytest.raises(distribution.DistributionError, match="72388.*KERAS_BACKEND=jax"):
        distribution.placement("data_parallel")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(distribution.DistributionError, match="TF_CONFIG is not valid JSON"):
        distribution.placement("data_parallel")


@pytest.mark.slow
def test_bidaf_runs_data_parallel_under_jax_with_moving_averages(tmp_path):
    """bidaf/ end to end on 2 virtual devices under JAX: its moving averages of the weights
    (--ema) are swapped in each epoch, which reads the variables JAX shards."""
    pytest.importorskip("jax")
    from conftest import shared_file
    workdir = str(tmp_path / "run")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bidaf", "train.py"),
         f"--flagfile={os.path.join(ROOT, 'bidaf', 'configs', 'tiny_test.flags')}",
         f"--squad_dev={shared_file('squad', 'dev-v1.1.json')}",
         f"--glove={shared_file('glove', 'glove.6B.50d.top50000.txt.gz')}",
         f"--workdir={workdir}", "--epochs=1", "--noexport",
         "--distribution=data_parallel", "--devices=2"],
        capture_output=True, text=True, timeout=600, env=two_devices("jax"), cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "data parallel over 2 replicas" in out.stdout
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["run"]["distribution"] == {**results["run"]["distribution"], "replicas": 2,
                                              "engine": "jax"}
    assert results["run"]["config"]["ema"] > 0
    assert results["test_f1_shrunk"] == results["test_f1_sparse"]
