"""BiDAF (iss_keras/models/bidaf.py, its layers in bidaf_layers.py) and its QA task: attention
and masking, span decoding, the six ISS families with the exact penalty, shrink equivalence,
.keras round trip, and what discovery refuses. Tiny models (d = 3) on random weights; no training."""

import importlib

import keras
import numpy as np
import pytest

import iss_keras
from helpers import (assert_shrunk_outputs_equal, randomize, reference_penalty, run, value,
                     zero_outgoing, zero_random_units)
from iss_keras.datasets import squad
from iss_keras.models.bidaf import (TF1BiasConstraint, TF1BiasRegularizer, bidaf, lstm_units,
                                    model_fields, non_embedding_weights)
from iss_keras.models.bidaf_layers import (BiAttention, DropoutBidirectional, MaskedLogits,
                                           PaddingMask, SharedBiLSTM, SoftmaxPooling,
                                           TileOverTime)
from iss_keras.tasks import question_answering as qa

D = 3                      # hidden size of the tiny models
WORDS, TRAINED, CHARS = 40, 12, 20   # word ids >= char ids: probe inputs stay in range
FAMILIES = ["g0/forward", "g0/backward", "g1/forward", "g1/backward", "g2/forward",
            "g2/backward"]
L = keras.layers


def tiny(**kwargs):
    options = dict(word_dim=5, char_dim=3, char_filters=4, char_width=3, max_word_len=6,
                   seed=0)
    options.update(kwargs)
    return bidaf(D, WORDS, TRAINED, CHARS, **options)


def _cell(model, name, direction):
    layer = model.get_layer(name)
    return (layer.forward_layer if direction == "forward" else layer.backward_layer).cell


# ------------------------------------------------------------------ attention and masking

def _attention_reference(h, u, h_mask, u_mask, w, b):
    """S by enumeration of w . [h_t; u_j; h_t * u_j] + b, c2q and q2c by NumPy softmaxes."""
    batch, steps, width = h.shape
    questions = u.shape[1]
    s = np.zeros((batch, steps, questions))
    for n in range(batch):
        for t in range(steps):
            for j in range(questions):
                s[n, t, j] = (w[:width] @ h[n, t] + w[width:2 * width] @ u[n, j]
                              + w[2 * width:] @ (h[n, t] * u[n, j]) + b)
    valid = h_mask[:, :, None] & u_mask[:, None, :]

    def softmax(x, keep, axis):  # rows with nothing to keep (padding) come out NaN, unused
        x = np.where(keep, x, -np.inf)
        with np.errstate(invalid="ignore"):
            e = np.exp(x - x.max(axis=axis, keepdims=True))
            return e / e.sum(axis=axis, keepdims=True)

    a = softmax(s, valid, -1)                                # rows of real context positions
    u_tilde = np.einsum("ntj,njc->ntc", a, u)
    m = np.where(valid, s, -np.inf).max(-1)
    q2c = softmax(m, h_mask, -1)
    h_tilde = np.einsum("nt,ntc->nc", q2c, h)[:, None, :]
    g = np.concatenate([h, u_tilde, h * u_tilde, h * h_tilde], axis=-1)
    return s, valid, g


def test_similarity_and_attention_match_numpy_with_masking():
    rng = np.random.default_rng(0)
    h, u = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 4, 3))
    h_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    u_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
    layer = BiAttention()
    g = value(layer([h.astype("float32"), u.astype("float32"), h_mask, u_mask]))
    w, b = value(layer.kernel)[:, 0], float(value(layer.bias)[0])
    s_ref, valid, g_ref = _attention_reference(h, u, h_mask, u_mask, w, b)

    s = value(layer.similarity(h.astype("float32"), u.astype("float32"), h_mask, u_mask))
    assert s.shape == (2, 5, 4) and g.shape == (2, 5, 12)
    np.testing.assert_allclose(s[valid], s_ref[valid], rtol=1e-5, atol=1e-5)
    assert (s[~valid] < -1e29).all() and np.isfinite(s).all()  # -1e30 added, still finite
    np.testing.assert_allclose(g[h_mask], g_ref[h_mask], rtol=1e-5, atol=1e-5)


