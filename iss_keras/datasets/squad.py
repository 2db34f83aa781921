"""SQuAD v1.1 for BiDAF: tokens with character offsets, splits, vocabularies, batches, scoring.

Reproduces the data side of wenwei202/iss-rnns `bidaf/` (a fork of
allenai/bi-att-flow). References in comments are to files of that repository,
e.g. `basic/cli.py:95` is line 95 of `bidaf/basic/cli.py`.

Two protocols:

* `"official"`: train on train-v1.1.json, score on dev-v1.1.json, as the
  paper. Needs the user's own train file (it is not shipped here).
* `"dev_articles"`, the *dev-article split*: the only SQuAD data on these
  machines is dev-v1.1.json, so its 48 articles are split BY ARTICLE. The
  articles with index `i % 5 == 4` (4, 9, ..., 44: 9 articles, 439 paragraphs,
  1,975 questions) are for evaluation; the other 39 (1,628 paragraphs, 8,595
  questions) are for training. Scores on it are not comparable with
  published dev scores.

An example (one per question) is a plain dict that `json` can write:

    {"id", "article_index", "title", "paragraph_index", "context", "question",
     "answers": [{"text", "answer_start"}, ...],
     "context_tokens": [(token, start, end), ...], "question_tokens": [...],
     "answer_spans": [[first_token, last_token] or None, ...]}

`answer_spans[k]` are the (inclusive) indices of the context tokens that
overlap answer k's characters, or None when no token does.
"""

import bisect
import collections
import json
import logging
import os
import re
import string

import numpy as np

from iss_keras.files import write_text

SQUAD_VERSION = "1.1"
SPLITS = ("dev_articles", "official")
# The dev-article split: evaluation articles are those with index % 5 == 4.
DEV_ARTICLE_EVAL_EVERY = 5
DEV_ARTICLE_EVAL_OFFSET = 4
DEV_ARTICLE_NUM_ARTICLES = 48  # SQuAD v1.1 dev

NULL = "-NULL-"  # id 0: padding (basic/read_data.py:198-203)
UNK = "-UNK-"    # id 1: unknown word or char

# The original's defaults (bidaf/basic/cli.py).
WORD_COUNT_TH = 10   # cli.py:93, a trainable row for a training word seen > 10 times
CHAR_COUNT_TH = 50   # cli.py:94, a char id for a char seen > 50 times
SENT_SIZE_TH = 400   # cli.py:95; without --split (squad/prepro.py:38,123) a paragraph is one
                     # "sentence", so this is the effective context limit in tokens
PARA_SIZE_TH = 256   # cli.py:99; only used with --squash (off by default), kept for reference
QUES_SIZE_TH = 30    # cli.py:97, longer training questions are dropped (read_data.py:232)
WORD_SIZE_TH = 16    # cli.py:98, chars kept per word (model.py:593, 606)

# Context length buckets (tokens). SQuAD v1.1 dev contexts: median 131 tokens,
# 95th percentile 252, max 708 with this tokeniser (18 of 2,067 exceed 400). The last bucket is the
# context limit.
DEFAULT_CONTEXT_BUCKETS = (96, 160, 256, SENT_SIZE_TH)

# --------------------------------------------------------------------------- tokeniser

# Characters that are always a token of their own. The original split tokens on
# - − — – / ~ " ' “ ’ ” ‘ ° (squad/utils.py:75, process_tokens) after nltk's
# Treebank word tokeniser had split off ; @ # $ % & ? ! brackets and `. Also split
# here: £ € ¥ (Treebank splits only $, leaving "£41,004" unalignable to "41,004").
_SPLIT_CHARS = ("-\u2212\u2014\u2013/~\u00b0\"'\u201c\u201d\u2018\u2019"
                ";@#$%&?!()[]{}<>`\u00a3\u20ac\u00a5")
