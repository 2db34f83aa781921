"""Penn Treebank word-level data (Mikolov's simple-examples, 10k vocabulary)."""

import collections
import os

import numpy as np

PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
# For users with internet; never fetched by the tests (see ptb/ for the trainer).
PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"


def _read_words(path):
    try:
        with open(path, encoding="utf-8") as f:
            words = f.read().replace("\n", " <eos> ").split()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path!r} is not UTF-8 text ({e.reason}); the PTB files are plain text "
                         f"from simple-examples/data ({PTB_URL}). Replace the corrupt file.") from e
    if not words:
        raise ValueError(f"{path!r} is empty; replace it with the file from simple-examples/data "
                         f"({PTB_URL}).")
    return words


def download_ptb(cache_dir=None):
    """Download and unpack simple-examples.tgz (needs internet); return its data directory.

    Args:
        cache_dir: where Keras keeps downloads (default `~/.keras`).
    """
    import keras

    path = keras.utils.get_file("simple-examples.tgz", PTB_URL, extract=True, cache_dir=cache_dir)
    root = path if os.path.isdir(path) else os.path.dirname(path)
    for directory, _, files in os.walk(root):
        if all(f in files for f in PTB_FILES):
            return directory
    raise FileNotFoundError(f"{PTB_URL} was unpacked under {root!r} but holds no {list(PTB_FILES)}.")


def load_ptb(data_dir, vocab_size=None):
    """Read PTB as integer ids, one `<eos>` per line.

    Args:
        data_dir: directory holding ptb.train.txt, ptb.valid.txt, ptb.test.txt.
        vocab_size: keep the `vocab_size - 1` most frequent training words and
            map the rest to id 0; None keeps the full 10k vocabulary.

    Returns:
        `(splits, vocabulary)`: dict split name -> int32 array, and the list
        of words (index = id).
    """
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"PTB directory {data_dir!r} does not exist. Point it at a directory holding "
            f"{list(PTB_FILES)} (simple-examples/data from {PTB_URL}), or download them with "
            "iss_keras.datasets.download_ptb().")
    missing = [f for f in PTB_FILES if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        raise FileNotFoundError(
            f"PTB directory {data_dir!r} lacks {missing}. It must hold {list(PTB_FILES)} "
            f"from simple-examples/data ({PTB_URL}).")
    words = {name.split(".")[1]: _read_words(os.path.join(data_dir, name)) for name in PTB_FILES}
    counts = collections.Counter(words["train"])
    if vocab_size is None:
        vocabulary = sorted(counts, key=lambda w: (-counts[w], w))
    elif vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2. Received: vocab_size={vocab_size}")
    else:
        vocabulary = ["<oov>"] + [w for w, _ in counts.most_common(vocab_size - 1)]
    index = {w: i for i, w in enumerate(vocabulary)}
    splits = {name: np.array([index.get(w, 0) for w in ws], dtype=np.int32)
              for name, ws in words.items()}
    return splits, vocabulary


def lm_windows(ids, steps):
    """Cut a token stream into (inputs, next-token targets) windows of `steps`."""
    n = (len(ids) - 1) // steps
    if n < 1:
        raise ValueError(f"Need more than {steps} tokens; received {len(ids)}.")
    return ids[:n * steps].reshape(n, steps), ids[1:n * steps + 1].reshape(n, steps)