def test_padding_values_do_not_reach_real_positions():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(1, 6, 2)).astype("float32")
    u = rng.normal(size=(1, 3, 2)).astype("float32")
    h_mask, u_mask = np.array([[1, 1, 1, 1, 0, 0]], bool), np.array([[1, 1, 0]], bool)
    layer = BiAttention()
    g = value(layer([h, u, h_mask, u_mask]))
    h2, u2 = h.copy(), u.copy()
    h2[0, 4:] = 100.0
    u2[0, 2:] = -100.0
    g2 = value(layer([h2, u2, h_mask, u_mask]))
    np.testing.assert_allclose(g2[0, :4], g[0, :4], rtol=1e-6, atol=1e-6)


def test_masked_logits_pooling_and_tiling():
    logits = np.array([[0.0, np.log(3.0), 5.0]], "float32")
    mask = np.array([[True, True, False]])
    masked = value(MaskedLogits()([logits[..., None], mask]))
    assert masked.shape == (1, 3) and masked[0, 2] < -1e29
    values = np.array([[[1.0, 2.0], [5.0, 6.0], [100.0, 100.0]]], "float32")
    pooled = value(SoftmaxPooling()([masked.astype("float32"), values]))
    np.testing.assert_allclose(pooled, [[0.25 * 1 + 0.75 * 5, 0.25 * 2 + 0.75 * 6]], rtol=1e-6)
    tiled = value(TileOverTime()([pooled.astype("float32"), mask]))
    assert tiled.shape == (1, 3, 2)
    np.testing.assert_allclose(tiled[0], np.repeat(pooled, 3, axis=0), rtol=0, atol=0)


# ------------------------------------------------------------------ the model's structure

def test_weights_outside_embeddings_are_the_originals_at_d100():
    # bidaf/README.md's model at d = 100 with 100-d GloVe: 2,570,703 without embedding tables.
    model = bidaf(100, WORDS, TRAINED, CHARS, word_dim=100)
    assert non_embedding_weights(model) == 2_570_703


def test_forget_bias_starts_at_one_and_penalties_see_the_tf1_bias():
    model = tiny(training=True)
    bias = value(_cell(model, "g0", "forward").bias)
    np.testing.assert_array_equal(bias, np.repeat([0.0, 1.0, 0.0, 0.0], D))
    l1 = TF1BiasRegularizer(keras.regularizers.L1(0.5))
    keras_bias = np.array([0.1, 1.25, -0.2, 0.3], "float32")   # one unit: i, f, c, o
    np.testing.assert_allclose(value(l1(keras_bias)), 0.5 * (0.1 + 0.25 + 0.2 + 0.3), rtol=1e-6)
    zero = TF1BiasConstraint(iss_keras.ZeroOut(4e-4))
    got = value(zero(np.array([1e-5, 1.0 + 1e-5, 0.5, -1e-5], "float32")))
    np.testing.assert_allclose(got, [0.0, 1.0, 0.5, 0.0], atol=1e-7)


def test_sparsity_reaches_the_originals_variables_only():
    from iss_keras.sparsity import ISS, L1Sparsity, Sparsity, WeightZeroing

    model = tiny(training=True, sparsity=Sparsity([ISS(1e-3), L1Sparsity(1e-4),
                                                   WeightZeroing(4e-4)]))
    constrained = {v.path for v in model.weights if v.constraint is not None}
    for name in ("word_embedding", "char_embedding", "char_conv", "highway_0"):
        assert not any(p.startswith(name + "/") for p in constrained), name
    for name in ("contextual", "attention", "g0", "g1", "g2", "start_dense", "end_dense"):
        assert any(p.startswith(name + "/") for p in constrained), name
    contextual = model.get_layer("contextual").bidirectional.forward_layer.cell
    assert isinstance(contextual.recurrent_kernel.regularizer, keras.regularizers.L1)  # no ISS
    assert isinstance(_cell(model, "g1", "backward").recurrent_kernel.regularizer,
                      iss_keras.ISSRegularizer)


