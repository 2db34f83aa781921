"""Sentiment classification sets, read from local copies (plain Python and NumPy).

Each loader takes a path and returns a `TextClassificationData` of raw texts
and int32 labels per split; tokenise them all with `iss_keras.datasets.text`:

    data = load_sentiment("uci_yelp", "../shared/data")
    train_tokens = [tokenize(t) for t in data.train.texts]
    vocabulary = Vocabulary.build(train_tokens, max_size=5000)   # train only
    x, y = encode_batch(train_tokens, vocabulary, max_length=40), data.train.labels

Sets and splits (train / valid / test), each documented at its loader:

* `imdb`: aclImdb train 25,000 -> 21,250 train + 3,750 valid (15%, stratified); test 25,000.
* `sst2`: GLUE SST-2 train 67,349 (phrases) / GLUE dev 872 / SST trees binary test 1,821.
* `sst5`: SST trees, root label 0..4: 8,544 / 1,101 / 2,210 sentences.
* `uci_amazon`, `uci_imdb`, `uci_yelp`: 1,000 sentences each, 10 stratified folds: 800 / 100 / 100.

Nothing here downloads: the `*_URL` constants say where a user gets the files.
"""

import dataclasses
import os
import re
import tarfile
from typing import NamedTuple

import numpy as np

from iss_keras.options import check_fraction_value

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_ARCHIVES = ("aclImdb_v1_labeled.tar.gz", "aclImdb_v1.tar.gz")
SST2_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
SST_TREES_URL = "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip"
UCI_URL = "https://archive.ics.uci.edu/dataset/331/sentiment+labelled+sentences"
UCI_FILES = {"amazon": "amazon_cells_labelled.txt", "imdb": "imdb_labelled.txt",
             "yelp": "yelp_labelled.txt"}
UCI_FOLDS = 10
SENTIMENT_SETS = ("imdb", "sst2", "sst5", "uci_amazon", "uci_imdb", "uci_yelp")

BINARY_CLASSES = ("negative", "positive")
SST5_CLASSES = ("very negative", "negative", "neutral", "positive", "very positive")


@dataclasses.dataclass(frozen=True, eq=False)
class TextSplit:
    """Raw texts and their int32 labels; unpacks as `texts, labels = data.train`."""
    texts: list
    labels: np.ndarray

    def __len__(self):
        return len(self.texts)

    def __iter__(self):
        return iter((self.texts, self.labels))


class TextClassificationData(NamedTuple):
    """Three splits of one set, its classes and where it was read from."""
    train: TextSplit
    valid: TextSplit
    test: TextSplit
    num_classes: int
    class_names: tuple
    source: str

    def splits(self):
        """`{"train": ..., "valid": ..., "test": ...}`."""
        return {"train": self.train, "valid": self.valid, "test": self.test}


def _split(texts, labels, where):
    if not texts:
        raise ValueError(f"{where} holds no examples; an empty split cannot be trained or "
                         "evaluated on. Replace it with the complete file.")
    return TextSplit(list(texts), np.asarray(labels, dtype=np.int32))


def _take(split, indices):
    return TextSplit([split.texts[i] for i in indices], split.labels[indices])


def _show(line, limit=80):
    return repr(line if len(line) <= limit else line[:limit] + "...")


