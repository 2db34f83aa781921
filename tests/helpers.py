"""Independent NumPy references and model builders shared by the tests."""

import importlib
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
from keras import ops

import iss_keras
from iss_keras.keras_internals import reset_states


def value(v):
    return np.asarray(ops.convert_to_numpy(v), dtype=np.float64)


def component_elements(cell, k, consumers):
    """Set of (variable path, index tuple) owned by unit k, built element by element.

    `consumers` lists (variable, row offset) pairs of the unit's consumers.
    """
    units = cell.units
    gates = cell.kernel.shape[1] // units
    elements = set()
    for g in range(gates):
        col = g * units + k
        for r in range(cell.kernel.shape[0]):
            elements.add((cell.kernel.path, (r, col)))
        for r in range(units):
            elements.add((cell.recurrent_kernel.path, (r, col)))
    for c in range(cell.recurrent_kernel.shape[1]):
        elements.add((cell.recurrent_kernel.path, (k, c)))
    for var, offset in consumers:
        for c in range(var.shape[1]):
            elements.add((var.path, (offset + k, c)))
    return elements


def reference_penalty(cell, consumers, strength):
    """strength * sum_k sqrt(sum of w^2 over component k + 1e-8), by enumeration."""
    values = {}
    total = 0.0
    for k in range(cell.units):
        sq = 0.0
        for path, index in component_elements(cell, k, consumers):
            if path not in values:
                values[path] = value(_var_by_path(cell, consumers, path))
            sq += values[path][index] ** 2
        total += np.sqrt(sq + 1e-8)
    return strength * total


def _var_by_path(cell, consumers, path):
    for v in [cell.kernel, cell.recurrent_kernel] + [c for c, _ in consumers]:
        if v.path == path:
            return v
    raise KeyError(path)


def randomize(model, seed=0, scale=0.5):
    """Give every weight (biases included) random nonzero values."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.trainable:
            v.assign(rng.normal(scale=scale, size=v.shape).astype(v.dtype))


def zero_outgoing(model, family, units):
    """Zero the outgoing weights (recurrent row, consumer rows) of `units` of a family."""
    variables = iss_keras.groups.variables_by_path(model)
    for fp in family.outgoing:
        w = value(variables[fp.variable]).astype(np.float32)
        index = fp.indices(family.size)[list(units)].reshape(-1)
        w = np.moveaxis(w, fp.axis, 0)
        w[index] = 0.0
        variables[fp.variable].assign(np.moveaxis(w, 0, fp.axis))


def zero_random_units(model, groups, seed, at_least=0):
    """Zero the outgoing weights of a random subset (never all) of each family's units."""
    rng = np.random.default_rng(seed)
    removed = {}
    for family in groups:
        n = int(rng.integers(at_least, family.size))
        removed[family.name] = sorted(rng.choice(family.size, size=n, replace=False).tolist())
        zero_outgoing(model, family, removed[family.name])
    return removed


