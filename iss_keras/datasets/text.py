"""One tokenizer and one vocabulary for every text data set, so all sets are cut the same way.

    >>> vocabulary = Vocabulary.build([tokenize("A fine film."), tokenize("A dull film!")])
    >>> vocabulary.words[:5]
    ('<pad>', '<oov>', 'a', 'film', '!')
    >>> encode_batch([tokenize("a film"), tokenize("an unseen film .")], vocabulary, max_length=3)
    array([[0, 2, 3],
           [1, 3, 5]], dtype=int32)

Plain Python and NumPy: nothing here imports Keras or downloads anything.
"""

import collections
import json
import re

import numpy as np

# `<br />` is how aclImdb marks paragraph breaks inside its one-line reviews.
_LINE_BREAK_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)

# Tried left to right at each position (the first alternative that matches wins):
#   1. a word stem that ends just before "n't"  ("don't" -> "do", "can't" -> "ca"),
#   2. "n't" itself,
#   3. the clitics 's 're 've 'll 'd 'm  ("it's" -> "it", "'s"),
#   4. a word: letters or digits, hyphenated parts kept together ("slow-moving", "1950s"),
#   5. any other single non-space character (punctuation: "..." is three "." tokens).
# Rules 1-3 are the Penn Treebank conventions that the SST trees (and so GLUE SST-2) were
# already cut with ("do n't", "it 's"): raw text such as IMDB reviews and pre-tokenised
# SST text therefore give the same tokens. Letters are Unicode letters ("amélie").
TOKEN_PATTERN = (r"[^\W_]+(?=n't\b)"
                 r"|n't\b"
                 r"|'(?:s|re|ve|ll|d|m)\b"
                 r"|[^\W_]+(?:-[^\W_]+)*"
                 r"|[^\w\s]|_")
_TOKEN_RE = re.compile(TOKEN_PATTERN)

PAD_TOKEN, OOV_TOKEN = "<pad>", "<oov>"
PAD_ID, OOV_ID = 0, 1