def _read_lines(path, origin):
    """The lines of a UTF-8 file, or an error that names the file and where it comes from."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} does not exist. It is {origin}.")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path!r} is not UTF-8 text ({e.reason} at byte {e.start}); it should "
                         f"be {origin}. Replace the corrupt file.") from e
    # Split at "\n" only: str.splitlines() would also split inside sentences at U+0085 (NEL),
    # which uci imdb_labelled.txt line 179 holds. A "\r" of CRLF copies is dropped.
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def _binary_label(value, path, number, line):
    if value not in ("0", "1"):
        raise ValueError(f"{path!r} line {number}: label {value!r} is not 0 or 1 "
                         f"(0 = negative, 1 = positive) in {_show(line)}.")
    return int(value)


# ----------------------------------------------------------------------------- splits

def stratified_folds(labels, num_folds=UCI_FOLDS, seed=0):
    """Deal the indices of each class, shuffled with `seed`, into `num_folds` folds.

    Every index lands in exactly one fold, and each class is spread as evenly as
    it can be (500/500 labels in 10 folds: 50 + 50 per fold). The result
    depends only on `labels`, `num_folds` and `seed` (NumPy's `default_rng`).

    >>> [f.tolist() for f in stratified_folds([0, 0, 1, 1], num_folds=2, seed=0)]
    [[0, 2], [1, 3]]
    """
    labels = np.asarray(labels)
    if num_folds < 2 or num_folds > len(labels):
        raise ValueError(f"num_folds must be between 2 and the number of examples "
                         f"({len(labels)}). Received: num_folds={num_folds}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    dealt = 0  # go on dealing where the last class stopped, so no fold is always the largest
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold_of[members] = (dealt + np.arange(len(members))) % num_folds
        dealt += len(members)
    return [np.flatnonzero(fold_of == k) for k in range(num_folds)]


def _stratified_holdout(labels, fraction, rng):
    """(kept, held out) index arrays; `round(fraction * n_c)` of each class `c` held out."""
    held = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        held.append(members[:int(round(fraction * len(members)))])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


# ----------------------------------------------------------------------------- IMDB

_IMDB_ORIGIN = (f"part of the Large Movie Review Dataset (aclImdb, Maas et al. 2011; {IMDB_URL}), "
                f"laid out as aclImdb/{{train,test}}/{{pos,neg}}/<id>_<rating>.txt")
_IMDB_MEMBER_RE = re.compile(r"^(?:\./)?aclImdb/(train|test)/(pos|neg)/([^/]+)$")
_IMDB_NAME_RE = re.compile(r"^(\d+)_(\d+)\.txt$")
# aclImdb's labels come from the star rating: <= 4 negative, >= 7 positive (README).
_IMDB_RATINGS = {"neg": range(1, 5), "pos": range(7, 11)}


def _imdb_review(split, folder, name, data, where):
    """(split, label, id, text) of one review file, checked against its folder."""
    match = _IMDB_NAME_RE.match(name)
    if not match:
        raise ValueError(f"{where}: review file names must be <id>_<rating>.txt "
                         f"(e.g. 0_9.txt); found {name!r}. The data should be "
                         f"{_IMDB_ORIGIN}.")
    review_id, rating = int(match.group(1)), int(match.group(2))
    if rating not in _IMDB_RATINGS[folder]:
        allowed = _IMDB_RATINGS[folder]
        raise ValueError(f"{where}: {folder}/{name!r} has rating {rating}, but {folder} reviews "
                         f"are rated {allowed.start}..{allowed.stop - 1}; the file is in the "
                         "wrong folder or was renamed.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: {split}/{folder}/{name} is not UTF-8 ({e.reason}).") from e
    return split, int(folder == "pos"), review_id, text.strip()


def _imdb_from_tar(path):
    reviews = []
    try:
        # "r|gz" streams through the archive once, in order; nothing is extracted.
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                match = _IMDB_MEMBER_RE.match(member.name)
                if member.isfile() and match:
                    data = tar.extractfile(member).read()
                    reviews.append(_imdb_review(*match.groups(), data, repr(path)))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{path!r} is not a readable .tar.gz ({e}); it should be {_IMDB_ORIGIN}. "
                         "Replace the corrupt file.") from e
    return reviews


def _imdb_from_directory(root):
    reviews = []
    for split in ("train", "test"):
        for folder in ("neg", "pos"):
            directory = os.path.join(root, split, folder)
            if not os.path.isdir(directory):
                raise FileNotFoundError(f"{directory!r} does not exist; an aclImdb directory "
                                        f"holds {{train,test}}/{{pos,neg}}/. It is {_IMDB_ORIGIN}.")
            for name in os.listdir(directory):
                if name.startswith("."):
                    continue  # .DS_Store and the like are not reviews
                with open(os.path.join(directory, name), "rb") as f:
                    reviews.append(_imdb_review(split, folder, name, f.read(), repr(root)))
    return reviews


def _find_imdb(path):
    """The archive or aclImdb directory that `path` is, or holds."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test")):
        return path
    candidates = [os.path.join(path, name) for name in IMDB_ARCHIVES + ("aclImdb",)]
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(
        f"No IMDB reviews at {path!r}. Pass the archive {IMDB_ARCHIVES[0]!r} (or the original "
        f"{IMDB_ARCHIVES[1]!r} from {IMDB_URL}), an extracted aclImdb/ directory, or a directory "
        f"holding one of them; looked for {candidates}.")