# ------------------------------------------------------------------ discovery and the penalty

def _consumers(model, name, direction):
    """(variable, row offset) of every consumer of one family, as groups_hidden100.json lists
    them (Keras row offsets; + the a1 rows of g2, our deviation)."""
    shift = 0 if direction == "forward" else D
    g1 = [model.get_layer("g1").forward_layer.cell, model.get_layer("g1").backward_layer.cell]
    g2 = [model.get_layer("g2").forward_layer.cell, model.get_layer("g2").backward_layer.cell]
    if name == "g0":   # g0 -> both directions of g1
        return [(c.kernel, shift) for c in g1]
    if name == "g1":   # g1 -> start logits, g2's rows for g1, a1 (ours) and g1 * a1 (G is 8d)
        return ([(model.get_layer("start_dense").kernel, shift)]
                + [(c.kernel, block * D + shift) for c in g2 for block in (8, 10, 12)])
    return [(model.get_layer("end_dense").kernel, shift)]   # g2 -> end logits


def test_discovery_finds_the_six_families_and_the_exact_penalty():
    model = tiny(training=True, sparsity=iss_keras.sparsity.ISS(0.7))
    randomize(model, seed=1)
    groups = iss_keras.couple(model)
    assert [f.name for f in groups] == FAMILIES        # no family for the contextual BiLSTM
    expected = 0.0
    for family in groups:
        name, direction = family.name.split("/")
        consumers = _consumers(model, name, direction)
        rows = sorted((v.path, offset) for v, offset in consumers)
        found = sorted((fp.variable, int(i)) for fp in family.outgoing if fp.role == "outgoing"
                       for i in fp.indices(family.size)[0])
        assert found == rows, family.name
        expected += reference_penalty(_cell(model, name, direction), consumers, 0.7)
    got = sum(value(loss) for loss in model.losses)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_g2_reads_each_g1_unit_at_three_offsets_of_one_footprint():
    groups = iss_keras.discover_groups(tiny())
    g2_rows = [fp for fp in groups["g1/backward"].footprints
               if fp.variable == "g2/forward_g2/lstm_cell/kernel"]
    assert len(g2_rows) == 1 and g2_rows[0].start == 8 * D + D
    assert g2_rows[0].offsets == (0, 2 * D, 4 * D)


# ------------------------------------------------------------------ shrink

@pytest.mark.parametrize("seed", [0, 1])
def test_shrink_removes_random_units_of_every_family_exactly(seed):
    model = tiny(probabilities=True)
    randomize(model, seed=seed)
    groups = iss_keras.discover_groups(model)
    removed = zero_random_units(model, groups, seed, at_least=1)
    small, plan = iss_keras.shrink(model)
    assert plan.removed == removed
    units = lstm_units(small)
    for family in groups:
        assert units[family.name] == plan.new_sizes[family.name] < D + 1
    assert_shrunk_outputs_equal(model, small, plan, seed + 10)
    assert non_embedding_weights(small) < non_embedding_weights(model)



def test_the_task_records_what_the_model_reports_of_the_sparse_and_the_shrunk_model(hand_task):
    model = tiny(probabilities=True)
    randomize(model, seed=3)
    zero_random_units(model, iss_keras.discover_groups(model), 3, at_least=1)
    small, _ = iss_keras.shrink(model)
    assert "lstm_units" not in hand_task.result_fields(model, small)   # no model_fields given
    hand_task.model_fields = model_fields
    fields = hand_task.result_fields(model, small)
    assert fields["lstm_units"] == lstm_units(model) != fields["lstm_units_after"]
    assert fields["lstm_units_after"] == lstm_units(small)
    assert fields["non_embedding_weights_after"] == non_embedding_weights(small)
    assert fields["non_embedding_weights"] == non_embedding_weights(model)

