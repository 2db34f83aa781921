import pytest

from iss_keras.datasets import PTB_FILES, lm_windows, load_ptb


def test_ptb_token_counts_on_real_files(ptb_dir):
    splits, vocabulary = load_ptb(ptb_dir)
    assert {k: len(v) for k, v in splits.items()} == {"train": 929589, "valid": 73760, "test": 82430}
    assert len(vocabulary) == 10000 and "<eos>" in vocabulary
    x, y = lm_windows(splits["valid"], 35)
    assert x.shape == y.shape == ((73760 - 1) // 35, 35) and (x[:, 1:] == y[:, :-1]).all()


def test_missing_ptb_files_are_named(tmp_path):
    (tmp_path / PTB_FILES[0]).write_text("a b\n")
    with pytest.raises(FileNotFoundError, match="ptb.valid.txt"):
        load_ptb(str(tmp_path))


def test_absent_directory_and_corrupt_file_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*ptb.train.txt"):
        load_ptb(str(tmp_path / "nowhere"))
    for name in PTB_FILES:
        (tmp_path / name).write_text("a b\n")
    (tmp_path / "ptb.valid.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="ptb.valid.txt.*not UTF-8"):
        load_ptb(str(tmp_path))
    (tmp_path / "ptb.valid.txt").write_text("")
    with pytest.raises(ValueError, match="ptb.valid.txt.*is empty"):
        load_ptb(str(tmp_path))
