"""Word-level language modelling on a token stream, as the originals train it (ptb/, rhns/).

Truncated back-propagation through time with the state carried across the
consecutive batches of an epoch (the original reader's layout), perplexity on
the validation stream after every epoch, and the final test over every test
token, at batch 1 (ptb_word_lm.py:700-701) or at --test_batch_size rows. The model is any builder of the
four shapes (see `LanguageModelTask`); `iss_keras.models` has the LSTM and
RHN ones.
"""

import dataclasses
import functools

import keras
import numpy as np

from iss_keras.datasets import download_ptb, load_ptb
from iss_keras.export import input_names
from iss_keras.keras_internals import reset_states
from iss_keras.options import check_at_least, option
from iss_keras.tasks.base import Task


@dataclasses.dataclass
class LanguageModelConfig:
    """The data and its layout (the original's reader and batch shapes)."""

    data_dir: str = option(None, "Directory with ptb.train.txt, ptb.valid.txt, ptb.test.txt.")
    download: bool = option(False, "Download simple-examples.tgz if --data_dir lacks the files "
                            "(needs internet).")
    vocab_size: int = option(0, "0: the whole training vocabulary with the original reader's "
                             "ids (PTB: 10,000 words, none merged). N < 10,000: the N-1 most "
                             "frequent words keep their ids and every other word maps to one "
                             "OOV id (not a paper recipe).")
    steps: int = option(20, "Unrolled time steps (truncated BPTT length); the original sums the "
                        "loss over them, so it is the loss scale of the original's units.")
    batch_size: int = option(20, "Training (and validation) batch size.")
    test_batch_size: int = option(1, "Test batch size (1 as the original). Every test token "
                                  "is scored at any size (> 1: the stream is cut into this "
                                  "many rows, the last window padded and masked).")
    train_tokens: int = option(0, "Use only the first N training tokens (0: all).")
    loss_units: str = option("steps_sum", "The original's training loss, which the learning "
                             "rate, clip norm and strengths are in: steps_sum (Zaremba's "
                             "ptb_word_lm.py, summed over the unrolled steps) or token_mean "
                             "(Lobacheva et al.'s LM, the mean over tokens).",
                             choices=("steps_sum", "token_mean"))

    def __post_init__(self):
        check_at_least(self, 1, "steps", "batch_size", "test_batch_size")
        check_at_least(self, 0, "vocab_size", "train_tokens")
        if self.loss_units not in ("steps_sum", "token_mean"):
            raise ValueError(f"loss_units must be steps_sum or token_mean. Received: "
                             f"loss_units={self.loss_units!r}")


def read_ptb(config):
    """`(splits, vocabulary)` of the PTB files `config` names (downloading only if asked)."""
    if not config.data_dir:
        raise FileNotFoundError("--data_dir is required: the directory holding ptb.train.txt, "
                                "ptb.valid.txt and ptb.test.txt (add --download to fetch them).")
    try:
        return load_ptb(config.data_dir, config.vocab_size)
    except FileNotFoundError as e:
        if not config.download:
            raise FileNotFoundError(f"{e} Or add --download to fetch them.") from e
    return load_ptb(download_ptb(), config.vocab_size)


def ptb_task(build_model):
    """A trainer's `make_task(options)` for PTB: read the files, make a `LanguageModelTask`.

    Args:
        build_model: `build_model(options, *, vocab_size, batch_size, steps, stateful,
            streaming, training, sparsity)` -> keras.Model, where `options` maps each
            option dataclass of the trainer to its value.
    """

    def make_task(options):
        config = options[LanguageModelConfig]
        splits, vocabulary = read_ptb(config)
        build = functools.partial(build_model, options, vocab_size=len(vocabulary))
        return LanguageModelTask(build, splits, config)

    return make_task


