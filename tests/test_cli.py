"""The trainers' shared flags: one source of truth with TrainConfig."""

import dataclasses

from absl import flags

from iss_keras import cli, training


def test_flag_defaults_are_train_config_defaults():
    cli.define_flags()
    FLAGS = flags.FLAGS
    FLAGS(["trainer"])
    try:
        config = cli.config_from_flags()
    finally:
        FLAGS.unparse_flags()
    defaults = training.TrainConfig()
    for field in dataclasses.fields(training.TrainConfig):
        if field.name == "eval_batch_size":  # the original validates at the training batch size
            assert config.eval_batch_size == config.batch_size
            continue
        assert getattr(config, field.name) == getattr(defaults, field.name), field.name


def test_importing_the_cli_registers_no_flag():
    import subprocess
    import sys

    code = ("from absl import flags; import iss_keras.cli as cli; "
            "assert 'data_dir' not in flags.FLAGS; cli.define_flags(); cli.define_flags(); "
            "assert 'data_dir' in flags.FLAGS; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
