"""Sentiment loaders and the shared tokenizer, on the real files in ../shared/data."""

import collections
import os
import re
import tarfile

import numpy as np
import pytest

from conftest import SHARED_DATA as DATA
from conftest import shared_file
from iss_keras.datasets import (SENTIMENT_SETS, Vocabulary, encode_batch, load_imdb,
                                load_sentiment, load_sst2, load_sst_trees, load_uci, tokenize)
from iss_keras.datasets.sentiment import parse_sst_tree, stratified_folds

SENTIMENT = os.path.join(DATA, "sentiment")
IMDB_TAR = os.path.join(DATA, "imdb", "aclImdb_v1_labeled.tar.gz")
UCI_DIR = os.path.join(SENTIMENT, "uci_labelled_sentences")
UCI_NAMES = ("amazon", "imdb", "yelp")


@pytest.fixture(scope="module")
def imdb():
    return load_imdb(shared_file(IMDB_TAR))


@pytest.fixture(scope="module")
def imdb_raw():
    """{(split, label): Counter of texts}, read by plain code independent of the loader."""
    raw = collections.defaultdict(collections.Counter)
    with tarfile.open(shared_file(IMDB_TAR), "r|gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[2] in ("pos", "neg"):
                text = tar.extractfile(member).read().decode("utf-8").strip()
                raw[parts[1], int(parts[2] == "pos")][text] += 1
    return raw


def texts_by_label(split):
    out = collections.defaultdict(collections.Counter)
    for text, label in zip(split.texts, split.labels.tolist()):
        out[label][text] += 1
    return out


# ----------------------------------------------------------------------------- tokenizer

def test_tokenize_hand_cases():
    assert tokenize("Great movie!<br /><br />I LOVED it.") == [
        "great", "movie", "!", "i", "loved", "it", "."]
    assert tokenize("a<BR>b<br/>c") == ["a", "b", "c"]
    clitics = ["do", "n't", ",", "ca", "n't", ";", "it", "'s", "they", "'re"]
    assert tokenize("Don't, can't; it's they're") == clitics
    # SST/GLUE text is already cut this way; both must give the same tokens.
    assert tokenize("do n't , ca n't ; it 's they 're") == clitics
    assert tokenize("A slow-moving film -- 7/10...") == [
        "a", "slow-moving", "film", "-", "-", "7", "/", "10", ".", ".", "."]
    assert tokenize("Amélie isn\u2019t 'bad'") == ["amélie", "is", "n't", "'", "bad", "'"]
    assert tokenize("  ") == []
    with pytest.raises(TypeError, match="one text"):
        tokenize(["a", "list"])


# ----------------------------------------------------------------------------- vocabulary

def test_vocabulary_ids_pad_oov_then_count_then_word():
    train = [["b", "a", "b", "dc"], ["a", "cd", "b"]]  # b: 3, a: 2, dc and cd: 1 -> cd first
    v = Vocabulary.build(train)
    assert v.words == ("<pad>", "<oov>", "b", "a", "cd", "dc") and v.size == len(v) == 6
    assert v.encode(["a", "b", "zzz", "dc"]).tolist() == [3, 2, 1, 5]
    assert v.encode([]).dtype == np.int32
    assert Vocabulary.build(train[::-1]) == v  # ids do not depend on the order of the texts
    assert Vocabulary.build(train, max_size=4).words == ("<pad>", "<oov>", "b", "a")
    assert Vocabulary.build(train, min_count=2).words == ("<pad>", "<oov>", "b", "a")
    assert Vocabulary.from_json(v.to_json()) == v
    assert Vocabulary.from_config(v.get_config()) == v
    assert v.decode(np.array([[0, 3, 2]])) == ["a", "b"]
    with pytest.raises(ValueError, match="max_size=1"):
        Vocabulary.build(train, max_size=1)
    with pytest.raises(TypeError, match="str 'abc'"):
        Vocabulary.build(["abc"])
    with pytest.raises(ValueError, match="first two words"):
        Vocabulary(["a", "b"])


def test_vocabulary_from_train_only_maps_test_only_words_to_oov():
    data = load_uci(UCI_DIR, "yelp")
    train_tokens = [tokenize(t) for t in data.train.texts]
    v = Vocabulary.build(train_tokens)
    seen = {w for tokens in train_tokens for w in tokens}
    test_only = sorted({w for t in data.test.texts for w in tokenize(t)} - seen)
    assert test_only, "yelp's test fold should hold words never seen in train"
    assert v.encode(test_only).tolist() == [1] * len(test_only)
    assert (v.encode(train_tokens[0]) >= 2).all()
    assert set(v.words[2:]) == seen


def test_encode_batch_pads_and_truncates_like_keras():
    import keras

    v = Vocabulary(["<pad>", "<oov>", "a", "b", "c"])
    batch = [["a", "b", "c"], ["b"], [], ["x", "a"]]
    assert encode_batch(batch, v, 2).tolist() == [[3, 4], [0, 3], [0, 0], [1, 2]]
    assert encode_batch(batch, v, 2, truncating="post", padding="post").tolist() == [
        [2, 3], [3, 0], [0, 0], [1, 2]]
    assert encode_batch(batch, v).shape == (4, 3) and encode_batch(batch, v).dtype == np.int32
    ids = [v.encode(tokens).tolist() for tokens in batch]
    for truncating in ("pre", "post"):
        for padding in ("pre", "post"):
            ours = encode_batch(batch, v, 2, truncating=truncating, padding=padding)
            theirs = keras.utils.pad_sequences(ids, maxlen=2, truncating=truncating,
                                               padding=padding)
            np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ValueError, match="padding='middle'"):
        encode_batch(batch, v, 2, padding="middle")
    with pytest.raises(ValueError, match="max_length=0"):
        encode_batch(batch, v, 0)


