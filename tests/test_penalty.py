import keras
import numpy as np
import pytest

import iss_keras
from helpers import randomize, reference_penalty, value


def lstm_lm(strength=1e-2, cell=keras.layers.LSTM, **kwargs):
    return keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(40, 7),
        cell(6, return_sequences=True, recurrent_regularizer=iss_keras.ISSRegularizer(strength), **kwargs),
        keras.layers.Dropout(0.2),
        cell(5, return_sequences=True, recurrent_regularizer=iss_keras.ISSRegularizer(strength), **kwargs),
        keras.layers.Dense(40),
    ])


@pytest.mark.parametrize("cell", [keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN])
def test_penalty_matches_numpy_for_two_layer_language_model(cell):
    model = lstm_lm(0.03, cell)
    randomize(model, seed=1)
    iss_keras.couple(model)
    rnn1, rnn2, dense = model.layers[1], model.layers[3], model.layers[4]
    expected = (reference_penalty(rnn1.cell, [(rnn2.cell.kernel, 0)], 0.03)
                + reference_penalty(rnn2.cell, [(dense.kernel, 0)], 0.03))
    got = sum(value(loss) for loss in model.losses)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(value(iss_keras.iss_penalty(model)), expected, rtol=1e-5)


def test_penalty_matches_numpy_for_bidirectional_model():
    inp = keras.Input((None, 4))
    reg = iss_keras.ISSRegularizer(0.5)
    x = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True, recurrent_regularizer=reg))(inp)
    x = keras.layers.Bidirectional(keras.layers.LSTM(2, recurrent_regularizer=iss_keras.ISSRegularizer(0.5)))(x)
    out = keras.layers.Dense(2)(x)
    model = keras.Model(inp, out)
    randomize(model, seed=2)
    iss_keras.couple(model)
    b1, b2, dense = model.layers[1], model.layers[2], model.layers[3]
    consumers1 = [(b2.forward_layer.cell.kernel, 0), (b2.backward_layer.cell.kernel, 0)]
    consumers1b = [(b2.forward_layer.cell.kernel, 3), (b2.backward_layer.cell.kernel, 3)]
    expected = (reference_penalty(b1.forward_layer.cell, consumers1, 0.5)
                + reference_penalty(b1.backward_layer.cell, consumers1b, 0.5)
                + reference_penalty(b2.forward_layer.cell, [(dense.kernel, 0)], 0.5)
                + reference_penalty(b2.backward_layer.cell, [(dense.kernel, 2)], 0.5))
    got = sum(value(loss) for loss in model.losses)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.fixture
def float64():
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_dtype_policy(old)


def test_penalty_gradient_matches_finite_differences(float64):
    import tensorflow as tf

    model = lstm_lm(0.1)
    randomize(model, seed=3)
    iss_keras.couple(model)
    variables = [model.layers[1].cell.kernel, model.layers[1].cell.recurrent_kernel,
                 model.layers[2 + 1].cell.kernel, model.layers[4].kernel]
    with tf.GradientTape() as tape:
        penalty = iss_keras.iss_penalty(model)
    grads = tape.gradient(penalty, [v.value for v in variables])
    rng = np.random.default_rng(0)
    eps = 1e-6
    for var, grad in zip(variables, grads):
        base = value(var)
        for _ in range(4):
            index = tuple(rng.integers(0, n) for n in base.shape)
            plus, minus = base.copy(), base.copy()
            plus[index] += eps
            minus[index] -= eps
            var.assign(plus)
            f_plus = float(value(iss_keras.iss_penalty(model)))
            var.assign(minus)
            f_minus = float(value(iss_keras.iss_penalty(model)))
            var.assign(base)
            numeric = (f_plus - f_minus) / (2 * eps)
            np.testing.assert_allclose(value(grad)[index], numeric, rtol=1e-5, atol=1e-8,
                                       err_msg=f"{var.path} {index}")


def test_recurrent_weights_counted_once_within_a_component():
    # Only the diagonal weight R[0, g*H + 0] is nonzero: it sits in both the
    # row and the columns of unit 0, and must be counted once.
    model = keras.Sequential([keras.Input((3, 2)),
                              keras.layers.LSTM(2, recurrent_regularizer=iss_keras.ISSRegularizer(1.0)),
                              keras.layers.Dense(1)])
    for v in model.weights:
        v.assign(np.zeros(v.shape, np.float32))
    r = np.zeros((2, 8), np.float32)
    r[0, 0] = 3.0
    model.layers[0].cell.recurrent_kernel.assign(r)
    iss_keras.couple(model)
    got = float(value(iss_keras.iss_penalty(model)))
    np.testing.assert_allclose(got, np.sqrt(9 + 1e-8) + np.sqrt(1e-8), rtol=1e-6)