def load_imdb(path, valid_fraction=0.15, seed=0):
    """The labelled IMDB reviews (aclImdb): 25,000 train, 25,000 test, 50% positive each.

    `valid_fraction` of each class of the training reviews is held out as the
    validation split (default 15%: 1,875 + 1,875 = 3,750, leaving 21,250
    to train on). The test reviews are aclImdb's test set, untouched.

    The files are sorted by class and id, so each split is returned in a random
    order drawn from `seed`: batches and Keras' `validation_split` then see
    both classes. The same `seed` gives the same splits and order.

    Args:
        path: `aclImdb_v1_labeled.tar.gz` (read as a stream, nothing is
            extracted; also the original `aclImdb_v1.tar.gz`, whose unlabelled
            `train/unsup` is ignored), an extracted `aclImdb/` directory, or
            a directory holding either.
        valid_fraction: share of each training class held out, in (0, 1).
        seed: seed of the validation draw and of the order.

    Labels: 0 = negative (rating <= 4), 1 = positive (rating >= 7). Texts are
    raw (with their `<br />` breaks, which `tokenize` removes).

    >>> data = load_imdb("../shared/data/imdb/aclImdb_v1_labeled.tar.gz")  # doctest: +SKIP
    >>> len(data.train), len(data.valid), len(data.test)  # doctest: +SKIP
    (21250, 3750, 25000)
    """
    check_fraction_value("valid_fraction", valid_fraction, low_open=True)
    source = _find_imdb(path)
    reviews = _imdb_from_tar(source) if os.path.isfile(source) else _imdb_from_directory(source)
    found = {(s, label) for s, label, _, _ in reviews}
    for split in ("train", "test"):
        for label, folder in enumerate(("neg", "pos")):
            if (split, label) not in found:
                raise ValueError(f"{source!r} holds no {split}/{folder} reviews; every folder of "
                                 f"{{train,test}}/{{pos,neg}} must hold its reviews, or a split "
                                 f"would lack a class. It should be {_IMDB_ORIGIN}.")
    splits = {}
    for split in ("train", "test"):
        # Sort by (label, id): the result must not depend on the archive's or the disk's order.
        chosen = sorted((label, review_id, text) for s, label, review_id, text in reviews
                        if s == split)
        splits[split] = _split([t for _, _, t in chosen], [label for label, _, _ in chosen],
                               f"The IMDB {split} split of {source!r}")
    rng = np.random.default_rng(seed)
    kept, held = _stratified_holdout(splits["train"].labels, valid_fraction, rng)
    parts = {"train": _take(splits["train"], kept), "valid": _take(splits["train"], held),
             "test": splits["test"]}
    for name, part in parts.items():
        _split(part.texts, part.labels, f"The IMDB {name} split (valid_fraction="
                                        f"{valid_fraction}) of {source!r}")
    parts = {name: _take(part, rng.permutation(len(part))) for name, part in parts.items()}
    return TextClassificationData(
        **parts, num_classes=2, class_names=BINARY_CLASSES,
        source=f"IMDB Large Movie Review Dataset v1.0 (Maas et al. 2011) from {source}; valid = "
               f"{valid_fraction:.0%} of each train class (seed {seed}), test = aclImdb test")


# ----------------------------------------------------------------------------- SST trees

