"""Recurrent Highway Networks: the step, the ISS groups, shrink, serialization, dropout masks."""

import keras
import numpy as np
import pytest

import iss_keras
from helpers import assert_shrunk_outputs_equal, randomize, value, zero_random_units
from iss_keras.models.rhn import RHNCell, WordDropout, rhn_language_model
from iss_keras.sparsity import ISS, Sparsity, WeightDecay, WeightZeroing


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_rhn(x, kernel, recurrent, bias, units, depth):
    """NumPy RHN over a sequence, micro-step by micro-step."""
    s = np.zeros((x.shape[0], units))
    outputs = []
    for t in range(x.shape[1]):
        for level in range(depth):
            r = recurrent[level * units:(level + 1) * units]
            z = s @ r + bias[level] + (x[:, t] @ kernel if level == 0 else 0.0)
            h, gate = np.tanh(z[:, :units]), sigmoid(z[:, units:])
            s = h * gate + s * (1.0 - gate)
        outputs.append(s)
    return np.stack(outputs, axis=1)


def test_rhn_matches_numpy_reference():
    units, depth = 5, 3
    layer = keras.layers.RNN(RHNCell(units, depth, seed=1), return_sequences=True)
    x = np.random.default_rng(0).normal(size=(2, 6, 4)).astype("float32")
    got = value(layer(x))
    cell = layer.cell
    assert tuple(cell.recurrent_kernel.shape) == (depth * units, 2 * units)
    np.testing.assert_allclose(value(cell.bias)[:, units:], -2.0)  # transform gates start closed
    randomize(layer, seed=2)
    expected = reference_rhn(x, value(cell.kernel), value(cell.recurrent_kernel), value(cell.bias),
                             units, depth)
    np.testing.assert_allclose(value(layer(x)), expected, rtol=1e-5, atol=1e-5)
    assert got.shape == expected.shape


def test_tied_language_model_matches_numpy_reference():
    model = rhn_language_model(30, 5, depth=2, embedding_dropout=0.5, output_dropout=0.5)
    randomize(model, seed=5)
    tokens = np.random.default_rng(1).integers(0, 30, (2, 6)).astype("int32")
    cell, emb = model.get_layer("rhn").cell, value(model.get_layer("embedding").embeddings)
    s = reference_rhn(emb[tokens], value(cell.kernel), value(cell.recurrent_kernel),
                      value(cell.bias), 5, 2)
    expected = s @ emb.T + value(model.get_layer("softmax_bias").bias)  # tied softmax + softmax_b
    np.testing.assert_allclose(value(model(tokens)), expected, rtol=1e-5, atol=1e-5)


def component_elements(model, k):
    """Unit k's weights for a tied RHN LM, enumerated element by element."""
    cell = model.get_layer("rhn").cell
    emb = model.get_layer("embedding").embeddings
    u, depth = cell.units, cell.depth
    elements = set()
    for col in (k, u + k):  # H and T of every micro-step
        elements |= {(cell.kernel.path, (r, col)) for r in range(cell.kernel.shape[0])}
        elements |= {(cell.recurrent_kernel.path, (r, col)) for r in range(depth * u)}
    elements |= {(cell.kernel.path, (k, c)) for c in range(2 * u)}  # input part, row k
    for level in range(depth):  # state part, row k of every micro-step
        elements |= {(cell.recurrent_kernel.path, (level * u + k, c)) for c in range(2 * u)}
    elements |= {(emb.path, (r, k)) for r in range(emb.shape[0])}  # tied embedding column k
    reverse = getattr(model.get_layer("embedding"), "reverse_embeddings", None)
    if reverse is not None:  # an untied ReversibleEmbedding's softmax row k
        elements |= {(reverse.path, (k, c)) for c in range(reverse.shape[1])}
    return elements


@pytest.mark.parametrize("tie_weights", [True, False])
def test_tied_rhn_penalty_matches_numpy_enumeration(tie_weights):
    if tie_weights:
        model = rhn_language_model(30, 6, depth=3, sparsity=ISS(0.1))
    else:
        model = reversible_untied(vocab=30, units=6, depth=3,
                                  regularizer=iss_keras.ISSRegularizer(0.1))
    randomize(model, seed=3)
    iss_keras.couple(model)
    values = {v.path: value(v) for v in model.weights}
    expected = 0.1 * sum(
        np.sqrt(sum(values[p][i] ** 2 for p, i in component_elements(model, k)) + 1e-8)
        for k in range(6))
    np.testing.assert_allclose(value(iss_keras.iss_penalty(model)), expected, rtol=1e-5)
    np.testing.assert_allclose(sum(value(x) for x in model.losses), expected, rtol=1e-5)


