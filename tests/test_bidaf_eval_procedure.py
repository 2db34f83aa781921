"""The BiDAF original's evaluation procedure (issue 23 §3): raw-weight validation with
the averages tested (load_ema), the test-time --zero_threshold, one dropout mask per
LSTM direction (model.py:170-183)."""

import keras
import numpy as np
import pytest

from iss_keras.keras_internals import averaged_weights_callback, raw_weights
from iss_keras.models.bidaf import bidaf, zero_small_weights
from iss_keras.models.bidaf_layers import DropoutBidirectional
from iss_keras.tasks.question_answering import QuestionAnsweringConfig
from iss_keras.training import TrainConfig


def _identity_rnn(width, **kwargs):
    return keras.layers.SimpleRNN(width, activation="linear", return_sequences=True,
                                  kernel_initializer="identity", recurrent_initializer="zeros",
                                  bias_initializer="zeros", **kwargs)


def test_directions_draw_their_own_dropout_masks():
    layer = DropoutBidirectional(_identity_rnn(64), backward_layer=_identity_rnn(
        64, go_backwards=True), input_dropout=0.5, seed=3)
    x = np.ones((2, 5, 64), "float32")
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    forward, backward = out[..., :64], out[..., 64:]
    assert set(np.unique(forward)) <= {0.0, 2.0} and set(np.unique(backward)) <= {0.0, 2.0}
    assert 0.3 < np.mean(forward == 0) < 0.7
    assert np.mean(forward != backward) > 0.3           # a shared mask would give 0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)),
                                  np.ones((2, 5, 128)))
    plain = keras.layers.Bidirectional(_identity_rnn(64), backward_layer=_identity_rnn(
        64, go_backwards=True))
    plain.build(x.shape)
    plain.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(plain(x)),
                                  keras.ops.convert_to_numpy(layer(x)))
    config = layer.get_config()
    assert (config["input_dropout"], config["seed"]) == (0.5, 3)


def test_bidaf_training_model_has_no_shared_lstm_input_dropout():
    kw = dict(word_dim=6, char_dim=3, char_filters=4, char_width=3, max_word_len=5, seed=0)
    train = bidaf(4, 50, 10, 20, training=True, **kw)
    names = [layer.name for layer in train.layers]
    assert not {"g0_dropout", "g1_dropout", "g2_dropout",
                "contextual_dropout_question"} & set(names)
    for name in ("g0", "g1", "g2"):
        assert isinstance(train.get_layer(name), DropoutBidirectional)
        assert train.get_layer(name).input_dropout == pytest.approx(0.2)
    assert train.get_layer("contextual").input_dropout == pytest.approx(0.2)
    test = bidaf(4, 50, 10, 20, training=False, probabilities=True, **kw)
    assert test.get_layer("g0").input_dropout == 0.0 and test.get_layer("g0").fused
    test.set_weights(train.get_weights())  # same weights, same order
    zero_small_weights(test, 0.2)
    for name in ("g0", "attention", "start_dense"):
        for w in test.get_layer(name).get_weights():
            assert not np.any((np.abs(w) < 0.2) & (w != 0)) or w.ndim == 1
    assert np.all(test.get_layer("highway_0").get_weights()[0] != 0)  # not in the collection


def test_negative_test_zero_threshold_names_the_flag():
    with pytest.raises(ValueError, match="test_zero_threshold"):
        QuestionAnsweringConfig(test_zero_threshold=-0.02)


def test_raw_weights_swaps_in_the_raw_weights_and_back():
    assert TrainConfig().ema_validation  # the library's default; BiDAF's configs turn it off
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.5, use_ema=True, ema_momentum=0.9), "mse")
    x, y = np.ones((4, 3), "float32"), np.ones((4, 2), "float32")
    seen = {}

    class Probe(keras.callbacks.Callback):  # after the swap, as EvaluateEachEpoch
        def on_epoch_end(self, epoch, logs=None):
            seen["averaged"] = model.get_weights()[0]
            with raw_weights(model):
                seen["raw"] = model.get_weights()[0]
            seen["after"] = model.get_weights()[0]
            seen["slot"] = keras.ops.convert_to_numpy(
                model.optimizer._model_variables_moving_average[0])

    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[averaged_weights_callback(resumed=False), Probe()])
    assert not np.allclose(seen["averaged"], seen["raw"])
    np.testing.assert_array_equal(seen["raw"], seen["slot"])
    np.testing.assert_array_equal(seen["after"], seen["averaged"])


def test_the_cpu_d100_configs_are_the_originals_recipe_on_fewer_steps():
    """cpu_d100_baseline / cpu_d100_iss (ours, issue 23 §4) change only the workdir, the
    restore path and the number of 1,000-step epochs of the original's configs."""
    import os

    from helpers import read_trainer_options
    from iss_keras.sparsity.iss import ISSOptions
    from iss_keras.training.config import RunOptions

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def read(name):
        flagfile = os.path.join(root, "bidaf", "configs", f"{name}.flags")
        return read_trainer_options("bidaf/train.py", f"--flagfile={flagfile}")

    for ours, theirs, epochs in (("cpu_d100_baseline", "baseline", 8), ("cpu_d100_iss", "iss", 5)):
        a, b = read(ours), read(theirs)
        assert a[TrainConfig].epochs == epochs < b[TrainConfig].epochs == 10
        assert a[RunOptions].workdir == f"runs/bidaf/{ours}"
        model_a, model_b = ([v for k, v in o.items() if k.__name__ == "ModelConfig"]
                            for o in (a, b))
        assert [vars(m) for m in model_a] == [vars(m) for m in model_b] and len(model_a) == 1
        for cls in (QuestionAnsweringConfig, ISSOptions):
            assert a[cls] == b[cls]
        rest = lambda o: {k: v for k, v in vars(o).items() if k != "epochs"}
        assert rest(a[TrainConfig]) == rest(b[TrainConfig])
    iss = read("cpu_d100_iss")
    assert iss[RunOptions].restore_from == "runs/bidaf/cpu_d100_baseline"
    assert iss[ISSOptions].iss_strength == 0.001
    assert [v.hidden_size for k, v in iss.items() if k.__name__ == "ModelConfig"] == [100]
