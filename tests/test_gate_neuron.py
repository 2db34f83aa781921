"""W+G+N: gate compression, the Bayesian (SparseVD) layers and their folding, and pruning."""

import os

import keras
import numpy as np
import pytest

from helpers import randomize, value
from iss_keras.compact import CompactCell, compress_gates, make_gate_plan
from iss_keras.macs import macs_per_token as matmul_macs
from iss_keras.gate_discovery import channel_groups, gate_groups, input_neuron_groups
from iss_keras.keras_internals import all_layers
from iss_keras.models.text_classifier import lstm_classifier
from iss_keras.sparsity import bayesian, bayesian_layers
from iss_keras.sparsity.bayesian import SparseVD, SparseVDOptions
from iss_keras.sparsity.bayesian_layers import fold_into_plain_model
from iss_keras.sparsity.gate_neuron import GateNeuronOptions, GateNeuronPruning
from iss_keras.sparsity.structured import compress_structured, gate_counts, gate_neuron_report
from iss_keras.training.plots import draw


def zero_some_columns(model, seed):
    """Zero about half the kernel columns and half the recurrent columns of every gated cell."""
    rng = np.random.default_rng(seed)
    for layer in all_layers(model):
        if isinstance(layer, (keras.layers.LSTMCell, keras.layers.GRUCell)):
            for w in (layer.kernel, layer.recurrent_kernel):
                a = value(w).astype("float32")
                a[:, rng.random(a.shape[1]) < 0.5] = 0
                w.assign(a)


