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
    import keras  # only here: reading the local files needs no backend

    path = keras.utils.get_file("simple-examples.tgz", PTB_URL, extract=True, cache_dir=cache_dir)
    root = path if os.path.isdir(path) else os.path.dirname(path)
    for directory, _, files in os.walk(root):
        if all(f in files for f in PTB_FILES):
            return directory
    raise FileNotFoundError(f"{PTB_URL} was unpacked under {root!r} but holds no "
                            f"{list(PTB_FILES)}.")


def ptb_vocabulary(train_words, vocab_size=None):
    """The word list (index = id) of the original reader, optionally truncated.

    The original (`reader._build_vocab`) orders the training words by count,
    descending, then alphabetically, with no extra id: PTB's 10,000 training
    types get ids 0..9999. With `vocab_size` smaller than that, the
    `vocab_size - 1` most frequent words keep those same ids and `"<oov>"`
    (the last id) stands for every other word.
    """
    counts = collections.Counter(train_words)
    vocabulary = sorted(counts, key=lambda w: (-counts[w], w))
    if vocab_size is None or int(vocab_size) == 0 or int(vocab_size) >= len(vocabulary):
        return vocabulary
    if int(vocab_size) < 2:
        raise ValueError(f"vocab_size must be >= 2, or 0 for the whole training vocabulary. "
                         f"Received: vocab_size={vocab_size}")
    return vocabulary[:int(vocab_size) - 1] + ["<oov>"]


def load_ptb(data_dir, vocab_size=None):
    """Read PTB as integer ids, one `<eos>` per line, with the original reader's ids.

    Args:
        data_dir: directory holding ptb.train.txt, ptb.valid.txt, ptb.test.txt.
        vocab_size: None or 0 (or >= 10,000 on PTB) keeps the whole training
            vocabulary, as the original; a smaller number keeps the
            `vocab_size - 1` most frequent words and maps the rest to one
            OOV id (see `ptb_vocabulary`).

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
    vocabulary = ptb_vocabulary(words["train"], vocab_size)
    index = {w: i for i, w in enumerate(vocabulary)}
    truncated = len(vocabulary) < len(set(words["train"]))
    oov = len(vocabulary) - 1 if truncated else None
    unknown = sorted({w for ws in words.values() for w in ws if w not in index})
    if unknown and oov is None:
        raise ValueError(
            f"{len(unknown)} words of the valid/test files never occur in ptb.train.txt (e.g. "
            f"{unknown[:3]}); the PTB files have a closed vocabulary. Check {data_dir!r} holds "
            f"the original simple-examples/data files ({PTB_URL}).")
    splits = {name: np.array([index.get(w, oov) for w in ws], dtype=np.int32)
              for name, ws in words.items()}
    return splits, vocabulary


def lm_windows(ids, steps):
    """Cut a token stream into (inputs, next-token targets) windows of `steps`."""
    n = (len(ids) - 1) // steps
    if n < 1:
        raise ValueError(f"Need more than {steps} tokens; received {len(ids)}.")
    return ids[:n * steps].reshape(n, steps), ids[1:n * steps + 1].reshape(n, steps)
