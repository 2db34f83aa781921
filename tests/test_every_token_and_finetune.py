"""The batched word-LM test scores every test token once; the ISS fine-tune config's options."""

import os

import keras
import numpy as np
import pytest

from helpers import read_trainer_options, value
from iss_keras import sparsity as sparsity_lib
from iss_keras.models.lstm_lm import lstm_language_model
from iss_keras.tasks import language_model
from iss_keras.tasks.language_model import LanguageModelConfig
from iss_keras.training import TrainConfig
from iss_keras.training.config import RunOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("length,batch_size,steps", [(83, 4, 5), (80, 4, 5), (41, 8, 3),
                                                     (9, 8, 35)])
def test_every_token_windows_score_each_prediction_once(length, batch_size, steps):
    ids = np.arange(length, dtype=np.int32)  # a token's id is its position
    x, y, mask = language_model.every_token_windows(ids, batch_size, steps)
    assert x.shape == y.shape == mask.shape and x.shape[0] % batch_size == 0
    scored = y[mask == 1]
    # Only the first token cannot be predicted (nothing precedes it): length - 1 targets,
    # each position 1 .. length-1 exactly once, each after its own predecessor.
    assert mask.sum() == length - 1
    np.testing.assert_array_equal(np.sort(scored), np.arange(1, length))
    np.testing.assert_array_equal(x[mask == 1], scored - 1)
    # Row b of window i continues row b of window i-1 (the carried state's order).
    rows = x.reshape(-1, batch_size, steps).transpose(1, 0, 2).reshape(batch_size, -1)
    row_mask = mask.reshape(-1, batch_size, steps).transpose(1, 0, 2).reshape(batch_size, -1)
    for row, m in zip(rows, row_mask):
        real = row[m == 1]
        np.testing.assert_array_equal(real, np.arange(real[0], real[0] + len(real)))
        assert m[:len(real)].all()  # the padding only at a row's end


def test_every_token_windows_refuse_too_few_tokens():
    with pytest.raises(ValueError, match="5 tokens"):
        language_model.every_token_windows(np.arange(5), batch_size=8, steps=3)


def test_batched_test_perplexity_is_every_token_mean():
    vocab, batch_size, steps = 30, 4, 5
    model = lstm_language_model(vocab, [7], batch_size=batch_size, steps=steps, stateful=True,
                                seed=4)
    ids = np.random.default_rng(3).integers(0, vocab, 83).astype("int32")  # 82 targets
    # Direct computation: each row's predictions in one stateless call over the whole row.
    reference = lstm_language_model(vocab, [7], seed=4)
    reference.set_weights(model.get_weights())
    starts = np.arange(batch_size + 1) * 82 // batch_size
    nll = []
    for lo, hi in zip(starts[:-1], starts[1:]):
        logits = value(reference(ids[None, lo:hi]))[0]
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll.extend(-logp[np.arange(hi - lo), ids[lo + 1:hi + 1]])
    assert len(nll) == 82
    expected = np.exp(np.mean(nll))
    got = language_model.batched_every_token_perplexity(model, ids, batch_size, steps)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The task's test at --test_batch_size > 1 is this number, and the old layout's differs.
    task = language_model.LanguageModelTask(
        lambda **kw: model, {"train": ids, "valid": ids, "test": ids},
        LanguageModelConfig(steps=steps, batch_size=batch_size, test_batch_size=batch_size))
    np.testing.assert_allclose(task.test(model)["test_perplexity"], expected, rtol=1e-5)
    dropping = language_model.perplexity(model, ids, batch_size, steps)  # 60 of 82 targets
    assert abs(dropping - expected) > 1e-4


def test_sparselarge_iss_finetune_flagfile_is_finetuning_json():
    flagfile = os.path.join(ROOT, "ptb", "configs", "sparselarge_iss_finetune.flags")
    options = read_trainer_options("ptb/train.py", f"--flagfile={flagfile}")
    train = options[TrainConfig]
    assert options[RunOptions].restore_from == "runs/ptb/sparselarge_iss"
    # finetuning.json:3 and the sparselarge schedule (ptb_word_lm.py:515-529, :759).
    assert (train.optimizer, train.learning_rate, train.epochs) == ("sgd", 0.1, 55)
    assert (train.lr_schedule, train.lr_decay, train.lr_step_epochs) == ("step", 0.1, 18)
    assert train.max_grad_norm == 10
    assert [train.learning_rate_at(e) for e in (0, 17, 18, 36, 54)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001, 0.0001])  # 0.1 x 0.1^(i // 18)
    lm = options[LanguageModelConfig]
    assert (lm.steps, lm.batch_size, lm.test_batch_size) == (35, 20, 1)
    model = next(o for o in options.values() if hasattr(o, "dropout"))
    assert (model.dropout, model.hidden_sizes) == (0.4, (1500, 1500))  # keep_prob 0.60
    # weight_decay 0.0 and no group Lasso: no method, no thresholding (ptb_word_lm.py:380).
    chosen = sparsity_lib.from_options(
        [options[cls] for cls in sparsity_lib.option_classes()],
        sparsity_lib.OptionContext(epochs=train.epochs, seed=train.seed))
    assert chosen.methods == []