# ----------------------------------------------------------------------------- IMDB

def test_imdb_counts_balance_and_validation_carved_from_train(imdb, imdb_raw):
    sizes = {name: (len(s), np.bincount(s.labels).tolist()) for name, s in imdb.splits().items()}
    assert sizes == {"train": (21250, [10625, 10625]), "valid": (3750, [1875, 1875]),
                     "test": (25000, [12500, 12500])}
    assert imdb.num_classes == 2 and imdb.train.labels.dtype == np.int32
    # train + valid is exactly aclImdb/train (per class, duplicates included); test untouched.
    train, valid, test = (texts_by_label(s) for s in (imdb.train, imdb.valid, imdb.test))
    for label in (0, 1):
        assert train[label] + valid[label] == imdb_raw["train", label]
        assert test[label] == imdb_raw["test", label]
    # (aclImdb itself repeats a few reviews, some across train and test, so texts are not unique.)
    # The files are grouped by class; the returned order mixes them.
    assert 0.3 < imdb.train.labels[:200].mean() < 0.7
    assert 0.3 < imdb.test.labels[:200].mean() < 0.7


def write_tiny_imdb(root, per_folder=4):
    for split in ("train", "test"):
        for folder, rating in (("neg", 2), ("pos", 9)):
            directory = root / "aclImdb" / split / folder
            directory.mkdir(parents=True)
            for i in range(per_folder):
                (directory / f"{i}_{rating}.txt").write_text(f"{split} {folder} review {i}<br />.")
    archive = root / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "aclImdb", arcname="aclImdb")
    return root / "aclImdb", archive


