"""Model inputs: examples as word and char ids, grouped in context-length buckets, padded.

A batch is a dict of arrays (`make_batch`): the four inputs of the model
(`context_words`, `context_chars`, `question_words`, `question_chars`), the
masks, the target span and the examples' ids.
"""

import bisect

import numpy as np

from iss_keras.datasets.squad.read import QUES_SIZE_TH, SENT_SIZE_TH
from iss_keras.datasets.squad.tokenizer import normalize

# The original's default (bidaf/basic/cli.py).
WORD_SIZE_TH = 16    # cli.py:98, chars kept per word (model.py:593, 606)

# Context length buckets (tokens). SQuAD v1.1 dev contexts: median 131 tokens,
# 95th percentile 252, max 708 with this tokeniser (18 of 2,067 exceed 400). The last bucket is the
# context limit.
DEFAULT_CONTEXT_BUCKETS = (96, 160, 256, SENT_SIZE_TH)


def encode_examples(examples, vocabulary, max_word_len=WORD_SIZE_TH):
    """Word and char ids of every example (each paragraph encoded once).

    Returns a list of dicts, one per example: "id", "context_words" int32
    `[n]`, "context_chars" int32 `[n, max_word_len]` (a word's first
    `max_word_len` chars, cli.py:98), "question_words", "question_chars",
    "answer_spans". Unknown words and chars get id 1 (`-UNK-`), padding 0.
    """
    word_index = {w: i for i, w in enumerate(vocabulary["words"])}
    char_index = {c: i for i, c in enumerate(vocabulary["chars"])}
    token_cache = {}

    def encode_tokens(tokens):
        ids = np.zeros(len(tokens), dtype=np.int32)
        chars = np.zeros((len(tokens), max_word_len), dtype=np.int32)
        for k, token in enumerate(tokens):
            text = token[0]
            if text not in token_cache:
                row = [char_index.get(c, 1) for c in text[:max_word_len]]
                token_cache[text] = (word_index.get(normalize(text), 1), row)
            ids[k], row = token_cache[text]
            chars[k, :len(row)] = row
        return ids, chars

    paragraphs = {}
    encoded = []
    for ex in examples:
        key = (ex["article_index"], ex["paragraph_index"], ex["context"])
        if key not in paragraphs:
            paragraphs[key] = encode_tokens(ex["context_tokens"])
        context_words, context_chars = paragraphs[key]
        question_words, question_chars = encode_tokens(ex["question_tokens"])
        encoded.append({"id": ex["id"], "context_words": context_words,
                        "context_chars": context_chars, "question_words": question_words,
                        "question_chars": question_chars, "answer_spans": ex["answer_spans"]})
    return encoded


def _bucket_lengths(encoded, buckets, max_context_len):
    longest = max(len(e["context_words"]) for e in encoded)
    if max_context_len is None:
        lengths = sorted(set(int(b) for b in buckets))
        if not lengths or longest > lengths[-1]:
            lengths.append(longest)
        return lengths
    return sorted(set(int(b) for b in buckets if b < max_context_len)) + [int(max_context_len)]