def _one_sgd_step(freeze_mode, weights, gradient, clip=0.0):
    train = TrainConfig(learning_rate=1.0, max_grad_norm=clip, freeze_mode=freeze_mode)
    optimizer = train.make_optimizer(loss_scale=1.0)
    variable = keras.Variable(np.array(weights, dtype="float32"))
    optimizer.apply([keras.ops.convert_to_tensor(np.array(gradient, dtype="float32"))], [variable])
    return optimizer, keras.ops.convert_to_numpy(variable)


def test_freeze_mode_element_keeps_near_zero_weights_where_they_are():
    # ptb_word_lm.py:221-247: |w| < 1e-4 (its zero_threshold, :75) -> gradient zeroed.
    weights, gradient = [0.0, 5e-5, -9e-5, 2e-4, 0.3], [1.0, 1.0, -1.0, 1.0, 1.0]
    _, moved = _one_sgd_step("", weights, gradient)
    optimizer, kept = _one_sgd_step("element", weights, gradient)
    np.testing.assert_allclose(moved, np.array(weights) - gradient, rtol=1e-6)
    np.testing.assert_allclose(kept, [0.0, 5e-5, -9e-5, 2e-4 - 1.0, 0.3 - 1.0], rtol=1e-6)
    assert optimizer.get_config()["freeze_threshold"] == 1e-4


def test_freeze_mode_zeroes_after_the_global_clip():
    # The original clips first (clip_by_global_norm over every gradient, frozen ones included),
    # then zeroes: the unfrozen weight moves by its share of the clipped norm-1 gradient.
    _, kept = _one_sgd_step("element", [0.0, 1.0], [3.0, 4.0], clip=1.0)
    np.testing.assert_allclose(kept, [0.0, 1.0 - 0.8], rtol=1e-5)


def test_freeze_mode_refuses_unknown_modes():
    with pytest.raises(ValueError, match="freeze_mode must be one of .*'group'"):
        TrainConfig(freeze_mode="group")


def test_frozen_finetune_flagfile_is_the_finetune_plus_the_element_freeze(monkeypatch):
    monkeypatch.chdir(ROOT)  # its nested flagfile is read from the repository root
    base = read_trainer_options("ptb/train.py",
                                "--flagfile=ptb/configs/sparselarge_iss_finetune.flags")
    frozen = read_trainer_options("ptb/train.py",
                                  "--flagfile=ptb/configs/sparselarge_iss_finetune_frozen.flags")
    assert base[TrainConfig].freeze_mode == ""
    assert frozen[TrainConfig].freeze_mode == "element"
    assert frozen[RunOptions].workdir == "runs/ptb/sparselarge_iss_finetune_frozen"
    frozen = {cls.__qualname__: vars(options) for cls, options in frozen.items()}
    for cls, options in base.items():  # each reading defines the trainer's classes anew
        if cls is RunOptions:
            continue
        expected = {**vars(options), "freeze_mode": "element"} if cls is TrainConfig else vars(
            options)
        assert frozen[cls.__qualname__] == expected, cls


def test_the_exported_models_test_perplexity_float_equals_keras_and_int8_is_measured(tmp_path):
    """`tflite_test` streams every test token through the TFLite export (batch 1, one token
    per call, the states fed back): the float export's perplexity is the Keras test's; the
    int8 exports are scored the same way (their cost measured, not assumed), and the
    full-integer one is calibrated on the task's representative inputs (training tokens
    with their carried states). 48 units: the converter leaves weights under 1,024 values
    in float, so a smaller model's dynamic-range export would equal the float one."""
    from iss_keras.export import export_tflite, tflite_interpreter

    vocab = 30
    rng = np.random.default_rng(5)
    splits = {k: rng.integers(0, vocab, n).astype("int32")
              for k, n in (("train", 300), ("valid", 60), ("test", 97))}

    def build(*, batch_size, steps, stateful, streaming, training, sparsity):
        return lstm_language_model(vocab, [48], batch_size=batch_size, steps=steps,
                                   stateful=stateful, streaming=streaming, seed=4,
                                   init_scale=0.5)

    task = language_model.LanguageModelTask(build, splits, LanguageModelConfig(steps=5))
    tester = task.build("test")
    serve = task.copy_for("serve", tester)
    keras_ppl = task.test(tester)["test_perplexity"]
    data = task.representative_data(serve, count=40)
    assert len(data) == 40 and [x.shape for x in data[0]] == [(1, 1), (1, 48), (1, 48)]
    assert np.all(data[0][1] == 0) and np.any(data[1][1] != 0)  # states carried, from zero
    got = {}
    for q in (None, "int8", "int8_full"):
        report = export_tflite(serve, str(tmp_path / f"{q}.tflite"), steps=1, quantize=q,
                               output_names=task.serving_output_names(serve),
                               representative_data=data if q == "int8_full" else None)
        interp = tflite_interpreter(model_path=report.path)
        got[q] = task.tflite_test(interp, serve)["test_perplexity"]
    np.testing.assert_allclose(got[None], keras_ppl, rtol=1e-5)
    for q in ("int8", "int8_full"):
        assert got[q] != got[None] and abs(got[q] / got[None] - 1) < 0.05