def recurrent_stack():
    inputs = keras.Input((7, 5))
    x = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True))(inputs)
    x = keras.layers.LSTM(5, return_sequences=True, name="middle")(x)
    x = keras.layers.GRU(4, return_sequences=True)(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(3))(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


@pytest.mark.parametrize("seed", [0, 1])
def test_gate_compression_computes_the_same_with_fewer_multiply_adds(seed, tmp_path):
    model = recurrent_stack()
    randomize(model, seed=seed)
    zero_some_columns(model, seed)
    compact, plan = compress_gates(model)  # verifies on random inputs itself
    x = np.random.default_rng(9).normal(size=(4, 7, 5)).astype("float32")
    np.testing.assert_allclose(value(compact(x)), value(model(x)), rtol=1e-5, atol=1e-5)
    assert matmul_macs(compact) < matmul_macs(model)
    cells = [l for l in all_layers(compact) if isinstance(l, CompactCell)]
    assert len(cells) == 6 and {c.kind for c in cells} == {"lstm", "gru"}
    # A gate is constant when both of its columns are zero; the plan counts them.
    summary = plan.summary()["middle"]
    kernel, recurrent = (value(w) for w in (model.get_layer("middle").cell.kernel,
                                            model.get_layer("middle").cell.recurrent_kernel))
    active = (np.abs(kernel).max(0) > 0) | (np.abs(recurrent).max(0) > 0)
    assert [summary["nonconstant_gates"][g] for g in "ifco"] == \
        [int(active[k * 5:(k + 1) * 5].sum()) for k in range(4)]
    path = str(tmp_path / "compact.keras")
    compact.save(path)
    np.testing.assert_allclose(value(keras.saving.load_model(path)(x)), value(compact(x)),
                               rtol=1e-6, atol=1e-6)


def test_compressed_model_exports_to_tflite_with_equal_outputs(tmp_path):
    from iss_keras.export import export_tflite

    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(30, 8)(inputs)
    x = keras.layers.LSTM(7)(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    randomize(model, seed=3)
    zero_some_columns(model, 3)
    compact, _ = compress_gates(model)
    report = export_tflite(compact, str(tmp_path / "compact.tflite"), batch_size=1)
    assert report.max_rel_diff <= 1e-4 and "GATHER" in " ".join(report.ops)


def test_gate_and_neuron_groups_have_the_papers_footprints():
    model = lstm_classifier(50, embedding_size=6, units=4, max_length=5)
    gates, inputs, channels = gate_groups(model), input_neuron_groups(model), channel_groups(model)
    (g,), (n,), (c,) = gates, inputs, channels
    assert g.name == "lstm/gates" and g.size == 16  # 4 gates x 4 units: kernel + recurrent column
    assert [fp.axis for fp in g.footprints] == [1, 1]
    assert n.size == 6 and n.footprints[0].axis == 0  # a kernel row per input neuron
    assert c.name == "embedding/channels" and c.size == 6
    assert {(fp.variable.split("/")[0], fp.axis, fp.role) for fp in c.footprints} == {
        ("embedding", 1, "incoming"), ("lstm", 0, "outgoing")}


def classifier_with_dead_parts():
    """A classifier with dead input channels 1 and 4, dead hidden unit 2, and the input
    gate of unit 0 and the forget gate of unit 2 constant."""
    model = lstm_classifier(40, embedding_size=6, units=5, max_length=8, seed=1)
    randomize(model, seed=2)
    cell = model.get_layer("lstm").cell
    kernel, recurrent = value(cell.kernel), value(cell.recurrent_kernel)
    kernel[[1, 4]] = 0            # input neurons 1, 4: embedding channels 1 and 4 go
    recurrent[2] = 0              # hidden unit 2: its recurrent row ...
    dense = value(model.get_layer("logits").kernel)
    dense[2] = 0                  # ... and its classifier row: the unit goes
    kernel[:, [0, 7]] = 0         # gate columns: i of unit 0, f of unit 2 ...
    recurrent[:, [0]] = 0         # ... input gate of unit 0 constant
    for w, a in ((cell.kernel, kernel), (cell.recurrent_kernel, recurrent),
                 (model.get_layer("logits").kernel, dense)):
        w.assign(a.astype("float32"))
    return model


def test_dead_channels_units_and_gates_are_removed_exactly():
    model = classifier_with_dead_parts()
    report = gate_neuron_report(model)
    assert report["layers"]["lstm"]["hidden"] == "4/5"
    assert report["layers"]["lstm"]["inputs"] == "4/6"
    assert report["layers"]["lstm"]["nonconstant_gates"]["i"] == 3  # unit 0 and unit 2 gone
    small, plan = compress_structured(model)  # verified on random tokens
    tokens = np.random.default_rng(0).integers(0, 40, (5, 8)).astype("int32")
    np.testing.assert_allclose(value(small(tokens)), value(model(tokens)), rtol=1e-5, atol=1e-5)
    assert small.get_layer("embedding").output_dim == 4
    assert plan.summary() == {"lstm": (5, 4)}
    assert report["macs_per_token_after"] == matmul_macs(small) < matmul_macs(model)
    # Lobacheva et al.'s count (classification_net.py:46-59): matrices only, no biases. Of
    # 40x6 + 6x20 + 5x20 + 5x1 entries, kept: 40 words x 4 channels; 4 inputs and 4 hidden rows
    # x 15 columns (unit 2's four gone, the constant input gate of unit 0 gone); 4 classifier rows.
    assert report["matrix_weights"] == 40 * 6 + 6 * 20 + 5 * 20 + 5
    assert report["matrix_weights_kept"] == 40 * 4 + 4 * 15 + 4 * 15 + 4
    assert report["compression_theirs"] == pytest.approx(465 / 284)
    assert report["compression"] == pytest.approx(
        report["weights"] / report["nonzero_weights"])


def test_gate_pictures_are_drawn_from_the_structure_the_method_gives(tmp_path):
    model = classifier_with_dead_parts()
    pictures = GateNeuronPruning("W+G+N", weight_strength=1e-4).pictures(model)
    assert list(pictures) == ["gate_structure"]
    lstm = pictures["gate_structure"]["lstm"]
    assert tuple(lstm["gates"]) == ("i", "f", "c", "o")
    expected = np.ones((4, 5), bool)
    expected[0, 0] = False  # the input gate of unit 0 is constant (its two columns are zero)
    expected[:, 2] = False  # unit 2 is removed: the rebuilt model computes none of its gates
    np.testing.assert_array_equal(lstm["active"], expected)
    np.testing.assert_array_equal(lstm["kept"], [True, True, False, True, True])
    assert draw(pictures, str(tmp_path)) == [str(tmp_path / "gates_lstm.png")]
    assert os.path.getsize(tmp_path / "gates_lstm.png") > 0
    assert SparseVD("W").pictures(model).keys() == pictures.keys()
    with pytest.raises(ValueError, match="'weights'"):
        draw({"weights": {}}, str(tmp_path))


def test_the_gate_picture_counts_the_gates_results_report(tmp_path, monkeypatch):
    """One count: the picture shows the gates the rebuilt model computes, as results.json's
    `nonconstant_gates` and the rebuilt model's `GatePlan` count them, not the sparse model's
    nonzero gate columns (removed unit 2 still has some: i, c, o and, recurrent only, f)."""
    import matplotlib.axes

    model = classifier_with_dead_parts()
    sparse = make_gate_plan(model).active("lstm")
    assert sparse[:, 2].all() and int(sparse.sum()) == 19
    method = GateNeuronPruning("W+G+N", weight_strength=1e-4)
    lstm = method.pictures(model)["gate_structure"]["lstm"]
    reported = method.result_fields([], model)["gate_neuron"]["layers"]["lstm"]["nonconstant_gates"]
    _, plan = compress_structured(model, verify=False)
    assert gate_counts(lstm) == reported == plan.gate_plan.summary()["lstm"]["nonconstant_gates"] \
        == {"i": 3, "f": 4, "c": 4, "o": 4}
    titles = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, text, *a, **k: titles.append(text))
    draw({"gate_structure": {"lstm": lstm}}, str(tmp_path))
    assert titles == ["lstm: gates the rebuilt model computes (15/20), kept units (4/5)"]


# -- SparseVD ---------------------------------------------------------------------------------

def test_kl_and_log_alpha_match_numpy():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=50).astype("float32")
    log_sigma = rng.normal(-2, 2, size=50).astype("float32")
    la = np.clip(2 * log_sigma - np.log(mu.astype(np.float64) ** 2 + 1e-8), -8, 8)
    np.testing.assert_allclose(value(bayesian_layers.log_alpha(mu, log_sigma)), la, rtol=1e-5,
                               atol=1e-5)
    k1, k2, k3 = 0.63576, 1.87320, 1.48695
    expected = k1 - k1 / (1 + np.exp(-(k2 + k3 * la))) + 0.5 * np.log1p(np.exp(-la))
    np.testing.assert_allclose(value(bayesian_layers.kl_log_uniform(la.astype("float32"))),
                               expected, rtol=1e-5, atol=1e-6)
    # The approximation is a KL: >= 0, large for small alpha (informative), -> 0 as alpha grows.
    assert expected.min() > -1e-3 and expected[np.argmin(la)] > expected[np.argmax(la)]
    np.testing.assert_array_equal(value(bayesian_layers.kept(mu, log_sigma)),
                                  (la <= 3).astype("float32"))