# Zero-width characters (U+200B-U+200F, U+FEFF BOM) occur in SQuAD; they separate
# tokens like spaces and are never part of one.
_SKIP_CHARS = "\u200b\u200c\u200d\u200e\u200f\ufeff"
_TOKEN_RE = re.compile(
    r"``|''|\.\.\.|[" + re.escape(_SPLIT_CHARS) + r"]"
    # A comma or colon is split off unless it stands between digits ("1,000",
    # "10:30"). Treebank only looks at the next char, ([:,])([^\d]), which glued
    # Wikipedia's page references to words ("City:57", "1873.:33").
    r"|[,:]"
    r"|(?:(?!\.\.\.)[^\s" + re.escape(_SPLIT_CHARS + _SKIP_CHARS) + r",:]|(?<=\d)[,:](?=\d))+")
# After a sentence-final period: closing quotes and brackets may come before the space.
_CLOSERS = set("\"'\u201d\u2019)]}>\u00bb")
# Words whose final period is kept even at a sentence end (Punkt, the original's
# sentence splitter, knows these as abbreviations).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr rev gen col lt sgt capt cmdr gov sen rep pres vs etc inc ltd "
    "co corp bros jan feb mar apr jun jul aug sep sept oct nov dec mt ft approx ca cf".split())
# Treebank's CONTRACTIONS2: one word, two tokens (always cut after 3 letters).
_SPLIT_WORDS = frozenset(("cannot", "gimme", "gonna", "gotta", "lemme", "wanna"))


def _sentence_final(text, end):
    """Whether a period ending at `end` ends a sentence: closers, then the end or a space
    followed by anything but a lower-case letter."""
    n = len(text)
    k = end
    while k < n and text[k] in _CLOSERS:
        k += 1
    if k == n:
        return True
    if not text[k].isspace():
        return False  # "Inc.," "U.S.;": the sentence goes on
    while k < n and text[k].isspace():
        k += 1
    return k == n or not text[k].islower()


def _split_word(text, token, start, end):
    """Split one word match into its final tokens (trailing period, cannot/gonna...)."""
    if token.lower() in _SPLIT_WORDS:
        return [(token[:3], start, start + 3), (token[3:], start + 3, end)]
    if len(token) > 1 and token.endswith(".") and not token.endswith("..") \
            and _sentence_final(text, end):
        stem = token[:-1]
        is_abbreviation = ("." in stem or (len(stem) == 1 and stem.isalpha())
                           or stem.lower() in _ABBREVIATIONS)
        if not is_abbreviation:
            return [(stem, start, end - 1), (".", end - 1, end)]
    return [(token, start, end)]


