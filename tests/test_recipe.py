"""The paper recipes are the original's, line by line (wenwei202/iss-rnns).

Each test names the original's file:line it checks against; each failed on the
code before the recipe fixes.
"""

import collections
import dataclasses
import os

import keras
import numpy as np
import pytest

import iss_keras
from helpers import value
from iss_keras import sparsity as sparsity_lib
from iss_keras import training
from iss_keras.datasets import load_ptb, ptb_vocabulary
from iss_keras.models.lstm_lm import lstm_language_model
from iss_keras.models.rhn import rhn_language_model
from iss_keras.sparsity import ISS, OptionContext, WeightDecay, WeightZeroing
from iss_keras.sparsity.elementwise import L1Options
from iss_keras.sparsity.iss import ISSOptions
from iss_keras.tasks import language_model


def run_sparsity(**options):
    """The Sparsity a trainer builds from these flags (steps 5)."""
    given = [ISSOptions(**{k: v for k, v in options.items() if k in ISSOptions.__annotations__}),
             L1Options(**{k: v for k, v in options.items() if k in L1Options.__annotations__})]
    return sparsity_lib.from_options(given, OptionContext(loss_scale=5, epochs=13))


# -- vocabulary: ptb/reader.py _build_vocab ------------------------------------------------------

def test_full_vocabulary_has_the_original_readers_ids(ptb_dir):
    splits, vocabulary = load_ptb(ptb_dir)
    words = open(os.path.join(ptb_dir, "ptb.train.txt")).read().replace("\n", " <eos> ").split()
    counts = collections.Counter(words)
    # reader.py: sorted(counter.items(), key=lambda x: (-x[1], x[0])); ids 0..9999, no extra id.
    expected = [w for w, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]
    assert vocabulary == expected and len(vocabulary) == 10000 and "<oov>" not in vocabulary
    assert vocabulary[:3] == ["the", "<unk>", "<eos>"]
    assert splits["train"].max() == 9999
    # The ten-thousandth word is a real word with its own id, not merged into an OOV id.
    assert (splits["train"] == 9999).sum() == counts[vocabulary[-1]]


def test_the_10000_flag_value_keeps_every_word(ptb_dir):
    full, vocabulary = load_ptb(ptb_dir)
    same, same_vocabulary = load_ptb(ptb_dir, vocab_size=10000)
    assert same_vocabulary == vocabulary
    for split in full:
        np.testing.assert_array_equal(same[split], full[split])


def test_a_smaller_vocabulary_keeps_the_frequent_ids_and_one_oov_id(ptb_dir):
    full, vocabulary = load_ptb(ptb_dir)
    small, small_vocabulary = load_ptb(ptb_dir, vocab_size=500)
    assert small_vocabulary[:499] == vocabulary[:499] and small_vocabulary[499] == "<oov>"
    expected = np.where(full["valid"] < 499, full["valid"], 499)
    np.testing.assert_array_equal(small["valid"], expected)


def test_vocabulary_size_one_is_refused():
    with pytest.raises(ValueError, match="vocab_size=1"):
        ptb_vocabulary(["a", "b", "a"], 1)


# -- initialisers: TF1 BasicLSTMCell's _linear(bias_start=0.0), get_variable under the
#    uniform scope initializer for embedding / softmax_w / softmax_b (ptb_word_lm.py:304-331)

def test_lstm_biases_start_at_zero_and_the_rest_uniform():
    model = lstm_language_model(500, [30, 20], init_scale=0.1, seed=0)
    for name in ("lstm_0", "lstm_1"):
        assert not value(model.get_layer(name).cell.bias).any()
    for w in (model.get_layer("embedding").embeddings, model.get_layer("softmax").kernel,
              model.get_layer("softmax").bias, model.get_layer("lstm_0").cell.kernel):
        w = value(w)
        assert np.abs(w).max() <= 0.1 and w.std() > 0.05  # uniform in [-0.1, 0.1]: std 0.058


# -- freezing: --freeze_mode is None by default (ptb_word_lm.py:94, 419) -------------------------

