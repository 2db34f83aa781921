"""Multiply-adds per token (iss_keras/macs.py): the sparsity report and the gate-compressed
count follow one rule, on an LSTM LM, the tied RHN, BiDAF and a gate-compressed model, and
agree with counts written out by hand."""

import keras
import numpy as np

import iss_keras
from helpers import randomize, value, zero_outgoing
from iss_keras.compact import CompactCell, compress_gates
from iss_keras.macs import macs_per_token as matmul_macs
from iss_keras.keras_internals import all_layers
from iss_keras.macs import macs_per_token, matmul_kernels
from iss_keras.models.bidaf import bidaf
from iss_keras.models.lstm_lm import lstm_language_model
from iss_keras.models.rhn import rhn_language_model


def report_macs(model):
    totals = iss_keras.sparsity_report(model).totals
    return totals["macs_per_token"], totals["macs_per_token_after"]


def test_lstm_language_model():
    model = lstm_language_model(30, [6, 5], seed=0)
    # lstm_0 reads 6-wide word vectors: (6 + 6) x 4*6; lstm_1 (6 + 5) x 4*5; softmax 5 x 30.
    expected = 12 * 24 + 11 * 20 + 5 * 30
    assert report_macs(model) == (expected, expected)
    assert matmul_macs(model) == expected


def test_tied_rhn_counts_the_cell_and_the_tied_softmax():
    model = rhn_language_model(30, 6, depth=3, seed=0)
    cell = model.get_layer("rhn").cell
    assert tuple(cell.kernel.shape) == (6, 12) and tuple(cell.recurrent_kernel.shape) == (18, 12)
    # Input kernel, the three micro-steps' recurrent kernels, the tied softmax (30 x 6) once.
    expected = 6 * 12 + 18 * 12 + 30 * 6
    assert report_macs(model)[0] == matmul_macs(model) == expected
    assert model.get_layer("embedding").embeddings.path in matmul_kernels(model)


def test_bidaf_counts_its_lstms_and_logit_layers():
    model = bidaf(3, 40, 12, 20, word_dim=5, char_dim=3, char_filters=4, char_width=3,
                  max_word_len=6, seed=0)
    # Every direction's input and recurrent kernels (the contextual LSTM shared by context and
    # question once) and the two Dense logit layers.
    cells = [l for l in all_layers(model) if isinstance(l, keras.layers.LSTMCell)]
    assert len(cells) == 8
    expected = sum(int(np.prod(c.kernel.shape)) + int(np.prod(c.recurrent_kernel.shape))
                   for c in cells) + 2 * 30
    assert report_macs(model) == (expected, expected)
    assert matmul_macs(model) == expected


def test_report_after_shrink_counts_what_the_shrunk_model_computes():
    model = lstm_language_model(30, [6, 5], seed=0)
    randomize(model, seed=1)
    groups = iss_keras.discover_groups(model)
    zero_outgoing(model, groups["lstm_0"], [0, 3])
    zero_outgoing(model, groups["lstm_1"], [1])
    before, after = report_macs(model)
    small, _ = iss_keras.shrink(model, groups)
    # lstm_0 keeps 4 units: (6 + 4) x 16; lstm_1 reads 4, keeps 4: (4 + 4) x 16; softmax 4 x 30.
    assert after == macs_per_token(small) == 10 * 16 + 8 * 16 + 4 * 30 < before


def test_compressed_model_counts_only_its_computed_columns():
    model = lstm_language_model(30, [6, 5], seed=0)
    randomize(model, seed=2)
    lstm = model.get_layer("lstm_1").cell
    kernel, recurrent = value(lstm.kernel), value(lstm.recurrent_kernel)
    kernel[:, [0, 7, 19]] = 0           # three input columns,
    recurrent[:, [7, 8]] = 0            # two recurrent columns (one shared: a constant gate)
    lstm.kernel.assign(kernel.astype("float32"))
    lstm.recurrent_kernel.assign(recurrent.astype("float32"))
    compact, plan = compress_gates(model)
    cells = [l for l in all_layers(compact) if isinstance(l, CompactCell)]
    assert len(cells) == 2
    expected = 12 * 24 + (6 * 17 + 5 * 18) + 5 * 30
    assert report_macs(compact)[0] == matmul_macs(compact) == expected
    assert matmul_macs(model) - matmul_macs(compact) == 6 * 3 + 5 * 2


def test_a_layer_declares_its_own_kernels():
    class TwoKernels(keras.layers.Layer):
        def build(self, input_shape):
            self.a = self.add_weight(shape=(input_shape[-1], 4), name="a")
            self.b = self.add_weight(shape=(4, 2), name="b")
            self.unused = self.add_weight(shape=(7, 7), name="unused")

        def call(self, x):
            return keras.ops.matmul(keras.ops.matmul(x, self.a), self.b)

        def matmul_kernels(self):
            return [self.a, self.b]

    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Dense(5)(TwoKernels()(inputs)))
    assert macs_per_token(model) == 3 * 4 + 4 * 2 + 2 * 5
    assert report_macs(model)[0] == macs_per_token(model)
    shapes = {v.path: tuple(v.shape) for v in model.weights}
    shapes[model.layers[1].a.path] = (1, 4)
    assert macs_per_token(model, shapes) == 1 * 4 + 4 * 2 + 2 * 5
