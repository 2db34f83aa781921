"""Atomic writes: a failure while writing never leaves a half-written file where a good one was."""

import os

import pytest

from iss_keras.files import atomic_path, write_text


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    write_text(str(path), '{"good": true}')
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write('{"half')
            raise RuntimeError("disk full")
    assert path.read_text() == '{"good": true}'
    assert os.listdir(tmp_path) == ["results.json"]


def test_an_interrupted_directory_write_keeps_the_previous_directory(tmp_path):
    target = tmp_path / "export"
    with atomic_path(str(target), directory=True) as tmp:
        open(os.path.join(tmp, "model.bin"), "w").write("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(target), directory=True) as tmp:
            open(os.path.join(tmp, "model.bin"), "w").write("new, half")
            raise KeyboardInterrupt
    assert (target / "model.bin").read_text() == "old"
    assert os.listdir(tmp_path) == ["export"]


def test_run_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(str(tmp_path / "results.json"), "{}")
        with atomic_path(str(tmp_path / "export"), directory=True) as tmp:
            open(os.path.join(tmp, "x"), "w").close()
        os.umask(0o077)
        write_text(str(tmp_path / "private.json"), "{}")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "results.json").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "export").st_mode & 0o777 == 0o755
    assert os.stat(tmp_path / "private.json").st_mode & 0o777 == 0o600
