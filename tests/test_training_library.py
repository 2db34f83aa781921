"""The shared training library: data layout, schedules, units, checkpoints, resume, NaN stop."""

import os

import keras
import numpy as np
import pytest

from conftest import ptb_ids
from iss_keras import training
from iss_keras.lm import hidden_sizes, lstm_language_model


def test_stream_batches_continue_row_by_row():
    ids = np.arange(1000, dtype=np.int32)
    x, y = training.stream_batches(ids, batch_size=4, steps=5)
    assert x.shape == y.shape and x.shape[1] == 5 and x.shape[0] % 4 == 0
    np.testing.assert_array_equal(y, x + 1)
    batches = x.reshape(-1, 4, 5)
    # Row b of batch i starts where row b of batch i - 1 stopped.
    np.testing.assert_array_equal(batches[1:, :, 0], batches[:-1, :, -1] + 1)
    with pytest.raises(ValueError, match="too few"):
        training.stream_batches(ids[:10], batch_size=4, steps=5)


def test_schedules_match_the_original_formulas():
    zaremba = training.TrainConfig(epochs=13, learning_rate=1.0, lr_decay=0.5, max_epoch=4)
    assert [zaremba.learning_rate_at(e) for e in range(6)] == [1, 1, 1, 1, 0.5, 0.25]
    step = training.TrainConfig(epochs=55, lr_schedule="step", lr_decay=0.1)
    rates = [step.learning_rate_at(e) for e in (0, 17, 18, 35, 36, 54)]
    np.testing.assert_allclose(rates, [1, 1, 0.1, 0.1, 0.01, 0.001])  # 0.1^(epoch // 18)


def test_original_units_are_divided_by_steps():
    units = training.TrainConfig(steps=35, max_grad_norm=10, iss_strength=0.00245,
                                 l1_strength=1e-4).keras_units()
    assert units["lr_scale"] == 35
    np.testing.assert_allclose([units["clipnorm"], units["iss_strength"], units["l1_strength"]],
                               [10 / 35, 0.00245 / 35, 1e-4 / 35])


@pytest.mark.parametrize("field,value", [("steps", 0), ("learning_rate", -1.0),
                                         ("iss_strength", -0.1), ("lr_schedule", "cosine")])
def test_bad_config_values_are_named(field, value):
    with pytest.raises(ValueError, match=f"{field}"):
        training.TrainConfig(**{field: value})


def tiny_builder(batch_size, steps, stateful, streaming, regularization):
    reg = regularization or {}
    return lstm_language_model(200, [12, 10], batch_size=batch_size, steps=steps,
                               stateful=stateful, streaming=streaming,
                               iss_strength=reg.get("iss_strength", 0.0),
                               zero_threshold=reg.get("zero_threshold"), seed=3)


def tiny_data():
    return {"train": ptb_ids("train", 200)[:4000], "valid": ptb_ids("valid", 200)[:1500],
            "test": ptb_ids("test", 200)[:1500]}


def tiny_config(**kwargs):
    base = dict(steps=8, batch_size=8, eval_batch_size=8, epochs=2, iss_strength=0.01,
                component_threshold=0.02, seed=1)
    return training.TrainConfig(**{**base, **kwargs})


class _InterruptInEpoch(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    straight = training.LanguageModelTrainer(tiny_builder, tiny_config(), tiny_data(),
                                             str(tmp_path / "straight"), verbose=0)
    expected = straight.train().get_weights()

    workdir = str(tmp_path / "killed")
    killer = _InterruptInEpoch(epoch=1, batch=10)
    real_fit = keras.Model.fit

    def fit_with_killer(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [killer]
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_killer)
    with pytest.raises(KeyboardInterrupt):
        training.LanguageModelTrainer(tiny_builder, tiny_config(), tiny_data(), workdir,
                                      verbose=0).train()
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    assert sorted(n for n in os.listdir(workdir) if n.startswith(".")) == []
    resumed = training.LanguageModelTrainer(tiny_builder, tiny_config(), tiny_data(), workdir,
                                            verbose=0)
    got = resumed.train().get_weights()
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    training.LanguageModelTrainer(tiny_builder, tiny_config(epochs=1), tiny_data(), workdir,
                                  verbose=0).train()
    before = open(os.path.join(workdir, "checkpoint.npz"), "rb").read()
    exploding = tiny_config(epochs=2, learning_rate=1e38, max_grad_norm=1e38)
    with pytest.raises(training.TrainingDivergedError, match="epoch 2.*checkpoint after epoch 1"):
        training.LanguageModelTrainer(tiny_builder, exploding, tiny_data(), workdir,
                                      verbose=0).train()
    assert open(os.path.join(workdir, "checkpoint.npz"), "rb").read() == before


def test_checkpoint_of_another_shape_is_refused_with_the_fix(tmp_path):
    workdir = str(tmp_path / "run")
    training.LanguageModelTrainer(tiny_builder, tiny_config(epochs=1), tiny_data(), workdir,
                                  verbose=0).train()

    def wider(*args):
        model = tiny_builder(*args)
        return lstm_language_model(200, [20, 10], batch_size=args[0], steps=args[1],
                                   stateful=args[2]) if hidden_sizes(model) else model

    with pytest.raises(ValueError, match="flags.txt"):
        training.LanguageModelTrainer(wider, tiny_config(), tiny_data(), workdir, verbose=0).train()


def test_finish_shrinks_with_equal_test_perplexity(tmp_path):
    trainer = training.LanguageModelTrainer(tiny_builder, tiny_config(epochs=2), tiny_data(),
                                            str(tmp_path / "run"), verbose=0)
    model = trainer.train()
    results = trainer.finish(model, export=False, measure_speed=False)
    assert results["hidden_after"][0] < 12 or results["hidden_after"][1] < 10
    assert abs(results["test_perplexity_shrunk"] - results["test_perplexity_sparse"]) \
        <= 1e-3 * results["test_perplexity_sparse"]
    assert os.path.exists(tmp_path / "run" / "plots" / "progress.png")
    assert os.path.exists(tmp_path / "run" / "metrics.csv")


def test_truncated_checkpoint_is_named_and_never_restarts_training(tmp_path):
    workdir = str(tmp_path / "run")
    training.LanguageModelTrainer(tiny_builder, tiny_config(epochs=1), tiny_data(), workdir,
                                  verbose=0).train()
    path = os.path.join(workdir, "checkpoint.npz")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    with pytest.raises(training.CorruptCheckpointError, match="cannot be read.*not restarted"):
        training.LanguageModelTrainer(tiny_builder, tiny_config(epochs=2), tiny_data(), workdir,
                                      verbose=0).train()
    assert open(path, "rb").read() == data[:len(data) // 2]  # left for the user to inspect


def test_run_files_honour_the_umask(tmp_path):
    from iss_keras.files import atomic_path, write_text

    old = os.umask(0o022)
    try:
        write_text(str(tmp_path / "results.json"), "{}")
        with atomic_path(str(tmp_path / "export"), directory=True) as tmp:
            open(os.path.join(tmp, "x"), "w").close()
        os.umask(0o077)
        write_text(str(tmp_path / "private.json"), "{}")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "results.json").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "export").st_mode & 0o777 == 0o755
    assert os.stat(tmp_path / "private.json").st_mode & 0o777 == 0o600
