"""[ours] Target-size mode: ask for a size, get it (within 2%), fine-tune at it."""

import keras
import numpy as np
import pytest

import iss_keras
from conftest import ptb_ids
from iss_keras import sparsity as sparsity_lib
from iss_keras import training
from iss_keras.models.lstm_lm import lstm_language_model
from iss_keras.sparsity import ISS
from iss_keras.sparsity.iss import ISSOptions
from iss_keras.sparsity.target import TargetSize
from iss_keras.tasks.language_model import LanguageModelConfig, LanguageModelTask


def build(*, batch_size, steps, stateful, streaming, training, sparsity):
    return lstm_language_model(200, [24, 20], batch_size=batch_size, steps=steps,
                               stateful=stateful, streaming=streaming, sparsity=sparsity, seed=5)


def task():
    data = {"train": ptb_ids("train", 200)[:6000], "valid": ptb_ids("valid", 200)[:1000],
            "test": ptb_ids("test", 200)[:800]}
    return LanguageModelTask(build, data, LanguageModelConfig(steps=10, batch_size=10))


def target_run(workdir, epochs, **options):
    sparsity = sparsity_lib.from_options(
        [ISSOptions(iss_strength=1e-3, **options)],
        sparsity_lib.OptionContext(loss_scale=10, epochs=epochs))
    return training.Run(task(), sparsity, training.TrainConfig(epochs=epochs, seed=0),
                        str(workdir), verbose=0)