def tokenize(text):
    """Lower-cased word and punctuation tokens of `text` (see `TOKEN_PATTERN`).

    `<br />` line breaks become spaces and the typographic apostrophe (U+2019)
    becomes `'`, so "don’t" and "don't" agree.

    >>> tokenize("It's GREAT.<br /><br />Don't miss it -- 10/10!")
    ['it', "'s", 'great', '.', 'do', "n't", 'miss', 'it', '-', '-', '10', '/', '10', '!']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize() takes one text (str); received {type(text).__name__}: "
                        f"{text!r:.80}")
    text = _LINE_BREAK_RE.sub(" ", text).replace("\u2019", "'").lower()
    return _TOKEN_RE.findall(text)


def _check_token_list(tokens, where):
    # A str is iterable too; it would silently be read as a list of characters.
    if isinstance(tokens, str):
        raise TypeError(f"{where} takes lists of tokens, but received the str {tokens!r:.80}. "
                        "Pass [tokenize(text) for text in texts].")


class Vocabulary:
    """Word <-> id table: 0 = padding, 1 = out of vocabulary (OOV), then words by count.

    Build it from the training split only, so that valid/test words never seen
    in training map to OOV, as they would for new text.

    >>> v = Vocabulary.build([["b", "a", "b"], ["c", "a"]], max_size=4)
    >>> v.words, v.size, v.encode(["a", "b", "c", "zzz"]).tolist()
    (('<pad>', '<oov>', 'a', 'b'), 4, [2, 3, 1, 1])
    >>> Vocabulary.from_json(v.to_json()) == v
    True
    """

    def __init__(self, words):
        """`words`: the words by id; ids 0 and 1 must be `PAD_TOKEN` and `OOV_TOKEN`."""
        words = tuple(words)
        if words[:2] != (PAD_TOKEN, OOV_TOKEN):
            raise ValueError(f"A vocabulary's first two words must be {(PAD_TOKEN, OOV_TOKEN)} "
                             f"(ids {PAD_ID} and {OOV_ID}); received {words[:2]}.")
        index = {w: i for i, w in enumerate(words)}
        if len(index) != len(words):
            repeated = [w for w, n in collections.Counter(words).items() if n > 1]
            raise ValueError(f"A vocabulary lists each word once; repeated: {repeated[:5]}.")
        self.words = words
        self.index = index

    @classmethod
    def build(cls, token_lists, max_size=None, min_count=1):
        """Count the tokens of `token_lists` (the training texts, tokenised).

        Args:
            token_lists: iterable of token lists, e.g. `[tokenize(t) for t in train_texts]`.
            max_size: the most ids in all, including the 2 reserved ones (so it
                is the `input_dim` of an Embedding); None keeps every word.
            min_count: words seen fewer times are left out (they become OOV).

        Words are ordered by count, descending, then alphabetically, so the
        ids do not depend on the order of the texts.
        """
        if max_size is not None and int(max_size) < 2:
            raise ValueError(f"max_size counts the 2 reserved ids ({PAD_TOKEN}, {OOV_TOKEN}), so "
                             f"it must be >= 2, or None for every word. Received: max_size={max_size}")
        if int(min_count) < 1:
            raise ValueError(f"min_count must be >= 1. Received: min_count={min_count}")
        counts = collections.Counter()
        for tokens in token_lists:
            _check_token_list(tokens, "Vocabulary.build()")
            counts.update(tokens)
        if not counts:
            raise ValueError("Vocabulary.build() received no tokens; pass the tokenised "
                             "training texts.")
        # The reserved names keep their reserved ids; they are not counted as words.
        for reserved in (PAD_TOKEN, OOV_TOKEN):
            counts.pop(reserved, None)
        words = sorted((w for w, n in counts.items() if n >= int(min_count)),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:int(max_size) - 2]
        return cls((PAD_TOKEN, OOV_TOKEN) + tuple(words))

    @property
    def size(self):
        """Number of ids, reserved ones included (an Embedding's `input_dim`)."""
        return len(self.words)

    def __len__(self):
        return len(self.words)

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self.words == other.words

    def __repr__(self):
        return f"Vocabulary(size={self.size}, words={self.words[2:7]}...)"

    def encode(self, tokens):
        """int32 ids of `tokens`; unknown words get `OOV_ID`."""
        _check_token_list(tokens, "Vocabulary.encode()")
        return np.array([self.index.get(t, OOV_ID) for t in tokens], dtype=np.int32)

    def decode(self, ids):
        """Words of `ids`, padding dropped (for reading model inputs back)."""
        return [self.words[i] for i in np.asarray(ids).ravel().tolist() if i != PAD_ID]

    def get_config(self):
        return {"words": list(self.words)}

    @classmethod
    def from_config(cls, config):
        return cls(config["words"])

    def to_json(self):
        """JSON text to save next to a model (`Vocabulary.from_json` reads it back)."""
        return json.dumps(self.get_config(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text):
        return cls.from_config(json.loads(text))


_ENDS = ("pre", "post")


def encode_batch(token_lists, vocabulary, max_length=None, truncating="pre", padding="pre"):
    """Encode token lists into one int32 array `(len(token_lists), max_length)`.

    The defaults are those of `keras.utils.pad_sequences`, and suit a classifier
    that reads the LSTM's last state:

    * `padding="pre"` puts the padding (id 0) at the start, so the last time
      step is always a real word; with "post" the last state would be read
      after up to `max_length` padding steps, unless the model masks them.
    * `truncating="pre"` drops the start of a long text and keeps its last
      `max_length` tokens. Reviews tend to end with the verdict ("... 7/10"),
      and the last tokens are the ones closest to the state that is read.
      Use "post" to keep the first `max_length` tokens instead.

    Args:
        token_lists: iterable of token lists (see `tokenize`).
        vocabulary: a `Vocabulary`.
        max_length: columns of the result; None = the longest list (at least 1).
        truncating, padding: "pre" (at the start) or "post" (at the end).

    >>> v = Vocabulary(["<pad>", "<oov>", "a", "b", "c"])
    >>> encode_batch([["a", "b", "c"], ["b"]], v, max_length=2).tolist()
    [[3, 4], [0, 3]]
    >>> encode_batch([["a", "b", "c"], ["b"]], v, 2, truncating="post", padding="post").tolist()
    [[2, 3], [3, 0]]
    """
    for name, value in (("truncating", truncating), ("padding", padding)):
        if value not in _ENDS:
            raise ValueError(f"{name} must be 'pre' or 'post'. Received: {name}={value!r}")
    encoded = [vocabulary.encode(tokens) for tokens in token_lists]
    if max_length is None:
        max_length = max([len(ids) for ids in encoded] + [1])
    elif int(max_length) < 1:
        raise ValueError(f"max_length must be >= 1, or None for the longest text. "
                         f"Received: max_length={max_length}")
    max_length = int(max_length)
    batch = np.full((len(encoded), max_length), PAD_ID, dtype=np.int32)
    for row, ids in enumerate(encoded):
        ids = ids[-max_length:] if truncating == "pre" else ids[:max_length]
        if len(ids):
            if padding == "pre":
                batch[row, max_length - len(ids):] = ids
            else:
                batch[row, :len(ids)] = ids
    return batch