def stream_batches(ids, batch_size, steps):
    """Lay a token stream out for truncated BPTT with carried state, as `ptb_producer`.

    The stream is cut into `batch_size` rows of `len // batch_size` tokens;
    batch i holds columns `[i*steps, (i+1)*steps)` of every row and its
    targets the columns one further, so row b of batch i continues row b of
    batch i-1. There are `(row_len - 1) // steps` batches, exactly the
    original reader's (reader.py `ptb_producer`, ptb_word_lm.py:260). Returns
    `(x, y)` of shape `(num_batches * batch_size, steps)` in that order, for
    `fit(shuffle=False)`.
    """
    ids = np.asarray(ids, dtype=np.int32)
    row_len = len(ids) // batch_size
    num_batches = (row_len - 1) // steps
    if num_batches < 1:
        raise ValueError(f"{len(ids)} tokens are too few for batch_size={batch_size} and "
                         f"steps={steps}: need more than {batch_size * (steps + 1)}.")
    rows = ids[:batch_size * row_len].reshape(batch_size, row_len)

    def lay_out(a):
        a = a[:, :num_batches * steps].reshape(batch_size, num_batches, steps)
        return a.transpose(1, 0, 2).reshape(num_batches * batch_size, steps)

    return lay_out(rows[:, :-1]), lay_out(rows[:, 1:])


def compile_for_evaluation(model):
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def perplexity(model, ids, batch_size, steps):
    """exp(mean cross-entropy) of a stateful model over a token stream laid out
    by `stream_batches` (the tokens past the last whole batch are not scored)."""
    x, y = stream_batches(ids, batch_size, steps)
    reset_states(model)
    loss = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    reset_states(model)
    return float(np.exp(loss))


def every_token_perplexity(model, ids, steps):
    """exp(mean cross-entropy) over every token of a stream, as the original's test.

    The original tests at batch 1 x 1 step (ptb_word_lm.py:700-701), scoring
    all `len(ids) - 1` next-token predictions. With the state carried, feeding
    `steps` tokens at a time computes the same numbers faster; the last
    `(len(ids) - 1) % steps` tokens go in one shorter call. `model` must be
    stateful with batch size 1 and any sequence length (built with `steps=None`).
    """
    ids = np.asarray(ids, dtype=np.int32)
    total = len(ids) - 1
    if total < 1:
        raise ValueError(f"Need at least 2 tokens to score; received {len(ids)}.")
    whole = total // steps * steps
    reset_states(model)
    loss_sum = 0.0
    if whole:
        x = ids[:whole].reshape(-1, steps)
        y = ids[1:whole + 1].reshape(-1, steps)
        loss_sum += model.evaluate(x, y, batch_size=1, verbose=0) * whole
    if total > whole:
        x, y = ids[whole:total][None], ids[whole + 1:total + 1][None]
        loss_sum += float(model.test_on_batch(x, y)) * (total - whole)
    reset_states(model)
    return float(np.exp(loss_sum / total))


