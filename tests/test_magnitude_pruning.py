"""Gradual magnitude pruning (`iss_keras.sparsity.magnitude`): TF-MOT's schedules and keep rule,
masks that hold through training, resume, strip, `.keras`, unit level + shrink, TF and JAX."""

import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from iss_keras.discovery import discover_groups
from iss_keras.rebuild import shrink
from iss_keras.sparsity import (ConstantSparsity, MagnitudePruning, OptionContext,
                                PolynomialDecay, from_options)
from iss_keras.sparsity.evolutionary import SETOptions
from iss_keras.sparsity.masks import MaskConstraint
from iss_keras.sparsity.magnitude import (MagnitudePruningOptions, keep_count, magnitude_mask,
                                          prunable_weights, strip_pruning)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB, STEPS = 30, 6


def tiny_lm(seed=0):
    keras.backend.clear_session()  # the same layer names each time, as in a resumed process
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((STEPS,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 8)(tokens)
    x = keras.layers.LSTM(12, return_sequences=True)(x)
    x = keras.layers.LSTM(10, return_sequences=True)(x)
    return keras.Model(tokens, keras.layers.Dense(VOCAB)(x))


def data(seed=1, n=32):
    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB, (n, STEPS)), rng.integers(0, VOCAB, (n, STEPS))


