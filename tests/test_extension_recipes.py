"""docs/architecture.md's two recipes, followed as a reader would: a new method and a new task.

A ~30-line toy method (an L2 penalty on the recurrent kernels that also counts the steps it saw)
and a toy task (label a random token sequence by its first token), registered and trained one
epoch through `train_and_evaluate`, then rebuilt, verified and written to results.json.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from iss_keras.options import check_at_least, option
from iss_keras.sparsity import Sparsity, WeightZeroing, from_options
from iss_keras.sparsity import base as sparsity_base
from iss_keras.tasks.base import Task
from iss_keras.training import TrainConfig, train_and_evaluate


# ---- the method: Options, from_options, what it adds to a layer, callbacks, state --------------
@dataclasses.dataclass
class RecurrentL2Options:
    recurrent_l2: float = option(0.0, "L2 strength on the recurrent kernels.")

    def __post_init__(self):
        check_at_least(self, 0, "recurrent_l2")


class RecurrentL2(sparsity_base.SparsityMethod):
    name = "recurrent_l2"
    Options = RecurrentL2Options

    def __init__(self, strength):
        self.strength, self.steps = strength, 0

    @classmethod
    def from_options(cls, options, context, chosen=()):
        return cls(options.recurrent_l2 / context.loss_scale) if options.recurrent_l2 else None

    def regularizer(self, slot):
        return keras.regularizers.L2(self.strength) if slot == "recurrent_kernel" else None

    def callbacks(self, run):
        method = self

        class CountSteps(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                method.steps += 1

        return [CountSteps()]

    def get_state(self):
        return {"steps": self.steps}

    def set_state(self, state):
        self.steps = int(state.get("steps", 0))

    def get_config(self):
        return {"strength": self.strength}


# ---- the task: build per mode, loss, data, evaluation, test, serving ----------------------------
class FirstTokenTask(Task):
    monitor = "valid_accuracy"
    monitor_mode = "max"
    plot_metrics = ("valid_accuracy",)
    tflite_shape = {"batch_size": 1}

    def __init__(self, vocab=12, length=6, units=5, examples=256, seed=0):
        rng = np.random.default_rng(seed)
        self.vocab, self.length, self.units = vocab, length, units
        self.x = rng.integers(1, vocab, size=(examples, length)).astype("int32")
        self.y = (self.x[:, 0] > vocab // 2).astype("int32")

    def build(self, mode, sparsity=None, batch_split=1):
        sparsity = sparsity_base.as_sparsity(sparsity)
        tokens = keras.Input((self.length,), dtype="int32", name="tokens")
        x = keras.layers.Embedding(self.vocab, 4, name="embedding")(tokens)
        x = sparsity.layer(keras.layers.LSTM, self.units, name="lstm",
                           recurrent_regularizer=sparsity.regularizer("recurrent_kernel"),
                           kernel_constraint=sparsity.constraint("kernel"))(x)
        return keras.Model(tokens, keras.layers.Dense(2, name="classifier")(x), name=f"toy_{mode}")

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self):
        return ["accuracy"]

    def fit_data(self):
        return {"x": self.x, "y": self.y, "batch_size": 32, "shuffle": True}

    def _accuracy(self, model):
        logits = model.predict(self.x, batch_size=64, verbose=0)
        return float(np.mean(np.argmax(logits, -1) == self.y))

    def evaluate(self, model):
        return {"valid_accuracy": self._accuracy(model)}

    def test(self, model):
        return {"test_accuracy": self._accuracy(model)}

    def serving_inputs(self, model, batch_size=1):
        return [self.x[:batch_size]]


@pytest.fixture
def private_registry(monkeypatch):
    """The toy method joins a copy of the registry (the package's own stays as it is)."""
    monkeypatch.setattr(sparsity_base, "_REGISTRY", dict(sparsity_base._REGISTRY))
    return sparsity_base


def test_a_new_method_and_a_new_task_train_through_the_library(tmp_path, private_registry):
    private_registry.register(RecurrentL2)
    assert private_registry.method_class("recurrent_l2") is RecurrentL2
    sparsity = from_options([RecurrentL2Options(recurrent_l2=0.01)])
    assert [m.name for m in sparsity.methods][-1] == "recurrent_l2"  # registered last, built last

    task, toy = FirstTokenTask(), RecurrentL2(0.01)
    config = TrainConfig(epochs=1, optimizer="adam", learning_rate=0.01, lr_schedule="constant",
                         max_grad_norm=0.0)
    results = train_and_evaluate(task, Sparsity([toy, WeightZeroing(1e-4)]), config,
                                 str(tmp_path), verbose=0, export=False, measure_speed=False)

    saved = json.load(open(os.path.join(tmp_path, "results.json")))
    assert saved["epochs"] == 1 and saved["hidden_before"] == [task.units]
    assert saved["test_accuracy_sparse"] == saved["test_accuracy_shrunk"] == \
        results["test_accuracy_sparse"]
    # What the method added reached the layer, its callback ran every step, and its state went
    # into the checkpoint; its config went into results.json and rebuilds it.
    assert toy.steps == 256 // 32
    with np.load(os.path.join(tmp_path, "checkpoint.npz")) as data:
        meta = json.loads(bytes(data["meta"]).decode())
    assert meta["sparsity_state"] == {"recurrent_l2": {"steps": 8}}
    config = saved["run"]["config"]["sparsity"]
    assert config["methods"][0] == {"name": "recurrent_l2", "config": {"strength": 0.01}}
    rebuilt = Sparsity.from_config(config).methods[0]
    assert isinstance(rebuilt, RecurrentL2) and rebuilt.strength == 0.01
    model = task.build("train", Sparsity([toy]))
    assert isinstance(model.get_layer("lstm").cell.recurrent_regularizer, keras.regularizers.L2)


def test_a_method_without_its_contract_is_refused_at_registration(private_registry):
    class NoOptions(sparsity_base.SparsityMethod):
        name = "no_options"

    with pytest.raises(TypeError, match="NoOptions.*Options dataclass"):
        private_registry.register(NoOptions)

    class NoFromOptions(sparsity_base.SparsityMethod):
        name = "no_from_options"
        Options = RecurrentL2Options

    with pytest.raises(TypeError, match="NoFromOptions.*from_options"):
        private_registry.register(NoFromOptions)
