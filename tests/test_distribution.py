"""Data-parallel training on Keras's engines: one step on 2 replicas is one step on 1 device.

Each case runs in a fresh process with ISS_KERAS_CPU_DEVICES=2 (two virtual CPU devices,
set up before the backend starts; see iss_keras/startup.py). Each trainer's end-to-end test
(test_ptb_script, test_rhns_script, test_sentiment_script, test_bidaf_script) trains on two
such replicas and resumes on one device.
"""

import json
import os
import subprocess
import sys

import keras
import pytest

from iss_keras.training import distribution

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def two_devices(backend):
    return {**os.environ, "ISS_KERAS_CPU_DEVICES": "2", "KERAS_BACKEND": backend,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")])}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_an_epoch_on_two_replicas_equals_one_device(tmp_path, backend):
    """ISS penalty, L1, per-weight zeroing, component threshold or proximal steps, freezing and
    a global-norm clip that acts on every step, with the LSTM state carried across batches.
    Both variants (threshold, proximal) run in one process per backend."""
    if backend == "jax":
        pytest.importorskip("jax")
    variants = ["threshold", "proximal"]
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "distributed_step.py"),
                          ",".join(variants), str(tmp_path)], capture_output=True, text=True,
                         timeout=600, env=two_devices(backend))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.strip().splitlines() if line.startswith("{")]
    assert [result["variant"] for result in lines] == variants
    for result in lines:
        assert result["replicas"] == 2 and result["engine"] == backend, result
        assert result["max_weight_diff"] <= 1e-5, result
        assert result["valid_two"] == pytest.approx(result["valid_one"], rel=1e-5), result
        assert result["units_two"] == result["units_one"], result


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