def compile_(model):
    model.compile(keras.optimizers.SGD(0.5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def masked_values(model, method):
    """Every weight the masks prune, as one array (all must be exactly 0)."""
    values = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    return np.concatenate([values[p][~m] for p, m in method.masks.items()])


# ---- schedules: TF-MOT's formulas (reference values from the formulas, here) ------------------

def test_polynomial_decay_matches_the_formula():
    initial, final, begin, end, power, freq = 0.1, 0.85, 200, 1200, 3, 100
    schedule = PolynomialDecay(initial, final, begin, end, power, freq)
    for step in (0, 199, 200, 250, 300, 700, 1100, 1200, 1300, 5000):
        p = min(1.0, max(0.0, (step - begin) / (end - begin)))
        assert schedule.sparsity(step) == pytest.approx(final + (initial - final) * (1 - p) ** power)
        in_range = begin <= step <= end
        assert schedule.should_prune(step) == (in_range and (step - begin) % freq == 0), step
    assert schedule.sparsity(700) == pytest.approx(0.85 - 0.75 * 0.125)  # p = 0.5 by hand


def test_constant_sparsity_prunes_until_the_end_with_end_step_minus_one():
    schedule = ConstantSparsity(0.6, begin_step=10, frequency=5)
    assert [s for s in range(40) if schedule.should_prune(s)] == [10, 15, 20, 25, 30, 35]
    assert schedule.should_prune(10 ** 6 + 10) and schedule.sparsity(3) == 0.6
    bounded = ConstantSparsity(0.6, begin_step=10, end_step=20, frequency=5)
    assert [s for s in range(40) if bounded.should_prune(s)] == [10, 15, 20]


def test_keep_rule_is_tfmots_and_ties_are_kept():
    assert [keep_count(10, s) for s in (0.0, 0.25, 0.35, 0.5, 0.99)] == [10, 8, 6, 5, 1]
    # round(10 * 0.75) = round(7.5) = 8 (half to even, as tf.math.round); at least one is kept
    w = np.array([[0.1, -0.5, 0.3], [0.3, 0.05, -0.9]])
    assert magnitude_mask(w, 0.5).tolist() == [[False, True, True], [True, False, True]]  # tie
    assert magnitude_mask(w, 0.0).all()


def test_block_sparsity_pools_blocks_and_cuts_the_edges():
    w = np.array([[1.0, 0.0, 0.2, 0.2, 3.0],
                  [0.0, 0.0, 0.2, 0.2, 3.0],
                  [0.4, 0.4, 0.0, 0.9, 0.0]])
    # 2x2 blocks (edge blocks hold fewer): means [[.25, .2, 3], [.4, .45, 0]], maxes differ
    avg = magnitude_mask(w, 0.5, block_size=(2, 2), pooling="avg")
    assert avg.tolist() == [[False, False, False, False, True], [False, False, False, False, True],
                            [True, True, True, True, False]]
    top = magnitude_mask(w, 0.5, block_size=(2, 2), pooling="max")
    assert top[0, 0] and top[0, 4] and top[2, 3] and not top[0, 2]


# ---- bad input: each error quotes the value ---------------------------------------------------

@pytest.mark.parametrize("make, quoted", [
    (lambda: PolynomialDecay(0.0, 1.0, 0, 10), "final_sparsity=1.0"),
    (lambda: PolynomialDecay(-0.1, 0.5, 0, 10), "initial_sparsity=-0.1"),
    (lambda: ConstantSparsity(1.5, 0), "target_sparsity=1.5"),
    (lambda: PolynomialDecay(0.0, 0.5, 10, 5), "end_step=5"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, -1), "end_step=-1"),
    (lambda: ConstantSparsity(0.5, 0, frequency=0), "frequency=0"),
    (lambda: ConstantSparsity(0.5, 0, frequency=-3), "frequency=-3"),
    (lambda: MagnitudePruningOptions(prune_final_sparsity=1.0), "prune_final_sparsity=1.0"),
    (lambda: MagnitudePruning(ConstantSparsity(0.5, 0), weights=[]), "weights=[]"),
    (lambda: MagnitudePruning(ConstantSparsity(0.5, 0), granularity="unit", units=[0, 3]),
     "units=[0, 3]"),
    (lambda: MagnitudePruning(ConstantSparsity(0.5, 0), granularity="unit", units=[2.5, 3]),
     "units=[2.5, 3]"),
    (lambda: MagnitudePruningOptions(prune_final_sparsity=0.5, prune_frequency=0),
     "prune_frequency=0"),
    (lambda: MagnitudePruningOptions(prune_final_sparsity=0.5, prune_power=0.0),
     "prune_power=0.0"),
    (lambda: MagnitudePruningOptions(prune_granularity="unit", prune_units=(4, 0)),
     "prune_units=(4, 0)"),
])
def test_bad_input_is_refused_with_its_value(make, quoted):
    with pytest.raises(ValueError, match=re.escape(quoted)):
        make()


def test_a_filter_that_selects_nothing_is_an_error_quoting_it():
    model = tiny_lm()
    for which in (["no_such_layer"], lambda v: False):
        with pytest.raises(ValueError, match="selects no variable"):
            MagnitudePruning(ConstantSparsity(0.5, 0), weights=which).bind(model, None)
    with pytest.raises(ValueError, match="no_such_layer"):
        MagnitudePruning(ConstantSparsity(0.5, 0), weights=["no_such_layer"]).bind(model, None)


def test_tfmots_choice_is_kernels_not_biases_and_filters_narrow_it():
    model = tiny_lm()
    chosen = sorted(v.path for v in prunable_weights(model))
    assert all(p.endswith(("kernel", "embeddings")) for p in chosen) and len(chosen) == 6
    method = MagnitudePruning(ConstantSparsity(0.5, 0), weights=lambda v: "lstm_1" in v.path)
    method.bind(model, None)
    assert sorted(method.masks) and all("lstm_1" in p for p in method.masks)
    assert method.get_config()["weights"] == sorted(method.masks)  # a callable: what it chose


def test_options_build_the_method_and_refuse_set_beside_it():
    made = from_options([MagnitudePruningOptions(prune_final_sparsity=0.8, prune_end_step=500)])
    method = made.find("magnitude")
    assert method.schedule == PolynomialDecay(0.0, 0.8, 0, 500, 3.0, 100)
    assert MagnitudePruning.describe(method.get_config()) == "GMP 80%"
    assert from_options([MagnitudePruningOptions()]).find("magnitude") is None
    with pytest.raises(ValueError, match="SET"):
        from_options([MagnitudePruningOptions(prune_final_sparsity=0.5, prune_end_step=9),
                      SETOptions(set_density=0.5)], OptionContext())
    with pytest.raises(ValueError, match="prune_units"):
        MagnitudePruningOptions(prune_units=(3, 4))


# ---- training: masks hold, strip, .keras, resume ----------------------------------------------

class CheckMasksEveryStep(keras.callbacks.Callback):
    def __init__(self, method):
        super().__init__()
        self.method, self.largest = method, []

    def on_train_batch_end(self, batch, logs=None):
        self.largest.append(float(np.abs(masked_values(self.model, self.method)).max(initial=0)))


class RecordTrainFunction(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(id(self.model.train_function))


def test_new_masks_reach_the_compiled_step_without_a_rebuild():
    """Under TensorFlow the masks are variables of the step: updates need no retrace, and the
    step applies each new mask (no masked weight is nonzero after any step)."""
    model = tiny_lm()
    method = MagnitudePruning(PolynomialDecay(0.0, 0.7, begin_step=1, end_step=7, frequency=2))
    method.bind(model, None)
    compile_(model)
    check, record = CheckMasksEveryStep(method), RecordTrainFunction()
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=2, callbacks=method.callbacks(None) + [check, record],
              verbose=0)
    assert method.updates == 4 and method.achieved() == pytest.approx(0.7, abs=0.01)
    assert len(set(record.seen)) == 1, "the train step was rebuilt"
    assert max(check.largest) == 0.0


@pytest.fixture(scope="module")
def pruned():
    """A tiny LM trained 2 epochs x 4 steps with weight-level GMP to 60 % by step 6."""
    model = tiny_lm()
    method = MagnitudePruning(PolynomialDecay(0.0, 0.6, begin_step=2, end_step=6, frequency=2))
    method.bind(model, None)
    compile_(model)
    check = CheckMasksEveryStep(method)
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=2, callbacks=method.callbacks(None) + [check], verbose=0)
    return model, method, check