def test_imdb_directory_and_archive_agree_and_split_is_fixed(tmp_path):
    directory, archive = write_tiny_imdb(tmp_path)
    a, b = load_imdb(str(directory)), load_imdb(str(archive))
    again, other = load_imdb(str(directory)), load_imdb(str(directory), seed=1)
    for x, y in ((a, b), (a, again)):
        for name in ("train", "valid", "test"):
            assert x.splits()[name].texts == y.splits()[name].texts
            np.testing.assert_array_equal(x.splits()[name].labels, y.splits()[name].labels)
    assert (len(a.train), len(a.valid), len(a.test)) == (6, 2, 8)  # round(0.15 * 4) = 1 per class
    assert sorted(a.valid.labels.tolist()) == [0, 1]
    assert set(a.train.texts).isdisjoint(a.valid.texts)
    assert any(x.texts != y.texts for x, y in zip(a.splits().values(), other.splits().values()))


def test_imdb_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="No IMDB reviews.*aclImdb_v1_labeled.tar.gz"):
        load_imdb(str(tmp_path / "nowhere"))
    directory, _ = write_tiny_imdb(tmp_path)
    with pytest.raises(ValueError, match=r"valid_fraction=1\.5"):
        load_imdb(str(directory), valid_fraction=1.5)
    with pytest.raises(ValueError, match="IMDB valid split.*holds no examples"):
        load_imdb(str(directory), valid_fraction=0.01)
    os.rename(directory / "test" / "pos" / "0_9.txt", directory / "test" / "pos" / "0_3.txt")
    with pytest.raises(ValueError, match="'0_3.txt' has rating 3, but pos reviews are rated 7..10"):
        load_imdb(str(directory))
    os.rename(directory / "test" / "pos" / "0_3.txt", directory / "test" / "pos" / "review.txt")
    with pytest.raises(ValueError, match="<id>_<rating>.txt.*'review.txt'"):
        load_imdb(str(directory))
    for name in os.listdir(directory / "test" / "pos"):
        os.remove(directory / "test" / "pos" / name)
    with pytest.raises(ValueError, match="holds no test/pos reviews"):
        load_imdb(str(directory))
    os.rmdir(directory / "test" / "pos")
    with pytest.raises(FileNotFoundError, match=re.escape(str(directory / "test" / "pos"))):
        load_imdb(str(directory))


# ----------------------------------------------------------------------------- SST

def test_sst2_counts_and_binary_tree_test_set():
    data = load_sentiment("sst2", DATA)
    assert (len(data.train), len(data.valid), len(data.test)) == (67349, 872, 1821)
    assert np.bincount(data.train.labels).tolist() == [29780, 37569]
    assert np.bincount(data.valid.labels).tolist() == [428, 444]
    assert np.bincount(data.test.labels).tolist() == [279 + 633, 510 + 399]
    # The binary trees' dev set is GLUE's dev.tsv exactly, so the trees' test set (GLUE's
    # hidden-label test) is built the same way: same unescaping, same lower case.
    trees = load_sst_trees(os.path.join(SENTIMENT, "sst_trees"), binary=True)
    assert (len(trees.train), len(trees.valid), len(trees.test)) == (6920, 872, 1821)
    pairs = collections.Counter(zip([t.lower() for t in trees.valid.texts],
                                    trees.valid.labels.tolist()))
    assert pairs == collections.Counter(zip(data.valid.texts, data.valid.labels.tolist()))
    with open(os.path.join(SENTIMENT, "sst2_glue", "test.tsv"), encoding="utf-8") as f:
        glue_test = collections.Counter(row.split("\t")[1].strip()
                                        for row in f.read().split("\n")[1:] if row)
    same = sum((collections.Counter(data.test.texts) & glue_test).values())
    assert same == 1815  # the other 6 differ in spelling: "humour" vs GLUE's "humor"