_SST_ORIGIN = (f"the Stanford Sentiment Treebank's PTB-style trees (trainDevTestTrees_PTB: "
               f"train.txt, dev.txt, test.txt; {SST_TREES_URL})")
_TREE_TOKEN_RE = re.compile(r"\(|\)|[^\s()]+")
# The trees escape brackets and slashes the PTB way; GLUE SST-2 holds the plain characters.
_TREE_LEAF_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]",
                      "-LCB-": "{", "-RCB-": "}"}


def _leaf_text(word):
    return _TREE_LEAF_ESCAPES.get(word, word).replace("\\/", "/").replace("\\*", "*")


def parse_sst_tree(line, where="tree"):
    """(root label 0..4, leaf words) of one SST tree such as "(3 (2 It) (4 (4 works) (2 .)))".

    Brackets and slashes escaped in the trees (`-LRB-`, `\\/`) are turned back
    into plain characters, as in GLUE SST-2.

    >>> parse_sst_tree("(3 (2 It) (4 (4 works) (2 .)))")
    (3, ['It', 'works', '.'])
    """
    tokens = _TREE_TOKEN_RE.findall(line)

    def bad(expected):
        return ValueError(f"{where}: expected {expected} in the PTB-style tree {_show(line)}; "
                          f"each node is '(<label 0..4> <word or nodes>)'. The file should be "
                          f"one of {_SST_ORIGIN}.")

    open_labels, words, root = [], [], None
    after_open = False
    for token in tokens:
        if after_open:  # the token after "(" is the node's label
            if token not in ("0", "1", "2", "3", "4"):
                raise bad(f"a label 0..4 after '(' but found {token!r}")
            open_labels.append(int(token))
            root = int(token) if root is None else root
            after_open = False
        elif token == "(":
            if root is not None and not open_labels:
                raise bad("the line to end after the root's ')'")
            after_open = True
        elif token == ")":
            if not open_labels:
                raise bad("no ')' without a matching '('")
            open_labels.pop()
        elif not open_labels:
            raise bad(f"every word inside a node, but found {token!r} outside")
        else:
            words.append(_leaf_text(token))
    if root is None or open_labels or after_open:
        raise bad("a complete tree (balanced parentheses)")
    if not words:
        raise bad("at least one word")
    return root, words


def _read_sst_trees(path):
    labels, texts = [], []
    for number, line in enumerate(_read_lines(path, "one of " + _SST_ORIGIN), start=1):
        if not line.strip():
            continue  # a trailing blank line is harmless
        label, words = parse_sst_tree(line, f"{path!r} line {number}")
        labels.append(label)
        texts.append(" ".join(words))
    return texts, labels


def load_sst_trees(directory, binary=False):
    """SST sentences (the trees' roots) with the root label: train 8,544, dev 1,101, test 2,210.

    Each text is the root's leaf words joined by spaces (already tokenised the
    Penn Treebank way, original case). Labels are 0..4 (very negative ..
    very positive). With `binary=True`, neutral sentences (2) are dropped and
    0-1 -> 0, 3-4 -> 1, the usual sentence-level SST-2: 6,920 / 872 / 1,821.
    The binary dev sentences are exactly GLUE SST-2's dev.tsv (lower-cased),
    and the binary test sentences are GLUE's label-hidden test.tsv (1,815 of
    1,821 identical; 6 differ in spelling, e.g. "humour" / GLUE "humor").

    Args:
        directory: the folder holding train.txt, dev.txt and test.txt.
        binary: two classes instead of five.

    >>> data = load_sst_trees("../shared/data/sentiment/sst_trees", binary=True)  # doctest: +SKIP
    >>> len(data.test), data.num_classes  # doctest: +SKIP
    (1821, 2)
    """
    parts = {}
    for name, file in (("train", "train.txt"), ("valid", "dev.txt"), ("test", "test.txt")):
        path = os.path.join(directory, file)
        texts, labels = _read_sst_trees(path)
        if binary:
            kept = [i for i, label in enumerate(labels) if label != 2]
            texts, labels = [texts[i] for i in kept], [int(labels[i] > 2) for i in kept]
        parts[name] = _split(texts, labels, f"{path!r}" + (" without its neutral (2) trees"
                                                          if binary else ""))
    kind = "binary (2 dropped, 0-1 -> 0, 3-4 -> 1)" if binary else "5 classes (root label 0..4)"
    return TextClassificationData(
        **parts, num_classes=2 if binary else 5,
        class_names=BINARY_CLASSES if binary else SST5_CLASSES,
        source=f"Stanford Sentiment Treebank trees from {directory}, root sentences, {kind}")


