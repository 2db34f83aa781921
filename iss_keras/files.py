"""Atomic writes: a file or directory is built beside its target, then renamed onto it.

An interrupted or failed write never leaves a half-written file where a good
one was; checkpoints, plans, logs and exports all go through here.
"""

import contextlib
import os
import shutil
import tempfile


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path, directory=False):
    """Yield a temporary path beside `path`; when the block succeeds, move it onto `path`.

    Args:
        path: the file or directory to create or replace.
        directory: yield an (empty) directory instead of a file.

    Example:

    >>> with atomic_path("model.keras") as tmp:
    ...     model.save(tmp)
    """
    path = os.path.abspath(path)
    parent, base = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    else:
        # Keep the extension: Keras insists on ".keras", NumPy appends ".npz" otherwise.
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", suffix=os.path.splitext(base)[1],
                                   dir=parent)
        os.close(fd)
    # mkstemp/mkdtemp create private (0600/0700) paths; the result should have the
    # permissions of any file the user creates, so apply the umask as open() would.
    os.chmod(tmp, (0o777 if directory else 0o666) & ~_current_umask())
    try:
        yield tmp
        if directory and os.path.exists(path):
            # A directory cannot be replaced in one rename: park the old one,
            # move the new one in, then delete the old one.
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
