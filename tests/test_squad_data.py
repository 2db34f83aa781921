"""SQuAD v1.1 data for BiDAF on the real dev file and GloVe copy (shared/data, no network)."""

import collections
import gzip
import itertools
import json
import os

import numpy as np
import pytest

from conftest import SHARED_DATA, shared_file
from iss_keras.datasets import glove, squad
from iss_keras.datasets.glove import load_glove
from iss_keras.datasets.squad import best_span, span_to_answer, tokenize_with_offsets

DEV = os.path.join(SHARED_DATA, "squad", "dev-v1.1.json")
GLOVE = os.path.join(SHARED_DATA, "glove", "glove.6B.50d.top50000.txt.gz")


@pytest.fixture(scope="module")
def dev_json():
    with open(shared_file(DEV), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def dev_examples():
    return squad.read_squad(shared_file(DEV))


@pytest.fixture(scope="module")
def split_data():
    return squad.load_squad(shared_file(DEV), split="dev_articles")


@pytest.fixture(scope="module")
def glove_50k():
    return load_glove(shared_file(GLOVE))


@pytest.fixture(scope="module")
def vocab(split_data, glove_50k):
    return squad.build_vocabulary(split_data["train"], glove_50k[0])


@pytest.fixture(scope="module")
def train_encoded(split_data, vocab):
    return squad.encode_examples(split_data["train"], vocab)


def _questions(articles):
    return sum(len(p["qas"]) for a in articles for p in a["paragraphs"])


# ------------------------------------------------------------------ counts and split

def test_dev_file_counts(dev_json, dev_examples):
    articles = dev_json["data"]
    assert dev_json["version"] == "1.1"
    assert len(articles) == 48
    assert sum(len(a["paragraphs"]) for a in articles) == 2067
    assert _questions(articles) == 10570
    assert len(dev_examples) == 10570
    assert len({e["id"] for e in dev_examples}) == 10570
    assert len({(e["article_index"], e["paragraph_index"]) for e in dev_examples}) == 2067
    first = dev_examples[0]
    assert first["title"] == "Super_Bowl_50" and first["paragraph_index"] == 0
    assert first["answers"][0] == {"text": "Denver Broncos", "answer_start": 177}


def test_dev_article_split_sizes_and_disjoint(dev_json, split_data):
    train_idx, eval_idx = squad.dev_article_split()
    assert eval_idx == [4, 9, 14, 19, 24, 29, 34, 39, 44]
    assert len(train_idx) == 39 and set(train_idx) | set(eval_idx) == set(range(48))
    assert not set(train_idx) & set(eval_idx)
    train, ev = split_data["train"], split_data["eval"]
    assert split_data["split"] == "dev_articles"
    assert len(ev) == 1975 and len(train) == 8595
    assert {e["article_index"] for e in ev} == set(eval_idx)
    assert {e["article_index"] for e in train} == set(train_idx)
    assert len({(e["article_index"], e["paragraph_index"]) for e in ev}) == 439
    assert len({(e["article_index"], e["paragraph_index"]) for e in train}) == 1628
    assert not {e["id"] for e in train} & {e["id"] for e in ev}
    assert not {e["title"] for e in train} & {e["title"] for e in ev}
    assert split_data["eval_dataset"]["data"] == [dev_json["data"][i] for i in eval_idx]


def test_eval_json_round_trips_and_scores(tmp_path, split_data):
    out = squad.write_dev_article_eval_json(DEV, str(tmp_path / "eval" / "dev_articles_eval.json"))
    with open(out, encoding="utf-8") as f:
        written = json.load(f)
    assert written["version"] == "1.1" and len(written["data"]) == 9
    assert written == split_data["eval_dataset"]
    assert not [p for p in os.listdir(tmp_path / "eval") if p.startswith(".")]  # no temp left
    reread = squad.read_squad(out)
    assert [e["id"] for e in reread] == [e["id"] for e in split_data["eval"]]
    assert [e["context_tokens"] for e in reread[:50]] == [e["context_tokens"]
                                                          for e in split_data["eval"][:50]]
    # Predicting every first answer scores 100; dropping half the questions halves EM.
    predictions = {e["id"]: e["answers"][0]["text"] for e in reread}
    pred_path = str(tmp_path / "predictions.json")
    squad.write_predictions(pred_path, dict(predictions, scores={"x": 0.5}))
    assert squad.read_predictions(pred_path) == predictions  # the original's "scores" dropped
    assert squad.evaluate_file(out, pred_path) == {"exact_match": 100.0, "f1": 100.0}
    half = dict(itertools.islice(predictions.items(), 0, None, 2))
    assert squad.evaluate(written["data"], half)["exact_match"] == pytest.approx(
        100.0 * len(half) / 1975)


def test_official_protocol_and_errors(tmp_path, dev_json):
    train_file, eval_file = tmp_path / "train-v1.1.json", tmp_path / "dev-v1.1.json"
    train_file.write_text(json.dumps({"version": "1.1", "data": dev_json["data"][:2]}))
    eval_file.write_text(json.dumps({"version": "1.1", "data": dev_json["data"][2:3]}))
    data = squad.load_squad(str(eval_file), train_path=str(train_file), split="official")
    assert data["split"] == "official"
    assert len(data["train"]) == _questions(dev_json["data"][:2])
    assert len(data["eval"]) == _questions(dev_json["data"][2:3])
    assert data["eval_dataset"]["data"] == dev_json["data"][2:3]
    with pytest.raises(ValueError, match="train_path must be None"):
        squad.load_squad(DEV, train_path=str(train_file), split="dev_articles")
    with pytest.raises(ValueError, match="needs train_path"):
        squad.load_squad(DEV, split="official")
    with pytest.raises(ValueError, match="48 articles.*has 1"):
        squad.load_squad(str(eval_file), split="dev_articles")
    with pytest.raises(ValueError, match="split must be one of"):
        squad.load_squad(DEV, split="dev")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        squad.read_squad(str(tmp_path / "missing.json"))


# ------------------------------------------------------------------ tokeniser

@pytest.mark.parametrize("text, tokens", [
    ("Denver Broncos won.", ["Denver", "Broncos", "won", "."]),
    ("Don't pay $1,000.50 (U.S.) for it!", ["Do", "n", "'", "t", "pay", "$", "1,000.50", "(",
                                           "U.S.", ")", "for", "it", "!"]),
    ("state-of-the-art 1990–2000 and/or ~5°C", ["state", "-", "of", "-", "the", "-", "art", "1990",
                                               "–", "2000", "and", "/", "or", "~", "5", "°", "C"]),
    ('He said "yes." Then Mr. Smith left.', ["He", "said", '"', "yes", ".", '"', "Then", "Mr.",
                                            "Smith", "left", "."]),
    ("At 10:30, e.g. here... Wait--no?", ["At", "10:30", ",", "e.g.", "here", "...", "Wait", "-",
                                          "-", "no", "?"]),
    ("Tesla’s “coil” cannot fail; 40% of £41,004.",
     ["Tesla", "’", "s", "“", "coil", "”", "can", "not", "fail", ";", "40", "%", "of", "£",
      "41,004", "."]),
    ("New York City:57 and 1873.:33", ["New", "York", "City", ":", "57", "and", "1873.", ":", "33"]),
    ("``Quote'' x\u200bzero \ufeffbom", ["``", "Quote", "''", "x", "zero", "bom"]),
    ("Case Kept", ["Case", "Kept"]),
    ("", []),
])
def test_tokenizer_hand_cases(text, tokens):
    result = tokenize_with_offsets(text)
    assert [t for t, _, _ in result] == tokens
    assert all(text[s:e] == t for t, s, e in result)


def test_tokenizer_rejects_non_strings():
    with pytest.raises(TypeError, match="expects a str"):
        tokenize_with_offsets(None)


def test_tokens_index_every_dev_paragraph_and_question(dev_json):
    count = 0
    for article in dev_json["data"]:
        for paragraph in article["paragraphs"]:
            texts = [paragraph["context"]] + [qa["question"] for qa in paragraph["qas"]]
            for text in texts:
                previous_end = 0
                for token, start, end in tokenize_with_offsets(text):
                    assert text[start:end] == token and token, (text, token, start)
                    assert start >= previous_end and not any(c.isspace() for c in token)
                    previous_end = end
                    count += 1
    assert count > 400_000


def test_normalize_lowercases_only():
    assert squad.normalize("Temüjin") == "temüjin"
    assert squad.normalize("U.S.") == "u.s."


# ------------------------------------------------------------------ answer alignment

def test_every_dev_answer_aligns(dev_examples):
    answers = sum(len(e["answers"]) for e in dev_examples)
    assert answers == 34726
    assert squad.unaligned_answers(dev_examples) == []  # 0 of 34,726
    exact, total = 0, 0
    for e in dev_examples:
        for answer, (i, j) in zip(e["answers"], e["answer_spans"]):
            start = answer["answer_start"]
            assert e["context"][start:start + len(answer["text"])] == answer["text"]
            assert 0 <= i <= j < len(e["context_tokens"])
            text = span_to_answer(e["context"], e["context_tokens"], i, j)
            assert answer["text"].strip() in text  # the span covers the answer
            exact += squad.exact_match_score(text, answer["text"])
            total += 1
    # The rest are answers that are part of a word ("Japan" in "Japanese").
    assert exact / total > 0.995


def test_answer_token_span_hand_cases():
    tokens = tokenize_with_offsets("the Japanese army, 1990.")
    assert squad.answer_token_span(tokens, 4, 9) == [1, 1]    # "Japan": part of a token
    assert squad.answer_token_span(tokens, 4, 17) == [1, 2]   # "Japanese army"
    assert squad.answer_token_span(tokens, 19, 23) == [4, 4]  # "1990"
    assert squad.answer_token_span(tokens, 18, 19) is None    # a space only
    assert squad.answer_token_span(tokens, 0, 24) == [0, 5]


# ------------------------------------------------------------------ official scoring

def test_normalize_answer_rules():
    assert squad.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert squad.normalize_answer("an apple, a pear") == "apple pear"
    assert squad.normalize_answer("theatre anthem") == "theatre anthem"  # whole words only
    assert squad.normalize_answer("  U.S.\n") == "us"
    assert squad.normalize_answer("“curly”") == "“curly”"  # only ASCII punctuation


def test_scores_on_tricky_cases():
    assert squad.exact_match_score("the Denver Broncos.", "Denver  Broncos")
    assert not squad.exact_match_score("Denver", "Denver Broncos")
    assert squad.f1_score("the big red dog", "red dog barked") == pytest.approx(2 / 3)
    assert squad.f1_score("Denver", "Denver Broncos") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert squad.f1_score("dog dog", "dog") == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts clip
    assert squad.f1_score("", "Denver") == 0 and not squad.exact_match_score("", "Denver")
    # An empty prediction equals a truth that normalises to nothing, yet has F1 0.
    assert squad.exact_match_score("", "The") and squad.f1_score("", "The") == 0
    truths = ["Broncos", "Denver Broncos", "the Broncos of Denver"]
    assert squad.metric_max_over_ground_truths(squad.f1_score, "Denver Broncos", truths) == 1.0
    assert squad.metric_max_over_ground_truths(squad.exact_match_score, "broncos", truths)


def test_evaluate_counts_unanswered_as_zero():
    dataset = [{"title": "t", "paragraphs": [{"context": "c", "qas": [
        {"id": "q1", "question": "?", "answers": [{"text": "Denver Broncos", "answer_start": 0},
                                                  {"text": "Broncos", "answer_start": 7}]},
        {"id": "q2", "question": "?", "answers": [{"text": "1990", "answer_start": 0}]},
        {"id": "q3", "question": "?", "answers": [{"text": "red dog", "answer_start": 0}]}]}]}]
    scores = squad.evaluate(dataset, {"q1": "the broncos", "q3": "big red dog", "zz": "x"})
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0 + 0.8) / 3)


