"""A tiny ISS language model on real PTB text: whole units reach exact zero and shrink away."""

import keras
import numpy as np
import pytest

import iss_keras
from conftest import ptb_ids
from helpers import value
from iss_keras.datasets import lm_windows

VOCAB, STEPS, BATCH = 500, 20, 32


@pytest.mark.slow
def test_iss_training_on_ptb_zeroes_whole_units_and_shrinks_exactly(ptb_dir):
    keras.utils.set_random_seed(0)
    x, y = lm_windows(ptb_ids("train", VOCAB)[:60000], STEPS)
    vx, vy = lm_windows(ptb_ids("valid", VOCAB)[:8000], STEPS)
    zero = iss_keras.ZeroOut(1e-4)

    def lstm():
        return keras.layers.LSTM(32, return_sequences=True, recurrent_regularizer=iss_keras.ISSRegularizer(6e-3),
                                 kernel_constraint=zero, recurrent_constraint=zero)

    model = keras.Sequential([keras.Input((STEPS,), dtype="int32"), keras.layers.Embedding(VOCAB, 32),
                              lstm(), keras.layers.Dropout(0.1), lstm(),
                              keras.layers.Dense(VOCAB, kernel_constraint=zero)])
    groups = iss_keras.couple(model)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(1.0, global_clipnorm=5.0), loss)
    enforcer = iss_keras.ComponentEnforcer(groups, mode="threshold", threshold=1e-2)
    history = model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[enforcer])
    assert history.history["loss"][-1] < np.log(VOCAB) - 1.0  # it learned something

    report = iss_keras.sparsity_report(model, groups)
    removable = {row["name"]: row["removable"] for row in report.layers}
    assert sum(len(r) for r in removable.values()) >= 3, report.to_text()
    assert all(len(r) < 32 for r in removable.values()), report.to_text()
    variables = iss_keras.groups.variables_by_path(model)
    for family in groups:  # removable units are exactly zero, not just small
        norms = value(iss_keras.groups.group_sq_norms(family, variables))
        assert np.all(norms[removable[family.name]] == 0.0)

    small, plan = iss_keras.shrink(model, groups)
    assert small.count_params() < model.count_params()
    def perplexity(m):
        return np.exp(float(value(loss(vy, m.predict(vx, batch_size=BATCH, verbose=0)))))

    np.testing.assert_allclose(perplexity(small), perplexity(model), rtol=1e-4)