def test_sst5_root_label_counts_and_tree_parsing():
    data = load_sentiment("sst5", DATA)
    assert data.num_classes == 5 and len(data.class_names) == 5
    assert {name: np.bincount(s.labels).tolist() for name, s in data.splits().items()} == {
        "train": [1092, 2218, 1624, 2322, 1288], "valid": [139, 289, 229, 279, 165],
        "test": [279, 633, 389, 510, 399]}
    assert data.test.texts[0] == "Effective but too-tepid biopic"
    assert parse_sst_tree("(3 (2 (1 -LRB-) (2 Næs)) (3 (3 a\\/b) (2 -RRB-)))") == (
        3, ["(", "Næs", "a/b", ")"])
    for bad, expected in (("(3 (2 a) (5 b))", "label 0..4.*'5'"),
                          ("(3 (2 a) (2 b)", "balanced"),
                          ("(3 (2 a)) (2 b)", "end after the root"),
                          ("word (2 a)", "outside")):
        with pytest.raises(ValueError, match=expected):
            parse_sst_tree(bad)


# ----------------------------------------------------------------------------- UCI

def uci_lines(name):
    file = {"amazon": "amazon_cells_labelled.txt"}.get(name, f"{name}_labelled.txt")
    with open(shared_file(os.path.join(UCI_DIR, file)), encoding="utf-8") as f:
        rows = [line.rsplit("\t", 1) for line in f.read().split("\n") if line]
    return [(text.strip(), int(label)) for text, label in rows]


@pytest.mark.parametrize("name", UCI_NAMES)
def test_uci_folds_are_stratified_disjoint_complete_and_fixed(name):
    lines = uci_lines(name)
    labels = np.array([label for _, label in lines])
    assert len(lines) == 1000 and np.bincount(labels).tolist() == [500, 500]
    folds = stratified_folds(labels, 10, seed=0)
    assert [np.bincount(labels[f]).tolist() for f in folds] == [[50, 50]] * 10
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(1000))  # each line once
    assert all(np.array_equal(a, b) for a, b in zip(folds, stratified_folds(labels, 10, seed=0)))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, stratified_folds(labels, 10, 1)))

    everything = collections.Counter(lines)
    tested = collections.Counter()
    for k in range(10):
        data = load_uci(UCI_DIR, name, fold=k)
        parts = [collections.Counter(zip(s.texts, s.labels.tolist())) for s in
                 (data.train, data.valid, data.test)]
        assert [len(s) for s in (data.train, data.valid, data.test)] == [800, 100, 100]
        assert [np.bincount(s.labels).tolist() for s in (data.valid, data.test)] == [[50, 50]] * 2
        assert parts[0] + parts[1] + parts[2] == everything  # disjoint and complete
        assert data.valid.texts == load_uci(UCI_DIR, name, fold=(k + 1) % 10).test.texts
        tested += parts[2]
    assert tested == everything  # 10-fold: every line is tested exactly once
    assert load_uci(UCI_DIR, name).test.texts == load_sentiment(f"uci_{name}", DATA,
                                                                fold=0).test.texts


def test_uci_errors_name_file_line_and_value(tmp_path):
    with pytest.raises(FileNotFoundError, match="yelp_labelled.txt' does not exist.*UCI"):
        load_uci(str(tmp_path), "yelp")
    path = tmp_path / "yelp_labelled.txt"
    path.write_text("Good food.\t1\nno label here\n")
    with pytest.raises(ValueError, match="line 2: expected 'sentence<TAB>label'.*'no label here'"):
        load_uci(str(tmp_path), "yelp")
    path.write_text("Good food.\t1\nBad food.\t2\n")
    with pytest.raises(ValueError, match="yelp_labelled.txt' line 2: label '2' is not 0 or 1"):
        load_uci(str(tmp_path), "yelp")
    with pytest.raises(ValueError, match="Unknown UCI set 'twitter'"):
        load_uci(str(tmp_path), "twitter")
    with pytest.raises(ValueError, match="fold=10"):
        load_uci(UCI_DIR, "yelp", fold=10)
    with pytest.raises(ValueError, match="Unknown sentiment set 'mr'.*'uci_yelp'"):
        load_sentiment("mr", DATA)
    assert set(SENTIMENT_SETS) == {"imdb", "sst2", "sst5", "uci_amazon", "uci_imdb", "uci_yelp"}


