"""Train, enforce and shrink under whatever KERAS_BACKEND is set (run by test_backends.py)."""

import sys

import keras
import numpy as np

import iss_keras


def main():
    keras.utils.set_random_seed(0)
    reg = [iss_keras.ISSRegularizer(0.3), iss_keras.ISSRegularizer(0.3)]
    model = keras.Sequential([
        keras.Input((12,), dtype="int32"), keras.layers.Embedding(40, 8),
        keras.layers.LSTM(10, return_sequences=True, recurrent_regularizer=reg[0],
                          kernel_constraint=iss_keras.ZeroOut(1e-4)),
        keras.layers.GRU(8, return_sequences=True, recurrent_regularizer=reg[1]),
        keras.layers.Dense(40)])
    groups = iss_keras.couple(model)
    model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).integers(0, 40, size=(64, 12)).astype("int32")
    before = float(keras.ops.convert_to_numpy(iss_keras.iss_penalty(model)))
    enforcer = iss_keras.ComponentEnforcer(groups, threshold=0.05)
    history = model.fit(x, np.roll(x, -1, axis=1), batch_size=16, epochs=6, verbose=0,
                        callbacks=[enforcer])
    after = float(keras.ops.convert_to_numpy(iss_keras.iss_penalty(model)))
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    assert after < before, (before, after)
    small, plan = iss_keras.shrink(model)
    assert any(after < before for before, after in plan.summary().values()), plan
    print(keras.backend.backend(), "penalty", before, "->", after, "sizes", plan.summary())


if __name__ == "__main__":
    sys.exit(main())
