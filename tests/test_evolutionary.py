"""SET: Erdős–Rényi masks, exact zeros through optimizer steps, evolution, resume, .keras files."""

import json

import keras
import numpy as np
import pytest

from helpers import value
from iss_keras.models.text_classifier import lstm_classifier
from iss_keras.sparsity.evolutionary import SET, SETOptions, erdos_renyi_density, solve_epsilon
from iss_keras.sparsity.masks import MaskConstraint, pack_mask, unpack_mask
from iss_keras.training.loop import RunInfo


def sparse_model(method, optimizer="adam", **kwargs):
    model = lstm_classifier(300, embedding_size=16, units=8, max_length=12, sparsity=method,
                            seed=1, **kwargs)
    method.bind(model, None)
    model.compile(keras.optimizers.Adam(0.01) if optimizer == "adam"
                  else keras.optimizers.SGD(0.5, momentum=0.9),
                  keras.losses.BinaryCrossentropy(from_logits=True))
    model.optimizer.build(model.trainable_variables)
    return model


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 300, (n, 12)).astype("int32")
    return x, (x[:, -1:] % 2).astype("float32")


def masked_weights(model, method):
    variables = {v.path: v for v in model.weights}
    return {p: value(variables[p]) for p in method.topology.masks}


def test_each_block_has_the_erdos_renyi_density():
    method = SET(epsilon=3.0)
    model = lstm_classifier(300, embedding_size=16, units=8, max_length=12, sparsity=method)
    topology = method.initial_topology(model)
    kinds = {b.key(): b for b in topology.blocks}
    assert len(kinds) == 1 + 4 + 4  # the embedding, then one block per LSTM gate per kernel
    for key, density in topology.block_densities().items():
        rows, cols = kinds[key].shape
        expected = erdos_renyi_density(rows, cols, 3.0)
        assert abs(density - expected) <= 0.01 * expected, key
    # The classifier layer stays dense.
    assert set(topology.masks) == {"embedding/embeddings", "lstm/lstm_cell/kernel",
                                   "lstm/lstm_cell/recurrent_kernel"}


def test_epsilon_is_solved_for_a_global_density():
    shapes = [(300, 16), (16, 8), (16, 8), (8, 8), (8, 8)]
    eps = solve_epsilon(shapes, 0.04)
    kept = sum(erdos_renyi_density(r, c, eps) * r * c for r, c in shapes)
    assert kept / sum(r * c for r, c in shapes) == pytest.approx(0.04, rel=1e-6)
    with pytest.raises(ValueError, match="density must be in"):
        solve_epsilon(shapes, 0.0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_masked_weights_stay_exactly_zero_through_optimizer_steps(optimizer):
    method = SET(density=0.1)
    model = sparse_model(method, optimizer)
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for path, w in masked_weights(model, method).items():
        mask = method.topology.masks[path]
        assert not w[~mask].any(), path          # exact zeros where no connection is
        assert np.count_nonzero(w[mask]) > 0.9 * mask.sum(), path  # the present ones train


def test_evolution_keeps_the_count_removes_the_weakest_and_resets_optimizer_state():
    method = SET(density=0.1, zeta=0.3, seed=4)
    model = sparse_model(method)
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    before = {p: m.copy() for p, m in method.topology.masks.items()}
    weights = masked_weights(model, method)
    count = method.topology.connections()
    changed = method.evolve()
    assert method.topology.connections() == count and changed > 0
    block = next(b for b in method.topology.blocks if b.path == "lstm/lstm_cell/kernel")
    old = before[block.path][:, block.start:block.stop]
    new = method.topology.masks[block.path][:, block.start:block.stop]
    w = weights[block.path][:, block.start:block.stop]
    removed = old & ~new
    kept = old & new
    # Removed: the zeta share of the positives nearest 0 and of the negatives nearest 0.
    positive, negative = w[old & (w > 0)], w[old & (w < 0)]
    assert (removed & (w > 0)).sum() == round(0.3 * len(positive))
    assert (removed & (w < 0)).sum() == round(0.3 * len(negative))
    assert w[removed & (w > 0)].max() <= w[kept & (w > 0)].min()
    assert w[removed & (w < 0)].min() >= w[kept & (w < 0)].max()
    # Grown connections start at 0 with their Adam moments reset; removed ones are zeroed.
    grown = new & ~old
    after = masked_weights(model, method)[block.path][:, block.start:block.stop]
    assert not after[grown].any() and not after[removed].any()
    from iss_keras.keras_internals import optimizer_slots

    variable = next(v for v in model.weights if v.path == block.path)
    slots = optimizer_slots(model.optimizer, variable)
    assert len(slots) == 2  # Adam's two moments
    for slot in slots:
        assert not value(slot)[:, block.start:block.stop][grown].any()


def test_a_weight_never_revives_without_a_mask_change():
    method = SET(density=0.1, zeta=0.3, seed=2)
    model = sparse_model(method)
    x, y = data()
    info = RunInfo(model, None, 4, 0, 3)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=method.callbacks(info))
    assert len(method.turnover) == 2  # before epochs 2 and 3
    for path, w in masked_weights(model, method).items():
        assert not w[~method.topology.masks[path]].any(), path


def test_the_topology_survives_a_keras_file_and_a_checkpoint_state(tmp_path):
    method = SET(density=0.1, seed=3)
    model = sparse_model(method)
    model.fit(*data(), batch_size=16, epochs=1, verbose=0)
    method.evolve()
    path = str(tmp_path / "set.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    constraint = loaded.get_layer("lstm").cell.kernel_constraint
    assert isinstance(constraint, MaskConstraint)
    np.testing.assert_array_equal(constraint.mask, method.topology.masks["lstm/lstm_cell/kernel"])
    # The checkpoint state is JSON and restores the masks and the random stream.
    state = json.loads(json.dumps(method.get_state()))
    again = SET(density=0.1, seed=99)
    again.set_state(state)
    for key, mask in method.topology.masks.items():
        np.testing.assert_array_equal(again.topology.masks[key], mask)
    assert again._rng.random() == method._rng.random()


def test_a_killed_run_resumes_with_the_same_topology(tmp_path):
    from helpers import tiny_classification_run

    def run(workdir, epochs):
        return tiny_classification_run(workdir, epochs, [SETOptions(set_density=0.2)])

    straight = run(tmp_path / "straight", 3)
    expected = straight.train().get_weights()
    run(tmp_path / "killed", 2).train()  # "killed" after epoch 2; the same command with 3 resumes
    resumed = run(tmp_path / "killed", 3)
    got = resumed.train().get_weights()
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=1e-6)
    assert straight.sparsity.find("set").turnover == resumed.sparsity.find("set").turnover

def test_bad_set_options_are_named():
    with pytest.raises(ValueError, match="not both"):
        SETOptions(set_density=0.04, set_epsilon=20)
    with pytest.raises(ValueError, match="set_zeta must be in"):
        SETOptions(set_density=0.04, set_zeta=1.5)
    with pytest.raises(ValueError, match="one of density or epsilon"):
        SET()


def test_packed_masks_round_trip():
    mask = np.random.default_rng(0).random((37, 11)) < 0.1
    np.testing.assert_array_equal(unpack_mask(json.loads(json.dumps(pack_mask(mask)))), mask)
