import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
PTB_DIR = os.path.join(SHARED_DATA, "ptb")


def shared_file(*parts):
    """A path under ../shared/data, failing the test (not skipping it) when it is missing."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.fail(f"{path} not found; the tests expect ../shared/data beside the repo.")
    return path


def ptb_ids(split, vocab_size):
    """Token ids of a PTB split over the `vocab_size - 1` most frequent train words (+ id 0)."""
    from iss_keras.datasets import load_ptb

    splits, _ = load_ptb(PTB_DIR, vocab_size)
    return splits[split]


@pytest.fixture(scope="session")
def ptb_dir():
    if not os.path.exists(os.path.join(PTB_DIR, "ptb.train.txt")):
        pytest.fail(f"PTB data not found in {PTB_DIR}; the tests expect ../shared/data beside the repo.")
    return PTB_DIR


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Each test starts with default layer names (lstm, lstm_1, ...)."""
    import keras

    keras.backend.clear_session()
    yield
