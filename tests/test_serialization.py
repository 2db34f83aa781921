import keras
import numpy as np

import iss_keras
from helpers import randomize, value


def test_keras_file_round_trip_keeps_regularizers_constraints_and_penalty(tmp_path):
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(30, 4),
        keras.layers.LSTM(5, return_sequences=True,
                          recurrent_regularizer=iss_keras.ISSRegularizer(0.02, proximal=True),
                          kernel_constraint=iss_keras.ZeroOut(1e-3),
                          recurrent_constraint=iss_keras.ZeroOut(1e-3)),
        keras.layers.Dense(30, kernel_regularizer=iss_keras.sparsity.RowGroupLasso(0.1),
                           bias_regularizer=keras.regularizers.L1(0.01)),
    ])
    randomize(model)
    iss_keras.couple(model)
    expected = value(iss_keras.iss_penalty(model))
    expected_losses = sum(value(x) for x in model.losses)
    path = tmp_path / "m.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)
    lstm = loaded.layers[1]
    reg = lstm.cell.recurrent_kernel.regularizer
    assert isinstance(reg, iss_keras.ISSRegularizer) and reg.get_config() == {"strength": 0.02, "proximal": True,
                                                                   "elementwise": None}
    assert isinstance(lstm.cell.kernel.constraint, iss_keras.ZeroOut)
    assert lstm.cell.kernel.constraint.threshold == 1e-3
    assert isinstance(loaded.layers[2].kernel.regularizer, iss_keras.sparsity.RowGroupLasso)
    iss_keras.couple(loaded)
    np.testing.assert_allclose(value(iss_keras.iss_penalty(loaded)), expected, rtol=1e-6)
    np.testing.assert_allclose(sum(value(x) for x in loaded.losses), expected_losses, rtol=1e-6)


def test_iss_regularizer_with_elementwise_penalty_round_trips():
    reg = iss_keras.ISSRegularizer(0.1, elementwise=keras.regularizers.L1L2(l1=0.5, l2=0.25))
    again = iss_keras.ISSRegularizer.from_config(reg.get_config())
    assert isinstance(again.elementwise, keras.regularizers.L1L2)
    assert (again.elementwise.l1, again.elementwise.l2) == (0.5, 0.25)
