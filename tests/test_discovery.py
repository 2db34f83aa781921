import keras
import numpy as np
import pytest

import iss_keras
from helpers import value
from iss_keras import gates
from iss_keras.models.rhn import RHNCell


def test_groups_of_stacked_lstm_and_json_round_trip():
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4, return_sequences=True),
                              keras.layers.Dropout(0.5), keras.layers.LSTM(2), keras.layers.Dense(5)])
    groups = iss_keras.discover_groups(model)
    assert [f.name for f in groups] == ["lstm", "lstm_1"]
    first = groups["lstm"]
    roles = sorted((fp.role, fp.variable.split("/")[-1], fp.axis) for fp in first.footprints)
    assert roles == [("bias", "bias", 0), ("incoming", "kernel", 1),
                     ("incoming", "recurrent_kernel", 1), ("outgoing", "kernel", 0),
                     ("recurrent", "recurrent_kernel", 0)]
    consumer = [fp for fp in first.footprints if fp.role == "outgoing"][0]
    assert consumer.variable == model.layers[2].cell.kernel.path
    assert list(first.footprints[0].indices(4)[1]) == [1, 5, 9, 13]
    again = iss_keras.GroupSet.from_json(groups.to_json())
    assert again.get_config() == groups.get_config()


def test_concatenate_offsets_and_time_distributed():
    inp = keras.Input((None, 3))
    a = keras.layers.GRU(4, return_sequences=True)(inp)
    b = keras.layers.SimpleRNN(2, return_sequences=True)(inp)
    x = keras.layers.Concatenate()([b, keras.layers.Activation("tanh")(a)])
    out = keras.layers.TimeDistributed(keras.layers.Dense(1))(x)
    groups = iss_keras.discover_groups(keras.Model(inp, out))
    starts = {f.name: [fp.start for fp in f.footprints if fp.role == "outgoing"] for f in groups}
    assert starts == {"gru": [2], "simple_rnn": [0]}


def _build(make_consumer):
    inp = keras.Input((None, 3))
    x = keras.layers.LSTM(4, return_sequences=True)(inp)
    return keras.Model(inp, make_consumer(x))


@pytest.mark.parametrize("consumer, name", [
    (lambda x: keras.layers.LayerNormalization(name="norm")(x), "norm"),
    (lambda x: keras.layers.Add(name="residual")([x, x]), "residual"),
    (lambda x: keras.layers.Flatten(name="flat")(x), "flat"),
    (lambda x: keras.layers.Dense(2, name="head")(keras.layers.Softmax(name="softmax")(x)), "softmax"),
])
def test_unsupported_consumer_names_the_layer(consumer, name):
    with pytest.raises(iss_keras.UnsupportedLayerError, match=f"'{name}'"):
        iss_keras.discover_groups(_build(consumer))


def test_bidirectional_sum_merge_is_rejected():
    model = keras.Sequential([keras.Input((None, 3)),
                              keras.layers.Bidirectional(keras.layers.LSTM(2), merge_mode="sum", name="bi")])
    with pytest.raises(iss_keras.UnsupportedLayerError, match="merge_mode"):
        iss_keras.discover_groups(model)


def test_hidden_state_as_model_output_blocks_removal():
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4)])
    (family,) = iss_keras.discover_groups(model)
    assert family.removal_blockers and "model output" in family.removal_blockers[0]


def test_unbuilt_sequential_and_subclassed_models_get_clear_errors():
    with pytest.raises(ValueError, match="keras.Input"):
        iss_keras.discover_groups(keras.Sequential([keras.layers.LSTM(2)]))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.rnn = keras.layers.LSTM(2)

        def call(self, x):
            return self.rnn(x)

    with pytest.raises(ValueError, match="Functional API"):
        iss_keras.discover_groups(Sub())


def test_footprint_errors_quote_the_value():
    with pytest.raises(ValueError, match="Received: axis=-1"):
        iss_keras.Footprint("v", axis=-1)


