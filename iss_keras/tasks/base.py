"""What a task is to the training loop: data, model shapes, evaluation.

`iss_keras.training.train_and_evaluate(task, sparsity, config, workdir)`
knows nothing of language models or question answering; it asks the task:

* `build(mode, sparsity=None, batch_split=1)`: a model for `mode`
  (`"train"`: with the sparsity methods' regularizers and constraints and
  dropout on; `"eval"`: the validation copy; `"test"`: the copy the final
  test and the rebuild run on; `"serve"`: the shape that is exported and
  timed). All four share layer names, so weights move between them with
  `set_weights`: `copy_for(mode, model)` returns the `mode` model holding
  `model`'s weights (built afresh each call, or once per mode and refilled
  where `reuse_copies` is True, as the language-model and QA tasks do; the
  finish step's test and serve copies come from it too). `batch_split`: the training model sees 1/batch_split of each
  global batch (one copy per replica under tf.distribute); only a model with
  a fixed batch size (a carried state) needs to know.
* `loss()`, `metrics()`: for `compile`.
* `fit_data()`: keyword arguments for `model.fit`: arrays (`x`, `y`,
  `batch_size`, `shuffle`), or a `keras.utils.PyDataset` as `x` (e.g. batches
  in length buckets), whose length is the steps of an epoch.
* `callbacks()`: what the task needs during `fit` (e.g. reset carried state).
* `evaluate(model)`: validation metrics after each epoch, a dict; `monitor`
  names the one that picks the best epoch, `monitor_mode` `"min"` or `"max"`.
* `epoch_summary(logs, seconds)`: the epoch's training numbers in the task's
  terms (e.g. train perplexity, tokens per second).
* `test(model)`: final test metrics of a `"test"` model (dict); the rebuilt
  model must reproduce them.
* `serving_inputs(model, batch_size)`: one input batch of a `"serve"` model,
  for timing; `serving_output_names(model)`; `tflite_shape`: the static
  shape exported to TFLite (keyword arguments of `export_tflite`).
* `representative_data(model)`: input batches of a `"serve"` model that calibrate a
  full-integer int8 export (`quantize="int8_full"`), or None where the task has none.
* `tflite_test(interpreter, model)`: the test metrics of an exported TFLite model of the
  `"serve"` model `model` (dict), or None where the task has no such test; the finish step
  runs it on every TFLite export when quantized ones are asked for, so that what
  quantization costs is measured, not assumed.
* `plot_metrics`, `plot_log_scale`: which epoch-row keys the progress plot draws.
* `save_assets(directory)`: what serving needs beside the model (e.g. a vocabulary).
* `result_fields(sparse, shrunk)`: what the task adds to results.json, given the
  tested `"test"` model and its rebuilt copy (e.g. weights outside embeddings).
* `train_size()`: terms of the training loss per epoch (examples, or tokens).
* `loss_scale`: the original's training loss / Keras's mean loss (see
  `iss_keras.training.config`).
"""


class Task:
    """Base class with the defaults; see the module docstring for the interface."""

    loss_scale = 1.0
    monitor = None
    monitor_mode = "min"
    tflite_shape = {"batch_size": 1}
    plot_metrics = ()       # history keys drawn per epoch beside the units
    plot_log_scale = False
    reuse_copies = False

    def build(self, mode, sparsity=None, batch_split=1):
        raise NotImplementedError

    def copy_for(self, mode, model):
        """The `mode` model (see `build`) holding `model`'s weights."""
        if not self.reuse_copies:
            copy = self.build(mode)
        else:
            copies = self.__dict__.setdefault("_copies", {})
            if mode not in copies:
                copies[mode] = self.build(mode)
            copy = copies[mode]
        copy.set_weights(model.get_weights())
        return copy

    def loss(self):
        raise NotImplementedError

    def metrics(self):
        return []

    def fit_data(self):
        raise NotImplementedError

    def callbacks(self):
        return []

    def evaluate(self, model):
        return {}

    def epoch_summary(self, logs, seconds):
        return {}

    def test(self, model):
        raise NotImplementedError

    def serving_inputs(self, model, batch_size=1):
        raise NotImplementedError

    def serving_output_names(self, model):
        return None

    def representative_data(self, model):
        return None

    def tflite_test(self, interpreter, model):
        return None

    def save_assets(self, directory):
        return None

    def result_fields(self, sparse, shrunk):
        return {}

    def train_size(self):
        data = self.fit_data()
        return len(data["x"]) if "batch_size" in data else None
