"""GloVe word vectors (Pennington et al. 2014) read from a local text file.

The file format is one word per line, `word v1 ... vD`, separated by single
spaces, most frequent word first; it may be gzip-compressed (`.gz`). The
project's offline copy is `shared/data/glove/glove.6B.50d.top50000.txt.gz`
(the first 50,000 lines of the official `glove.6B.50d.txt`).
"""

import gzip
import os

import numpy as np

# For users with internet; never fetched here (loaders take a local path).
GLOVE_URL = "https://nlp.stanford.edu/data/glove.6B.zip"


def _open_text(path):
    # Sniff the gzip magic rather than trust the extension: a renamed file still reads.
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def load_glove(path, words=None, dim=50):
    """Read GloVe vectors, optionally only for some words.

    Args:
        path: a GloVe text file, plain or gzip-compressed.
        words: None keeps every line; otherwise a collection of words to keep
            (looked up exactly as written in the file: GloVe 6B is lower-case,
            so pass lower-cased words).
        dim: the vector size every line must have (50 for glove.6B.50d).

    Returns:
        `(vocabulary, matrix)`: the list of words in file order (index = row)
        and a float32 array `[len(vocabulary), dim]`. A word that occurs twice
        keeps its first vector.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a line does not hold a word and exactly `dim` numbers; the
            message gives the file and line number.

    Example:

    >>> vocab, vectors = load_glove("glove.6B.50d.top50000.txt.gz", words={"the", "cat"})
    >>> vocab, vectors.shape
    (['the', 'cat'], (2, 50))
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"GloVe file {path!r} does not exist. Pass the path of a GloVe text file such as "
            f"glove.6B.50d.txt (from {GLOVE_URL}) or the offline copy "
            "shared/data/glove/glove.6B.50d.top50000.txt.gz.")
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"dim must be a positive vector size, e.g. 50. Received: dim={dim}")
    keep = None if words is None else set(words)
    vocabulary, rows, seen = [], [], set()
    with _open_text(path) as f:
        for line_number, line in enumerate(f, start=1):
            # The original (squad/prepro.py:93) strips both ends, then splits on single spaces.
            parts = line.strip().split(" ")
            if len(parts) == 1 and not parts[0]:
                continue  # a blank line, e.g. a trailing one
            if len(parts) != dim + 1:
                raise ValueError(
                    f"{path}:{line_number}: expected a word and {dim} numbers, found "
                    f"{len(parts) - 1} numbers after {parts[0][:40]!r}. Check that dim={dim} "
                    "matches the file (glove.6B.50d has 50) and that the file is not truncated.")
            word = parts[0]
            if word in seen or (keep is not None and word not in keep):
                continue
            try:
                rows.append(np.array(parts[1:], dtype=np.float32))
            except ValueError as e:
                raise ValueError(f"{path}:{line_number}: a value of {word[:40]!r} is not a number "
                                 f"({e}). Replace the corrupt file.") from None
            seen.add(word)
            vocabulary.append(word)
    matrix = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return vocabulary, matrix


def vectors_for(words, path, dim=50):
    """The GloVe rows of a vocabulary: `(ids, vectors)` for the words the file has.

    Args:
        words: the vocabulary's words by id (e.g. `Vocabulary.words`).
        path: a GloVe text file, plain or gzip-compressed.
        dim: its vector size; it must equal the embedding width it initializes.

    Returns:
        `ids` int64 `[k]` (positions in `words`) and float32 `[k, dim]`; words
        missing from the file (and the reserved ones) are left out, so their
        rows keep the layer's own initialization.
    """
    found, matrix = load_glove(path, words={w.lower() for w in words}, dim=dim)
    row = {w: i for i, w in enumerate(found)}
    ids = [i for i, w in enumerate(words) if w.lower() in row]
    return np.asarray(ids, np.int64), matrix[[row[words[i].lower()] for i in ids]]
