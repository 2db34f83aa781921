"""Text classification (sentiment): tokenised, padded examples; accuracy; the best epoch by it.

One tokenizer and one vocabulary rule for every set (`iss_keras.datasets.text`):
the vocabulary comes from the training split only; sequences are padded at the
front and by default keep their last `max_length` tokens (Keras's
`pad_sequences`), so a last-state LSTM reads the end of each text. Lobacheva
et al.'s IMDB input (classification_data_utils.py:93-122) is
`--start_token --truncating=post` with the model's `--mask_padding`: a start
token, then the first `max_length` tokens, padded at the front, the padding
masked.
"""

import dataclasses
import json
import os

import keras
import numpy as np

from iss_keras.datasets.sentiment import SENTIMENT_SETS, load_sentiment
from iss_keras.datasets.text import Vocabulary, encode_batch, tokenize
from iss_keras.files import write_text
from iss_keras.options import check_at_least, check_choices, option
from iss_keras.tasks.base import Task

# The start token's string: the tokenizer never makes it (it keeps no '<' and letters together).
START_TOKEN = "<start>"


@dataclasses.dataclass
class ClassificationConfig:
    """Which set, and how its texts become arrays."""

    data_dir: str = option(None, "The data root holding imdb/ and sentiment/ (as ../shared/data).")
    dataset: str = option("imdb", "imdb (aclImdb, 15% of train validates), sst2 (GLUE train / "
                          "dev, the binary SST trees test), sst5, uci_amazon, uci_imdb, uci_yelp "
                          "(10 stratified folds: --fold tests, the next fold validates).",
                          choices=SENTIMENT_SETS)
    fold: int = option(0, "UCI sets: the test fold, 0..9.")
    max_words: int = option(20000, "Vocabulary size with the padding and OOV ids, from the "
                            "training split only.")
    max_length: int = option(200, "Tokens per example: longer texts are cut (--truncating), "
                             "shorter ones are padded at the front.")
    truncating: str = option("pre", "Which tokens a longer text keeps: pre drops its start (the "
                             "last max_length tokens, Keras's pad_sequences); post drops its end "
                             "(the first ones, as Lobacheva et al.'s load_matrix, "
                             "classification_data_utils.py:110).", choices=("pre", "post"))
    start_token: bool = option(False, "Put a start token before every text, inside max_length "
                               "(Keras's imdb.npz start_char, as Lobacheva et al.'s load_matrix, "
                               "classification_data_utils.py:93-94).")
    batch_size: int = option(128, "Training batch size.")

    def __post_init__(self):
        check_at_least(self, 3, "max_words")
        check_at_least(self, 1, "max_length", "batch_size")
        check_choices(self, "dataset", "truncating")
        if not 0 <= self.fold < 10:
            raise ValueError(f"fold must be in 0..9. Received: fold={self.fold}")


def read_sentiment(config):
    """The `TextClassificationData` that `config` names."""
    if not config.data_dir:
        raise FileNotFoundError("--data_dir is required: the data root holding imdb/ and "
                                "sentiment/ (as ../shared/data).")
    kwargs = {"fold": config.fold} if config.dataset.startswith("uci_") else {}
    return load_sentiment(config.dataset, config.data_dir, **kwargs)


class TextClassificationTask(Task):
    """Classify token sequences; monitor validation accuracy.

    Args:
        build_model: `build_model(*, vocab_size, num_classes, max_length, batch_size,
            training, sparsity)` -> keras.Model returning logits (one for two
            classes). `sparsity` is given for the training model only.
        data: a `TextClassificationData` (e.g. from `read_sentiment`).
        config: a `ClassificationConfig`.

    Example:

    >>> task = TextClassificationTask(build, read_sentiment(config), config)
    """

    monitor = "valid_accuracy"
    monitor_mode = "max"
    plot_metrics = ("train_accuracy", "valid_accuracy")

    def __init__(self, build_model, data, config):
        self.build_model = build_model
        self.config = config
        self.num_classes = int(data.num_classes)
        self.source = data.source
        train_tokens = [self.tokens(t) for t in data.train.texts]
        self.vocabulary = Vocabulary.build(train_tokens, max_size=config.max_words)
        self.arrays = {"train": self._arrays(train_tokens, data.train.labels)}
        for split in ("valid", "test"):
            part = getattr(data, split)
            self.arrays[split] = self._arrays([self.tokens(t) for t in part.texts], part.labels)

    def tokens(self, text):
        """`text`'s tokens, after the start token if the config asks for one."""
        return ([START_TOKEN] if self.config.start_token else []) + tokenize(text)

    def _arrays(self, token_lists, labels):
        x = encode_batch(token_lists, self.vocabulary, self.config.max_length,
                         truncating=self.config.truncating)
        y = np.asarray(labels, dtype="int32")
        return x, (y.astype("float32")[:, None] if self.num_classes == 2 else y)

    def build(self, mode, sparsity=None, batch_split=1):
        if mode not in ("train", "eval", "test", "serve"):
            raise ValueError(f"mode must be train, eval, test or serve. Received: mode={mode!r}")
        model = self.build_model(vocab_size=self.vocabulary.size, num_classes=self.num_classes,
                                 max_length=self.config.max_length, batch_size=None,
                                 training=mode == "train",
                                 sparsity=sparsity if mode == "train" else None)
        if mode in ("eval", "test"):
            model.compile(loss=self.loss(), metrics=self.metrics())
        return model

    def loss(self):
        if self.num_classes == 2:
            return keras.losses.BinaryCrossentropy(from_logits=True)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self):
        if self.num_classes == 2:
            return [keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def fit_data(self):
        x, y = self.arrays["train"]
        return {"x": x, "y": y, "batch_size": self.config.batch_size, "shuffle": True}

    def _scores(self, model, split):
        if not getattr(model, "compiled", False):
            model.compile(loss=self.loss(), metrics=self.metrics())
        x, y = self.arrays[split]
        loss, accuracy = model.evaluate(x, y, batch_size=256, verbose=0)
        return {f"{split}_accuracy": float(accuracy), f"{split}_loss": float(loss)}

    def evaluate(self, model):
        return self._scores(self.copy_for("eval", model), "valid")

    def epoch_summary(self, logs, seconds):
        return {"train_accuracy": float(logs["accuracy"]), "train_loss": float(logs["loss"]),
                "examples_per_second": round(len(self.arrays["train"][0]) / max(seconds, 1e-9), 1)}

    def test(self, model):
        return {"test_accuracy": self._scores(model, "test")["test_accuracy"]}

    def serving_inputs(self, model, batch_size=1):
        return [np.zeros((batch_size, self.config.max_length), "int32")]

    def serving_output_names(self, model):
        return ["logits"]

    def save_assets(self, directory):
        """The vocabulary, so a served model can encode new texts the same way."""
        write_text(os.path.join(directory, "vocabulary.json"), json.dumps(
            {"vocabulary": self.vocabulary.get_config(), "max_length": self.config.max_length,
             "padding": "pre", "truncating": self.config.truncating,
             "start_token": START_TOKEN if self.config.start_token else None,
             "source": self.source}))