# ------------------------------------------------------------------ span decoding

def _brute_force(p1, p2):
    pairs = [(p1[i] * p2[j], i, j) for j in range(len(p1)) for i in range(j + 1)]
    return max(pairs, key=lambda t: t[0])


def test_best_span_hand_cases():
    assert best_span([0.1, 0.8, 0.1], [0.1, 0.8, 0.1])[0] == (1, 1)  # i == j
    assert best_span([0.1, 0.2, 0.7], [0.0, 0.1, 0.9])[0] == (2, 2)  # the last token
    # argmax p1 = 2 comes after argmax p2 = 0: the best valid product is elsewhere.
    (i, j), score = best_span([0.3, 0.1, 0.6, 0.0], [0.5, 0.2, 0.0, 0.3])
    assert (i, j) == (2, 3) and score == pytest.approx(0.18)
    (i, j), score = best_span([0.2, 0.5, 0.3, 0.0], [0.6, 0.0, 0.0, 0.4])
    assert (i, j) == (1, 3) and score == pytest.approx(0.2)  # not (1, 0) nor (0, 0)
    # Only the first `length` positions count (the unpadded context).
    assert best_span([0.1, 0.9, 0.5, 0.5], [0.0, 0.2, 0.9, 0.1], length=2)[0] == (1, 1)
    assert best_span([0.1, 0.9, 0.5, 0.5], [0.0, 0.2, 0.9, 0.1])[0] == (1, 2)
    assert best_span([1.0], [1.0]) == ((0, 0), 1.0)
    with pytest.raises(ValueError, match="same length"):
        best_span([0.5, 0.5], [1.0])


