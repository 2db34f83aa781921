"""SQuAD v1.1 for BiDAF: tokens with character offsets, splits, vocabularies, batches, scoring.

Reproduces the data side of wenwei202/iss-rnns `bidaf/` (a fork of
allenai/bi-att-flow). References in comments are to files of that repository,
e.g. `basic/cli.py:95` is line 95 of `bidaf/basic/cli.py`.

* `tokenizer`: PTB-style tokens with their character offsets;
* `read`: the v1.1 files as examples (one per question), the two protocols'
  splits and the original's training filter;
* `vocabulary`: word and char vocabularies, the initial word vectors;
* `batches`: examples as ids, context-length buckets, padded batches;
* `evaluation`: span decoding and the official EM/F1.

Every public name of these modules is importable from here
(`iss_keras.datasets.squad.evaluate`).

Two protocols:

* `"official"`: train on train-v1.1.json, score on dev-v1.1.json, as the
  paper. Needs the user's own train file (it is not shipped here).
* `"dev_articles"`, the *dev-article split*: the only SQuAD data on these
  machines is dev-v1.1.json, so its 48 articles are split BY ARTICLE. The
  articles with index `i % 5 == 4` (4, 9, ..., 44: 9 articles, 439 paragraphs,
  1,975 questions) are for evaluation; the other 39 (1,628 paragraphs, 8,595
  questions) are for training. Scores on it are not comparable with
  published dev scores.

An example is a plain dict that `json` can write (see `read`).
"""

from iss_keras.datasets.squad.batches import (DEFAULT_CONTEXT_BUCKETS, WORD_SIZE_TH, bucket_plan,
                                              cluster_groups, encode_examples, longest,
                                              make_batch, squad_batches)
from iss_keras.datasets.squad.evaluation import (best_span, evaluate, evaluate_file,
                                                 exact_match_score, f1_score,
                                                 metric_max_over_ground_truths, normalize_answer,
                                                 read_predictions, span_to_answer,
                                                 write_predictions)
from iss_keras.datasets.squad.read import (DEV_ARTICLE_EVAL_EVERY, DEV_ARTICLE_EVAL_OFFSET,
                                           DEV_ARTICLE_NUM_ARTICLES, QUES_SIZE_TH, SENT_SIZE_TH,
                                           SPLITS, SQUAD_VERSION, answer_token_span,
                                           dev_article_eval_dataset, dev_article_split,
                                           examples_from_articles, filter_training_examples,
                                           load_squad, read_squad, read_squad_json,
                                           unaligned_answers, write_dev_article_eval_json)
from iss_keras.datasets.squad.tokenizer import normalize, tokenize_with_offsets
from iss_keras.datasets.squad.vocabulary import (CHAR_COUNT_TH, NULL, UNK, WORD_COUNT_TH,
                                                 build_vocabulary, load_vocabulary,
                                                 save_vocabulary, word_embedding_matrix)

__all__ = [
    "CHAR_COUNT_TH", "DEFAULT_CONTEXT_BUCKETS", "DEV_ARTICLE_EVAL_EVERY",
    "DEV_ARTICLE_EVAL_OFFSET", "DEV_ARTICLE_NUM_ARTICLES", "NULL", "QUES_SIZE_TH", "SENT_SIZE_TH",
    "SPLITS", "SQUAD_VERSION", "UNK", "WORD_COUNT_TH", "WORD_SIZE_TH", "answer_token_span",
    "best_span", "bucket_plan", "build_vocabulary", "cluster_groups", "dev_article_eval_dataset",
    "dev_article_split", "encode_examples", "evaluate", "evaluate_file", "exact_match_score",
    "examples_from_articles", "f1_score", "filter_training_examples", "load_squad",
    "load_vocabulary", "longest", "make_batch", "metric_max_over_ground_truths", "normalize",
    "normalize_answer", "read_predictions", "read_squad", "read_squad_json", "save_vocabulary",
    "span_to_answer", "squad_batches", "tokenize_with_offsets", "unaligned_answers",
    "word_embedding_matrix", "write_dev_article_eval_json", "write_predictions",
]