# ----------------------------------------------------------------------------- GLUE SST-2

_SST2_ORIGIN = f"part of GLUE's SST-2 ({SST2_URL}: SST-2/train.tsv, SST-2/dev.tsv)"


def _read_glue_tsv(path):
    lines = _read_lines(path, _SST2_ORIGIN)
    header = "sentence\tlabel"
    if not lines or lines[0].strip() != header:
        found = _show(lines[0]) if lines else "an empty file"
        raise ValueError(f"{path!r} line 1: expected the header {header!r}, found {found}. "
                         f"GLUE's test.tsv ('index\\tsentence') has no labels; the file should "
                         f"be {_SST2_ORIGIN}.")
    texts, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip():
            raise ValueError(f"{path!r} line {number}: expected 'sentence<TAB>label', found "
                             f"{_show(line)} ({len(fields)} tab-separated fields).")
        texts.append(fields[0].strip())
        labels.append(_binary_label(fields[1].strip(), path, number, line))
    return _split(texts, labels, repr(path))


def load_sst2(directory, trees_directory=None):
    """GLUE SST-2, with a labelled test set from the SST trees.

    * train: GLUE train.tsv, 67,349 rows (29,780 negative / 37,569 positive).
      GLUE's rows are the phrases of the training trees, not only whole sentences.
    * valid: GLUE dev.tsv, 872 sentences (the usual SST-2 "test" number in papers).
    * test: GLUE hides its test labels, so the test split is the binary SST
      trees test set (`load_sst_trees(..., binary=True)`), 1,821 sentences
      (912 / 909): GLUE's test sentences with their tree labels. They are
      lower-cased like GLUE's text.

    Args:
        directory: the GLUE SST-2 folder, holding train.tsv and dev.tsv.
        trees_directory: the SST trees folder (train/dev/test.txt); default
            `sst_trees` beside `directory`, as in `shared/data/sentiment/`.

    >>> data = load_sst2("../shared/data/sentiment/sst2_glue")  # doctest: +SKIP
    >>> len(data.train), len(data.valid), len(data.test)  # doctest: +SKIP
    (67349, 872, 1821)
    """
    if trees_directory is None:
        trees_directory = os.path.join(os.path.dirname(os.path.abspath(directory)), "sst_trees")
    train = _read_glue_tsv(os.path.join(directory, "train.tsv"))
    valid = _read_glue_tsv(os.path.join(directory, "dev.tsv"))
    test_path = os.path.join(trees_directory, "test.txt")
    texts, labels = _read_sst_trees(test_path)
    kept = [i for i, label in enumerate(labels) if label != 2]
    test = _split([texts[i].lower() for i in kept], [int(labels[i] > 2) for i in kept],
                  f"{test_path!r} without its neutral (2) trees")
    return TextClassificationData(
        train=train, valid=valid, test=test, num_classes=2, class_names=BINARY_CLASSES,
        source=f"GLUE SST-2 from {directory} (train = train.tsv, valid = dev.tsv); test = binary "
               f"SST trees test from {trees_directory} (GLUE's test labels are hidden)")


# ----------------------------------------------------------------------------- UCI

def _read_uci(path):
    lines = _read_lines(path, f"one of the UCI 'Sentiment Labelled Sentences' files ({UCI_URL})")
    texts, labels = [], []
    for number, line in enumerate(lines, start=1):
        sentence, tab, label = line.rpartition("\t")  # the label is the last field
        if not tab or not sentence.strip():
            raise ValueError(f"{path!r} line {number}: expected 'sentence<TAB>label' (label 0 "
                             f"or 1), found {_show(line)}. A header line, if one was added, "
                             "must be removed.")
        texts.append(sentence.strip())
        labels.append(_binary_label(label.strip(), path, number, line))
    return _split(texts, labels, repr(path))


