import keras
import numpy as np
import pytest

import importlib

import iss_keras

shrinking = importlib.import_module("iss_keras.rebuild")
from helpers import (assert_shrunk_outputs_equal, randomize, run, zero_outgoing,
                     zero_random_units)

L = keras.layers


def lm_stack():
    return keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(30, 5, mask_zero=True),
                             L.LSTM(7, return_sequences=True), L.Dropout(0.3),
                             L.GRU(6, return_sequences=True), L.TimeDistributed(L.Dense(30))])


def last_output():
    return keras.Sequential([keras.Input((None, 4)), L.LSTM(6), L.Dense(3)])


def simple_rnn_stack():
    return keras.Sequential([keras.Input((None, 4)), L.SimpleRNN(5, return_sequences=True),
                             L.SimpleRNN(4, return_sequences=True), L.GlobalAveragePooling1D(), L.Dense(2)])


def bidirectional():
    return keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(20, 4, mask_zero=True),
                             L.Bidirectional(L.LSTM(5, return_sequences=True)),
                             L.Bidirectional(L.GRU(4, reset_after=False)), L.Dense(3)])


def concatenated():
    inp = keras.Input((None, 3))
    a = L.LSTM(5, return_sequences=True)(inp)
    b = L.GRU(4, return_sequences=True)(inp)
    x = L.Concatenate()([a, L.Dropout(0.1)(b), inp])
    return keras.Model(inp, L.Dense(2)(x))


def streaming_return_state():
    tokens = keras.Input((None,), dtype="int32")
    h0, c0 = keras.Input((6,)), keras.Input((6,))
    x = L.Embedding(25, 4)(tokens)
    seq, h, c = L.LSTM(6, return_sequences=True, return_state=True)(x, initial_state=[h0, c0])
    return keras.Model([tokens, h0, c0], [L.Dense(25)(seq), h, c])


def stateful():
    return keras.Sequential([keras.Input((None, 3), batch_size=2),
                             L.LSTM(5, return_sequences=True, stateful=True), L.Dense(2)])


def generic_rnn_layer():
    return keras.Sequential([keras.Input((None, 3)), L.RNN(L.LSTMCell(5), return_sequences=True),
                             L.Dense(2)])


BUILDERS = [lm_stack, last_output, simple_rnn_stack, bidirectional, concatenated,
            streaming_return_state, stateful, generic_rnn_layer]


def _probe(model, seed):
    return shrinking.probe_inputs(model, seed=seed)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_shrink_removes_zeroed_units_and_keeps_outputs(builder, seed):
    keras.utils.set_random_seed(seed)
    model = builder()
    randomize(model, seed=seed)
    groups = iss_keras.discover_groups(model)
    removed = zero_random_units(model, groups, seed)

    small, plan = iss_keras.shrink(model)

    assert plan.removed == removed
    for family in groups:
        assert len(plan.kept[family.name]) == family.size - len(removed[family.name])
    assert_shrunk_outputs_equal(model, small, plan, seed + 10)  # shrink verified too
    report = iss_keras.sparsity_report(small)
    assert report.totals["weights"] == iss_keras.sparsity_report(model).totals["weights_after"]


def test_model_with_nothing_removable_shrinks_to_equal_model():
    model = lm_stack()
    randomize(model)
    small, plan = iss_keras.shrink(model)
    assert plan.removed == {"lstm": [], "gru": []}
    assert small.count_params() == model.count_params()
    x = _probe(model, 3)[0]
    np.testing.assert_allclose(run(small, x)[0], run(model, x)[0], rtol=1e-6, atol=1e-6)


def test_all_units_removable_keeps_one_zero_unit():
    model = last_output()
    randomize(model)
    (family,) = iss_keras.discover_groups(model)
    zero_outgoing(model, family, range(family.size))
    small, plan = iss_keras.shrink(model)
    assert plan.new_sizes == {"lstm": 1} and plan.kept == {"lstm": []}
    x = _probe(model, 0)[0]
    np.testing.assert_allclose(run(small, x)[0], run(model, x)[0], rtol=1e-6, atol=1e-6)


def test_bidirectional_directions_are_padded_to_equal_size():
    model = bidirectional()
    randomize(model)
    groups = iss_keras.discover_groups(model)
    zero_outgoing(model, groups["bidirectional/forward"], [0, 1, 2])
    small, plan = iss_keras.shrink(model)
    assert plan.new_sizes["bidirectional/forward"] == plan.new_sizes["bidirectional/backward"] == 5
    assert small.layers[1].forward_layer.units == 5


def test_wrong_plan_is_caught_by_verification():
    model = last_output()
    randomize(model)
    groups = iss_keras.discover_groups(model)
    plan = iss_keras.ShrinkPlan(groups, {"lstm": [0, 1, 2]}, {"lstm": 3})  # units 3..5 still active
    small = iss_keras.apply_plan(model, plan)
    with pytest.raises(iss_keras.ShrinkVerificationError, match="differs"):
        iss_keras.rebuild.verify_equivalence(model, small, plan)


def test_output_difference_is_relative_to_the_larger_of_one_and_the_output():
    # The measure shrink, gate compression and export all compare with their tolerance.
    assert shrinking.output_difference(np.array([[0.0, -4.0]], "float32"),
                                       np.array([[1.0, -4.0]], "float32")) == (1.0, 0.25)
    absolute, relative = shrinking.output_difference(np.array([0.5], "float32"),
                                                     np.array([0.25], "float32"))
    assert absolute == relative == 0.25
    assert shrinking.output_difference(np.zeros((2, 0), "float32"),
                                       np.zeros((2, 0), "float32")) == (0.0, 0.0)


def test_plan_round_trips_through_json_file(tmp_path):
    model = lm_stack()
    randomize(model)
    groups = iss_keras.discover_groups(model)
    zero_outgoing(model, groups["lstm"], [1, 3])
    plan = iss_keras.make_plan(model)
    path = tmp_path / "plan.json"
    plan.save(str(path))
    loaded = iss_keras.ShrinkPlan.load(str(path))
    assert loaded.get_config() == plan.get_config()
    small = iss_keras.apply_plan(model, loaded)
    assert iss_keras.rebuild.verify_equivalence(model, small, loaded) <= 1e-5
    assert small.layers[1].units == 5


def test_model_output_hidden_units_are_not_removed():
    model = keras.Sequential([keras.Input((None, 3)), L.LSTM(4, return_sequences=True)])
    randomize(model)
    (family,) = iss_keras.discover_groups(model)
    zero_outgoing(model, family, [0])
    small, plan = iss_keras.shrink(model)
    assert plan.kept["lstm"] == [0, 1, 2, 3]


def test_unsupported_consumer_fails_before_shrinking():
    inp = keras.Input((None, 3))
    x = L.LSTM(4, return_sequences=True)(inp)
    model = keras.Model(inp, L.Dense(1)(L.LayerNormalization(name="ln")(x)))
    with pytest.raises(iss_keras.UnsupportedLayerError, match="'ln'"):
        iss_keras.shrink(model)