def run(model, inputs):
    out = model(inputs, training=False)
    return [value(o) for o in keras.tree.flatten(out)]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, env=None, timeout=300):
    """`python -c code` in a fresh process (imports as a user's script would); the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=timeout)


def run_script(script, *flags, backend="tensorflow", devices=0, timeout=600):
    """Run a repository script (e.g. "ptb/train.py") as a user would; returns the CompletedProcess.

    `devices=2` splits the CPU into two virtual devices (ISS_KERAS_CPU_DEVICES), for
    --distribution=data_parallel.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    env.pop("ISS_KERAS_CPU_DEVICES", None)
    if devices:
        env["ISS_KERAS_CPU_DEVICES"] = str(devices)
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *flags], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def read_trainer_options(script, *argv):
    """Parse `argv` as the trainer `script`'s command line and read its options in this process,
    as its `main` does before it loads any data (`trainer.run_trainer`: every option dataclass,
    then the sparsity methods they ask for); returns {dataclass: value}.

    The script is executed with its flags (and the defaults it sets) on a fresh `FlagValues`,
    so that several trainers can be read in one test process. Raises the ValueError whose
    message the trainer prints; one subprocess per trainer (its tests) shows that the message
    reaches the user.
    """
    from unittest import mock

    from absl import flags

    from iss_keras import sparsity as sparsity_lib
    from iss_keras.options import define_flags, read_flags
    from iss_keras.training import TrainConfig
    from iss_keras.training import trainer as trainer_lib

    values = flags.FlagValues()
    own = []

    def define_trainer_flags(*own_options):
        own.extend(own_options)
        define_flags(*trainer_lib.shared_option_classes(), *own_options, flag_values=values)

    spec = importlib.util.spec_from_file_location(
        "trainer_" + script.replace("/", "_").replace(".", "_"), os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    with mock.patch.object(trainer_lib, "define_trainer_flags", define_trainer_flags), \
            mock.patch.object(flags, "FLAGS", values):
        spec.loader.exec_module(module)
    assert own, f"{script} did not call define_trainer_flags"
    try:
        values([script, *argv])
    except flags.Error as e:  # a value absl's parser refuses: `app.run` prints this message
        raise ValueError(str(e)) from e
    options = {cls: read_flags(cls, flag_values=values)
               for cls in trainer_lib.shared_option_classes() + tuple(own)}
    config = options[TrainConfig]
    sparsity_lib.from_options([options[cls] for cls in sparsity_lib.option_classes()],
                              sparsity_lib.OptionContext(epochs=config.epochs, seed=config.seed))
    return options


def assert_shrunk_outputs_equal(model, small, plan, seed):
    """Independent check that `small` computes what `model` does (resized states remapped)."""
    shrinking = importlib.import_module("iss_keras.rebuild")
    inputs = shrinking.probe_inputs(model, seed=seed)
    maps = shrinking._tensor_maps(plan, model)
    small_inputs = [shrinking.remap(x, {x.ndim - 1: maps[("input", i)]}) if ("input", i) in maps
                    else x for i, x in enumerate(inputs)]
    for m in (model, small):
        reset_states(m)
    expected = run(model, inputs if len(inputs) > 1 else inputs[0])
    got = run(small, small_inputs if len(inputs) > 1 else small_inputs[0])
    for i, (e, g) in enumerate(zip(expected, got)):
        if ("output", i) in maps:
            e = shrinking.remap(e, {e.ndim - 1: maps[("output", i)]})
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def tiny_classification_run(workdir, epochs, options, seed=5):
    """A `Run` of a tiny LSTM classifier on the UCI Yelp sentences with the sparsity the
    method options ask for (e.g. `[SETOptions(set_density=0.2)]`)."""
    from conftest import shared_file
    from iss_keras import sparsity as sparsity_lib
    from iss_keras.datasets.sentiment import load_uci
    from iss_keras.models.text_classifier import lstm_classifier
    from iss_keras.tasks.classification import ClassificationConfig, TextClassificationTask
    from iss_keras.training import Run, TrainConfig

    data = load_uci(shared_file("sentiment", "uci_labelled_sentences"), "yelp")
    config = ClassificationConfig(dataset="uci_yelp", max_words=500, max_length=20, batch_size=50)

    def build(*, vocab_size, num_classes, max_length, batch_size, training, sparsity):
        return lstm_classifier(vocab_size, num_classes, embedding_size=8, units=6,
                               max_length=max_length, sparsity=sparsity, seed=1)

    method = sparsity_lib.from_options(options, sparsity_lib.OptionContext(seed=seed))
    return Run(TextClassificationTask(build, data, config), method,
               TrainConfig(epochs=epochs, optimizer="adam", learning_rate=0.01, max_grad_norm=0,
                           lr_schedule="constant", seed=1), str(workdir), verbose=0)