def test_best_span_matches_brute_force():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 40, 200):
        for _ in range(20):
            p1, p2 = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
            (i, j), score = best_span(p1, p2)
            best, _, _ = _brute_force(p1, p2)
            assert i <= j and score == pytest.approx(best) and p1[i] * p2[j] == pytest.approx(best)


def test_span_to_answer_keeps_the_last_token():
    context = "The game was won by the Denver Broncos"
    tokens = tokenize_with_offsets(context)
    last = len(tokens) - 1
    # The original returned "" here (evaluator.py:300 compared the exclusive end with the length).
    assert span_to_answer(context, tokens, last - 1, last) == "Denver Broncos"
    assert span_to_answer(context, tokens, last, last) == "Broncos"
    assert span_to_answer(context, tokens, 0, last) == context
    assert span_to_answer(context, [(s, e) for _, s, e in tokens], 1, 1) == "game"
    text = "Nikola Tesla (10 July 1856 – 7 January 1943)"
    toks = tokenize_with_offsets(text)
    assert span_to_answer(text, toks, 3, 5) == "10 July 1856"  # original spacing kept
    with pytest.raises(ValueError, match="0 <= i <= j"):
        span_to_answer(context, tokens, 3, 2)
    with pytest.raises(ValueError, match="0 <= i <= j"):
        span_to_answer(context, tokens, 0, last + 1)


