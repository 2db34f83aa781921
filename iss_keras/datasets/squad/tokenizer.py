"""The SQuAD tokenizer: PTB-style tokens with their character offsets into the text.

Stands in for the original's nltk `word_tokenize` + `process_tokens` (no nltk
data can be fetched here); `tokenize_with_offsets` says how the two differ.
`normalize` is the lookup form of a token (lower case).
"""

import re

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