@keras.saving.register_keras_serializable(package="iss_keras_tests")
class ChannelScale(keras.layers.Layer):
    """A custom consumer: one trainable weight per channel, channel k stays channel k."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="random_normal",
                                     name="scale")

    def call(self, x):
        return x * self.scale

    def iss_consume(self, consumption):  # the consumer protocol
        consumption.reads(self.scale, axis=0)
        for out in consumption.node.outputs:
            consumption.passes_on(out)


class Opaque(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_a_custom_layer_declares_how_it_reads_units_and_shrink_honours_it():
    from helpers import assert_shrunk_outputs_equal, randomize, zero_random_units

    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(30, 5)(tokens)
    h = keras.layers.LSTM(6, return_sequences=True, name="lstm")(x)
    y = ChannelScale(name="scale")(h)
    model = keras.Model(tokens, keras.layers.Dense(30, name="out")(y))
    family = iss_keras.discover_groups(model)["lstm"]
    paths = {(fp.variable, fp.axis) for fp in family.footprints if fp.role == "outgoing"}
    assert paths == {("scale/scale", 0), ("out/kernel", 0)}
    randomize(model, seed=1)
    removed = zero_random_units(model, iss_keras.discover_groups(model), seed=1, at_least=2)
    small, plan = iss_keras.shrink(model)
    assert plan.removed == removed
    assert small.get_layer("scale").scale.shape == (6 - len(removed["lstm"]),)
    assert_shrunk_outputs_equal(model, small, plan, seed=3)


def test_a_custom_layer_without_the_protocol_is_refused():
    tokens = keras.Input((None,), dtype="int32")
    h = keras.layers.LSTM(4, return_sequences=True)(keras.layers.Embedding(30, 5)(tokens))
    model = keras.Model(tokens, keras.layers.Dense(30)(Opaque(name="opaque")(h)))
    with pytest.raises(iss_keras.UnsupportedLayerError, match="'opaque'.*iss_consume"):
        iss_keras.discover_groups(model)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("cell", [keras.layers.LSTMCell(3), keras.layers.GRUCell(3),
                                  keras.layers.SimpleRNNCell(3)])
def test_the_gate_table_is_keras_layout(cell):
    """One step of each Keras cell, recomputed in numpy with its gates split by the table."""
    cell.build((None, 2))
    rng = np.random.default_rng(0)
    for v in cell.weights:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    x, h, c = (rng.normal(size=(4, n)).astype("float32") for n in (2, 3, 3))
    kind = gates.cell_kind(cell)
    states = [h, c] if kind == "lstm" else [h]
    got = value(cell(x, states)[0])
    w, u, b = (value(v) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
    names = gates.gate_names(cell)
    assert gates.num_gates(cell) == len(names) == w.shape[1] // 3

    def split(a):
        return dict(zip(names, np.split(a, len(names), axis=-1)))

    if kind == "lstm":
        z = split(x @ w + h @ u + b)
        c_new = _sigmoid(z["f"]) * c + _sigmoid(z["i"]) * np.tanh(z["c"])
        expected = _sigmoid(z["o"]) * np.tanh(c_new)
    elif kind == "gru":  # reset_after: the reset gate scales the recurrent product
        xs, hs = split(x @ w + b[0]), split(h @ u + b[1])
        z, r = _sigmoid(xs["z"] + hs["z"]), _sigmoid(xs["r"] + hs["r"])
        expected = z * h + (1 - z) * np.tanh(xs["h"] + r * hs["h"])
    else:
        expected = np.tanh(split(x @ w + h @ u + b)["h"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_gate_table_leaves_other_cells_to_their_own_protocol():
    class MyLSTMCell(keras.layers.LSTMCell):
        pass

    for cell in (MyLSTMCell(3), RHNCell(3, 2), None):
        assert gates.cell_kind(cell) is None and gates.gate_names(cell) is None
        with pytest.raises(ValueError, match=type(cell).__name__):
            gates.num_gates(cell)
    assert gates.is_gated(keras.layers.GRUCell(2)) and not gates.is_gated(
        keras.layers.SimpleRNNCell(2))