def test_the_originals_g1_group_without_the_a1_rows_is_not_removable():
    """groups_hidden100.json leaves g2's a1 rows out of g1's groups: zeroing only those
    groups leaves g1's units feeding g2 through a1, and removing them changes the output."""
    model = tiny(probabilities=True)
    randomize(model, seed=3)
    groups = iss_keras.discover_groups(model)
    family = groups["g1/forward"]
    zero_outgoing(model, family, [0])
    a1_rows = [fp for fp in family.outgoing if fp.variable.startswith("g2/")]
    w = {v.path: v for v in model.weights}
    for fp in a1_rows:                       # put the a1 rows (offset 2d) back
        kernel = value(w[fp.variable]).astype("float32")
        kernel[fp.start + 2 * D] = np.random.default_rng(0).normal(size=kernel.shape[1])
        w[fp.variable].assign(kernel)
    assert 0 in iss_keras.make_plan(model).kept["g1/forward"]
    kept = {f.name: list(range(f.size)) for f in groups}
    kept["g1/forward"] = [1, 2]            # unit 0 removed as the original's group allows
    plan = iss_keras.ShrinkPlan(groups, kept, {f.name: f.size for f in groups})
    with pytest.raises(iss_keras.ShrinkVerificationError):
        iss_keras.rebuild.verify_equivalence(model, iss_keras.apply_plan(model, plan), plan)


