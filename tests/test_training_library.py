"""The task-neutral training library: schedules, units, checkpoints, resume, NaN stop, finish."""

import os

import keras
import numpy as np
import pytest

from conftest import ptb_ids
from iss_keras import sparsity as sparsity_lib
from iss_keras import training
from iss_keras.models.lstm_lm import lstm_language_model
from iss_keras.sparsity.iss import ISSOptions
from iss_keras.tasks.language_model import LanguageModelConfig, LanguageModelTask, stream_batches


def test_stream_batches_continue_row_by_row():
    ids = np.arange(1000, dtype=np.int32)
    x, y = stream_batches(ids, batch_size=4, steps=5)
    assert x.shape == y.shape and x.shape[1] == 5 and x.shape[0] % 4 == 0
    np.testing.assert_array_equal(y, x + 1)
    batches = x.reshape(-1, 4, 5)
    # Row b of batch i starts where row b of batch i - 1 stopped.
    np.testing.assert_array_equal(batches[1:, :, 0], batches[:-1, :, -1] + 1)
    with pytest.raises(ValueError, match="too few"):
        stream_batches(ids[:10], batch_size=4, steps=5)


def test_schedules_match_the_original_formulas():
    zaremba = training.TrainConfig(epochs=13, learning_rate=1.0, lr_decay=0.5, max_epoch=4)
    assert [zaremba.learning_rate_at(e) for e in range(6)] == [1, 1, 1, 1, 0.5, 0.25]
    step = training.TrainConfig(epochs=55, lr_schedule="step", lr_decay=0.1)
    rates = [step.learning_rate_at(e) for e in (0, 17, 18, 35, 36, 54)]
    np.testing.assert_allclose(rates, [1, 1, 0.1, 0.1, 0.01, 0.001])  # 0.1^(epoch // 18)


def test_original_units_are_divided_by_steps():
    config = training.TrainConfig(max_grad_norm=10, learning_rate=0.7)
    assert config.keras_learning_rate(0, loss_scale=35) == pytest.approx(0.7 * 35)
    assert config.keras_clipnorm(35) == pytest.approx(10 / 35)
    sparsity = sparsity_lib.from_options(
        [ISSOptions(iss_strength=0.00245), sparsity_lib.L1Sparsity.Options(l1_strength=1e-4)],
        sparsity_lib.OptionContext(loss_scale=35))
    np.testing.assert_allclose([sparsity.find("iss").strength, sparsity.find("l1").strength],
                               [0.00245 / 35, 1e-4 / 35])
    # Adam does not depend on the loss scale: its learning rate is not rescaled.
    adam = training.TrainConfig(optimizer="adam", learning_rate=1e-3)
    assert adam.keras_learning_rate(0, 35) == 1e-3


@pytest.mark.parametrize("make,message", [
    (lambda: LanguageModelConfig(steps=0), "steps must be >= 1"),
    (lambda: training.TrainConfig(learning_rate=-1.0), "learning_rate must be > 0"),
    (lambda: ISSOptions(iss_strength=-0.1), "iss_strength must be >= 0"),
    (lambda: training.TrainConfig(lr_schedule="cosine"), "lr_schedule must be one of"),
    (lambda: training.TrainConfig(max_grad_norm=float("nan")), "max_grad_norm must be >= 0"),
    (lambda: training.RunOptions(quantize=["int8", "int4"]),
     r"quantize must be one of \('int8', 'int8_full', 'float16'\).*'int4'"),
])
def test_bad_config_values_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def tiny_build(*, batch_size, steps, stateful, streaming, training, sparsity, sizes=(12, 10)):
    return lstm_language_model(200, list(sizes), batch_size=batch_size, steps=steps,
                               stateful=stateful, streaming=streaming, sparsity=sparsity, seed=3)


def tiny_task(build=tiny_build):
    data = {"train": ptb_ids("train", 200)[:4000], "valid": ptb_ids("valid", 200)[:1500],
            "test": ptb_ids("test", 200)[:1500]}
    return LanguageModelTask(build, data, LanguageModelConfig(steps=8, batch_size=8))


def tiny_sparsity(epochs=2):
    return sparsity_lib.from_options([ISSOptions(iss_strength=0.01, component_threshold=0.02)],
                                     sparsity_lib.OptionContext(loss_scale=8, epochs=epochs))


