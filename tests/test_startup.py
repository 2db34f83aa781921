"""`start_backend_quietly()` starts the backend without C++ start-up noise, unless the user asks for it;
`import iss_keras` itself starts nothing."""

import os
import subprocess
import sys

from helpers import run_python

SCRIPT = ("from iss_keras.startup import start_backend_quietly; start_backend_quietly(); "
          "import keras; print(keras.ops.convert_to_numpy(keras.ops.ones(2)).sum())")


def run(env_overrides):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                          timeout=300)


def test_start_is_quiet_and_errors_still_show():
    out = run({"KERAS_BACKEND": "tensorflow"})
    assert out.returncode == 0 and out.stdout.strip() == "2.0"
    assert "cuInit" not in out.stderr and "E0000" not in out.stderr and "I0000" not in out.stderr, \
        out.stderr
    broken = subprocess.run([sys.executable, "-c", "from iss_keras.startup import start_backend_quietly; "
                             "start_backend_quietly(); raise SystemExit('boom')"],
                            capture_output=True, text=True, timeout=300)
    assert "boom" in broken.stderr


def test_asking_for_logs_turns_the_silencing_off():
    from iss_keras.startup import user_wants_backend_logs

    assert user_wants_backend_logs({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert user_wants_backend_logs({"TF_CPP_MIN_LOG_LEVEL": "1"})
    assert not user_wants_backend_logs({"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert not user_wants_backend_logs({})


def test_importing_the_package_starts_no_backend_and_names_load_on_use():
    code = ("import sys, iss_keras; assert 'keras' not in sys.modules, 'keras imported'; "
            "from iss_keras import ISSRegularizer; assert 'keras' in sys.modules; "
            "assert iss_keras.shrink.__module__ == 'iss_keras.rebuild'; "
            "assert iss_keras.models.rhn.RHNCell; print('ok')")
    out = run_python(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    data_only = run_python("import sys, iss_keras.datasets.squad, iss_keras.datasets.ptb; "
                           "print(sorted({'keras', 'tensorflow', 'jax'} & set(sys.modules)))")
    assert data_only.stdout.strip() == "[]", data_only.stderr[-2000:]