def test_model_round_trips_through_a_keras_file(tmp_path):
    from iss_keras.sparsity import ISS, L1Sparsity, Sparsity, WeightZeroing

    model = tiny(training=True, sparsity=Sparsity([ISS(1e-3), L1Sparsity(1e-4),
                                                   WeightZeroing(4e-4)]))
    randomize(model, seed=4)
    path = str(tmp_path / "bidaf.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    inputs = importlib.import_module("iss_keras.rebuild").probe_inputs(model, seed=2)
    for a, b in zip(run(model, inputs), run(loaded, inputs)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    constraint = loaded.get_layer("g0").forward_layer.cell.bias.constraint
    assert isinstance(constraint, TF1BiasConstraint) and constraint.inner.threshold == 4e-4
    assert loaded.get_layer("contextual").get_config() == model.get_layer("contextual").get_config()


# ------------------------------------------------------------------ what discovery refuses

def _sequence(width=3):
    return keras.Input((None, width))


def test_attention_of_units_on_one_side_only_is_refused():
    context, question = _sequence(), _sequence()
    h = L.LSTM(3, return_sequences=True, name="context_lstm")(context)
    u = L.LSTM(3, return_sequences=True, name="question_lstm")(question)
    mask = PaddingMask()
    cm, qm = (mask(L.Lambda(lambda x: x[..., 0])(t)) for t in (context, question))
    g = BiAttention(name="attention")([h, u, cm, qm])
    model = keras.Model([context, question], L.Dense(2)(g))
    with pytest.raises(iss_keras.UnsupportedLayerError, match="'attention'.*channel by channel"):
        iss_keras.discover_groups(model)


def test_self_attention_is_traced_and_shrinks_exactly():
    tokens = keras.Input((None,), dtype="int32")
    x = L.Embedding(30, 4)(tokens)
    h = L.LSTM(5, return_sequences=True, name="lstm")(x)
    mask = PaddingMask()(tokens)
    g = BiAttention(name="attention")([h, h, mask, mask])
    model = keras.Model(tokens, L.Dense(3, name="out")(g))
    family = iss_keras.discover_groups(model)["lstm"]
    attention = [fp for fp in family.footprints if fp.variable == "attention/kernel"]
    assert len(attention) == 1 and attention[0].offsets == (0, 5, 10)
    out = [fp for fp in family.footprints if fp.variable == "out/kernel"]
    assert out[0].offsets == (0, 5, 10, 15)
    randomize(model, seed=5)
    removed = zero_random_units(model, iss_keras.discover_groups(model), seed=5, at_least=2)
    small, plan = iss_keras.shrink(model)
    assert plan.removed == removed and small.get_layer("attention").kernel.shape[0] < 15
    assert_shrunk_outputs_equal(model, small, plan, seed=6)


class FirstChannel(keras.layers.Layer):
    """Test-only: `x[..., 0]`, declared channel-wise so that units reach what follows."""

    iss_channelwise = True

    def call(self, x):
        return x[..., 0]


@pytest.mark.parametrize("make, layer", [
    (lambda h, s: L.Multiply(name="product")([h, L.Dense(4)(s)]), "product"),
    (lambda h, s: SoftmaxPooling(name="pool")([FirstChannel()(h), h]), "pool"),
    (lambda h, s: TileOverTime(name="tile")([L.Dense(2)(s)[:, 0], h]), "tile"),
    (lambda h, s: SharedBiLSTM(2, name="shared")(h), "shared"),
])
def test_layers_that_cannot_prove_a_removal_exact_are_refused(make, layer):
    sequence = _sequence()
    h = L.LSTM(4, return_sequences=True, name="lstm")(sequence)
    out = make(h, sequence)
    model = keras.Model(sequence, L.Dense(1)(out))
    with pytest.raises(iss_keras.UnsupportedLayerError, match=f"'{layer}'"):
        iss_keras.discover_groups(model)


def test_products_of_the_same_units_or_a_broadcast_gate_shrink_exactly():
    sequence = _sequence()
    h = L.LSTM(5, return_sequences=True, name="lstm")(sequence)
    gate = L.Dense(1, activation="sigmoid")(sequence)
    x = L.Concatenate()([L.Multiply()([h, h]), L.Multiply()([h, gate]), h])
    model = keras.Model(sequence, L.Dense(2, name="out")(x))
    family = iss_keras.discover_groups(model)["lstm"]
    assert [fp.offsets for fp in family.footprints if fp.variable == "out/kernel"] == [(0, 5, 10)]
    randomize(model, seed=7)
    removed = zero_random_units(model, iss_keras.discover_groups(model), seed=7, at_least=2)
    small, plan = iss_keras.shrink(model)
    assert plan.removed == removed
    assert_shrunk_outputs_equal(model, small, plan, seed=8)


# ------------------------------------------------------------------ the task: batches, decoding

ARTICLES = [{"title": "Hand", "paragraphs": [
    {"context": "The cat sat on the mat in Paris.",
     "qas": [{"id": "q1", "question": "Where did the cat sit?",
              "answers": [{"text": "on the mat", "answer_start": 12}]},
             {"id": "q2", "question": "Which city?",
              "answers": [{"text": "Paris", "answer_start": 26},
                          {"text": "in Paris", "answer_start": 23}]}]},
    {"context": "Denver Broncos won Super Bowl 50",
     "qas": [{"id": "q3", "question": "Who won?",
              "answers": [{"text": "Denver Broncos", "answer_start": 0}]},
             {"id": "q4", "question": "Which game?",
              "answers": [{"text": "Super Bowl 50", "answer_start": 19}]}]}]}]


@pytest.fixture
def hand_task():
    examples = squad.examples_from_articles(ARTICLES)
    data = {"split": "dev_articles", "train": examples, "eval": examples,
            "eval_dataset": {"version": "1.1", "data": ARTICLES}}
    vocabulary = squad.build_vocabulary(examples, ["the", "cat", "paris"], word_count_th=0,
                                        char_count_th=0)
    config = qa.QuestionAnsweringConfig(batch_size=3, eval_batch_size=3, context_buckets=(4, 8),
                                        steps_per_epoch=0, len_opt=False, cluster=False)
    return qa.QuestionAnsweringTask(lambda **kwargs: None, data, vocabulary, None, config)


class _FixedScores:
    """Stands in for a model: start/end probabilities chosen by hand, per question id."""

    def __init__(self, task, spans):
        self.rows = []
        for batch in squad.squad_batches(task.eval_encoded, 3, (4, 8), max_context_len=None,
                                         max_question_len=None):
            self.rows.append([task.eval_examples[k]["id"] for k in batch["indices"]])
        self.spans = spans
        self.calls = 0

    def predict_on_batch(self, x):
        ids = self.rows[self.calls]
        self.calls += 1
        steps = x["context_words"].shape[1]
        p1, p2 = np.full((len(ids), steps), 0.01), np.full((len(ids), steps), 0.01)
        for row, qid in enumerate(ids):
            start, end, trap = self.spans[qid]
            p1[row, start], p2[row, end] = 0.5, 0.4
            if trap is not None:   # a high score where no answer may be: padding or j < i
                p1[row, trap[0]], p2[row, trap[1]] = 0.9, 0.9
        return p1, p2


def test_span_decoding_and_official_scores_through_the_task(hand_task):
    spans = {"q1": (3, 5, None),            # "on the mat"
             "q2": (7, 7, (7, 6)),          # end before start is not a span: "Paris"
             "q3": (0, 1, None),            # "Denver Broncos"
             "q4": (3, 5, (6, 7))}          # the last token ends a span ("... 50"); 6, 7: padding
    predictions = hand_task.predict(_FixedScores(hand_task, spans))
    assert predictions == {"q1": "on the mat", "q2": "Paris", "q3": "Denver Broncos",
                           "q4": "Super Bowl 50"}
    assert hand_task.score(predictions) == (100.0, 100.0)
    predictions["q1"] = "the mat"           # normalised: "mat" vs "on mat"
    em, f1 = hand_task.score(predictions)
    assert em == 75.0 and f1 == pytest.approx(100 * (3 + 2 * 0.5 * 1 / 1.5) / 4)


def test_training_batches_are_full_weighted_and_the_same_when_resumed(hand_task):
    batches = qa.SquadTrainingBatches(hand_task.train_encoded, 3, (4, 8), 8, 30,
                                      steps_per_epoch=3, seed=2)
    x, y, w = batches[0]
    assert x["context_words"].shape[0] == 3 and x["question_chars"].shape == (3, 30, 16)
    assert batches.batches_per_pass == 2 and x["context_words"].shape[1] == 8
    seen = [batches[i] for i in range(3)]
    batches.epoch = 1
    later = batches[0]
    again = qa.SquadTrainingBatches(hand_task.train_encoded, 3, (4, 8), 8, 30,
                                    steps_per_epoch=3, seed=2)
    again.epoch = 1
    for a, b in zip(keras.tree.flatten(later), keras.tree.flatten(again[0])):
        np.testing.assert_array_equal(a, b)
    weights = np.concatenate([batch[2] for batch in seen])
    assert set(np.unique(weights)) <= {0.0, 1.0}
    for batch in seen:   # padding rows: no word, weight 0
        empty = ~batch[0]["context_words"].any(axis=1)
        np.testing.assert_array_equal(batch[2] == 0, empty)


def test_padding_rows_weigh_nothing_and_the_loss_is_the_mean_over_the_batch():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]))
    target = np.array([0, 1, 2])
    weights = np.array([1.0, 1.0, 0.0], "float32")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    got = float(value(loss(target, logits.astype("float32"), sample_weight=weights)))
    assert got == pytest.approx((-np.log(0.5) - np.log(0.8)) / 3, rel=1e-5)  # model.py:388