# ------------------------------------------------------------------ vocabularies

def _naive_counts(examples):
    words, chars = collections.Counter(), collections.Counter()
    for e in examples:  # each question sees its paragraph once: the original's weighting
        for token, _, _ in list(e["context_tokens"]) + list(e["question_tokens"]):
            words[token.lower()] += 1
            chars.update(token)
    return words, chars


def test_vocabulary_from_training_articles_only(split_data, glove_50k, vocab):
    glove_words = glove_50k[0]
    glove_set = set(glove_words)
    words, chars = _naive_counts(split_data["train"])
    eval_words = {t.lower() for e in split_data["eval"]
                  for t, _, _ in list(e["context_tokens"]) + list(e["question_tokens"])}
    assert vocab["words"][:2] == ["-NULL-", "-UNK-"] and vocab["chars"][:2] == ["-NULL-", "-UNK-"]
    n = vocab["num_trainable_words"]
    assert set(vocab["words"][2:n]) == {w for w, c in words.items() if c > 10 and w not in glove_set}
    assert vocab["words"][n:] == [w for w in glove_words if w in words]  # GloVe order
    assert set(vocab["chars"][2:]) == {c for c, k in chars.items() if k > 50}
    assert len(set(vocab["words"])) == len(vocab["words"])
    eval_only = eval_words - set(words)
    assert len(eval_only & glove_set) > 100  # e.g. words of "Computational_complexity_theory"
    assert not eval_only & set(vocab["words"])