def test_masks_hold_through_training(pruned):
    model, method, check = pruned
    assert method.step == 8 and method.updates == 3  # steps 2, 4, 6
    assert check.largest and max(check.largest) == 0.0  # no masked weight ever came back
    assert method.achieved() == pytest.approx(0.6, abs=0.01)
    for path, mask in method.masks.items():
        assert 1 - mask.mean() == pytest.approx(1 - keep_count(mask.size, 0.6) / mask.size)
    assert method.epoch_summary()["prune"]["reached"] and method.may_be_best(
        {"prune": method.epoch_summary()["prune"]})
    assert not method.may_be_best({"prune": {"reached": False}})


def test_strip_keeps_the_outputs_and_drops_the_masks(pruned):
    model, method, _ = pruned
    plain = method.finalize(model)
    assert plain is not model
    assert not any(isinstance(getattr(v, "constraint", None), MaskConstraint) for v in plain.weights)
    x, _ = data(2, 8)
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert strip_pruning(plain) is plain


def test_keras_file_carries_the_masks(pruned, tmp_path):
    model, method, _ = pruned
    model.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    masks = {v.path: v.constraint.mask for v in loaded.weights
             if isinstance(getattr(v, "constraint", None), MaskConstraint)}
    assert sorted(masks) == sorted(method.masks)
    assert all(np.array_equal(masks[p], method.masks[p]) for p in masks)


def test_storage_report_counts_values_and_bitmap(pruned):
    model, method, _ = pruned
    fields = method.result_fields([], model)["magnitude"]
    storage = fields["storage"]
    weights = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.trainable_weights]
    assert storage["dense_bytes"] == 4 * sum(w.size for w in weights)
    assert storage["sparse_bytes"] == sum(4 * int((w != 0).sum()) + -(-w.size // 8) for w in weights)
    assert storage["sparse_bytes"] < storage["dense_bytes"]
    assert fields["nonzero_pruned_weights"] == sum(int(m.sum()) for m in method.masks.values())


def test_resume_continues_the_schedule_at_the_same_step(pruned):
    _, whole, _ = pruned
    x, y = data()
    schedule = PolynomialDecay(0.0, 0.6, begin_step=2, end_step=6, frequency=2)
    first = tiny_lm()
    method = MagnitudePruning(schedule)
    method.bind(first, None)
    compile_(first).fit(x, y, batch_size=8, epochs=1, callbacks=method.callbacks(None), verbose=0)
    state, weights = method.get_state(), first.get_weights()
    assert state["step"] == 4 and method.sparsity() == pytest.approx(schedule.sparsity(4))

    resumed = tiny_lm(seed=5)
    again = MagnitudePruning(schedule)
    again.bind(resumed, None)
    resumed.set_weights(weights)
    again.set_state(state)
    assert again.step == 4 and all(np.array_equal(again.masks[p], method.masks[p])
                                   for p in method.masks)
    compile_(resumed).fit(x, y, batch_size=8, epochs=2, initial_epoch=1,
                          callbacks=again.callbacks(None), verbose=0)
    assert again.step == whole.step == 8 and again.updates == whole.updates == 3
    assert again.achieved() == pytest.approx(whole.achieved())
    assert np.abs(masked_values(resumed, again)).max() == 0.0


# ---- unit level: whole components, then shrink -------------------------------------------------

def test_unit_pruning_shrinks_exactly_to_the_units_asked():
    model = tiny_lm()
    groups = discover_groups(model)
    method = MagnitudePruning(PolynomialDecay(0.0, 0.0, 0, 4, frequency=2), granularity="unit",
                              units=[5, 4])
    method.bind(model, groups)
    compile_(model)
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, callbacks=method.callbacks(None), verbose=0)
    assert list(method.units_kept().values()) == [5, 4]
    assert np.abs(masked_values(model, method)).max() == 0.0
    small, plan = shrink(method.finalize(model))
    assert [after for _, after in plan.summary().values()] == [5, 4]
    xs, _ = data(3, 8)
    np.testing.assert_allclose(small.predict(xs, verbose=0), model.predict(xs, verbose=0),
                               atol=1e-5)
    assert MagnitudePruning.describe(method.get_config()) == "unit pruning → 5/4 units"


def test_unit_counts_must_match_the_recurrent_layers():
    with pytest.raises(ValueError, match=r"units=\[5\]"):
        MagnitudePruning(ConstantSparsity(0.0, 0), granularity="unit", units=[5]).bind(
            tiny_lm(), None)


# ---- other backends ---------------------------------------------------------------------------

JAX_SCRIPT = textwrap.dedent("""
    import numpy as np, keras
    assert keras.backend.backend() == "jax"
    from iss_keras.rebuild import shrink
    from iss_keras.sparsity import MagnitudePruning, PolynomialDecay
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 30, (32, 6)), rng.integers(0, 30, (32, 6))
    for granularity, units in (("weight", None), ("unit", [5, 4])):
        keras.utils.set_random_seed(0)
        tokens = keras.Input((6,), dtype="int32")
        h = keras.layers.Embedding(30, 8)(tokens)
        h = keras.layers.LSTM(12, return_sequences=True)(h)
        h = keras.layers.LSTM(10, return_sequences=True)(h)
        model = keras.Model(tokens, keras.layers.Dense(30)(h))
        final = 0.6 if units is None else 0.0
        method = MagnitudePruning(PolynomialDecay(0.0, final, 2, 6, frequency=2), granularity,
                                  units)
        method.bind(model, None)
        model.compile(keras.optimizers.SGD(0.5),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=8, epochs=2, callbacks=method.callbacks(None), verbose=0)
        values = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
        assert method.step == 8 and method.updates == 3, (method.step, method.updates)
        assert all((values[p][~m] == 0).all() for p, m in method.masks.items())
        if units is None:
            assert abs(method.achieved() - 0.6) < 0.01, method.achieved()
        else:
            small, plan = shrink(method.finalize(model))
            assert [a for _, a in plan.summary().values()] == units, plan.summary()
    print("jax ok")
""")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_method_runs_on_other_backends(backend):
    try:
        __import__(backend)
    except ImportError:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT.replace('"jax"', f'"{backend}"')],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "jax ok" in done.stdout


