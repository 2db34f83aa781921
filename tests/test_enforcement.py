import keras
import numpy as np
import pytest

import iss_keras
from helpers import randomize, value


def test_zero_out_sets_small_weights_to_exact_zero():
    w = np.array([[1e-5, -2e-5, 0.5], [-0.3, 9e-5, 2e-4]], np.float32)
    out = value(iss_keras.ZeroOut(1e-4)(w))
    np.testing.assert_array_equal(out, np.array([[0, 0, 0.5], [-0.3, 0, 2e-4]], np.float32))
    with pytest.raises(ValueError, match="Received: threshold=0"):
        iss_keras.ZeroOut(0)


def test_zero_out_runs_after_each_optimizer_step():
    layer = keras.layers.Dense(3, kernel_constraint=iss_keras.ZeroOut(0.05), use_bias=False)
    model = keras.Sequential([keras.Input((4,)), layer])
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    layer.kernel.assign(np.full((4, 3), 0.04, np.float32))
    model.fit(np.ones((8, 4)), np.ones((8, 3)), epochs=1, batch_size=8, verbose=0)
    assert np.all(value(layer.kernel) == 0.0)


def _model(strength=0.1, proximal=False):
    return keras.Sequential([
        keras.Input((None, 3)),
        keras.layers.LSTM(4, return_sequences=True,
                          recurrent_regularizer=iss_keras.ISSRegularizer(strength, proximal=proximal)),
        keras.layers.Dense(2)])


def _enforcer(model, **kwargs):
    groups = iss_keras.couple(model)
    enforcer = iss_keras.ComponentEnforcer(groups, **kwargs)
    enforcer.set_model(model)
    return groups, enforcer


def test_threshold_mode_zeroes_whole_small_components_and_freezes_them():
    model = _model()
    randomize(model, scale=0.5)
    groups, enforcer = _enforcer(model, mode="threshold", threshold=0.5)
    family = groups["lstm"]
    variables = iss_keras.groups.variables_by_path(model)
    for fp in family.penalized:  # make unit 2 tiny everywhere
        w = value(variables[fp.variable]).astype(np.float32)
        w = np.moveaxis(w, fp.axis, 0)
        w[fp.indices(4)[2]] *= 1e-3
        variables[fp.variable].assign(np.moveaxis(w, 0, fp.axis))
    enforcer.start()
    assert enforcer.enforce() == 1
    norms = np.sqrt(value(iss_keras.groups.group_sq_norms(family, variables)))
    assert norms[2] == 0.0 and np.all(norms[[0, 1, 3]] > 0.5)
    assert iss_keras.make_plan(model).kept == {"lstm": [0, 1, 3]}
    # Revive unit 2 as a gradient step would: freezing puts it back to zero.
    rk = value(model.layers[0].cell.recurrent_kernel).astype(np.float32)
    rk[2, :] = 1.0
    model.layers[0].cell.recurrent_kernel.assign(rk)
    enforcer.enforce()
    assert np.all(value(model.layers[0].cell.recurrent_kernel)[2] == 0.0)


def test_proximal_step_is_group_soft_threshold():
    model = _model(strength=0.2, proximal=True)
    randomize(model, scale=0.3)
    model.compile(keras.optimizers.SGD(0.5), "mse")
    groups, enforcer = _enforcer(model, mode="proximal", freeze=False)
    family = groups["lstm"]
    variables = iss_keras.groups.variables_by_path(model)
    dense_before = value(model.layers[1].kernel)
    norms = np.sqrt(value(iss_keras.groups.group_sq_norms(family, variables)))
    enforcer.enforce()
    factors = np.maximum(0.0, 1 - 0.5 * 0.2 / norms)
    # The consumer row of unit k belongs to component k only: scaled once.
    np.testing.assert_allclose(value(model.layers[1].kernel), dense_before * factors[:, None], rtol=1e-5)
    # The loss still reports the penalty but gives it no gradient.
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = sum(model.losses)
    assert float(value(loss)) > 0
    assert tape.gradient(loss, model.layers[0].cell.recurrent_kernel.value) is None


def test_proximal_mode_needs_regularizer_strength():
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4, return_sequences=True),
                              keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.5), "mse")
    _, enforcer = _enforcer(model, mode="proximal")
    with pytest.raises(ValueError, match="ISSRegularizer"):
        enforcer.enforce()


def test_enforcer_rejects_bad_mode():
    with pytest.raises(ValueError, match="Received: mode='soft'"):
        iss_keras.ComponentEnforcer(None, mode="soft")