def tiny_run(workdir, epochs=2, build=tiny_build, **config):
    config = training.TrainConfig(**{"epochs": epochs, "seed": 1, **config})
    return training.Run(tiny_task(build), tiny_sparsity(epochs), config, str(workdir), verbose=0)


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
    expected = tiny_run(tmp_path / "straight").train().get_weights()

    workdir = str(tmp_path / "killed")
    killer = _InterruptInEpoch(epoch=1, batch=10)
    real_fit = keras.Model.fit

    def fit_with_killer(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [killer]
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_killer)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(workdir).train()
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    assert sorted(n for n in os.listdir(workdir) if n.startswith(".")) == []
    resumed = tiny_run(workdir)
    got = resumed.train().get_weights()
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's XLA option")
def test_xla_option_compiles_the_tf_step_with_xla_and_trains_the_same_weights(tmp_path):
    """`--xla` (ours): the step, ISS's penalty and ZeroOut included, compiled by XLA on a
    CPU-only TensorFlow machine, where Keras's "auto" leaves it off; same weights."""
    plain, xla = tiny_run(tmp_path / "plain", epochs=1), tiny_run(tmp_path / "xla", epochs=1,
                                                                   xla=True)
    expected, got = plain.train(), xla.train()
    assert got.jit_compile is True and expected.jit_compile is False
    for e, g in zip(expected.get_weights(), got.get_weights()):
        np.testing.assert_allclose(g, e, atol=2e-4)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    tiny_run(workdir, epochs=1).train()
    before = open(os.path.join(workdir, "checkpoint.npz"), "rb").read()
    with pytest.raises(training.TrainingDivergedError, match="epoch 2.*checkpoint after epoch 1"):
        tiny_run(workdir, epochs=2, learning_rate=1e38, max_grad_norm=1e38).train()
    assert open(os.path.join(workdir, "checkpoint.npz"), "rb").read() == before
    assert len(open(os.path.join(workdir, "metrics.csv")).read().strip().splitlines()) == 2


def test_checkpoint_of_another_shape_is_refused_with_the_fix(tmp_path):
    workdir = str(tmp_path / "run")
    tiny_run(workdir, epochs=1).train()

    def wider(**kwargs):
        return tiny_build(**kwargs, sizes=(20, 10))

    with pytest.raises(ValueError, match="flags.txt"):
        tiny_run(workdir, build=wider).train()


def test_finish_shrinks_with_equal_test_perplexity(tmp_path):
    run = tiny_run(tmp_path / "run")
    results = training.finish(run, run.train(), export=False, measure_speed=False)
    assert results["hidden_after"][0] < 12 or results["hidden_after"][1] < 10
    assert abs(results["test_perplexity_shrunk"] - results["test_perplexity_sparse"]) \
        <= 1e-3 * results["test_perplexity_sparse"]
    assert os.path.exists(tmp_path / "run" / "plots" / "progress.png")
    assert os.path.exists(tmp_path / "run" / "metrics.csv")


def test_truncated_checkpoint_is_named_and_never_restarts_training(tmp_path):
    workdir = str(tmp_path / "run")
    tiny_run(workdir, epochs=1).train()
    path = os.path.join(workdir, "checkpoint.npz")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    with pytest.raises(training.CorruptCheckpointError, match="cannot be read.*not restarted"):
        tiny_run(workdir, epochs=2).train()
    assert open(path, "rb").read() == data[:len(data) // 2]  # left for the user to inspect


def test_moving_averages_are_validated_checkpointed_and_resumed(tmp_path):
    from iss_keras.training import load_checkpoint

    def run(workdir, epochs, ema=0.9):
        config = training.TrainConfig(epochs=epochs, seed=1, ema=ema)
        return training.Run(tiny_task(), tiny_sparsity(epochs), config, str(workdir), verbose=0)

    raw = [np.asarray(v) for v in run(tmp_path / "raw", 2, ema=0.0).train().trainable_variables]
    averaged = run(tmp_path / "averaged", 2)
    model = averaged.train()
    got = [np.asarray(v) for v in model.trainable_variables]
    # The averages train the same way (raw trajectory) but end elsewhere, and are exactly
    # zero wherever the raw weights are (removed units stay removable).
    assert max(float(np.abs(g - r).max()) for g, r in zip(got, raw)) > 1e-3
    assert sum(int((r == 0).sum()) for r in raw) > 0
    for g, r in zip(got, raw):
        assert not g[r == 0].any()
    # What was checkpointed and validated is the averages.
    saved = tiny_task().build("train")
    load_checkpoint(str(tmp_path / "averaged" / "checkpoint.npz"), saved, optimizer=False)
    for g, kept in zip(got, saved.trainable_variables):
        np.testing.assert_allclose(np.asarray(kept), g, atol=1e-6)
    # Killed after epoch 1 and resumed: the same averaged weights at the end.
    run(tmp_path / "killed", 1).train()
    resumed = run(tmp_path / "killed", 2).train()
    for e, g in zip(model.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_provenance_names_the_commit_the_run_started_from(monkeypatch):
    """A checkout that moves on while a run trains does not change the run's recorded commit."""
    from iss_keras import provenance

    started = provenance._LIBRARY_AT_IMPORT
    monkeypatch.setattr(provenance, "git_commit", lambda directory=None: ("f" * 40, True))
    record = provenance.provenance()
    assert (record["commit"], record["uncommitted_changes"]) == started