# ---- the PTB configs (issue 19's runs; read here, not run) -------------------------------------

def flagfile(name):
    lines = open(os.path.join(ROOT, "ptb", "configs", f"{name}.flags")).read().splitlines()
    return dict(line[2:].split("=", 1) for line in lines if line.startswith("--"))


@pytest.mark.parametrize("name, described", [
    ("small_gmp80", "GMP 80%"), ("small_gmp90", "GMP 90%"), ("small_gmp_2x", "GMP 28.8217%"),
    ("small_gmp_3x", "GMP 37.7046%"), ("small_unit_prune_2x", "unit pruning → 46/118 units"),
    ("small_unit_prune_3x", "unit pruning → 42/81 units")])
def test_the_ptb_configs_are_the_small_recipe_with_a_pruning_schedule(name, described):
    flags, small = flagfile(name), flagfile("small")
    recipe = lambda f: {k: v for k, v in f.items() if k not in ("workdir", "quantize")}
    assert {k: v for k, v in recipe(flags).items() if k in small} == recipe(small)
    fields = {f: (tuple(int(u) for u in v.split(",")) if f == "prune_units" else
                  type(getattr(MagnitudePruningOptions(), f))(v))
              for f, v in flags.items() if f.startswith("prune_")}
    method = from_options([MagnitudePruningOptions(**fields)]).find("magnitude")
    assert MagnitudePruning.describe(method.get_config()) == described
    assert (method.schedule.begin_step, method.schedule.end_step) == (2323, 11615)


@pytest.mark.parametrize("size", ["2x", "3x"])
def test_unstructured_configs_keep_as_many_weights_as_iss_kept(size):
    import json
    results = json.load(open(os.path.join(ROOT, "results", "ptb", f"small_target{size}",
                                          "results.json")))
    h1, h2 = results["hidden_after"]
    biases = 4 * h1 + 4 * h2 + 10000               # the shrunk model's biases (never pruned)
    pruned = 10000 * 200 + 4 * (200 * 800) + 200 * 10000   # embedding, 4 LSTM kernels, softmax
    sparsity = 1 - (results["weights_after"] - biases) / pruned
    assert float(flagfile(f"small_gmp_{size}")["prune_final_sparsity"]) == pytest.approx(
        sparsity, abs=1e-6)
    assert flagfile(f"small_unit_prune_{size}")["prune_units"] == f"{h1},{h2}"