def test_nothing_is_frozen_by_default_and_a_zeroed_unit_may_regrow(tmp_path):
    assert ISSOptions().freeze is False
    sparsity = run_sparsity(iss_strength=0.001)
    assert sparsity.callbacks(None) == []  # no callback holds zeros at zero
    model = lstm_language_model(50, [8], batch_size=4, steps=5, stateful=True,
                                sparsity=ISS(0.001 / 5), seed=1)
    groups = iss_keras.couple(model)
    model.compile(keras.optimizers.SGD(1.0), keras.losses.SparseCategoricalCrossentropy(True))
    # Unit 0's outgoing weights (recurrent row, softmax row) zero: removable by shrink now.
    # (A unit whose whole component and bias are zero is a fixed point of SGD and stays.)
    for fp in groups["lstm_0"].outgoing:
        variable = {v.path: v for v in model.weights}[fp.variable]
        w = value(variable)
        w[fp.indices(8)[0]] = 0  # rows (axis 0)
        variable.assign(w.astype("float32"))
    assert iss_keras.sparsity_report(model, groups).layers[0]["active_units"] == 7
    tokens = np.random.default_rng(0).integers(0, 50, (8, 5))
    model.fit(tokens, tokens, batch_size=4, epochs=2, verbose=0, shuffle=False)
    assert value(model.get_layer("softmax").kernel)[0].any(), "the zeroed unit did not regrow"
    assert iss_keras.sparsity_report(model, groups).layers[0]["active_units"] == 8


# -- per-weight zeroing: every trainable variable below max(1e-4, 2 wd), after every step, only
#    in sparsity runs (ptb_word_lm.py:380-389, 606) -----------------------------------------------

def zeroing(sparsity):
    found = sparsity.find("weight_zeroing")
    return found.threshold if found else None


def test_zeroing_threshold_is_for_sparsity_runs_only():
    assert zeroing(run_sparsity()) is None  # small / medium / large
    assert run_sparsity().constraint("kernel") is None
    assert zeroing(run_sparsity(iss_strength=0.00245)) == 1e-4
    assert zeroing(run_sparsity(l1_strength=1e-4)) == pytest.approx(2e-4)
    assert zeroing(run_sparsity(l1_strength=1e-5)) == 1e-4


def test_methods_are_registered_in_the_order_they_are_built():
    assert sparsity_lib.registered() == sparsity_lib.METHODS
    assert [m.name for m in sparsity_lib.METHODS] == [
        "weight_decay", "l1", "iss", "set", "magnitude", "gate_neuron", "sparse_vd",
        "weight_zeroing"]
    assert sparsity_lib.option_classes() == tuple(m.Options for m in sparsity_lib.METHODS)
    assert sparsity_lib.method_class("iss") is ISS
    with pytest.raises(ValueError, match="'nope'"):
        sparsity_lib.method_class("nope")


def test_a_method_without_options_or_from_options_is_refused_at_registration():
    @dataclasses.dataclass
    class ToyOptions:
        toy_strength: float = 0.0

    class NoOptions(sparsity_lib.SparsityMethod):
        name = "no_options"

        @classmethod
        def from_options(cls, options, context, chosen=()):
            return None

    class NoBuilder(sparsity_lib.SparsityMethod):
        name = "no_builder"
        Options = ToyOptions

    class NamedLikeISS(NoOptions):
        name = "iss"
        Options = ToyOptions

    with pytest.raises(TypeError, match="NoOptions.*Options dataclass"):
        sparsity_lib.register(NoOptions)
    with pytest.raises(TypeError, match="NoBuilder.*from_options"):
        sparsity_lib.register(NoBuilder)
    with pytest.raises(NotImplementedError, match="NoBuilder"):
        NoBuilder.from_options(ToyOptions(), OptionContext())
    with pytest.raises(ValueError, match="NamedLikeISS: ISS is registered with the same name 'iss'"):
        sparsity_lib.register(NamedLikeISS)
    with pytest.raises(TypeError, match="SparsityMethod subclasses"):
        sparsity_lib.register(ToyOptions)
    assert sparsity_lib.registered() == sparsity_lib.METHODS  # none of them got in


@pytest.mark.parametrize("threshold", [None, 1e-4])
def test_every_variable_is_zeroed_after_a_step_in_sparsity_runs(threshold):
    model = lstm_language_model(40, [6, 5], batch_size=2, steps=3, stateful=True,
                                sparsity=WeightZeroing(threshold) if threshold else None, seed=2)
    model.compile(keras.optimizers.SGD(1e-9), keras.losses.SparseCategoricalCrossentropy(True))
    for v in model.trainable_weights:  # plant one tiny weight in every variable
        w = value(v)
        w.flat[0] = 5e-5
        v.assign(w.astype("float32"))
    tokens = np.ones((2, 3), "int32")
    model.train_on_batch(tokens, tokens)
    paths = [v.path.split("/", 1)[0] + "/" + v.name for v in model.trainable_weights]
    assert {"embedding/embeddings", "lstm_0/bias", "softmax/bias"} <= set(paths)
    for v in model.trainable_weights:
        first = value(v).flat[0]
        assert (first == 0.0) if threshold else (abs(first - 5e-5) < 1e-6), v.path