def test_the_first_two_batches_differ_in_length_when_they_can():
    # Keras's TensorFlow adapter fixes the input signature from batches 0 and 1.
    plan = [(8, [0]), (8, [1]), (8, [2]), (4, [3])]
    assert [n for n, _ in qa._differing_first_two(plan)] == [8, 4, 8, 8]
    assert qa._differing_first_two([(8, [0]), (8, [1])]) == [(8, [0]), (8, [1])]
    # Context and question lengths: the second batch differs in both where both vary.
    plan = [((8, 5), [0]), ((4, 5), [1]), ((8, 6), [2]), ((6, 3), [3])]
    assert [shape for shape, _ in qa._differing_first_two(plan)][:2] == [(8, 5), (6, 3)]


def test_len_opt_and_cluster_are_the_originals_batches(hand_task):
    """--cluster (read_data.py:86-91): one shuffle, a stable sort by context length, batches
    cut from it, the same batches every pass in a new order; --len_opt (model.py:473-488):
    each batch padded to its own longest context and question."""
    encoded = hand_task.train_encoded
    lengths = [len(e["context_words"]) for e in encoded]
    groups = squad.cluster_groups(encoded, 2, seed=4)
    assert sorted(sum(groups, [])) == list(range(len(encoded)))
    flat = [lengths[k] for k in sum(groups, [])]
    assert flat == sorted(flat)
    batches = qa.SquadTrainingBatches(encoded, 2, max_question_len=30, steps_per_epoch=0,
                                      seed=4, len_opt=True, cluster=True)
    assert batches.batches_per_pass == len(groups) == 2
    first = [sorted(indices) for _, indices in batches.plan(0)]
    later = [sorted(indices) for _, indices in batches.plan(7)]
    assert sorted(first) == sorted(later) == sorted(sorted(g) for g in groups)
    for i in range(2):
        x, _, w = batches[i]
        (context_len, question_len), indices = batches.plan(0)[i]
        assert x["context_words"].shape[1] == context_len == max(lengths[k] for k in indices)
        assert x["question_words"].shape[1] == question_len == max(
            len(encoded[k]["question_words"]) for k in indices)
        assert (x["context_words"][:, -1] != 0).any() and (x["question_words"][:, -1] != 0).any()