@pytest.mark.parametrize("target", [{"target_macs_ratio": 1.6}, {"target_units": (12, 15)}])
def test_training_ends_at_the_requested_size(tmp_path, target):
    run = target_run(tmp_path, 3, target_reach_epoch=2, **target)
    assert run.sparsity.find("iss").proximal
    model = run.train()
    results = training.finish(run, model, export=False, measure_speed=False)
    rows = run.history
    if "target_macs_ratio" in target:
        goal = results["macs_per_token"] / 1.6
        assert abs(results["macs_per_token_after"] - goal) <= 0.02 * goal
    else:
        assert results["hidden_after"] == [12, 15]
    reached = results["target"]["reached"]
    assert reached is not None and reached["step"] <= 2 * (6000 // 100)
    # Held at the reached size while fine-tuning (epoch 3), and shrink is exact.
    assert rows[-1]["active_units"] == rows[-2]["active_units"] == results["hidden_after"]
    assert abs(results["test_perplexity_shrunk"] - results["test_perplexity_sparse"]) \
        <= 1e-3 * results["test_perplexity_sparse"]


def test_resumed_run_keeps_the_controller_state(tmp_path):
    first = target_run(tmp_path, 1, target_reach_epoch=1, target_macs_ratio=1.5)
    first.train()
    state = first.history[-1]["target"]
    assert state["step"] == 59 and state["reached"] is not None  # 6000 tokens: 59 batches
    again = target_run(tmp_path, 2, target_reach_epoch=1, target_macs_ratio=1.5)
    again.train()  # resumes after epoch 1
    assert again.history[-1]["target"]["step"] == 118
    assert again.history[-1]["target"]["reached"] == state["reached"]
    assert again.history[-1]["active_units"] == first.history[-1]["active_units"]


@pytest.mark.parametrize("kwargs,message", [
    ({"target_macs_ratio": 2.0}, "set iss_strength > 0"),
    ({"target_macs_ratio": 0.5, "iss_strength": 1e-3}, "must be > 1"),
    ({"target_macs_ratio": 2.0, "target_units": (3,), "iss_strength": 1e-3}, "not both"),
    ({"target_macs_ratio": 2.0, "iss_strength": 1e-3, "component_threshold": 0.1},
     "component_threshold"),
    ({"target_units": (3, 0), "iss_strength": 1e-3}, "positive integers"),
])
def test_bad_targets_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ISSOptions(**kwargs)


def test_a_reach_epoch_past_the_run_is_refused():
    with pytest.raises(ValueError, match="target_reach_epoch must be in 0..epochs"):
        sparsity_lib.from_options([ISSOptions(iss_strength=1e-3, target_macs_ratio=2.0,
                                              target_reach_epoch=14)],
                                  sparsity_lib.OptionContext(loss_scale=20, epochs=13))


def test_target_needs_proximal_iss_on_every_layer():
    model = lstm_language_model(50, [6, 5], sparsity=ISS(1e-3))  # subgradient ISS
    groups = iss_keras.couple(model)
    target = TargetSize(groups, reach_step=10, macs_ratio=2.0)
    target.set_model(model)
    with pytest.raises(ValueError, match="proximal=True"):
        target.on_train_begin()
    with pytest.raises(ValueError, match="in 1..6"):
        TargetSize(groups, reach_step=10, units=[7, 5])


def test_planned_size_falls_fast_then_slowly():
    model = lstm_language_model(50, [6, 5], sparsity=ISS(1e-3, proximal=True))
    target = TargetSize(iss_keras.couple(model), reach_step=100, macs_ratio=2.0)
    target._start = {"macs": 1000.0, "units": {}}
    plan = [target.planned(s) for s in (0, 25, 50, 100, 200)]
    np.testing.assert_allclose(plan, [1000, 500 + 500 * 0.75 ** 3, 500 + 500 * 0.5 ** 3, 500, 500])


@pytest.mark.parametrize("target", [{"macs_ratio": 2.0}, {"units": [3, 2]}])
def test_controller_state_survives_a_json_round_trip(target):
    import json

    model = lstm_language_model(50, [6, 5], sparsity=ISS(1e-3, proximal=True))
    groups = iss_keras.couple(model)
    first = TargetSize(groups, reach_step=10, **target)
    first.step, first.scale = 7, {"lstm_0": 1.25, "lstm_1": 0.8}
    first._start = {"macs": 1000.0, "units": {"lstm_0": 6, "lstm_1": 5}}
    again = TargetSize(groups, reach_step=10, **target)
    again.load_state(json.loads(json.dumps(first.state())))
    assert again.state() == first.state()


def test_near_the_goal_the_size_is_checked_every_step_with_the_starting_strength():
    model = lstm_language_model(50, [6, 5], sparsity=ISS(1e-3, proximal=True))
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    model.optimizer.build(model.trainable_variables)
    groups = iss_keras.couple(model)
    # Dense is 1/1.05 of the way: already within the 10% approach band of the goal.
    target = TargetSize(groups, reach_step=1000, macs_ratio=1.05, check_every=50)
    target.set_model(model)
    target.on_train_begin()
    target.scale = {name: 8.0 for name in target.scale}
    target.step = 49
    checks = []
    real_size = target._size
    target._size = lambda: checks.append(target.step) or real_size()
    target.on_train_batch_end(0)  # step 50: a regular check
    assert target.near and all(s == 1.0 for s in target.scale.values())
    assert [reg.strength for reg in target._regs.values()] == [1e-3, 1e-3]
    target.on_train_batch_end(1)  # step 51: checked too, being near
    assert checks[-2:] == [50, 51] or target.reached is not None


def test_the_best_epoch_of_a_target_run_is_one_at_the_reached_size(tmp_path):
    run = target_run(tmp_path, 3, target_reach_epoch=2, target_macs_ratio=1.6)
    run.config = training.TrainConfig(epochs=3, seed=0, test_checkpoint="best_valid")
    model = run.train()
    results = training.finish(run, model, export=False, measure_speed=False)
    tested = run.history[results["tested_epoch"] - 1]
    assert tested["target"]["reached"] is not None
    assert results["hidden_after"] == tested["active_units"]


def test_an_epoch_before_the_target_is_reached_is_never_the_best():
    run = target_run("/tmp/unused_target_run", 3, target_reach_epoch=2, target_macs_ratio=1.6)
    before = {"valid_perplexity": 50.0, "target": {"reached": None}}
    after = {"valid_perplexity": 80.0, "target": {"reached": {"step": 10}}}
    run.history = [before, after]
    assert not run.is_best(before) and run.is_best(after)


def test_once_the_size_falls_fast_every_step_is_checked():
    # Units whose norms shrink together can all die between two regular checks; once the fall
    # since the last check, twice over, would pass the goal, the controller checks every step.
    # A slow fall keeps the regular checks.
    model = lstm_language_model(50, [6, 5], sparsity=ISS(1e-3, proximal=True))
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    model.optimizer.build(model.trainable_variables)
    target = TargetSize(iss_keras.couple(model), reach_step=1000, units=[1, 1], check_every=50)
    target.set_model(model)
    target.on_train_begin()
    sizes = iter([{"lstm_0": 6, "lstm_1": 5}, {"lstm_0": 5, "lstm_1": 5},
                  {"lstm_0": 3, "lstm_1": 5}, {"lstm_0": 2, "lstm_1": 4},
                  {"lstm_0": 2, "lstm_1": 3}])
    checks = []
    target._size = lambda: checks.append(target.step) or (next(sizes), None)
    for step in (50, 100):  # 6 -> 5 with 4 to go: slow
        target.step = step - 1
        target.on_train_batch_end(0)
        target.on_train_batch_end(1)  # the step after a check is not checked
    assert checks == [50, 100] and not target.falling
    target.step = 149
    target.on_train_batch_end(0)  # 5 -> 3 with 2 to go: fast
    assert target.falling and checks == [50, 100, 150]
    target.on_train_batch_end(1)
    target.on_train_batch_end(2)
    assert checks == [50, 100, 150, 151, 152]
    assert target.state()["falling"] and target.state()["last_size"] == {"lstm_0": 2, "lstm_1": 3}