# -- data layout and test perplexity: reader.ptb_producer, test at batch 1 x 1 step
#    (ptb_word_lm.py:257-262, 700-701) ------------------------------------------------------------

def ptb_producer(raw, batch_size, num_steps):
    """NumPy transcription of the original reader's layout (reader.py ptb_producer)."""
    batch_len = len(raw) // batch_size
    data = np.asarray(raw[:batch_size * batch_len]).reshape(batch_size, batch_len)
    epoch_size = (batch_len - 1) // num_steps
    for i in range(epoch_size):
        yield (data[:, i * num_steps:(i + 1) * num_steps],
               data[:, i * num_steps + 1:(i + 1) * num_steps + 1])


@pytest.mark.parametrize("length", [400, 401, 419, 1000])
def test_stream_layout_is_ptb_producer(length):
    raw = np.arange(length, dtype=np.int32) * 7 % 101
    x, y = language_model.stream_batches(raw, batch_size=4, steps=5)
    expected = list(ptb_producer(raw, 4, 5))
    assert x.shape[0] == 4 * len(expected)
    for i, (ex, ey) in enumerate(expected):
        np.testing.assert_array_equal(x[4 * i:4 * (i + 1)], ex)
        np.testing.assert_array_equal(y[4 * i:4 * (i + 1)], ey)


def test_test_perplexity_scores_every_token():
    model = lstm_language_model(30, [7], batch_size=1, steps=None, stateful=True, seed=4)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.random.default_rng(3).integers(0, 30, 53).astype("int32")  # 52 targets, 52 % 5 = 2
    # Reference: one call over the whole stream, all 52 predictions (= batch 1 x 1 step).
    model.get_layer("lstm_0").reset_states()
    logits = value(model(ids[None, :-1]))[0]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.exp(-logp[np.arange(52), ids[1:]].mean())
    got = language_model.every_token_perplexity(model, ids, steps=5)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    dropping = language_model.perplexity(model, ids, batch_size=1, steps=5)  # scores 50 of 52
    assert abs(dropping - expected) > 1e-6


# -- RHN: rhns/rhn.py ----------------------------------------------------------------------------

def test_rhn_weight_decay_is_tf1_l2_loss_on_every_variable():
    wd = 0.3
    model = rhn_language_model(20, 6, depth=2, sparsity=WeightDecay(wd), seed=0)
    # rhn.py:136-137: cost += weight_decay * sum(tf.nn.l2_loss(v) for v in trainable variables)
    expected = wd * sum(0.5 * (value(v) ** 2).sum() for v in model.trainable_weights)
    assert {"softmax_bias/bias"} <= {v.path for v in model.trainable_weights}
    got = float(sum(value(loss) for loss in model.losses))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_rhn_trainer_reports_the_best_validation_epoch(tmp_path):
    from conftest import ptb_ids

    data = {"train": ptb_ids("train", 100)[:3000], "valid": ptb_ids("valid", 100)[:800],
            "test": ptb_ids("test", 100)[:600]}

    def build(*, batch_size, steps, stateful, streaming, training, sparsity):
        return rhn_language_model(100, 8, depth=2, batch_size=batch_size, steps=steps,
                                  stateful=stateful, streaming=streaming, seed=1)

    task = language_model.LanguageModelTask(
        build, data, language_model.LanguageModelConfig(steps=10, batch_size=10))
    config = training.TrainConfig(epochs=3, learning_rate=3.0, lr_schedule="constant",
                                  test_checkpoint="best_valid", seed=0)
    run = training.Run(task, None, config, str(tmp_path), verbose=0)
    model = run.train()
    valid = [row["valid_perplexity"] for row in run.history]
    results = training.finish(run, model, export=False, measure_speed=False)
    assert results["tested_epoch"] == 1 + int(np.argmin(valid))
    assert results["valid_perplexity"] == min(valid)
    best = task.build("test")
    training.load_checkpoint(str(tmp_path / "best.npz"), best, optimizer=False)
    expected = language_model.every_token_perplexity(best, data["test"], 10)
    np.testing.assert_allclose(results["test_perplexity_sparse"], expected, rtol=1e-5)