def bayesian_classifier(levels="W+G+N", seed=0, **kwargs):
    method = SparseVD(levels, seed=seed)
    model = lstm_classifier(60, embedding_size=8, units=6, sparsity=method,
                            recurrent_activation=bayesian.theano_hard_sigmoid, lasagne_init=True,
                            seed=seed, **{"max_length": 9, **kwargs})
    method.bind(model, None)
    return method, model


def test_the_noise_is_on_in_training_only_and_the_kl_is_a_loss():
    method, model = bayesian_classifier()
    tokens = np.random.default_rng(1).integers(0, 60, (4, 9)).astype("int32")
    a, b = value(model(tokens, training=True)), value(model(tokens, training=True))
    assert np.abs(a - b).max() > 0  # noise
    np.testing.assert_array_equal(value(model(tokens)), value(model(tokens)))
    for layer in method._layers:
        layer.kl_scale = 0.5
    model(tokens, training=True)
    kl = sum(float(value(l.kl())) for l in method._layers)
    assert float(sum(value(loss) for loss in model.losses)) == pytest.approx(0.5 * kl, rel=1e-5)


@pytest.mark.parametrize("levels", ["W", "W+N", "W+G+N"])
def test_folding_into_a_plain_model_keeps_the_evaluation_outputs(levels):
    method, model = bayesian_classifier(levels, seed=2)
    rng = np.random.default_rng(3)
    for v in model.trainable_weights:  # means and log sigmas all over the place: some pruned
        v.assign((rng.normal(size=v.shape) * (2.0 if "log_sigma" in v.path else 0.5)
                  ).astype("float32"))
    plain = method.finalize(model)
    assert not any(isinstance(l, bayesian_layers.BayesianLayer) for l in all_layers(plain))
    tokens = rng.integers(0, 60, (5, 9)).astype("int32")
    np.testing.assert_allclose(value(plain(tokens)), value(model(tokens)), rtol=1e-5, atol=1e-5)
    small, _ = compress_structured(plain)
    np.testing.assert_allclose(value(small(tokens)), value(model(tokens)), rtol=1e-5, atol=1e-5)


