"""Data sets, read from local copies (a loader takes a path; only `download_*` uses the network).

* `ptb`: Penn Treebank word level (Mikolov's simple-examples).
* `text`: the one tokenizer and vocabulary of the text-classification sets.
* `sentiment`: IMDB, SST-2 / SST-5 and the UCI labelled sentences.
* `squad`: SQuAD v1.1 for BiDAF, a package: tokens with character offsets, the dev-article
  split, vocabularies, length-bucketed batches, span decoding and the official EM/F1.
* `glove`: GloVe word vectors from a local text file (plain or .gz).

The loaders are here; the rest of each module by its module name
(e.g. `iss_keras.datasets.squad.evaluate`; SQuAD's loader is `squad.load_squad`).
"""

from iss_keras.datasets.glove import load_glove
from iss_keras.datasets.ptb import (PTB_FILES, PTB_URL, download_ptb, lm_windows, load_ptb,
                                    ptb_vocabulary)
from iss_keras.datasets.sentiment import (SENTIMENT_SETS, TextClassificationData, TextSplit,
                                          load_imdb, load_sentiment, load_sst2, load_sst_trees,
                                          load_uci)
# SQuAD is a package whose names are its own (e.g. squad.load_squad).
from iss_keras.datasets import squad  # noqa: F401
from iss_keras.datasets.text import Vocabulary, encode_batch, tokenize

__all__ = ["PTB_FILES", "PTB_URL", "SENTIMENT_SETS", "TextClassificationData", "TextSplit",
           "Vocabulary", "download_ptb", "encode_batch", "lm_windows", "load_glove", "load_imdb",
           "load_ptb", "load_sentiment", "load_sst2", "load_sst_trees", "load_uci",
           "ptb_vocabulary", "tokenize"]