def test_glue_errors_name_file_line_and_value(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.tsv' does not exist.*GLUE's SST-2"):
        load_sst2(str(tmp_path))
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na fine film \t1\n")
    (tmp_path / "dev.tsv").write_text("index\tsentence\n0\ta film\n")
    with pytest.raises(ValueError, match="dev.tsv' line 1: expected the header"):
        load_sst2(str(tmp_path))
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(ValueError, match="dev.tsv' holds no examples"):
        load_sst2(str(tmp_path))
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nok\t0\ntwo\ttabs\t1\n")
    with pytest.raises(ValueError, match="dev.tsv' line 3: expected 'sentence<TAB>label'"):
        load_sst2(str(tmp_path))
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nok\t0\n")
    with pytest.raises(FileNotFoundError, match="sst_trees.*test.txt' does not exist"):
        load_sst2(str(tmp_path))
    trees = tmp_path / "trees"
    trees.mkdir()
    (trees / "test.txt").write_text("(4 (4 good))\n(1 (1 bad)\n")
    with pytest.raises(ValueError, match="test.txt' line 2: expected a complete tree"):
        load_sst2(str(tmp_path), trees_directory=str(trees))
    (trees / "test.txt").write_text("(4 (4 Good))\n(1 (1 bad))\n")
    data = load_sst2(str(tmp_path), trees_directory=str(trees))
    assert data.test.texts == ["good", "bad"] and data.test.labels.tolist() == [1, 0]


def test_lobachevas_imdb_input_start_token_first_tokens_front_padding():
    # classification_data_utils.py:93-122 (Lobacheva et al.): start_char before the text, then
    # x[:maxlen] (the start and the first maxlen - 1 words), zeros at the front, mask on them.
    from iss_keras.datasets.sentiment import TextClassificationData, TextSplit
    from iss_keras.tasks.classification import (START_TOKEN, ClassificationConfig,
                                                TextClassificationTask)

    texts = ["a b c d e f", "b c", "c d e f g"]
    split = TextSplit(texts, np.array([0, 1, 0], "int32"))
    data = TextClassificationData(split, split, split, 2, ("n", "p"), "test")
    ours = TextClassificationTask(None, data, ClassificationConfig(max_length=4))
    theirs = TextClassificationTask(None, data, ClassificationConfig(
        max_length=4, truncating="post", start_token=True))
    words = theirs.vocabulary.words
    decoded = [[words[i] if i else None for i in row] for row in theirs.arrays["test"][0]]
    assert decoded == [[START_TOKEN, "a", "b", "c"], [None, START_TOKEN, "b", "c"],
                       [START_TOKEN, "c", "d", "e"]]
    assert theirs.vocabulary.encode([START_TOKEN])[0] > 1  # a word of the vocabulary, not OOV
    ours_words = ours.vocabulary.words
    assert [ours_words[i] for i in ours.arrays["test"][0][0]] == ["c", "d", "e", "f"]
    with pytest.raises(ValueError, match="truncating must be one of \\('pre', 'post'\\).*'middle'"):
        ClassificationConfig(truncating="middle")


@pytest.mark.parametrize("config", ["imdb_lobacheva_dense", "imdb_sparsevd_w", "imdb_sparsevd_wn",
                                    "imdb_sparsevd_wgn", "imdb_sparsevd_wgn_glove"])
def test_lobachevas_imdb_configs_read_their_input(config):
    from helpers import read_trainer_options
    from iss_keras.tasks.classification import ClassificationConfig

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    flagfile = os.path.join(root, "sentiment", "configs", f"{config}.flags")
    options = read_trainer_options("sentiment/train.py", f"--flagfile={flagfile}")
    data = options[ClassificationConfig]
    model = next(o for o in options.values() if hasattr(o, "mask_padding"))
    assert (data.max_words, data.max_length, data.truncating, data.start_token,
            model.mask_padding) == (20000, 200, "post", True, True)