def test_masked_padding_is_skipped_by_the_sparse_folded_and_rebuilt_models():
    # Lobacheva et al.'s mask input: a text padded at the front scores as the text alone.
    method, model = bayesian_classifier(seed=4, max_length=None, mask_padding=True)
    rng = np.random.default_rng(5)
    for v in model.trainable_weights:  # most weights kept (small sigmas), some pruned
        v.assign((rng.normal(size=v.shape) * (2.0 if "log_sigma" in v.path else 1.0)
                  - (5.0 if "log_sigma" in v.path else 0.0)).astype("float32"))
    text = rng.integers(1, 60, (3, 6)).astype("int32")
    padded = np.concatenate([np.zeros((3, 4), "int32"), text], axis=1)
    alone = value(model(text))
    np.testing.assert_allclose(value(model(padded)), alone, rtol=1e-5, atol=1e-5)
    plain = method.finalize(model)
    small, _ = compress_structured(plain)
    for rebuilt in (plain, small):
        np.testing.assert_allclose(value(rebuilt(padded)), alone, rtol=1e-5, atol=1e-5)
    # Without the mask the padding steps move the state.
    _, unmasked = bayesian_classifier(seed=4, max_length=None)
    unmasked.set_weights(model.get_weights())
    assert np.abs(value(unmasked(padded)) - alone).max() > 1e-4


def test_output_layer_noise_is_drawn_per_example_on_its_outputs():
    # layers_dense.py:55-75 (Lobacheva et al.): x W + eps * sqrt(x^2 sigma^2 + 1e-8), eps per
    # example and output; for a sequence, per sequence and output (shared by its steps).
    layer = bayesian_layers.BayesianDense(3, seed=7)
    layer.build((None, 4))
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(4, 3)).astype("float32")
    log_sigma = rng.normal(-1.0, 0.3, size=(4, 3)).astype("float32")
    layer.kernel.assign(kernel)
    layer.kernel_log_sigma.assign(log_sigma)
    x = np.repeat(rng.normal(size=(1, 4)).astype("float32"), 4000, axis=0)  # one example, 4000x
    out = value(layer(x, training=True)) - value(layer.bias)
    assert np.abs(out[0] - out[1]).max() > 1e-3  # identical rows, their own noise
    np.testing.assert_allclose(out.mean(0), x[0] @ kernel, atol=0.1)
    np.testing.assert_allclose(out.std(0), np.sqrt(x[0] ** 2 @ np.exp(2 * log_sigma) + 1e-8),
                               rtol=0.06)
    seq = np.repeat(np.repeat(x[:1, None], 5, axis=1), 2, axis=0)  # 2 sequences, 5 equal steps
    out = value(layer(seq, training=True))
    np.testing.assert_allclose(out[:, 1:], np.repeat(out[:, :1], 4, axis=1), rtol=1e-6)
    assert np.abs(out[0, 0] - out[1, 0]).max() > 1e-3
    np.testing.assert_allclose(value(layer(x[:2])), x[:2] @ (kernel * (
        2 * log_sigma - np.log(kernel ** 2 + 1e-8) <= 3)) + value(layer.bias), rtol=1e-5,
        atol=1e-6)  # evaluation: the mean, pruned where log alpha > 3