def load_uci(directory, name, fold=None, seed=0):
    """One UCI "Sentiment Labelled Sentences" file (Kotzias et al. 2015): 1,000 sentences, 500/500.

    The file has no split, so a fixed one is made: `stratified_folds` deals
    the sentences into 10 folds of 100 (50 + 50), shuffled with `seed`.
    `fold=k` gives fold k as test, fold k+1 (mod 10) as valid and the other 8
    as train (800 / 100 / 100): running k = 0..9 is 10-fold cross-validation,
    each sentence tested once. `fold=None` is the single fixed 80/10/10 split
    `fold=0`. Splits keep the file's order (the file mixes the classes).

    Args:
        directory: the folder holding `{amazon_cells,imdb,yelp}_labelled.txt`.
        name: "amazon", "imdb" or "yelp".
        fold: 0..9, or None for fold 0.
        seed: seed of the fold draw; the same seed gives the same folds.

    >>> data = load_uci("../shared/data/sentiment/uci_labelled_sentences", "yelp")  # doctest: +SKIP
    >>> len(data.train), len(data.valid), len(data.test)  # doctest: +SKIP
    (800, 100, 100)
    """
    if name == "amazon_cells":
        name = "amazon"
    if name not in UCI_FILES:
        raise ValueError(f"Unknown UCI set {name!r}; choose one of {sorted(UCI_FILES)}.")
    k = 0 if fold is None else fold
    if not isinstance(k, (int, np.integer)) or not 0 <= k < UCI_FOLDS:
        raise ValueError(f"fold must be None or an int in 0..{UCI_FOLDS - 1}. Received: "
                         f"fold={fold!r}")
    path = os.path.join(directory, UCI_FILES[name])
    everything = _read_uci(path)
    folds = stratified_folds(everything.labels, UCI_FOLDS, seed)
    valid_k = (k + 1) % UCI_FOLDS
    train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j not in (k, valid_k)]))
    parts = {"train": _take(everything, train), "valid": _take(everything, folds[valid_k]),
             "test": _take(everything, folds[k])}
    return TextClassificationData(
        **parts, num_classes=2, class_names=BINARY_CLASSES,
        source=f"UCI Sentiment Labelled Sentences ({name}) from {path}; stratified "
               f"{UCI_FOLDS}-fold split (seed {seed}): test = fold {k}, valid = fold {valid_k}")


# ----------------------------------------------------------------------------- by name

def load_sentiment(name, data_dir, **kwargs):
    """Load a set by name from a data root laid out like `shared/data`.

    `data_dir` holds `imdb/aclImdb_v1_labeled.tar.gz` (or `imdb/aclImdb/`) and
    `sentiment/{sst2_glue,sst_trees,uci_labelled_sentences}/`. `kwargs` go to
    the loader: `load_imdb` (imdb), `load_sst2` (sst2), `load_sst_trees`
    (sst5), `load_uci` (uci_amazon, uci_imdb, uci_yelp).

    >>> load_sentiment("uci_amazon", "../shared/data", fold=3).source  # doctest: +SKIP
    """
    sentiment = os.path.join(data_dir, "sentiment")
    if name == "imdb":
        return load_imdb(os.path.join(data_dir, "imdb"), **kwargs)
    if name == "sst2":
        return load_sst2(os.path.join(sentiment, "sst2_glue"), **kwargs)
    if name == "sst5":
        return load_sst_trees(os.path.join(sentiment, "sst_trees"), binary=False, **kwargs)
    if name.startswith("uci_") and name[4:] in UCI_FILES:
        return load_uci(os.path.join(sentiment, "uci_labelled_sentences"), name[4:], **kwargs)
    raise ValueError(f"Unknown sentiment set {name!r}; choose one of {list(SENTIMENT_SETS)}.")