def every_token_windows(ids, batch_size, steps):
    """Lay a token stream out so that every next-token prediction is scored once.

    The `len(ids) - 1` predictions are split into `batch_size` consecutive
    rows as evenly as possible (row b predicts the tokens after positions
    `[b*T//B, (b+1)*T//B)`, T = len(ids) - 1); each row's last input is the
    token its successor row starts from, so no token falls between rows, and
    the rows are padded to a whole number of `steps` windows. Returns
    `(x, y, mask)` of shape `(num_windows * batch_size, steps)` in the order
    of `stream_batches` (row b of window i continues row b of window i-1);
    `mask` is 1 on the `len(ids) - 1` real targets and 0 on the padding. The
    first token is the only one never scored: nothing precedes it. Each row
    starts from a zero state, as in `stream_batches`.
    """
    ids = np.asarray(ids, dtype=np.int32)
    total = len(ids) - 1
    if total < batch_size:
        raise ValueError(f"{len(ids)} tokens are too few to give each of batch_size="
                         f"{batch_size} rows a prediction: need at least {batch_size + 1}.")
    starts = np.arange(batch_size + 1) * total // batch_size
    num_windows = -(-int(np.diff(starts).max()) // steps)
    width = num_windows * steps
    x = np.zeros((batch_size, width), np.int32)
    y = np.zeros((batch_size, width), np.int32)
    mask = np.zeros((batch_size, width), np.float32)
    for b, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        x[b, :hi - lo], y[b, :hi - lo], mask[b, :hi - lo] = ids[lo:hi], ids[lo + 1:hi + 1], 1.0

    def lay_out(a):
        a = a.reshape(batch_size, num_windows, steps)
        return a.transpose(1, 0, 2).reshape(num_windows * batch_size, steps)

    return lay_out(x), lay_out(y), lay_out(mask)


def cross_entropy(logits, targets):
    """Softmax cross-entropy `-log p(target)` of `logits[..., vocab]` in float64 (a stable
    log-sum-exp), one value per target: what the every-token tests sum."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
    target = np.take_along_axis(logits, np.asarray(targets)[..., None], -1)[..., 0]
    return log_z - target


def batched_every_token_perplexity(model, ids, batch_size, steps):
    """exp(mean cross-entropy) over every token of a stream at batch `batch_size`.

    The batched counterpart of `every_token_perplexity`: the stream is laid
    out by `every_token_windows`, the stateful `model` (batch `batch_size`,
    `steps` steps) carries its state from window to window, and the loss is
    summed over the real targets only and divided by their number,
    `len(ids) - 1`. The padded positions are fed but never scored.
    """
    x, y, mask = every_token_windows(ids, batch_size, steps)
    reset_states(model)
    loss_sum = 0.0
    for i in range(0, len(x), batch_size):
        nll = cross_entropy(model.predict_on_batch(x[i:i + batch_size]), y[i:i + batch_size])
        loss_sum += float((nll * mask[i:i + batch_size]).sum())
    reset_states(model)
    return float(np.exp(loss_sum / mask.sum()))


def zero_states(model, batch_size):
    """Initial state arrays for a streaming model: `[h0, c0, h1, c1, ...]` of zeros."""
    return [np.zeros((batch_size,) + tuple(t.shape[1:]), "float32") for t in model.inputs[1:]]


def streaming_output_names(model):
    """Serving names of a streaming model's outputs: `logits`, then the new
    states named as the state inputs they feed back into (`h0`, `c0`, ...)."""
    return ["logits"] + [t.name for t in model.inputs[1:]]


def streaming_inputs(model, ids):
    """The inputs `[tokens, *states]` of a streaming `model` (batch 1, one token per call) fed
    `ids` in order from a zero state: one batch per token, with the states the model carried
    to it. They calibrate a full-integer int8 export: random states would fall outside the
    ranges real text gives."""
    states = zero_states(model, 1)
    batches = []
    for token in np.asarray(ids, np.int32):
        inputs = [np.full((1, 1), token, np.int32)] + states
        batches.append(inputs)
        states = [np.asarray(s) for s in model.predict_on_batch(inputs)[1:]]
    return batches


def tflite_every_token_perplexity(interpreter, model, ids, output_names=None):
    """`every_token_perplexity` of an exported TFLite streaming model: exp(mean cross-entropy)
    over every next-token prediction of `ids`, one token per call at batch 1, the states fed
    back (the original's test protocol, ptb_word_lm.py:700-701, on the deployed model).

    Args:
        interpreter: an `ai_edge_litert` interpreter of the export of `model` (`steps=1`).
        model: the Keras streaming model it was exported from (`[tokens, *states] ->
            [logits, *states]`), for the signature's names and the state shapes.
        ids: the token stream.
        output_names: the signature's output names (default `streaming_output_names`).
    """
    ids = np.asarray(ids, np.int32)
    if len(ids) < 2:
        raise ValueError(f"Need at least 2 tokens to score; received {len(ids)}.")
    names, outputs = input_names(model), output_names or streaming_output_names(model)
    runner = interpreter.get_signature_runner()
    states = zero_states(model, 1)
    loss_sum = 0.0
    for t in range(len(ids) - 1):
        out = runner(**dict(zip(names, [ids[t:t + 1].reshape(1, 1)] + states)))
        loss_sum += float(cross_entropy(np.reshape(out[outputs[0]], -1), ids[t + 1]))
        states = [out[name] for name in outputs[1:]]
    return float(np.exp(loss_sum / (len(ids) - 1)))


class ResetStatesEachEpoch(keras.callbacks.Callback):
    """Each epoch starts from a zero state (the original's `initial_state` per epoch)."""

    def on_epoch_begin(self, epoch, logs=None):
        reset_states(self.model)


class LanguageModelTask(Task):
    """Next-word prediction on token streams with carried state.

    Args:
        build_model: `build_model(*, batch_size, steps, stateful, streaming,
            training, sparsity)` -> keras.Model. `training` is True only for
            the training model (dropout on); `sparsity` is given only then.
            Streaming models take `[tokens, *states]` and return
            `[logits, *new_states]`.
        data: dict with `"train"`, `"valid"`, `"test"` int token streams.
        config: a `LanguageModelConfig`.

    Example:

    >>> task = LanguageModelTask(build, splits, LanguageModelConfig(steps=35))
    >>> train_and_evaluate(task, sparsity, TrainConfig(epochs=39), "runs/medium")
    """

    monitor = "valid_perplexity"
    monitor_mode = "min"
    tflite_shape = {"batch_size": 1, "steps": 1}
    plot_metrics = ("train_perplexity", "valid_perplexity")
    plot_log_scale = True
    reuse_copies = True  # the stateful validation copy is built once

    def __init__(self, build_model, data, config=None):
        self.build_model = build_model
        self.config = config or LanguageModelConfig()
        self.data = dict(data)
        if self.config.train_tokens:
            self.data["train"] = self.data["train"][:self.config.train_tokens]

    @property
    def loss_scale(self):
        return float(self.config.steps) if self.config.loss_units == "steps_sum" else 1.0

    @property
    def every_token_test(self):
        return self.config.test_batch_size == 1

    def _shape(self, mode):
        c = self.config
        return {"train": (c.batch_size, c.steps), "eval": (c.batch_size, c.steps),
                "test": (c.test_batch_size, None if self.every_token_test else c.steps),
                "serve": (None, None)}[mode]

    def build(self, mode, sparsity=None, batch_split=1):
        if mode not in ("train", "eval", "test", "serve"):
            raise ValueError(f"mode must be train, eval, test or serve. Received: mode={mode!r}")
        batch_size, steps = self._shape(mode)
        if mode == "train" and batch_split > 1:
            if batch_size % batch_split:
                raise ValueError(f"The batch size {batch_size} does not split over "
                                 f"{batch_split} replicas; use a multiple of {batch_split}.")
            batch_size //= batch_split
        model = self.build_model(batch_size=batch_size, steps=steps, stateful=mode != "serve",
                                 streaming=mode == "serve", training=mode == "train",
                                 sparsity=sparsity if mode == "train" else None)
        return compile_for_evaluation(model) if mode in ("eval", "test") else model

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self):
        return [keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="xent")]

    def fit_data(self):
        x, y = stream_batches(self.data["train"], self.config.batch_size, self.config.steps)
        return {"x": x, "y": y, "batch_size": self.config.batch_size, "shuffle": False}

    def callbacks(self):
        return [ResetStatesEachEpoch()]

    def evaluate(self, model):
        c = self.config
        valid = perplexity(self.copy_for("eval", model), self.data["valid"], c.batch_size,
                           c.steps)
        return {"valid_perplexity": valid}

    def epoch_summary(self, logs, seconds):
        return {"train_perplexity": float(np.exp(logs["xent"])),
                "train_loss_with_penalty": float(logs["loss"]),
                "tokens_per_second": round(len(self.data["train"]) / max(seconds, 1e-9), 1)}

    def test(self, model):
        """Test perplexity of a `"test"` model over every test token: at batch 1 (the
        original's, ptb_word_lm.py:700-701) or, with --test_batch_size > 1, over
        `every_token_windows` (Lobacheva et al.'s 32 x 35 layout, no token dropped)."""
        c = self.config
        if not getattr(model, "compiled", False):
            compile_for_evaluation(model)
        if self.every_token_test:
            return {"test_perplexity": every_token_perplexity(model, self.data["test"], c.steps)}
        return {"test_perplexity": batched_every_token_perplexity(
            model, self.data["test"], c.test_batch_size, c.steps)}

    def serving_inputs(self, model, batch_size=1):
        return [np.zeros((batch_size, 1), "int32")] + zero_states(model, batch_size)

    def train_size(self):
        """Target tokens per epoch (the loss is a mean over tokens)."""
        x, _ = stream_batches(self.data["train"], self.config.batch_size, self.config.steps)
        return int(x.size)

    def serving_output_names(self, model):
        return streaming_output_names(model)

    def representative_data(self, model, count=200):
        """The first `count` training tokens fed in order, with their carried states."""
        return streaming_inputs(model, self.data["train"][:count])

    def tflite_test(self, interpreter, model):
        """Test perplexity of the exported streaming model over every test token."""
        return {"test_perplexity": tflite_every_token_perplexity(
            interpreter, model, self.data["test"], self.serving_output_names(model))}