def test_vocabulary_options_and_json(tmp_path, split_data, glove_50k, vocab):
    glove_words = glove_50k[0]
    with_eval = squad.build_vocabulary(split_data["train"], glove_words,
                                       extra_examples=split_data["eval"])
    assert with_eval["words"][:with_eval["num_trainable_words"]] == \
        vocab["words"][:vocab["num_trainable_words"]]  # eval counts never make trainable rows
    assert len(with_eval["words"]) > len(vocab["words"])
    tuned = squad.build_vocabulary(split_data["train"], glove_words, glove_rows="trainable",
                                   word_count_th=5)
    assert tuned["num_trainable_words"] == len(tuned["words"])
    assert set(vocab["words"][vocab["num_trainable_words"]:]) <= set(tuned["words"])
    path = str(tmp_path / "vocab.json")
    squad.save_vocabulary(vocab, path)
    assert squad.load_vocabulary(path) == vocab
    (tmp_path / "bad.json").write_text(json.dumps({"words": ["a"]}))
    with pytest.raises(ValueError, match="rebuild it with build_vocabulary"):
        squad.load_vocabulary(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="glove_rows must be"):
        squad.build_vocabulary(split_data["train"], glove_words, glove_rows="frozen")
    matrix = squad.word_embedding_matrix(vocab, *glove_50k, seed=0)
    assert matrix.shape == (len(vocab["words"]), 50) and matrix.dtype == np.float32
    the = vocab["words"].index("the")
    np.testing.assert_array_equal(matrix[the], glove_50k[1][glove_50k[0].index("the")])


# ------------------------------------------------------------------ GloVe

def test_load_glove_copy(glove_50k):
    words, matrix = glove_50k
    assert len(words) == 50000 and matrix.shape == (50000, 50) and matrix.dtype == np.float32
    assert words[0] == "the" and words[:4] == ["the", ",", ".", "of"]
    assert len(set(words)) == 50000
    assert abs(float(matrix[0, 0]) - 0.418) < 1e-6  # glove.6B.50d: "the 0.418 0.24968 ..."