def test_a_removed_gate_is_its_activation_of_the_bias():
    method, model = bayesian_classifier("W+G+N", seed=4)
    cell = model.get_layer("lstm").cell
    gates_mu = value(cell.gates_mu)
    gates_mu[0] = 0.0   # input gate of unit 0: the preactivation is multiplied by 0 ...
    cell.gates_mu.assign(gates_mu.astype("float32"))
    plain = fold_into_plain_model(model)
    twin = plain.get_layer("lstm").cell
    assert not value(twin.kernel)[:, 0].any() and not value(twin.recurrent_kernel)[:, 0].any()
    assert value(twin.bias)[0] == value(cell.bias)[0]  # ... before the bias: act(b) remains


# -- pruning -----------------------------------------------------------------------------------

def test_pruning_reaches_exact_zeros_at_every_level():
    method = GateNeuronPruning("W+G+N", weight_strength=0.05, group_strength=0.5)
    model = lstm_classifier(60, embedding_size=8, units=6, max_length=9, sparsity=method, seed=1)
    from iss_keras.discovery import discover_groups
    from iss_keras.training.loop import RunInfo

    groups = discover_groups(model)
    method.bind(model, groups)
    model.compile(keras.optimizers.SGD(0.5), keras.losses.BinaryCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 60, (64, 9)).astype("int32")
    y = (x[:, -1:] % 2).astype("float32")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0,
              callbacks=method.callbacks(RunInfo(model, groups, 4, 0, 3)))
    report = gate_neuron_report(model)
    assert report["nonzero_weights"] < 0.5 * report["weights"]
    cell = model.get_layer("lstm").cell
    assert (np.abs(value(cell.kernel)).max(1) == 0).any() or \
        (np.abs(value(cell.kernel)).max(0) == 0).any()  # whole rows or columns exactly zero


@pytest.mark.parametrize("make,message", [
    (lambda: SparseVDOptions(sparse_vd="LLLLLL"), "sparse_vd must be one of"),
    (lambda: GateNeuronOptions(wgn_levels="W+G+N"), "needs wgn_weight_strength"),
    (lambda: GateNeuronOptions(wgn_levels="W", wgn_group_strength=1.0), "has no groups"),
    (lambda: SparseVD("G"), "levels must be one of"),
])
def test_bad_levels_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_sparse_vd_run_resumes_exactly_with_its_noise_streams(tmp_path):
    from helpers import tiny_classification_run

    def run(workdir, epochs):
        return tiny_classification_run(workdir, epochs, [SparseVDOptions(sparse_vd="W+G+N")])

    expected = run(tmp_path / "straight", 2).train().get_weights()
    run(tmp_path / "killed", 1).train()
    resumed = run(tmp_path / "killed", 2)
    got = resumed.train().get_weights()
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


def bayesian_word_lm(levels="W+G+N", seed=0, vocab=30):
    """Lobacheva et al.'s word-level LM shape at toy size: one-hot words -> LSTM -> softmax."""
    from iss_keras.models.lstm_lm import lstm_language_model

    method = SparseVD(levels, seed=seed)
    model = lstm_language_model(vocab, [6], one_hot_input=True, lasagne_init=True,
                                sparsity=method, seed=seed)
    method.bind(model, None)
    return method, model