@pytest.mark.parametrize("cell", [keras.layers.LSTM, keras.layers.GRU])
def test_enforcer_norms_in_one_compiled_call_equal_the_op_by_op_norms(cell):
    # The enforcer decides what to zero from these norms: compiling them (one call for all
    # families, one copy to the host) must not move a single bit.
    inp = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(30, 5)(inp)
    x = cell(6, return_sequences=True, recurrent_regularizer=iss_keras.ISSRegularizer(0.1))(x)
    x = keras.layers.Bidirectional(cell(4, return_sequences=True,
                                        recurrent_regularizer=iss_keras.ISSRegularizer(0.1)))(x)
    model = keras.Model(inp, keras.layers.Dense(30)(x))
    randomize(model, seed=4, scale=0.3)
    groups, enforcer = _enforcer(model)
    variables = iss_keras.groups.variables_by_path(model)
    for scale in (1.0, 1e-3):
        for v in model.trainable_weights:
            v.assign(value(v) * scale)
        compiled = enforcer._all_norms(variables)
        assert sorted(compiled) == sorted(f.name for f in groups) and len(groups) == 3
        for family in groups:
            eager = np.sqrt(value(iss_keras.groups.group_sq_norms(family, variables)))
            np.testing.assert_array_equal(compiled[family.name], eager)


def _trained(in_step, mode, jit_compile=False):
    """A small LSTM LM fitted with the enforcer; returns (weights, frozen masks, model)."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 5),
        keras.layers.LSTM(8, return_sequences=True, name="lstm",
                          recurrent_regularizer=iss_keras.ISSRegularizer(
                              0.05, proximal=mode == "proximal")),
        keras.layers.Dense(20)])
    groups = iss_keras.couple(model)
    model.compile(keras.optimizers.SGD(0.5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    # Three units small enough for the threshold: zeroed on the first step, frozen after.
    variables = iss_keras.groups.variables_by_path(model)
    for fp in groups["lstm"].penalized:
        w = np.moveaxis(value(variables[fp.variable]).astype(np.float32), fp.axis, 0)
        w[fp.indices(8)[:3]] *= 1e-3
        variables[fp.variable].assign(np.moveaxis(w, 0, fp.axis))
    enforcer = iss_keras.ComponentEnforcer(groups, mode=mode, threshold=0.05, in_step=in_step)
    where = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.add(
        enforcer._installed is model.optimizer))
    seen = set()
    x = np.random.default_rng(0).integers(0, 20, size=(32, 6)).astype("int32")
    model.fit(x, np.roll(x, -1, axis=1), batch_size=8, epochs=2, verbose=0,
              callbacks=[enforcer, where])
    assert seen == {in_step != False}  # noqa: E712 (in the step for True and "auto")
    if in_step:  # fitting again with it neither traces nor compiles the step again
        step = model.train_function
        model.fit(x[:8], x[:8], batch_size=8, epochs=1, verbose=0, callbacks=[enforcer])
        assert model.train_function is step
    else:
        model.fit(x[:8], x[:8], batch_size=8, epochs=1, verbose=0, callbacks=[enforcer])
    return [value(v) for v in model.trainable_weights], enforcer.frozen["lstm"], model


@pytest.mark.parametrize("mode,jit_compile", [("threshold", False), ("threshold", True),
                                              ("proximal", True)])
def test_enforcing_inside_the_compiled_step_equals_enforcing_after_it(mode, jit_compile):
    after, frozen_after, _ = _trained(False, mode, jit_compile)
    inside, frozen_inside, model = _trained(True if mode == "proximal" else "auto", mode,
                                            jit_compile)
    for a, b in zip(after, inside):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(frozen_inside, frozen_after)
    assert frozen_inside[:3].all() and not frozen_inside[3:].all()
    # A later fit without the enforcer does not enforce: a revived frozen unit stays revived.
    cell = model.layers[1].cell
    rk = value(cell.recurrent_kernel).astype(np.float32)
    rk[0, :] = 1.0
    cell.recurrent_kernel.assign(rk)
    x = np.zeros((8, 6), "int32")
    model.fit(x, x, batch_size=8, epochs=1, verbose=0)
    assert np.all(value(cell.recurrent_kernel)[0] != 0.0)


def test_enforcer_rejects_bad_in_step():
    with pytest.raises(ValueError, match="Received: in_step='yes'"):
        iss_keras.ComponentEnforcer(None, in_step="yes")
    with pytest.raises(ValueError, match="every_n_steps must be 1. Received: every_n_steps=2"):
        iss_keras.ComponentEnforcer(None, in_step=True, every_n_steps=2)