def test_evaluation_under_len_opt_pads_each_batch_to_its_longest(hand_task):
    hand_task.config.len_opt = True
    batches = list(hand_task.eval_batches())
    seen = sorted(k for b in batches for k in b["indices"])
    assert seen == list(range(len(hand_task.eval_encoded)))
    for b in batches:
        longest = max(len(hand_task.eval_encoded[k]["context_words"]) for k in b["indices"])
        assert b["context_words"].shape[1] == longest
        assert b["question_words"].shape[1] == max(
            len(hand_task.eval_encoded[k]["question_words"]) for k in b["indices"])


@pytest.mark.parametrize("rate,gaps,training", [(0.0, False, True), (0.3, False, True),
                                                (0.3, True, True), (0.0, False, False)])
def test_the_fused_bilstm_step_equals_the_stock_layers_in_outputs_and_gradients(rate, gaps,
                                                                                training):
    """BiDAF's fast step (`fused_bidirectional_lstm`: one time loop for both directions, the
    input projection before it; with right padding no mask in the loop and the gradient
    written out) computes what Keras's two LSTM loops compute: outputs and the gradients of
    every weight and of the input, with padding masks and each direction's own dropout mask.
    A mask with a gap inside a row (Keras carries the state over it), and inference, take
    the masked loop."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 9, 5)).astype("float32"))
    gap = [1, 1, 0, 1, 1, 0, 0, 0, 0] if gaps else [1] * 2 + [0] * 7
    mask = tf.constant(np.array([[1] * 9, [1] * 5 + [0] * 4, gap], bool))

    def make(fused):
        keras.utils.set_random_seed(1)
        forward = keras.layers.LSTM(4, return_sequences=True, unit_forget_bias=True)
        backward = keras.layers.LSTM(4, return_sequences=True, go_backwards=True)
        layer = DropoutBidirectional(forward, backward_layer=backward, input_dropout=rate,
                                     seed=5, fused=fused)
        layer.build(x.shape)
        return layer

    fused, stock = make(True), make(False)
    stock.set_weights([w + 0 for w in fused.get_weights()])
    results = []
    for layer in (fused, stock):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, mask=mask, training=training)
            loss = tf.reduce_sum(y * tf.range(1.0, 1.0 + y.shape[-1]))
        results.append([y] + tape.gradient(loss, [x] + layer.trainable_variables))
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(results[0][0])[1, 5:] == 0)  # padding: zero outputs, both directions
    assert fused.get_config()["fused"] and not stock.get_config()["fused"]