def tied_streaming():
    return rhn_language_model(40, 7, depth=2, streaming=True)


def tied_stateful():
    return rhn_language_model(40, 7, depth=2, stateful=True, batch_size=3)


def tied():
    return rhn_language_model(40, 7, depth=3)


def untied():
    return rhn_language_model(40, 7, depth=2, tied=False)


def reversible_untied(vocab=40, units=7, depth=2, regularizer=None):
    """ReversibleEmbedding(tie_weights=False): its own softmax matrix, but the widths are tied."""
    tokens = keras.Input((None,), dtype="int32")
    emb = keras.layers.ReversibleEmbedding(vocab, units, tie_weights=False, name="embedding")
    cell = RHNCell(units, depth, recurrent_regularizer=regularizer)
    y = keras.layers.RNN(cell, return_sequences=True, name="rhn")(emb(tokens))
    return keras.Model(tokens, emb(y, reverse=True))


def two_layers_one_tied_embedding():
    """Embedding channels 0..3 are tied to the RHN's units, 4..7 to the LSTM's."""
    tokens = keras.Input((None,), dtype="int32")
    emb = keras.layers.ReversibleEmbedding(40, 8, name="embedding")
    x = WordDropout(0.5, 40)(emb(tokens), tokens)
    a = keras.layers.RNN(RHNCell(4, 2), return_sequences=True, name="rhn")(x)
    b = keras.layers.LSTM(4, return_sequences=True, name="lstm")(x)
    return keras.Model(tokens, emb(keras.layers.Concatenate()([a, b]), reverse=True))


def stacked_untied():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(40, 5)(tokens)
    x = keras.layers.RNN(RHNCell(6, 2), return_sequences=True)(x)
    x = keras.layers.LSTM(4, return_sequences=True)(x)
    return keras.Model(tokens, keras.layers.Dense(40)(x))


TIED_WIDTH = (tied, tied_streaming, tied_stateful, reversible_untied)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("builder", [tied, tied_streaming, tied_stateful, untied, reversible_untied,
                                     two_layers_one_tied_embedding, stacked_untied],
                         ids=lambda b: b.__name__)
def test_rhn_shrink_keeps_outputs(builder, seed):
    model = builder()
    randomize(model, seed=seed)
    groups = iss_keras.discover_groups(model)
    removed = zero_random_units(model, groups, seed, at_least=1)
    small, plan = iss_keras.shrink(model)
    assert plan.removed == removed
    assert_shrunk_outputs_equal(model, small, plan, seed + 5)
    if builder in TIED_WIDTH:
        kept = 7 - len(removed["rhn"])
        assert small.get_layer("embedding").output_dim == kept
        assert small.get_layer("rhn").cell.kernel.shape == (kept, 2 * kept)
        # Only the recurrent rows and the softmax row were zeroed: the input
        # rows of removed units still hold weights, yet removal is exact.
        kernel = value(model.get_layer("rhn").cell.kernel)
        assert np.abs(kernel[removed["rhn"]]).min(axis=1).all()
    if builder is two_layers_one_tied_embedding:
        kept = [4 - len(removed["rhn"]), 4 - len(removed["lstm"])]
        assert small.get_layer("embedding").output_dim == sum(kept)
        assert small.get_layer("rhn").cell.kernel.shape == (sum(kept), 2 * kept[0])
    report = iss_keras.sparsity_report(small)
    assert report.totals["macs_per_token"] == iss_keras.sparsity_report(model).totals["macs_per_token_after"]


def test_shrunk_stateful_rhn_carries_its_state_across_batches():
    model = tied_stateful()
    randomize(model, seed=7)
    zero_random_units(model, iss_keras.discover_groups(model), seed=7, at_least=1)
    small, _ = iss_keras.shrink(model)
    chunks = np.random.default_rng(7).integers(0, 40, (3, 3, 5)).astype("int32")
    for m in (model, small):
        m.get_layer("rhn").reset_states()
    for chunk in chunks:  # no reset in between: the state flows from chunk to chunk
        np.testing.assert_allclose(value(small(chunk)), value(model(chunk)), rtol=1e-5, atol=1e-5)


