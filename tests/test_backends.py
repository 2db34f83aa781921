import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_training_and_shrink_under_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=HERE)
    result = subprocess.run([sys.executable, os.path.join(HERE, "backend_smoke.py")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.startswith(backend), result.stdout
