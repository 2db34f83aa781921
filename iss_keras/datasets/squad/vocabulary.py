"""Word and char vocabularies of the training examples, and the initial word vectors.

The original's rules (squad/prepro.py, basic/read_data.py): counts weighted
by paragraph, GloVe words as fixed rows, frequent words without a vector as
trained rows; id 0 is `-NULL-` (padding), id 1 `-UNK-`.
"""

import collections
import json

import numpy as np

from iss_keras.datasets.squad.tokenizer import normalize
from iss_keras.files import write_text

NULL = "-NULL-"  # id 0: padding (basic/read_data.py:198-203)
UNK = "-UNK-"    # id 1: unknown word or char

# The original's defaults (bidaf/basic/cli.py).
WORD_COUNT_TH = 10   # cli.py:93, a trainable row for a training word seen > 10 times
CHAR_COUNT_TH = 50   # cli.py:94, a char id for a char seen > 50 times


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
