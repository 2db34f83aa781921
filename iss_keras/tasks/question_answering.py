"""Extractive question answering on SQuAD v1.1 (BiDAF, bidaf/): spans, official EM/F1.

As the original (wenwei202/iss-rnns `bidaf/`, references like `main.py:149`
are to `bidaf/basic/`): the training questions are filtered (`max` filter,
read_data.py:227-276), batched at 60 and fed with the padding rows the
original's fixed batch size leaves (weight 0; its loss is the mean over the
60 rows, model.py:362,388); the loss is the start plus the end
cross-entropy over the masked scores; answers are decoded as the span
`i <= j` maximising `p1[i] * p2[j]` and scored with the official
`evaluate-v1.1.py` rules (`iss_keras.datasets.squad.evaluate`).

Data protocols (`iss_keras.datasets.squad.load_squad`): with only
`--squad_dev`, the *dev-article split* (39 dev articles train, the 9 with
index % 5 == 4 evaluate: 1,975 questions); with `--squad_train` too, the
official one (train on train-v1.1.json, evaluate on all of dev). There is no
third split: validation after each epoch and the final test are both the
evaluation articles, and the final test uses the last epoch's weights, as
the original tests its last checkpoint.

Batches come in context-length buckets (`keras.utils.PyDataset`); an
"epoch" is `steps_per_epoch` optimizer steps (the original's evaluation and
checkpoint period, 1,000 steps), the data cycling through reshuffled passes.
"""

import dataclasses
import json
import os

import keras
import numpy as np

from iss_keras.datasets import squad
from iss_keras.datasets.glove import load_glove
from iss_keras.files import write_text
from iss_keras.options import check_at_least, option
from iss_keras.rebuild import shrink
from iss_keras.tasks.base import Task

INPUTS = ("context_words", "context_chars", "question_words", "question_chars")
OUTPUTS = ("start_logits", "end_logits")                 # the training model's
PROBABILITIES = ("start_probabilities", "end_probabilities")  # every other model's


