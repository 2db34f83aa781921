"""One short epoch on 1 device and on 2 data-parallel replicas; prints how far apart they end.

Run as a script in a fresh process (the devices are set up before the backend
starts): `ISS_KERAS_CPU_DEVICES=2 KERAS_BACKEND=jax python tests/distributed_step.py
<variant>[,<variant>...] <workdir>`. Prints one JSON line per variant: the largest weight
difference, both validation perplexities and the replicas used. See tests/test_distribution.py.
"""

import json
import os
import sys

from iss_keras.startup import start_backend_quietly

start_backend_quietly()  # sets up the virtual devices before the backend starts

import numpy as np  # noqa: E402

from conftest import ptb_ids
from iss_keras import sparsity as sparsity_lib
from iss_keras.models.lstm_lm import lstm_language_model
from iss_keras.sparsity.elementwise import L1Options
from iss_keras.sparsity.iss import ISSOptions
from iss_keras.tasks.language_model import LanguageModelConfig, LanguageModelTask
from iss_keras.training import Run, TrainConfig
from iss_keras.training.distribution import placement

VARIANTS = {
    # Subgradient ISS + L1 + per-weight zeroing + component threshold + freezing: the
    # components fall under the threshold one after another during the epoch.
    "threshold": [ISSOptions(iss_strength=0.005, component_threshold=0.39, freeze=True),
                  L1Options(l1_strength=1e-4)],
    # Proximal ISS (the enforcer scales whole components after each step) + freezing:
    # the first layer's units reach zero, the second layer's stay.
    "proximal": [ISSOptions(iss_strength=0.0055, proximal=True, freeze=True)],
}


def build(*, batch_size, steps, stateful, streaming, training, sparsity):
    return lstm_language_model(100, [12, 10], batch_size=batch_size, steps=steps,
                               stateful=stateful, streaming=streaming, sparsity=sparsity, seed=2)


def train(variant, workdir, where):
    data = {"train": ptb_ids("train", 100)[:2400], "valid": ptb_ids("valid", 100)[:800],
            "test": ptb_ids("test", 100)[:400]}
    task = LanguageModelTask(build, data, LanguageModelConfig(steps=5, batch_size=8))
    sparsity = sparsity_lib.from_options(VARIANTS[variant],
                                         sparsity_lib.OptionContext(loss_scale=5, epochs=1))
    # A clip norm small enough to act on every step: it must see the global gradient.
    config = TrainConfig(epochs=1, learning_rate=1.0, max_grad_norm=0.05, seed=3)
    run = Run(task, sparsity, config, workdir, verbose=0, placement=where)
    model = run.train()
    return [np.asarray(w) for w in model.get_weights()], run.history[-1]


def main(variants, workdir):
    for variant in variants.split(","):
        one, one_row = train(variant, os.path.join(workdir, variant, "one"), placement("none"))
        two_place = placement("data_parallel", 2)
        two, two_row = train(variant, os.path.join(workdir, variant, "two"), two_place)
        print(json.dumps({
            "variant": variant,
            "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(one, two)),
            "valid_one": one_row["valid_perplexity"], "valid_two": two_row["valid_perplexity"],
            "units_one": one_row["active_units"], "units_two": two_row["active_units"],
            "replicas": two_place.replicas, "engine": two_place.engine}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