def bucket_plan(encoded, batch_size, buckets=DEFAULT_CONTEXT_BUCKETS, max_context_len=SENT_SIZE_TH,
                shuffle=False, seed=0):
    """Group examples into batches of similar context length.

    Each example goes to the smallest bucket length that holds its context
    (contexts longer than `max_context_len` go to the last bucket and are cut
    there). With `max_context_len=None` nothing is cut: a last bucket as long
    as the longest context is added when needed.

    Returns a list of `(context_len, [example indices])`. Without `shuffle`:
    buckets in increasing length, examples in input order. With `shuffle`:
    examples shuffled within each bucket and the batches shuffled, the same
    for the same `seed`. The last batch of a bucket may be smaller.
    """
    if not encoded:
        raise ValueError("bucket_plan needs at least one example; received none.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    lengths = _bucket_lengths(encoded, buckets, max_context_len)
    members = [[] for _ in lengths]
    for k, e in enumerate(encoded):
        b = bisect.bisect_left(lengths, len(e["context_words"]))
        members[min(b, len(lengths) - 1)].append(k)
    rng = np.random.default_rng(seed)
    plan = []
    for length, indices in zip(lengths, members):
        if shuffle:
            indices = [indices[i] for i in rng.permutation(len(indices))]
        plan.extend((length, indices[i:i + batch_size]) for i in range(0, len(indices), batch_size))
    if shuffle:
        plan = [plan[i] for i in rng.permutation(len(plan))]
    return plan


def cluster_groups(encoded, batch_size, max_context_len=SENT_SIZE_TH, seed=0):
    """The original's `--cluster` (read_data.py:86-91): the examples shuffled once (by
    `seed`), then sorted by context length (stable: ties stay shuffled; contexts longer than
    `max_context_len` count as that long), then cut into batches of `batch_size` (the last
    may be smaller). The batches are the same in every pass; only their order is drawn anew
    (`random.sample` of the groups each epoch, read_data.py:91).

    Returns a list of lists of example indices.
    """
    if not encoded:
        raise ValueError("cluster_groups needs at least one example; received none.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    cut = float("inf") if max_context_len is None else int(max_context_len)
    shuffled = np.random.default_rng(seed).permutation(len(encoded)).tolist()
    ordered = sorted(shuffled, key=lambda k: min(len(encoded[k]["context_words"]), cut))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def longest(encoded, indices, key, cut=None):
    """The original's `--len_opt` (model.py:473-488): the length a batch is padded to is
    its longest `key` ("context_words" or "question_words"), at most `cut`, at least 1."""
    length = max([len(encoded[k][key]) for k in indices] + [1])
    return length if cut is None else min(length, int(cut))


def make_batch(encoded, indices, context_len, question_len, max_word_len=WORD_SIZE_TH,
               answer="first", rng=None):
    """Padded arrays for the examples `indices` of `encoded`.

    Returns a dict: "context_words" int32 `[B, context_len]`, "context_chars"
    int32 `[B, context_len, max_word_len]`, "question_words" `[B,
    question_len]`, "question_chars", "context_mask"/"question_mask" (bool),
    "start"/"end" int32 `[B]` (inclusive token indices of the target answer),
    "answerable" (bool: the target lies inside the kept context), "ids" and
    "indices". Longer contexts and questions are cut.

    `answer` picks the target among an example's aligned answers: "first",
    or "random" (with `rng`, as the original's `random.choice`, model.py:531).
    Without an answer that fits, start = end = 0 and answerable is False.
    """
    n = len(indices)
    batch = {"context_words": np.zeros((n, context_len), np.int32),
             "context_chars": np.zeros((n, context_len, max_word_len), np.int32),
             "question_words": np.zeros((n, question_len), np.int32),
             "question_chars": np.zeros((n, question_len, max_word_len), np.int32),
             "context_mask": np.zeros((n, context_len), bool),
             "question_mask": np.zeros((n, question_len), bool),
             "start": np.zeros(n, np.int32), "end": np.zeros(n, np.int32),
             "answerable": np.zeros(n, bool), "ids": [], "indices": list(indices)}
    for row, k in enumerate(indices):
        e = encoded[k]
        c = min(len(e["context_words"]), context_len)
        q = min(len(e["question_words"]), question_len)
        batch["context_words"][row, :c] = e["context_words"][:c]
        batch["context_chars"][row, :c] = e["context_chars"][:c, :max_word_len]
        batch["question_words"][row, :q] = e["question_words"][:q]
        batch["question_chars"][row, :q] = e["question_chars"][:q, :max_word_len]
        batch["context_mask"][row, :c] = True
        batch["question_mask"][row, :q] = True
        batch["ids"].append(e["id"])
        spans = [s for s in e["answer_spans"] if s is not None and s[1] < c]
        if spans:
            if answer == "random":
                span = spans[int((rng or np.random.default_rng()).integers(len(spans)))]
            else:
                span = spans[0]
            batch["start"][row], batch["end"][row] = span
            batch["answerable"][row] = True
    return batch


def squad_batches(encoded, batch_size, buckets=DEFAULT_CONTEXT_BUCKETS,
                  max_context_len=SENT_SIZE_TH, max_question_len=QUES_SIZE_TH,
                  max_word_len=WORD_SIZE_TH, shuffle=False, seed=0, answer="first"):
    """Yield padded batches (see `make_batch`) in the order of `bucket_plan`.

    Context arrays are `bucket length` long, so a model sees only
    `len(buckets)` context shapes. Questions are padded to `max_question_len`
    (None: the longest question in `encoded`), words to `max_word_len`. The
    defaults are the original's thresholds (cli.py:95,97,98). Everything
    (order and, with answer="random", the targets) is fixed by `seed`.

    Example:

    >>> for batch in squad_batches(encode_examples(train, vocab), 60, shuffle=True, seed=0):
    ...     batch["context_words"].shape  # (60, 96), (60, 256), ...
    """
    if answer not in ("first", "random"):
        raise ValueError(f"answer must be 'first' or 'random'. Received: answer={answer!r}")
    if max_question_len is None:
        max_question_len = max(len(e["question_words"]) for e in encoded)
    plan = bucket_plan(encoded, batch_size, buckets, max_context_len, shuffle=shuffle, seed=seed)
    rng = np.random.default_rng([int(seed), 1])  # its own stream: the order does not depend on it
    for context_len, indices in plan:
        yield make_batch(encoded, indices, context_len, max_question_len, max_word_len,
                         answer=answer, rng=rng)