@dataclasses.dataclass
class QuestionAnsweringConfig:
    """The data, its thresholds and its batches (the original's defaults, cli.py)."""

    squad_dev: str = option(None, "SQuAD v1.1 dev-v1.1.json. Alone: the dev-article split (39 "
                            "articles train, the 9 with index % 5 == 4 evaluate). With "
                            "--squad_train: the whole file evaluates (the original protocol).")
    squad_train: str = option(None, "train-v1.1.json, for the original protocol (not in "
                              "shared/data).")
    glove: str = option(None, "GloVe text file, plain or .gz (the original: glove.6B.100d; the "
                        "offline copy: glove/glove.6B.50d.top50000.txt.gz).")
    glove_dim: int = option(100, "Width of the GloVe vectors (the original's 100).")
    glove_eval_words: bool = option(True, "Evaluation words with a GloVe vector get fixed rows "
                                    "too, as the original's test-time use_glove_for_unk "
                                    "(read_data.py:210-221; words only, no labels).")
    word_count_th: int = option(squad.WORD_COUNT_TH, "A training word seen more often than "
                                "this without a GloVe vector gets a trained row (cli.py:93).")
    char_count_th: int = option(squad.CHAR_COUNT_TH, "Chars seen more often than this get an "
                                "id (cli.py:94).")
    sent_size_th: int = option(squad.SENT_SIZE_TH, "Training contexts are cut at this many "
                               "tokens and answers ending at or past it are dropped (cli.py:95).")
    ques_size_th: int = option(squad.QUES_SIZE_TH, "Training questions longer than this are "
                               "dropped (cli.py:97).")
    word_size_th: int = option(squad.WORD_SIZE_TH, "Chars kept per word (cli.py:98).")
    len_opt: bool = option(True, "Pad each batch to its longest context and question (the "
                           "original's --len_opt, model.py:473-488, in all its README commands"
                           "). Off: contexts padded to --context_buckets, questions to "
                           "--ques_size_th.")
    cluster: bool = option(True, "Training batches of similar context length (the original's "
                           "--cluster, read_data.py:86-91): the questions shuffled once, "
                           "sorted by context length, cut into batches; each pass draws the "
                           "batches' order. Off: --context_buckets, reshuffled every pass. "
                           "Evaluation batches are sorted by context length either way (the "
                           "order changes no answer).")
    context_buckets: tuple = option(
        squad.DEFAULT_CONTEXT_BUCKETS, "With --nocluster or --nolen_opt: the context lengths "
        "of the batches (the last is the training cut; evaluation adds one for its longest "
        "context).", ours=True)
    batch_size: int = option(60, "Training batch size (cli.py:39).")
    eval_batch_size: int = option(60, "Batch size of validation and test.")
    steps_per_epoch: int = option(1000, "Optimizer steps between validations and checkpoints "
                                  "(the original's eval_period and save_period, cli.py:83-84). "
                                  "0: one pass over the training questions.")
    train_questions: int = option(0, "Train on the first N (filtered) questions only (0: all).",
                                  ours=True)
    eval_questions: int = option(0, "Evaluate the first N questions only (0: all); the scored "
                                 "file then holds just those.", ours=True)
    serve_context_len: int = option(160, "Context length of the TFLite export and of the timing "
                                    "batch (a median SQuAD context is ~130 tokens).", ours=True)
    test_zero_threshold: float = option(
        0.0, "Also test with every attention, LSTM and logits weight below this zeroed, then "
        "shrunk: the original's README test command (--zero_threshold 0.02, bidaf/README.md:"
        "76-80; graph_handler.py:26-28 zeroes at load, main.py:256-260 drops the gate columns "
        "of units left without outputs). results.json gets both tests ('_test_zeroed' keys). "
        "0: off.")

    def __post_init__(self):
        self.context_buckets = tuple(int(b) for b in self.context_buckets)
        check_at_least(self, 1, "glove_dim", "sent_size_th", "ques_size_th", "word_size_th",
                       "batch_size", "eval_batch_size", "serve_context_len")
        check_at_least(self, 0, "word_count_th", "char_count_th", "steps_per_epoch",
                       "train_questions", "eval_questions", "test_zero_threshold")
        if not self.context_buckets or min(self.context_buckets) < 1:
            raise ValueError(f"context_buckets must be positive lengths, e.g. 96,160,256,400. "
                             f"Received: context_buckets={list(self.context_buckets)}")

    @property
    def split(self):
        return "official" if self.squad_train else "dev_articles"


# ------------------------------------------------------------------- data

REQUIRED_PATHS = {
    "squad_dev": "the SQuAD v1.1 dev-v1.1.json (offline: ../shared/data/squad/dev-v1.1.json).",
    "glove": "a GloVe text file (offline: ../shared/data/glove/glove.6B.50d.top50000.txt.gz, "
             "with --glove_dim=50).",
}

def read_question_answering(config):
    """`(data, vocabulary, word_vectors)` for `config`: the examples of its protocol, the
    vocabulary of the training examples and the initial word vectors.

    Raises:
        FileNotFoundError: a path is missing (the message names the flag).
    """
    for flag, what in REQUIRED_PATHS.items():
        if not getattr(config, flag):
            raise FileNotFoundError(f"--{flag} is required: {what}")
    data = squad.load_squad(config.squad_dev, config.squad_train, split=config.split)
    glove_words, glove_matrix = load_glove(config.glove, dim=config.glove_dim)
    vocabulary = squad.build_vocabulary(
        data["train"], glove_words, word_count_th=config.word_count_th,
        char_count_th=config.char_count_th,
        extra_examples=data["eval"] if config.glove_eval_words else None)
    word_vectors = squad.word_embedding_matrix(vocabulary, glove_words, glove_matrix)
    return data, vocabulary, word_vectors