def test_tied_input_rows_are_incoming_and_softmax_rows_outgoing():
    family = iss_keras.discover_groups(reversible_untied())["rhn"]
    roles = {(fp.variable.split("/")[-1], fp.axis): fp.role for fp in family.footprints}
    assert roles == {("kernel", 1): "incoming", ("recurrent_kernel", 1): "incoming",
                     ("recurrent_kernel", 0): "recurrent", ("bias", 1): "bias",
                     ("embeddings", 1): "outgoing", ("reverse_embeddings", 0): "outgoing",
                     ("kernel", 0): "incoming"}


def test_tied_rhn_macs_count_the_softmax():
    model = rhn_language_model(40, 7, depth=3)
    macs = iss_keras.sparsity_report(model).totals["macs_per_token"]
    assert macs == 7 * 14 + 21 * 14 + 40 * 7  # kernel, stacked recurrent kernel, tied softmax


def test_rhn_language_model_round_trips_through_keras_file(tmp_path):
    model = rhn_language_model(30, 6, depth=2, embedding_dropout=0.1, input_dropout=0.2,
                               hidden_dropout=0.3, output_dropout=0.2,
                               sparsity=Sparsity([ISS(0.01), WeightDecay(1e-7),
                                                  WeightZeroing(1e-4)]))
    randomize(model, seed=4)
    path = tmp_path / "rhn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    iss_keras.couple(loaded)
    x = np.random.default_rng(0).integers(0, 30, (2, 5)).astype("int32")
    np.testing.assert_allclose(value(loaded(x)), value(model(x)), rtol=1e-6)
    cell = loaded.get_layer("rhn").cell
    assert (cell.depth, cell.dropout, cell.recurrent_dropout) == (2, 0.2, 0.3)


class _MaskSpy(RHNCell):
    """Records the dropout masks each time step uses."""

    masks = []

    def call(self, inputs, states, training=False):
        if training:
            _MaskSpy.masks.append((value(self.get_dropout_mask(inputs)),
                                   value(self.get_recurrent_dropout_mask(states[0]))))
        return super().call(inputs, states, training=training)


def test_variational_dropout_masks_are_shared_across_time():
    _MaskSpy.masks = []
    layer = keras.layers.RNN(_MaskSpy(8, 2, dropout=0.5, recurrent_dropout=0.5, seed=0),
                             return_sequences=True, unroll=True)
    x = np.ones((3, 6, 8), "float32")
    layer(x, training=True)
    assert len(_MaskSpy.masks) == 6
    first_in, first_state = _MaskSpy.masks[0]
    assert (first_in == 0).any() and (first_state == 0).any()
    for mask_in, mask_state in _MaskSpy.masks[1:]:
        np.testing.assert_array_equal(mask_in, first_in)
        np.testing.assert_array_equal(mask_state, first_state)
    _MaskSpy.masks = []
    layer(x, training=True)  # a new sequence draws new masks
    assert not np.array_equal(_MaskSpy.masks[0][0], first_in)


def test_word_dropout_drops_word_types_per_sequence():
    layer = WordDropout(0.5, 10, seed=3)
    tokens = np.array([[1, 2, 1, 3, 2, 1, 4, 5, 1, 2]] * 6, "int32")
    x = np.ones((6, 10, 3), "float32")
    np.testing.assert_array_equal(value(layer(x, tokens)), x)  # identity at inference
    y = value(layer(x, tokens, training=True))
    assert set(np.unique(y)) == {0.0, 2.0}
    for b in range(6):
        for word in np.unique(tokens[b]):
            assert len(np.unique(y[b][tokens[b] == word])) == 1  # one mask per word type
    assert len({y[b].tobytes() for b in range(6)}) > 1  # and per sequence


@pytest.mark.parametrize("kwargs,message", [({"units": 0, "depth": 2}, "units=0"),
                                            ({"units": 4, "depth": 0}, "depth=0"),
                                            ({"units": 4, "depth": 1, "dropout": 1.0}, "dropout=1.0")])
def test_bad_rhn_arguments_are_quoted(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RHNCell(**kwargs)