@pytest.mark.parametrize("levels", ["W", "W+N", "W+G+N"])
def test_one_hot_lm_looks_rows_up_and_folds_into_the_stock_lstm(levels):
    method, model = bayesian_word_lm(levels, seed=5)
    lstm = model.get_layer("lstm_0")
    assert isinstance(lstm, bayesian_layers.BayesianLSTM) and lstm.one_hot_input
    # The LM's N level is the hidden neurons only (the original's letter R): no variable per word.
    assert not lstm.cell.inputs and lstm.cell.hidden == ("N" in levels)
    assert lstm.cell.gates == ("G" in levels)
    rng = np.random.default_rng(6)
    for v in model.trainable_weights:
        v.assign((rng.normal(size=v.shape) * (2.0 if "log_sigma" in v.path else 0.5)
                  ).astype("float32"))
    tokens = rng.integers(0, 30, (4, 7)).astype("int32")
    plain = method.finalize(model)
    assert type(plain.get_layer("lstm_0")) is keras.layers.LSTM
    # The stock LSTM multiplies the one-hot vectors by the kernel: the same numbers as the lookup.
    np.testing.assert_allclose(value(plain(tokens)), value(model(tokens)), rtol=1e-5, atol=1e-5)
    small, _ = compress_structured(plain)
    np.testing.assert_allclose(value(small(tokens)), value(model(tokens)), rtol=1e-5, atol=1e-5)
    if levels == "W+G+N":  # gates whose variable is pruned are constant: fewer columns computed
        report = gate_neuron_report(plain)
        assert report["macs_per_token_after"] < report["macs_per_token"]


def test_one_hot_lookup_is_the_product_in_training_too():
    """Same noise draw, lookup vs product: the two input paths of BayesianLSTM agree."""
    from iss_keras.models.lstm_lm import OneHot

    x = OneHot(12)(np.random.default_rng(0).integers(0, 12, (3, 5)))
    outs = []
    for one_hot in (True, False):
        layer = bayesian_layers.BayesianLSTM(4, gates=True, hidden=True, seed=7,
                                             one_hot_input=one_hot, return_sequences=True)
        layer.build(x.shape)
        if outs:
            layer.set_weights(weights)
        weights = layer.get_weights()
        outs.append(value(layer(x, training=True)))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)


def test_layer_hints_reach_method_layers_only():
    from iss_keras.sparsity.base import NO_SPARSITY

    stock = NO_SPARSITY.layer(keras.layers.LSTM, 3, one_hot_input=True)
    assert type(stock) is keras.layers.LSTM
    dense = SparseVD("W", dense=False).layer(keras.layers.Dense, 3, one_hot_input=True)
    assert type(dense) is keras.layers.Dense


def test_each_epoch_logs_the_weights_kept_so_far():
    method, model = bayesian_classifier("W+G+N", seed=8)
    before = method.epoch_summary()
    embedding = model.get_layer("embedding")
    table = value(embedding.embeddings)
    assert before["sparse_vd_noisy_weights"] > table.size  # embedding, LSTM kernels, classifier
    half = table[: len(table) // 2]
    was_kept = int(np.sum(2 * -3.0 - np.log(half ** 2 + 1e-8) <= 3))
    table[: len(table) // 2] = 0.0  # log alpha = -6 - log(1e-8) > 3: pruned
    embedding.embeddings.assign(table)
    after = method.epoch_summary()
    assert after["sparse_vd_kept_weights"] == before["sparse_vd_kept_weights"] - was_kept > 0
    assert after["sparse_vd_compression"] == pytest.approx(
        after["sparse_vd_noisy_weights"] / after["sparse_vd_kept_weights"])
    assert after["sparse_vd_compression"] > before["sparse_vd_compression"]