# -- counting removed units: ours (outgoing zero) and the original's (match_map == 6,
#    ptb_word_lm.py:196-203) -------------------------------------------------------------------

def test_both_unit_counts():
    model = lstm_language_model(30, [6, 5], seed=0)
    groups = iss_keras.discover_groups(model)
    lstm0, lstm1 = model.get_layer("lstm_0").cell, model.get_layer("lstm_1").cell
    rec0, k1 = value(lstm0.recurrent_kernel), value(lstm1.kernel)
    rec0[2] = 0   # unit 2: recurrent row and consumer row zero, gate columns not: removable (ours)
    k1[2] = 0
    rec0[4] = 0   # unit 4: its whole component zero: removed by both counts
    k1[4] = 0
    kernel0 = value(lstm0.kernel)
    for g in range(4):
        kernel0[:, g * 6 + 4] = 0
        rec0[:, g * 6 + 4] = 0
    for v, w in ((lstm0.recurrent_kernel, rec0), (lstm1.kernel, k1), (lstm0.kernel, kernel0)):
        v.assign(w.astype("float32"))
    layers = {row["name"]: row for row in iss_keras.sparsity_report(model, groups).layers}
    assert layers["lstm_0"]["active_units"] == 4  # ours: units 2 and 4 removed
    assert layers["lstm_0"]["all_zero_units"] == 1  # the original's count: unit 4 only
    assert layers["lstm_1"]["active_units"] == 5 and layers["lstm_1"]["all_zero_units"] == 0



# -- the paper configs are the original's numbers ------------------------------------------------

ORIGINAL = {
    # ptb_word_lm.py:465-479 SmallConfig (keep_prob 1.0)
    "small": {"init_scale": 0.1, "learning_rate": 1.0, "max_grad_norm": 5, "steps": 20,
              "hidden_sizes": "200,200", "max_epoch": 4, "epochs": 13, "dropout": 0.0,
              "lr_decay": 0.5, "batch_size": 20},
    # :482-496 MediumConfig (keep_prob 0.5)
    "medium": {"init_scale": 0.05, "learning_rate": 1.0, "max_grad_norm": 5, "steps": 35,
               "hidden_sizes": "650,650", "max_epoch": 6, "epochs": 39, "dropout": 0.5,
               "lr_decay": 0.8, "batch_size": 20},
    # :499-513 LargeConfig (keep_prob 0.35, lr_decay 1 / 1.15)
    "large": {"init_scale": 0.04, "learning_rate": 1.0, "max_grad_norm": 10, "steps": 35,
              "hidden_sizes": "1500,1500", "max_epoch": 14, "epochs": 55, "dropout": 0.65,
              "lr_decay": 1 / 1.15, "batch_size": 20},
    # :515-529 SparseLargeConfig + structure_grouplasso.json (keep 0.6, global_decay 0.00245);
    # lr decay 0.1 ** (epoch // (55 // 3)) (:758-759)
    "sparselarge_iss": {"init_scale": 0.04, "learning_rate": 1.0, "max_grad_norm": 10,
                        "steps": 35, "hidden_sizes": "1500,1500", "epochs": 55, "dropout": 0.4,
                        "lr_decay": 0.1, "batch_size": 20, "lr_schedule": "step",
                        "lr_step_epochs": 18, "iss_strength": 0.00245},
}


def default_of(flag):
    """The library's default of a trainer flag (the flags are generated from these classes)."""
    import dataclasses

    from iss_keras.training.trainer import shared_option_classes

    for cls in shared_option_classes() + (language_model.LanguageModelConfig,):
        for field in dataclasses.fields(cls):
            if field.name == flag:
                return field.default
    return ""


def read_flagfile(name):
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ptb",
                        "configs", f"{name}.flags")
    values = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("--") and "=" in line:
            key, value = line[2:].split("=", 1)
            values[key] = value
    return values


@pytest.mark.parametrize("config", sorted(ORIGINAL))
def test_paper_configs_are_the_originals_numbers(config):
    flags = read_flagfile(config)
    for key, expected in ORIGINAL[config].items():
        got = flags.get(key, str(default_of(key)))
        if isinstance(expected, str):
            assert got == expected, key
        else:
            np.testing.assert_allclose(float(got), expected, rtol=1e-12, err_msg=key)
    # Paper configs use none of our additions.
    assert not {"component_threshold", "freeze", "proximal", "target_macs_ratio"} & set(flags)
    assert "vocab_size" not in flags  # the whole training vocabulary
