"""Reading SQuAD v1.1 files into examples, the two protocols' splits, the training filter.

An example (one per question) is a plain dict that `json` can write:

    {"id", "article_index", "title", "paragraph_index", "context", "question",
     "answers": [{"text", "answer_start"}, ...],
     "context_tokens": [(token, start, end), ...], "question_tokens": [...],
     "answer_spans": [[first_token, last_token] or None, ...]}

`answer_spans[k]` are the (inclusive) indices of the context tokens that
overlap answer k's characters, or None when no token does.
"""

import bisect
import json
import logging
import os

from iss_keras.datasets.squad.tokenizer import tokenize_with_offsets
from iss_keras.files import write_text

SQUAD_VERSION = "1.1"
SPLITS = ("dev_articles", "official")
# The dev-article split: evaluation articles are those with index % 5 == 4.
DEV_ARTICLE_EVAL_EVERY = 5
DEV_ARTICLE_EVAL_OFFSET = 4
DEV_ARTICLE_NUM_ARTICLES = 48  # SQuAD v1.1 dev

# The original's defaults (bidaf/basic/cli.py).
SENT_SIZE_TH = 400   # cli.py:95; without --split (squad/prepro.py:38,123) a paragraph is one
                     # "sentence", so this is the effective context limit in tokens
QUES_SIZE_TH = 30    # cli.py:97, longer training questions are dropped (read_data.py:232)


