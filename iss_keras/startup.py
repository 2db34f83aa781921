"""A quiet start: the backend's C++ start-up messages hidden, its devices set up first.

On a CPU machine TensorFlow prints, among others, "failed call to cuInit:
CUDA error" while it starts: it reads like a failure and is not one.
Scripts call `start_backend_quietly()` before anything imports Keras (the
trainers do it first thing; `import iss_keras` itself starts nothing), so
they start quietly. A user who
asks for TensorFlow's messages (TF_CPP_MIN_LOG_LEVEL=0 or 1) gets them
untouched.

What must happen before a backend runs its first operation happens here too:

* `ISS_KERAS_CPU_DEVICES=N` splits the CPU into N virtual devices (JAX:
  `--xla_force_host_platform_device_count=N`; TensorFlow: N logical CPU
  devices), so data-parallel training can be tried and tested on one CPU.
* With JAX and `KERAS_DISTRIBUTION_NUM_PROCESSES` above 1 (and the job
  addresses and process id, see `keras.distribution.initialize`), the
  processes of a multi-host run connect.
"""

import contextlib
import ctypes
import os
import sys

CPU_DEVICES_VARIABLE = "ISS_KERAS_CPU_DEVICES"


def cpu_device_count(environ=None):
    """The number of virtual CPU devices asked for with ISS_KERAS_CPU_DEVICES (0: none)."""
    environ = os.environ if environ is None else environ
    text = environ.get(CPU_DEVICES_VARIABLE, "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{CPU_DEVICES_VARIABLE} must be a positive integer (the number of "
                         f"virtual CPU devices). Received: {text!r}")
    return int(text)


def _before_backend_import(count):
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and backend == "jax" and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def _before_first_operation(keras, count):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        cpus = tf.config.list_physical_devices("CPU")  # device discovery: where cuInit complains
        if count > 1 and cpus:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)

    elif backend == "jax" and int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
        keras.distribution.initialize()


def _flush_c_streams():
    """fflush(NULL): write out the C library's buffered streams now."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to reach (e.g. some Windows builds)
        pass


@contextlib.contextmanager
def _stderr_silenced():
    """Send file descriptor 2 (where C++ libraries write) to /dev/null meanwhile."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        _flush_c_streams()  # a buffered C message must go to /dev/null, not to the restored fd
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def quietly():
    """Hide C++ messages meanwhile (e.g. importing TensorFlow late, LiteRT's delegate line),
    unless the user asked for them when iss_keras was imported."""
    with contextlib.nullcontext() if ASKED_FOR_LOGS else _stderr_silenced():
        yield


def user_wants_backend_logs(environ=None):
    """Whether TF_CPP_MIN_LOG_LEVEL asks for TensorFlow's info messages (0 or 1)."""
    environ = os.environ if environ is None else environ
    return environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() in ("0", "1")


# The user's wish, read before any backend starts: importing TensorFlow sets
# TF_CPP_MIN_LOG_LEVEL to 1 itself, which would read as "asked for" afterwards.
ASKED_FOR_LOGS = user_wants_backend_logs()


def start_backend_quietly():
    """Import Keras and start its backend with the C++ start-up messages hidden.

    Python errors are not hidden: an exception propagates after stderr is back.
    Returns True when the messages were hidden, False when the user asked for
    them (TF_CPP_MIN_LOG_LEVEL 0 or 1) or Keras had already started.
    """
    if "keras" in sys.modules:
        return False  # too late to hide, or to set devices up
    count = cpu_device_count()
    quiet = not user_wants_backend_logs()
    with _stderr_silenced() if quiet else contextlib.nullcontext():
        _before_backend_import(count)
        import keras

        _before_first_operation(keras, count)
        keras.ops.convert_to_numpy(keras.ops.ones((1,)))
    return quiet