def tokenize_with_offsets(text):
    """Split `text` into PTB-style tokens with their character offsets.

    Returns a list of `(token, start, end)` with `text[start:end] == token`.
    Tokens keep their case (see `normalize` for lookup). Rules:

    * whitespace and zero-width characters (U+200B-U+200F, U+FEFF) separate
      tokens and belong to none;
    * each of ``- − — – / ~ ° " ' “ ” ‘ ’ ; @ # $ £ € ¥ % & ? ! ( ) [ ] { } < > ` ``
      is a token of its own, and so are ``` `` ```, `''` and `...`;
    * a comma or colon is its own token unless it stands between digits
      ("1,000", "10:30" stay whole);
    * a period stays inside a word ("U.S.", "3.5", "e.g.") except a
      sentence-final one (the end of the text, or closing quotes/brackets, a
      space and then no lower-case letter) after a word that is not an
      abbreviation (a single letter, a word with an inner period, or Mr, Dr,
      St, Inc, Jan, ... in `_ABBREVIATIONS`);
    * "don't" → "do" "n" "'" "t" (Treebank's n't split, then the original's
      split on the apostrophe); "cannot", "gonna", "gotta", "wanna", "gimme",
      "lemme" → two tokens.

    How this differs from the original (nltk 3.2 `word_tokenize`, i.e. Punkt
    sentences + Treebank words, then `squad/utils.py` `process_tokens`):

    * The original's `re.split` left empty-string tokens around every split
      character ("'s" → "", "'", "s"); there are none here.
    * Sentence ends: Punkt's learned abbreviation list and orthographic
      statistics are replaced by the rule above, so a final period after an
      unlisted abbreviation ("Ave.", "No.") is split here where Punkt might not,
      and "U.S." at a sentence end keeps its period here.
    * The original replaced ``` `` ``` and `''` in the context with `"` + space
      before tokenising (squad/prepro.py:147-148), making a one-character `"`
      token; here they stay two-character tokens, so that offsets index the
      unmodified context.
    * Zero-width characters are dropped here; the original kept them inside
      tokens (they are not whitespace to `str.split`).
    * A comma or colon is kept inside a word only between digits; Treebank
      kept it whenever a digit followed, so Wikipedia page references stuck
      to words ("City:57" here is "City" ":" "57").
    * £, € and ¥ are split off like $ ("£41,004" → "£" "41,004").
    * Measured on every SQuAD v1.1 dev context and question, against nltk
      3.10's Treebank tokeniser + `process_tokens` with a simple regex
      sentence splitter standing in for Punkt: 99.74% of the original's
      422,402 tokens are the same; nearly all differences are periods after
      initials and abbreviations, the rest are the items above.
    * "'tis"/"'twas" give "'" "tis" here ("'" "t" "is" in the original).

    Example:

    >>> [t for t, _, _ in tokenize_with_offsets("Don't pay $1,000.50 (U.S.) for state-of-the-art.")]
    ['Do', 'n', "'", 't', 'pay', '$', '1,000.50', '(', 'U.S.', ')', 'for', 'state', '-', 'of',
     '-', 'the', '-', 'art', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize_with_offsets expects a str. Received: {type(text).__name__} "
                        f"{text!r:.60}")
    tokens = []
    for match in _TOKEN_RE.finditer(text):
        token, start, end = match.group(), match.start(), match.end()
        if len(token) > 1 and token[-1] not in ",:" and token not in ("``", "''", "..."):
            tokens.extend(_split_word(text, token, start, end))
        else:
            tokens.append((token, start, end))
    return _split_negations(tokens)


def _split_negations(tokens):
    """Treebank's n't: a word ending in n, then an apostrophe and "t" that touch it."""
    out = []
    for k, (token, start, end) in enumerate(tokens):
        if (len(token) > 1 and token[-1] in "nN" and k + 2 < len(tokens)
                and tokens[k + 1][0] == "'" and tokens[k + 1][1] == end
                and tokens[k + 2][0] in ("t", "T") and tokens[k + 2][1] == end + 1):
            out.append((token[:-1], start, end - 1))
            out.append((token[-1], end - 1, end))
        else:
            out.append((token, start, end))
    return out


def normalize(token):
    """The lookup form of a token: lower case (the original's `lower_word=True`, cli.py:102)."""
    return token.lower()


# --------------------------------------------------------------------------- reading

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


# --------------------------------------------------------------------------- vocabularies

def _paragraph_counts(examples):
    """Word (lower-cased) and char counts weighted as the original (squad/prepro.py:157-212).

    A context token counts once per question of its paragraph; a question
    token counts once.
    """
    words, chars = collections.Counter(), collections.Counter()
    by_paragraph = collections.OrderedDict()
    for ex in examples:
        key = (ex["article_index"], ex["paragraph_index"], ex["context"])
        if key in by_paragraph:
            by_paragraph[key][1] += 1
        else:
            by_paragraph[key] = [ex["context_tokens"], 1]
        for token in ex["question_tokens"]:
            words[normalize(token[0])] += 1
            chars.update(token[0])
    for tokens, weight in by_paragraph.values():
        paragraph_words = collections.Counter(token[0] for token in tokens)
        for token, count in paragraph_words.items():
            words[normalize(token)] += count * weight
            for char in token:
                chars[char] += count * weight
    return words, chars


def build_vocabulary(train_examples, glove_words, word_count_th=WORD_COUNT_TH,
                     char_count_th=CHAR_COUNT_TH, glove_rows="fixed", extra_examples=None):
    """Word and char vocabularies from the training examples only.

    Words are looked up lower-cased (`normalize`). Ids: 0 `-NULL-` (padding),
    1 `-UNK-`, then the trainable words, then (rule "fixed") the fixed GloVe
    words; `num_trainable_words` says where the fixed rows start.

    Args:
        train_examples: the training examples (never the evaluation ones).
        glove_words: the GloVe vocabulary in file order (from `load_glove`).
        word_count_th: a training word seen more than this often and missing
            from GloVe gets a trainable row (cli.py:93, default 10). Context
            words count once per question of their paragraph (prepro.py:159).
        char_count_th: chars seen more than this often get an id (cli.py:94,
            default 50); others map to `-UNK-`.
        glove_rows: "fixed" is the original's default (finetune=False,
            known_if_glove, use_glove_for_unk; read_data.py:189-194, 210-221):
            every GloVe word that occurs in the training data is a fixed
            (not trained) row in GloVe file order, and only frequent words
            missing from GloVe are trainable. "trainable" is the original's
            `--finetune` (read_data.py:185-188): every training word that is
            frequent or in GloVe is a trainable row (initialised from GloVe
            where it has a vector).
        extra_examples: optional examples whose GloVe words also become fixed
            rows (no labels used; their counts never make trainable rows).
            The original, at test time, rebuilt the fixed rows from the test
            file's words (read_data.py:210-221, run for the test data too);
            pass the eval examples here to do the same. Default None: training
            words only.

    Returns:
        a JSON-serialisable dict: "words", "num_trainable_words", "chars" and
        the settings used.
    """
    if glove_rows not in ("fixed", "trainable"):
        raise ValueError(f"glove_rows must be 'fixed' (the original's default) or 'trainable' "
                         f"(its --finetune). Received: glove_rows={glove_rows!r}")
    if not train_examples:
        raise ValueError("build_vocabulary needs training examples; received none.")
    word_counts, char_counts = _paragraph_counts(train_examples)
    glove_set = set(glove_words)
    # Ties broken alphabetically so the ids do not depend on example order.
    by_count = sorted(word_counts, key=lambda w: (-word_counts[w], w))
    if glove_rows == "fixed":
        trainable = [w for w in by_count if word_counts[w] > word_count_th and w not in glove_set]
        seen = set(word_counts)
        if extra_examples:
            seen |= set(_paragraph_counts(extra_examples)[0])
        fixed = [w for w in glove_words if w in seen]
    else:
        trainable = [w for w in by_count if word_counts[w] > word_count_th or w in glove_set]
        fixed = []
    chars = [c for c in sorted(char_counts, key=lambda c: (-char_counts[c], c))
             if char_counts[c] > char_count_th]
    return {"format": "iss_keras.squad_vocabulary.v1",
            "words": [NULL, UNK] + trainable + fixed,
            "num_trainable_words": 2 + len(trainable),
            "chars": [NULL, UNK] + chars,
            "glove_rows": glove_rows, "word_count_th": int(word_count_th),
            "char_count_th": int(char_count_th), "lower_case": True}


def save_vocabulary(vocabulary, path):
    """Write a vocabulary from `build_vocabulary` as JSON (atomically)."""
    write_text(path, json.dumps(vocabulary, ensure_ascii=False))


def load_vocabulary(path):
    """Read a vocabulary written by `save_vocabulary`."""
    with open(path, encoding="utf-8") as f:
        vocabulary = json.load(f)
    missing = [k for k in ("words", "num_trainable_words", "chars") if k not in vocabulary]
    if missing or vocabulary["words"][:2] != [NULL, UNK] or vocabulary["chars"][:2] != [NULL, UNK]:
        raise ValueError(f"{path!r} is not a SQuAD vocabulary from save_vocabulary (missing "
                         f"{missing} or ids 0/1 are not {NULL}/{UNK}); rebuild it with "
                         "build_vocabulary.")
    return vocabulary


def word_embedding_matrix(vocabulary, glove_words, glove_matrix, seed=0):
    """Initial word embeddings `[len(words), dim]` (float32) for a vocabulary.

    Words with a GloVe vector get it; the others (`-NULL-`, `-UNK-`, words
    missing from GloVe) get N(0, I) samples, as the original (main.py:157-159).
    With glove_rows="fixed", rows from `num_trainable_words` on are meant to be
    frozen.
    """
    index = {w: i for i, w in enumerate(glove_words)}
    rng = np.random.default_rng(seed)
    dim = glove_matrix.shape[1]
    matrix = rng.standard_normal((len(vocabulary["words"]), dim)).astype(np.float32)
    for row, word in enumerate(vocabulary["words"]):
        if row >= 2 and word in index:
            matrix[row] = glove_matrix[index[word]]
    return matrix


# --------------------------------------------------------------------------- batches

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
