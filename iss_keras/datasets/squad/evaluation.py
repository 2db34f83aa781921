"""Answers and their scores: the best span of the model's probabilities, its text, and
the official SQuAD v1.1 EM/F1 (the rules of `evaluate-v1.1.py`) on answers and files.
"""

import collections
import json
import logging
import re
import string

import numpy as np

from iss_keras.datasets.squad.read import read_squad_json
from iss_keras.files import write_text


# --------------------------------------------------------------------------- span decoding

def best_span(p1, p2, length=None):
    """`((i, j), p1[i] * p2[j])` maximising the product over `i <= j`, no length limit.

    O(n): for each end j the best start is the running argmax of p1 up to j.
    Ties go to the earliest end, then the earliest start (as the original's
    loop, squad/utils.py:83-100). `length` limits both to the first `length`
    positions (the unpadded context).

    Example:

    >>> best_span([0.1, 0.6, 0.3], [0.5, 0.1, 0.4])
    ((1, 2), 0.24)
    """
    p1 = np.asarray(p1, dtype=np.float64).ravel()
    p2 = np.asarray(p2, dtype=np.float64).ravel()
    if length is not None:
        p1, p2 = p1[:int(length)], p2[:int(length)]
    if len(p1) != len(p2) or len(p1) == 0:
        raise ValueError(f"p1 and p2 must be non-empty and of the same length. Received lengths "
                         f"{len(p1)} and {len(p2)}.")
    running_max = np.maximum.accumulate(p1)
    previous = np.concatenate(([-np.inf], running_max[:-1]))
    # The start for end j: the last position <= j where p1 set a new (strict) maximum.
    starts = np.maximum.accumulate(np.where(p1 > previous, np.arange(len(p1)), 0))
    products = running_max * p2
    j = int(np.argmax(products))
    return (int(starts[j]), j), float(products[j])


def span_to_answer(context, token_offsets, i, j):
    """The context text from the start of token i to the end of token j (inclusive).

    `token_offsets` holds `(token, start, end)` or `(start, end)` per token.
    Works for a span ending on the last token (the original returned "" there:
    basic/evaluator.py:300-301 tested `len(tokens) <= stop` with an exclusive
    stop).

    Example:

    >>> ctx = "Denver Broncos won."
    >>> span_to_answer(ctx, tokenize_with_offsets(ctx), 0, 1)
    'Denver Broncos'
    """
    n = len(token_offsets)
    if not 0 <= i <= j < n:
        raise ValueError(f"Need 0 <= i <= j < {n} (number of tokens). Received: i={i}, j={j}")
    return context[token_offsets[i][-2]:token_offsets[j][-1]]


# --------------------------------------------------------------------------- official scoring
# Same rules as the official squad/evaluate-v1.1.py.

def normalize_answer(s):
    """Lower case, drop ASCII punctuation, the words a/an/the, and extra whitespace."""
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction, ground_truth):
    """Token-overlap F1 of the normalised answers (0 when nothing is shared)."""
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(truth_tokens)
    same = sum(common.values())
    if same == 0:
        return 0
    precision = 1.0 * same / len(prediction_tokens)
    recall = 1.0 * same / len(truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction, ground_truth):
    """Whether the normalised answers are equal."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    """The best score of `prediction` against any of the ground truths."""
    return max(metric_fn(prediction, truth) for truth in ground_truths)


def evaluate(dataset, predictions):
    """Official SQuAD v1.1 scores in percent: `{"exact_match": ..., "f1": ...}`.

    Args:
        dataset: the "data" list of a v1.1 file (articles).
        predictions: dict question id -> answer text; a question without a
            prediction scores 0 (counted, as the official script).
    """
    f1 = exact_match = total = 0
    unanswered = []
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    unanswered.append(qa["id"])
                    continue
                truths = [a["text"] for a in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += metric_max_over_ground_truths(exact_match_score, prediction, truths)
                f1 += metric_max_over_ground_truths(f1_score, prediction, truths)
    if unanswered:
        logging.getLogger(__name__).warning(
            "%d unanswered questions (e.g. %s) receive score 0.", len(unanswered), unanswered[0])
    if total == 0:
        raise ValueError("The dataset has no questions; pass the 'data' list of a SQuAD file.")
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def read_predictions(path):
    """Read a predictions file `{question id: answer text}`.

    Entries whose value is not a string are left out: the original BiDAF's
    answer files also carry "scores" (and "na") dicts, which the official
    script never looks up.
    """
    with open(path, encoding="utf-8") as f:
        predictions = json.load(f)
    if not isinstance(predictions, dict):
        raise ValueError(f"{path!r} holds a {type(predictions).__name__}; a predictions file "
                         "is a JSON object {question id: answer text}.")
    return {k: v for k, v in predictions.items() if isinstance(v, str)}


def write_predictions(path, predictions):
    """Write `{question id: answer text}` as JSON (atomically), for `evaluate-v1.1.py`."""
    write_text(path, json.dumps(predictions, ensure_ascii=False))


def evaluate_file(dataset_path, predictions_path):
    """`evaluate` on files, as `python evaluate-v1.1.py dataset_file prediction_file`."""
    return evaluate(read_squad_json(dataset_path)["data"], read_predictions(predictions_path))
