import json

import keras
import numpy as np

import iss_keras
from helpers import randomize, zero_outgoing


def _lm():
    return keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(50, 8),
                             keras.layers.LSTM(6, return_sequences=True),
                             keras.layers.LSTM(4, return_sequences=True), keras.layers.Dense(50)])


def test_report_counts_units_weights_and_multiply_adds():
    model = _lm()
    randomize(model)
    groups = iss_keras.discover_groups(model)
    zero_outgoing(model, groups["lstm"], [0, 5])
    zero_outgoing(model, groups["lstm_1"], [1])
    report = iss_keras.sparsity_report(model)
    assert [(r["name"], r["units"], r["active_units"], r["removable"]) for r in report.layers] == [
        ("lstm", 6, 4, [0, 5]), ("lstm_1", 4, 3, [1])]

    def lstm_weights(i, h):
        return 4 * h * (i + h) + 4 * h

    def lstm_macs(i, h):
        return 4 * h * (i + h)

    t = report.totals
    assert t["weights"] == 50 * 8 + lstm_weights(8, 6) + lstm_weights(6, 4) + 4 * 50 + 50
    assert t["weights_after"] == 50 * 8 + lstm_weights(8, 4) + lstm_weights(4, 3) + 3 * 50 + 50
    assert t["macs_per_token"] == lstm_macs(8, 6) + lstm_macs(6, 4) + 4 * 50
    assert t["macs_per_token_after"] == lstm_macs(8, 4) + lstm_macs(4, 3) + 3 * 50
    rk = [v for v in report.variables if v["path"] == model.layers[1].cell.recurrent_kernel.path][0]
    assert rk["zeros"] == 2 * 24
    assert json.loads(report.to_json())["totals"] == t
    text = report.to_text()
    assert "lstm_1" in text and "multiply-adds per token" in text


def test_report_callback_logs_every_epoch_into_history_and_tensorboard(tmp_path):
    model = _lm()
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).integers(0, 50, size=(8, 5))
    callback = iss_keras.SparsityReportCallback()
    board = keras.callbacks.TensorBoard(str(tmp_path / "tb"), write_graph=False)
    history = model.fit(x, x, epochs=2, verbose=0, callbacks=[callback, board])
    assert history.history["iss/lstm/active_units"] == [6, 6]
    assert history.history["iss/macs_per_token"][0] == callback.last_report.totals["macs_per_token"]
    assert any((tmp_path / "tb").iterdir())
