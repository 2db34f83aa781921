"""A quiet start: the backend's C++ start-up messages hidden.

On a CPU machine TensorFlow prints, among others, "failed call to cuInit:
CUDA error" while it starts: it reads like a failure and is not one.
`import iss_keras` calls `start_backend_quietly()` first, so the trainers and
user scripts start quietly when Keras was not imported before. A user who
asks for TensorFlow's messages (TF_CPP_MIN_LOG_LEVEL=0 or 1) gets them
untouched.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_silenced():
    """Send file descriptor 2 (where C++ libraries write) to /dev/null meanwhile."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def user_wants_backend_logs(environ=None):
    """Whether TF_CPP_MIN_LOG_LEVEL asks for TensorFlow's info messages (0 or 1)."""
    environ = os.environ if environ is None else environ
    return environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() in ("0", "1")


def start_backend_quietly():
    """Import Keras and start its backend with the C++ start-up messages hidden.

    Python errors are not hidden: an exception propagates after stderr is back.
    Returns True when the messages were hidden, False when the user asked for
    them (TF_CPP_MIN_LOG_LEVEL 0 or 1) or Keras had already started.
    """
    if user_wants_backend_logs() or "keras" in sys.modules:
        return False  # asked for, or too late to hide
    with _stderr_silenced():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery is where cuInit complains
        keras.ops.convert_to_numpy(keras.ops.ones((1,)))
    return True