def read_squad_json(path):
    """Read and check a SQuAD v1.1 JSON file; return the parsed `{"version", "data"}` dict."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SQuAD file {path!r} does not exist. Pass the path of train-v1.1.json or "
            "dev-v1.1.json (the offline dev copy is shared/data/squad/dev-v1.1.json).")
    try:
        with open(path, encoding="utf-8") as f:
            dataset = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path!r} is not a JSON file ({e}); replace it with the official "
                         "SQuAD v1.1 file.") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("data"), list):
        raise ValueError(f"{path!r} has no 'data' list; a SQuAD v1.1 file is "
                         '{"version": "1.1", "data": [articles]}.')
    if dataset.get("version") != SQUAD_VERSION:
        # The official script warns and carries on; v2.0 files would also read,
        # but their unanswerable questions have no answers to align.
        logging.getLogger(__name__).warning(
            "%s has version %r, expected %r.", path, dataset.get("version"), SQUAD_VERSION)
    return dataset


def answer_token_span(tokens, char_start, char_end):
    """The first and last (inclusive) token overlapping `[char_start, char_end)`, or None.

    The original's rule (squad/utils.py:22-31): every token whose characters
    overlap the answer's characters belongs to the span.

    Example:

    >>> toks = tokenize_with_offsets("in the year 1990.")
    >>> answer_token_span(toks, 12, 16)
    [3, 3]
    """
    ends = [e for _, _, e in tokens]
    starts = [s for _, s, _ in tokens]
    first = bisect.bisect_right(ends, char_start)       # first token ending after the start
    last = bisect.bisect_left(starts, char_end) - 1     # last token starting before the end
    if first > last:
        return None
    return [first, last]


def examples_from_articles(articles, article_indices=None):
    """Turn SQuAD articles (the file's "data" list) into one example per question.

    Args:
        articles: the "data" list of a SQuAD v1.1 file.
        article_indices: which articles to read (their indices in `articles`,
            kept in the examples' "article_index"); None reads all.
    """
    indices = range(len(articles)) if article_indices is None else article_indices
    examples = []
    for ai in indices:
        article = articles[ai]
        for pi, paragraph in enumerate(article["paragraphs"]):
            context = paragraph["context"]
            context_tokens = tokenize_with_offsets(context)  # shared by the paragraph's questions
            for qa in paragraph["qas"]:
                answers = [{"text": a["text"], "answer_start": int(a["answer_start"])}
                           for a in qa["answers"]]
                spans = [answer_token_span(context_tokens, a["answer_start"],
                                           a["answer_start"] + len(a["text"])) for a in answers]
                examples.append({
                    "id": qa["id"], "article_index": int(ai), "title": article.get("title", ""),
                    "paragraph_index": pi, "context": context, "question": qa["question"],
                    "answers": answers, "context_tokens": context_tokens,
                    "question_tokens": tokenize_with_offsets(qa["question"]),
                    "answer_spans": spans})
    return examples


def read_squad(path, article_indices=None):
    """Read a SQuAD v1.1 file as a list of examples, one per question (see the module doc).

    Example:

    >>> examples = read_squad("shared/data/squad/dev-v1.1.json")
    >>> len(examples), examples[0]["answer_spans"]
    (10570, [[33, 34], [33, 34], [33, 34]])
    """
    articles = read_squad_json(path)["data"]
    if article_indices is not None:
        bad = [i for i in article_indices if not 0 <= int(i) < len(articles)]
        if bad:
            raise ValueError(f"article indices {bad[:5]} are out of range: {path!r} has "
                             f"{len(articles)} articles (indices 0..{len(articles) - 1}).")
    return examples_from_articles(articles, article_indices)


def unaligned_answers(examples):
    """`(question id, answer index)` of every answer whose token span could not be found."""
    return [(ex["id"], k) for ex in examples for k, span in enumerate(ex["answer_spans"])
            if span is None]


# --------------------------------------------------------------------------- splits

def dev_article_split(num_articles=DEV_ARTICLE_NUM_ARTICLES):
    """Article indices `(train, eval)` of the dev-article split.

    Evaluation articles are those with `index % 5 == 4`: on SQuAD v1.1 dev
    (48 articles) that is 4, 9, ..., 44 (9 articles, 439 paragraphs, 1,975
    questions); the other 39 articles (1,628 paragraphs, 8,595 questions) are
    for training.

    Example:

    >>> dev_article_split()[1]
    [4, 9, 14, 19, 24, 29, 34, 39, 44]
    """
    eval_indices = [i for i in range(num_articles)
                    if i % DEV_ARTICLE_EVAL_EVERY == DEV_ARTICLE_EVAL_OFFSET]
    train_indices = [i for i in range(num_articles) if i not in eval_indices]
    return train_indices, eval_indices


def _dev_articles(dev_path):
    articles = read_squad_json(dev_path)["data"]
    if len(articles) != DEV_ARTICLE_NUM_ARTICLES:
        raise ValueError(
            f"The dev-article split is defined on SQuAD v1.1 dev-v1.1.json "
            f"({DEV_ARTICLE_NUM_ARTICLES} articles); {dev_path!r} has {len(articles)}. Pass "
            "dev-v1.1.json, or use split='official' with train_path for the official files.")
    return articles


def dev_article_eval_dataset(dev_path):
    """The dev-article split's evaluation articles, unchanged, as a v1.1 dataset dict."""
    articles = _dev_articles(dev_path)
    return {"version": SQUAD_VERSION, "data": [articles[i] for i in dev_article_split()[1]]}


def write_dev_article_eval_json(dev_path, out_path):
    """Write the dev-article split's evaluation articles as a SQuAD v1.1 file; return `out_path`.

    The file is `{"version": "1.1", "data": [9 articles]}` with the articles
    exactly as in dev-v1.1.json, so the official `evaluate-v1.1.py` (or
    `evaluate_file`) scores predictions against it. Written atomically.
    """
    write_text(out_path, json.dumps(dev_article_eval_dataset(dev_path)))
    return out_path


def load_squad(eval_path, train_path=None, split="dev_articles"):
    """Read the train and eval examples of a protocol.

    Args:
        eval_path: dev-v1.1.json.
        train_path: train-v1.1.json for `split="official"`; must be None for
            the dev-article split.
        split: `"dev_articles"` (train and eval articles both from dev; see
            `dev_article_split`) or `"official"` (train = train file, eval =
            the whole dev file, the original protocol unchanged).

    Returns:
        dict with "split", "train" and "eval" (lists of examples) and
        "eval_dataset" (the v1.1 dict to score predictions against with
        `evaluate(eval_dataset["data"], predictions)`).
    """
    if split == "dev_articles":
        if train_path is not None:
            raise ValueError(
                f"split='dev_articles' trains on dev articles, so train_path must be None. "
                f"Received: train_path={train_path!r}; use split='official' to train on it.")
        articles = _dev_articles(eval_path)
        train_indices, eval_indices = dev_article_split(len(articles))
        return {"split": split,
                "train": examples_from_articles(articles, train_indices),
                "eval": examples_from_articles(articles, eval_indices),
                "eval_dataset": {"version": SQUAD_VERSION,
                                 "data": [articles[i] for i in eval_indices]}}
    if split == "official":
        if train_path is None:
            raise ValueError("split='official' needs train_path (train-v1.1.json, 30,288,272 "
                             "bytes, from the SQuAD site; it is not in shared/data).")
        eval_dataset = read_squad_json(eval_path)
        return {"split": split, "train": read_squad(train_path),
                "eval": examples_from_articles(eval_dataset["data"]),
                "eval_dataset": eval_dataset}
    raise ValueError(f"split must be one of {list(SPLITS)}. Received: split={split!r}")


def filter_training_examples(examples, max_context_len=SENT_SIZE_TH, max_question_len=QUES_SIZE_TH):
    """Drop the examples the original does not train on (basic/read_data.py:227-276, "max").

    Kept: questions of at most `max_question_len` tokens (read_data.py:232)
    whose every answer is aligned and ends before the context limit. The
    original tests the exclusive end, `last + 1 >= sent_size_th` drops
    (read_data.py:255), so an answer ending on token 399 of 400 is dropped
    too; that rule is kept. The original applied this to its dev data during
    training (main.py:149) but not at test time (main.py:223).
    """
    return [ex for ex in examples
            if len(ex["question_tokens"]) <= max_question_len and ex["answer_spans"]
            and all(span is not None and span[1] + 1 < max_context_len
                    for span in ex["answer_spans"])]