def restrict_dataset(dataset, ids):
    """The articles of a v1.1 `dataset` dict with only the questions in `ids` (for scoring
    a subset as the official script would)."""
    ids = set(ids)
    articles = []
    for article in dataset["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = [qa for qa in paragraph["qas"] if qa["id"] in ids]
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    return {"version": dataset.get("version", squad.SQUAD_VERSION), "data": articles}


def model_inputs(batch):
    """The model's inputs of a `squad.make_batch` batch, by input name."""
    return {name: batch[name] for name in INPUTS}


def pad_rows(batch, rows):
    """`batch` grown to `rows` rows with empty questions (all padding) of weight 0, as the
    original's fixed-size arrays (model.py:497-509). Returns the sample weights."""
    have = len(batch["ids"])
    if have > rows:
        raise ValueError(f"A batch of {have} rows does not fit batch_size={rows}.")
    weights = np.zeros(rows, "float32")
    weights[:have] = 1.0
    for key in (*INPUTS, "start", "end"):
        value = batch[key]
        padding = np.zeros((rows - have,) + value.shape[1:], value.dtype)
        batch[key] = np.concatenate([value, padding])
    return weights


def decode_answers(examples, p1, p2, context_len):
    """`{question id: answer text}` for one batch of examples and their start/end
    probabilities `(rows, context_len)` (best span over the unpadded context)."""
    answers = {}
    for row, example in enumerate(examples):
        tokens = example["context_tokens"]
        length = min(len(tokens), context_len)
        (i, j), _ = squad.best_span(p1[row], p2[row], length=length)
        answers[example["id"]] = squad.span_to_answer(example["context"], tokens, i, j)
    return answers


class SquadTrainingBatches(keras.utils.PyDataset):
    """Training batches in context-length buckets, `len()` of them per Keras epoch.

    Global step `g = epoch * len(self) + i` is batch `g mod P` of pass
    `g // P` over the P bucketed batches; every pass reshuffles (examples
    within buckets, then batches) with its own seed and picks each
    question's target among its answers at random (as the original's
    `random.choice`, model.py:531), all fixed by `seed`, so a resumed run sees
    the batches it would have. `epoch` is set by the task's callback.
    Every batch has `batch_size` rows, the short ones padded with weight-0
    rows (see `pad_rows`): `(inputs, targets, sample weights)`.

    Example:

    >>> batches = SquadTrainingBatches(encoded, 60, steps_per_epoch=1000)
    >>> x, y, w = batches[0]          # x["context_words"].shape == (60, 96)
    """

    def __init__(self, encoded, batch_size, buckets=squad.DEFAULT_CONTEXT_BUCKETS,
                 max_context_len=squad.SENT_SIZE_TH, max_question_len=squad.QUES_SIZE_TH,
                 max_word_len=squad.WORD_SIZE_TH, steps_per_epoch=0, seed=0, len_opt=False,
                 cluster=False):
        super().__init__()
        self.encoded = encoded
        self.batch_size = int(batch_size)
        self.buckets = tuple(buckets)
        self.max_context_len = max_context_len
        self.max_question_len = max_question_len
        self.max_word_len = max_word_len
        self.seed = int(seed)
        self.len_opt = bool(len_opt)
        self.cluster = bool(cluster)
        self._groups = (squad.cluster_groups(encoded, batch_size, max_context_len, seed=self.seed)
                        if self.cluster else None)
        self.batches_per_pass = len(self._groups) if self.cluster else len(
            squad.bucket_plan(encoded, batch_size, buckets, max_context_len))
        self.steps_per_epoch = int(steps_per_epoch) or self.batches_per_pass
        self.epoch = 0
        self._plans = {}

    def __len__(self):
        return self.steps_per_epoch

    def _shape(self, context_len, indices):
        """`(context, question)` lengths of a batch."""
        if not self.len_opt:
            return context_len, self.max_question_len
        return (squad.longest(self.encoded, indices, "context_words", self.max_context_len),
                squad.longest(self.encoded, indices, "question_words", self.max_question_len))

    def plan(self, pass_index):
        """The batches `((context_len, question_len), example indices)` of one pass."""
        if pass_index not in self._plans:
            if self.cluster:
                order = np.random.default_rng([self.seed, pass_index]).permutation(
                    len(self._groups))
                plan = [(self.max_context_len, self._groups[k]) for k in order]
            else:
                plan = squad.bucket_plan(self.encoded, self.batch_size, self.buckets,
                                         self.max_context_len, shuffle=True,
                                         seed=[self.seed, pass_index])
            plan = [(self._shape(length, indices), indices) for length, indices in plan]
            self._plans = {pass_index: _differing_first_two(plan)}
        return self._plans[pass_index]

    def __getitem__(self, i):
        step = self.epoch * len(self) + int(i)
        pass_index, position = divmod(step, self.batches_per_pass)
        (context_len, question_len), indices = self.plan(pass_index)[position]
        batch = squad.make_batch(self.encoded, indices, context_len, question_len,
                                 self.max_word_len, answer="random",
                                 rng=np.random.default_rng([self.seed, 1, step]))
        weights = pad_rows(batch, self.batch_size)
        targets = {OUTPUTS[0]: batch["start"], OUTPUTS[1]: batch["end"]}
        return model_inputs(batch), targets, weights  # one weight per row, for both outputs


def _differing_first_two(plan):
    """`plan` (`(shape, indices)` pairs) with a batch of another shape second, differing in
    every length that differs anywhere in the plan, when there is one.

    Keras's TensorFlow adapter takes the input signature from batches 0 and
    1 of a PyDataset: two batches of one length would fix that axis
    to it and refuse the other batches.
    """
    plan = list(plan)
    if len(plan) < 3:
        return plan
    shapes = [s if isinstance(s, tuple) else (s,) for s, _ in plan]
    varying = [a for a in range(len(shapes[0])) if len({s[a] for s in shapes}) > 1]

    def differs(k):
        return all(shapes[k][a] != shapes[0][a] for a in varying)

    if not differs(1):
        for k in range(2, len(plan)):
            if differs(k):
                plan[1], plan[k] = plan[k], plan[1]
                break
    return plan


def evaluation_batches(encoded, config):
    """Batches of the evaluation questions `encoded`, none cut. With `config.len_opt`: sorted
    by context length and padded to each batch's longest context and question (ours: the
    order changes no answer, and sorting pads least); else in `config.context_buckets`,
    questions padded to the longest of all."""
    if not config.len_opt:
        yield from squad.squad_batches(encoded, config.eval_batch_size, config.context_buckets,
                                       max_context_len=None, max_question_len=None,
                                       max_word_len=config.word_size_th)
        return
    ordered = sorted(range(len(encoded)), key=lambda k: len(encoded[k]["context_words"]))
    plan = []
    for i in range(0, len(ordered), config.eval_batch_size):
        indices = ordered[i:i + config.eval_batch_size]
        plan.append(((squad.longest(encoded, indices, "context_words"),
                      squad.longest(encoded, indices, "question_words")), indices))
    # A second batch differing in both lengths: the compiled predict step then generalizes
    # both at its second call and is not traced again (Keras relaxes a shape when it changes).
    for (context_len, question_len), indices in _differing_first_two(plan):
        yield squad.make_batch(encoded, indices, context_len, question_len,
                               config.word_size_th)


class _SetBatchesEpoch(keras.callbacks.Callback):
    """Tell the training batches which epoch begins (resumed runs start past 0)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


# ------------------------------------------------------------------- the task

class QuestionAnsweringTask(Task):
    """SQuAD v1.1 extractive QA: train on spans, validate and test by official EM/F1.

    Args:
        build_model: `build_model(*, training, probabilities, question_len,
            sparsity, word_vectors)` -> keras.Model with the inputs of
            `INPUTS`; the training model (`training=True`) returns the masked
            start and end logits named `start_logits`, `end_logits`, the
            others (`probabilities=True`) their softmax.
        data: `squad.load_squad`'s dict ("split", "train", "eval", "eval_dataset").
        vocabulary: `squad.build_vocabulary`'s dict.
        word_vectors: the initial word vectors of the training model.
        config: a `QuestionAnsweringConfig`.
        seed: the training batches' shuffling and answer choice.
        model_fields: `model_fields(model)` -> dict of what results.json records
            of a model (e.g. `iss_keras.models.bidaf.model_fields`: its weights
            outside the embeddings, its LSTM units), for the tested model and,
            each key with `_after`, its rebuilt copy. None: nothing.
        zero_small_weights: `zero_small_weights(model, threshold)` zeroes in
            place the weights the original zeroes at test time (e.g.
            `iss_keras.models.bidaf.zero_small_weights`); needed with
            `config.test_zero_threshold`.

    Example:

    >>> data, vocabulary, vectors = read_question_answering(config)
    >>> task = QuestionAnsweringTask(build, data, vocabulary, vectors, config,
    ...                              model_fields=iss_keras.models.bidaf.model_fields)
    >>> train_and_evaluate(task, iss, TrainConfig(optimizer="adam", epochs=10), "runs/bidaf")
    """

    monitor = "valid_f1"
    monitor_mode = "max"
    plot_metrics = ("valid_em", "valid_f1")

    reuse_copies = True  # the validation copy is built (and traced) once

    def __init__(self, build_model, data, vocabulary, word_vectors, config, seed=0,
                 model_fields=None, zero_small_weights=None):
        if config.test_zero_threshold and zero_small_weights is None:
            raise ValueError("test_zero_threshold needs the model's zero_small_weights. "
                             f"Received: test_zero_threshold={config.test_zero_threshold}, "
                             "zero_small_weights=None")
        self.build_model = build_model
        self.model_fields = model_fields
        self.zero_small_weights = zero_small_weights
        self.config = config
        self.split = data["split"]
        self.vocabulary = vocabulary
        self.word_vectors = word_vectors
        self.seed = int(seed)
        c = config
        train = squad.filter_training_examples(data["train"], c.sent_size_th, c.ques_size_th)
        if c.train_questions:
            train = train[:c.train_questions]
        if not train:
            raise ValueError("No training question is left after the original's filter "
                             "(--sent_size_th, --ques_size_th); check the SQuAD file.")
        evaluation = data["eval"][:c.eval_questions] if c.eval_questions else data["eval"]
        self.train_encoded = squad.encode_examples(train, vocabulary, c.word_size_th)
        self.eval_examples = evaluation
        self.eval_encoded = squad.encode_examples(evaluation, vocabulary, c.word_size_th)
        self.eval_dataset = restrict_dataset(data["eval_dataset"], [e["id"] for e in evaluation])
        self.test_predictions = []  # one dict per `test` call (the sparse model, then the shrunk)
        self._batches = None

    @property
    def tflite_shape(self):
        return {"batch_size": 1, "steps": self.config.serve_context_len}

    def build(self, mode, sparsity=None, batch_split=1):
        if mode not in ("train", "eval", "test", "serve"):
            raise ValueError(f"mode must be train, eval, test or serve. Received: mode={mode!r}")
        training = mode == "train"
        return self.build_model(
            training=training, probabilities=not training,
            question_len=self.config.ques_size_th if mode == "serve" else None,
            sparsity=sparsity if training else None,
            word_vectors=self.word_vectors if training else None)

    def loss(self):
        """Start plus end cross-entropy, each a mean over the batch (model.py:384-391)."""
        return {name: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                for name in OUTPUTS}

    def fit_data(self):
        """The training batches (one `SquadTrainingBatches`, made once)."""
        if self._batches is None:
            c = self.config
            self._batches = SquadTrainingBatches(
                self.train_encoded, c.batch_size, c.context_buckets, c.sent_size_th,
                c.ques_size_th, c.word_size_th, steps_per_epoch=c.steps_per_epoch, seed=self.seed,
                len_opt=c.len_opt, cluster=c.cluster)
        return {"x": self._batches}

    def callbacks(self):
        return [_SetBatchesEpoch(self.fit_data()["x"])]

    def train_size(self):
        """Training questions (the loss is a mean over questions)."""
        return len(self.train_encoded)

    # -- scoring ---------------------------------------------------------------------------

    def predict(self, model):
        """`{question id: answer}` of a probabilities model on the evaluation questions."""
        c = self.config
        answers = {}
        for batch in self.eval_batches():
            examples = [self.eval_examples[k] for k in batch["indices"]]
            pad_rows(batch, c.eval_batch_size)  # one batch size: fewer retraces
            p1, p2 = model.predict_on_batch(model_inputs(batch))
            answers.update(decode_answers(examples, np.asarray(p1), np.asarray(p2),
                                          batch["context_words"].shape[1]))
        return answers

    def eval_batches(self):
        """The evaluation questions in batches (`evaluation_batches`)."""
        return evaluation_batches(self.eval_encoded, self.config)

    def score(self, predictions):
        """Official EM and F1 (percent) on the evaluation questions."""
        scores = squad.evaluate(self.eval_dataset["data"], predictions)
        return scores["exact_match"], scores["f1"]

    def evaluate(self, model):
        em, f1 = self.score(self.predict(self.copy_for("eval", model)))
        return {"valid_em": em, "valid_f1": f1}

    def epoch_summary(self, logs, seconds):
        steps = len(self._batches) if self._batches is not None else 0
        out = {"train_loss": float(logs["loss"]),
               "questions_per_second": round(steps * self.config.batch_size
                                             / max(seconds, 1e-9), 1)}
        for name in OUTPUTS:
            if f"{name}_loss" in logs:
                out[f"train_{name.split('_')[0]}_loss"] = float(logs[f"{name}_loss"])
        return out

    def test(self, model):
        """EM and F1 of a `"test"` model on the evaluation questions; its answers are kept
        for `save_assets` (the predictions file of the official script)."""
        predictions = self.predict(model)
        self.test_predictions.append(predictions)
        em, f1 = self.score(predictions)
        return {"test_em": em, "test_f1": f1}

    def result_fields(self, sparse, shrunk):
        fields = {"split": self.split, "train_questions": len(self.train_encoded),
                  "eval_questions": len(self.eval_examples)}
        if self.model_fields is not None:
            after = self.model_fields(shrunk)
            for key, value in self.model_fields(sparse).items():
                fields[key], fields[f"{key}_after"] = value, after[key]
        if len(self.test_predictions) >= 2:
            fields["same_answers_shrunk"] = self.test_predictions[-1] == self.test_predictions[-2]
        if self.config.test_zero_threshold:
            fields.update(self.test_zeroed(sparse))
        return fields

    def test_zeroed(self, model):
        """The original's test with `--zero_threshold` (bidaf/README.md:76-80): a copy of the
        `"test"` model with the small weights zeroed (graph_handler.py:26-28), shrunk to the
        units with outputs left (main.py:256-260 zeroes the gate columns of the others), both
        scored. Returns results.json's `*_test_zeroed` fields; `model` is left as it is."""
        threshold = self.config.test_zero_threshold
        zeroed = self.build("test")  # not copy_for: its cached copy may be `model` itself
        zeroed.set_weights(model.get_weights())
        self.zero_small_weights(zeroed, threshold)
        em, f1 = self.score(self.predict(zeroed))
        small, plan = shrink(zeroed)
        small_em, small_f1 = self.score(self.predict(small))
        fields = {"test_zero_threshold": threshold,
                  "test_em_test_zeroed": em, "test_f1_test_zeroed": f1,
                  "test_em_shrunk_test_zeroed": small_em, "test_f1_shrunk_test_zeroed": small_f1,
                  "hidden_after_test_zeroed": [b for _, b in plan.summary().values()]}
        if self.model_fields is not None:
            fields.update({f"{key}_after_test_zeroed": value
                           for key, value in self.model_fields(small).items()})
        return fields

    # -- serving ---------------------------------------------------------------------------

    def serving_inputs(self, model, batch_size=1):
        """The first evaluation question, its context padded or cut to `serve_context_len`
        (the static shape of the TFLite export), `batch_size` times."""
        c = self.config
        question_len = model.get_layer("question_words").batch_shape[1] or c.ques_size_th
        batch = squad.make_batch(self.eval_encoded, [0] * int(batch_size), c.serve_context_len,
                                 question_len, c.word_size_th)
        return [batch[name] for name in INPUTS]

    def serving_output_names(self, model):
        return list(PROBABILITIES)

    def save_assets(self, directory):
        """The vocabulary, the scored questions as a v1.1 file (`eval-v1.1.json`) and the
        answers of the tested models (`predictions.json`: the sparse model's,
        `predictions_shrunk.json`), for `evaluate-v1.1.py eval-v1.1.json predictions.json`."""
        squad.save_vocabulary(self.vocabulary, os.path.join(directory, "vocabulary.json"))
        write_text(os.path.join(directory, "eval-v1.1.json"), json.dumps(self.eval_dataset))
        for predictions, name in zip(self.test_predictions[-2:],
                                     ("predictions.json", "predictions_shrunk.json")):
            squad.write_predictions(os.path.join(directory, name), predictions)