def test_uncoupled_regularizer_fails_loudly():
    model = lstm_lm()
    with pytest.raises(iss_keras.UncoupledRegularizerError, match="couple"):
        model.losses
    model.compile("sgd", "mse")
    with pytest.raises(iss_keras.UncoupledRegularizerError):
        model.fit(np.zeros((2, 3), "int32"), np.zeros((2, 3, 40)), verbose=0)


def test_shared_instance_and_wrong_slot_are_rejected():
    reg = iss_keras.ISSRegularizer(1e-3)
    shared = keras.Sequential([keras.Input((3, 2)),
                               keras.layers.LSTM(2, return_sequences=True, recurrent_regularizer=reg),
                               keras.layers.LSTM(2, recurrent_regularizer=reg)])
    with pytest.raises(ValueError, match="one ISSRegularizer per layer"):
        iss_keras.couple(shared)
    wrong = keras.Sequential([keras.Input((3, 2)),
                              keras.layers.LSTM(2, kernel_regularizer=iss_keras.ISSRegularizer(1e-3))])
    with pytest.raises(ValueError, match="recurrent_regularizer"):
        iss_keras.couple(wrong)


@pytest.mark.parametrize("bad", [-1.0, "x", float("nan")])
def test_bad_strength_is_quoted(bad):
    with pytest.raises(ValueError, match="Received: strength"):
        iss_keras.ISSRegularizer(bad)


def test_row_and_column_group_lasso_and_l1():
    w = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    rows = np.sum(np.sqrt((w.astype(np.float64) ** 2).sum(axis=1) + 1e-8))
    cols = np.sum(np.sqrt((w.astype(np.float64) ** 2).sum(axis=0) + 1e-8))
    np.testing.assert_allclose(value(iss_keras.sparsity.RowGroupLasso(0.3)(w)), 0.3 * rows, rtol=1e-6)
    np.testing.assert_allclose(value(iss_keras.sparsity.ColumnGroupLasso(0.3)(w)), 0.3 * cols, rtol=1e-6)
    np.testing.assert_allclose(value(keras.regularizers.L1(0.3)(w)), 0.3 * np.abs(w).sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        iss_keras.sparsity.RowGroupLasso()(np.zeros(3, np.float32))


def test_elementwise_penalty_is_added_to_the_iss_penalty():
    from iss_keras.models.lstm_lm import lstm_language_model
    from iss_keras.sparsity import ISS, L1Sparsity, Sparsity

    model = lstm_language_model(50, [6, 5], sparsity=Sparsity([ISS(0.1), L1Sparsity(0.01)]),
                                seed=0)
    iss_keras.couple(model)
    recurrent = model.get_layer("lstm_0").cell.recurrent_kernel
    reg = recurrent.regularizer
    expected = 0.1 * value(reg.penalty()) + 0.01 * np.abs(value(recurrent)).sum()
    np.testing.assert_allclose(value(reg(recurrent)), expected, rtol=1e-5)


def _gathered_sq_norms(family, values):
    """Each component's squared norm by enumerating its weights (`Footprint.indices`, the
    index arrays), each weight once: the reference `group_sq_norms` must equal."""
    seen = {}
    for fp in family.penalized:
        shape = values[fp.variable].shape
        chosen = seen.setdefault(fp.variable, np.zeros((family.size,) + shape, bool))
        index = fp.indices(family.size)
        for j in range(family.size):
            where = [slice(None)] * len(shape)
            where[fp.axis] = index[j]
            chosen[j][tuple(where)] = True
    return np.array([sum(float(np.sum(values[p][mask[j]] ** 2)) for p, mask in seen.items())
                     for j in range(family.size)])


@pytest.mark.parametrize("build", ["lm", "bidirectional", "rhn"])
def test_group_norms_equal_the_enumerated_components(build):
    """`group_sq_norms` (per-footprint sums, the weights two footprints share subtracted once);
    each family here (LSTM LM, bidirectional LSTMs, the tied RHN) has it equal to each component's
    weights enumerated one by one, each weight once."""
    if build == "lm":
        model = lstm_lm()
    elif build == "bidirectional":
        inp = keras.Input((None, 4))
        x = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(inp)
        x = keras.layers.Bidirectional(keras.layers.GRU(2, return_sequences=True))(x)
        model = keras.Model(inp, keras.layers.Dense(2)(x))
    else:
        from iss_keras.models.rhn import rhn_language_model
        model = rhn_language_model(30, 6, depth=2, tied=True)
    randomize(model, seed=3)
    values = {v.path: value(v) for v in model.weights}
    families = iss_keras.discover_groups(model)
    assert families
    for family in families:
        got = value(iss_keras.groups.group_sq_norms(family, iss_keras.groups.variables_by_path(
            model)))
        np.testing.assert_allclose(got, _gathered_sq_norms(family, values), rtol=1e-5)
