import collections
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
PTB_DIR = os.path.join(SHARED_DATA, "ptb")


def ptb_ids(split, vocab_size):
    """Token ids of a PTB split over the `vocab_size - 1` most frequent train words (+<unk>)."""
    def words(name):
        with open(os.path.join(PTB_DIR, f"ptb.{name}.txt")) as f:
            return f.read().replace("\n", " <eos> ").split()

    counts = collections.Counter(words("train"))
    vocab = [w for w, _ in counts.most_common(vocab_size - 1)]
    index = {w: i + 1 for i, w in enumerate(vocab)}  # 0 = out of vocabulary
    return np.array([index.get(w, 0) for w in words(split)], dtype=np.int32)


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