def test_load_glove_filter_plain_file_and_errors(tmp_path):
    words, matrix = load_glove(GLOVE, words={"the", "cat", "not-a-glove-word"})
    assert words == ["the", "cat"] and matrix.shape == (2, 50)
    plain = tmp_path / "tiny.txt"
    plain.write_text("a 1 2 3\nb 4 5 6\n\n")
    words, matrix = load_glove(str(plain), dim=3)
    assert words == ["a", "b"]
    np.testing.assert_array_equal(matrix, [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_glove(str(tmp_path / "missing.txt.gz"))
    bad = tmp_path / "bad.txt.gz"
    with gzip.open(bad, "wt") as f:
        f.write("a 1 2 3\nb 4 5\n")
    with pytest.raises(ValueError, match=r"bad\.txt\.gz:2: expected a word and 3 numbers, found 2"):
        load_glove(str(bad), dim=3)
    with pytest.raises(ValueError, match=r"tiny\.txt:1: expected a word and 50 numbers"):
        load_glove(str(plain))
    assert glove.GLOVE_URL.startswith("https://")


# ------------------------------------------------------------------ batches

def test_bucketed_batches_shapes_and_targets(train_encoded, vocab):
    encoded = train_encoded
    batches = list(squad.squad_batches(encoded, 60, shuffle=True, seed=3))
    assert sorted(k for b in batches for k in b["indices"]) == list(range(len(encoded)))
    lengths = collections.Counter(b["context_words"].shape[1] for b in batches)
    assert set(lengths) == {96, 160, 256, 400}
    for b in batches:
        size, length = b["context_words"].shape
        assert size <= 60
        assert b["context_chars"].shape == (size, length, 16)
        assert b["question_words"].shape == (size, 30) and b["question_chars"].shape == (size, 30, 16)
        for row, k in enumerate(b["indices"]):
            e = encoded[k]
            n = len(e["context_words"])
            kept = min(n, length)
            smaller = [x for x in squad.DEFAULT_CONTEXT_BUCKETS if x < length]
            assert n <= length or length == 400
            assert not smaller or n > smaller[-1]  # the smallest bucket that fits
            assert b["context_mask"][row].sum() == kept and b["context_mask"][row, :kept].all()
            np.testing.assert_array_equal(b["context_words"][row, :kept], e["context_words"][:kept])
            assert (b["context_words"][row, kept:] == 0).all()
            assert b["question_mask"][row].sum() == min(len(e["question_words"]), 30)
            fitting = [sp for sp in e["answer_spans"] if sp[1] < kept]
            assert b["answerable"][row] == bool(fitting)
            if fitting:  # answer="first": the first answer that fits the kept context
                assert [b["start"][row], b["end"][row]] == fitting[0]
            assert b["ids"][row] == e["id"]
    assert sum(b["answerable"].sum() for b in batches) >= len(encoded) - 25
    # Ids index the vocabulary; chars of long words are cut at 16.
    assert max(int(b["context_words"].max()) for b in batches) < len(vocab["words"])
    assert max(int(b["context_chars"].max()) for b in batches) < len(vocab["chars"])


def test_batches_are_deterministic_for_a_seed(train_encoded):
    plan = lambda seed: squad.bucket_plan(train_encoded, 60, shuffle=True, seed=seed)  # noqa: E731
    assert plan(1) == plan(1) and plan(1) != plan(2)
    ordered = squad.bucket_plan(train_encoded, 60)
    assert [length for length, _ in ordered] == sorted(length for length, _ in ordered)
    assert all(idx == sorted(idx) for _, idx in ordered)
    a = list(squad.squad_batches(train_encoded, 60, shuffle=True, seed=5, answer="random"))
    b = list(squad.squad_batches(train_encoded, 60, shuffle=True, seed=5, answer="random"))
    assert all((x["start"] == y["start"]).all() and x["ids"] == y["ids"] for x, y in zip(a, b))


def test_eval_batches_without_truncation(split_data, vocab):
    encoded = squad.encode_examples(split_data["eval"], vocab, max_word_len=8)
    longest = max(len(e["context_words"]) for e in encoded)
    batches = list(squad.squad_batches(encoded, 32, max_context_len=None, max_question_len=None,
                                       max_word_len=8))
    longest_q = max(len(e["question_words"]) for e in encoded)
    assert max(b["context_words"].shape[1] for b in batches) == max(longest, 400)
    assert all(b["answerable"].all() for b in batches)  # nothing cut: every answer reachable
    assert all(b["question_words"].shape[1] == longest_q for b in batches)
    assert all(b["context_chars"].shape[2] == 8 for b in batches)
    # The decoded target span reproduces the answer's text (up to normalisation).
    by_id = {e["id"]: e for e in split_data["eval"]}
    hits = 0
    for b in batches:
        for row, qid in enumerate(b["ids"]):
            e = by_id[qid]
            text = span_to_answer(e["context"], e["context_tokens"], b["start"][row], b["end"][row])
            hits += squad.exact_match_score(text, e["answers"][0]["text"])
    assert hits / len(encoded) > 0.99


def test_training_filter_follows_the_original(split_data):
    train = split_data["train"]
    kept = squad.filter_training_examples(train)
    assert 8500 < len(kept) < len(train)
    assert all(len(e["question_tokens"]) <= 30 for e in kept)
    assert all(s[1] + 1 < 400 for e in kept for s in e["answer_spans"])
    dropped = {e["id"] for e in train} - {e["id"] for e in kept}
    assert all(len(e["question_tokens"]) > 30 or max(s[1] for s in e["answer_spans"]) >= 399
               for e in train if e["id"] in dropped)
