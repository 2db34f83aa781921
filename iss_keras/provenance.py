"""Where and how a result was produced: machine, backend, versions, commit, date.

Every results.json carries this record, so a number in the README can be
traced to the run (and the code) that produced it.
"""

import datetime
import os
import platform
import subprocess

import keras
import numpy as np


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(directory=None):
    """`(commit, dirty)` of the git checkout holding `directory`, or `(None, None)`."""
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=directory, capture_output=True, text=True, timeout=10,
                                check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status)


# The code a run ran is the code when it started: the library's commit is read once, when this
# module is first imported (the trainers import it before training), not when the run finishes.
_LIBRARY_AT_IMPORT = git_commit()


def accelerators():
    """Names of the GPUs the current Keras backend sees (empty on a CPU machine)."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices("GPU")]
        if backend == "jax":
            import jax

            return [str(d) for d in jax.devices() if d.platform != "cpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a backend without device queries: report none rather than fail a run
        return []
    return []


def provenance(**extra):
    """A JSON-ready record of this process's machine, software and code version."""
    commit, dirty = _LIBRARY_AT_IMPORT
    record = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "accelerators": accelerators(),
                    "system": platform.platform()},
        "backend": keras.backend.backend(),
        "versions": {"python": platform.python_version(), "keras": keras.__version__,
                     "numpy": np.__version__},
        "commit": commit, "uncommitted_changes": dirty,
    }
    try:
        backend_module = __import__({"tensorflow": "tensorflow", "jax": "jax",
                                     "torch": "torch"}[record["backend"]])
        record["versions"][record["backend"]] = backend_module.__version__
    except (ImportError, KeyError):
        pass
    record.update(extra)
    return record
