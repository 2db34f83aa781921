"""The trainers' flags are generated from the option dataclasses: one source of truth."""

import dataclasses

import pytest
from absl import flags

from iss_keras.options import define_flags, option, read_flags
from iss_keras.tasks.language_model import LanguageModelConfig
from iss_keras.training.trainer import shared_option_classes

from helpers import run_python


def test_every_option_is_a_flag_with_the_same_default():
    values = flags.FlagValues()
    classes = shared_option_classes() + (LanguageModelConfig,)
    define_flags(*classes, flag_values=values)
    values(["trainer"])
    for cls in classes:
        assert read_flags(cls, flag_values=values) == cls(), cls.__name__
        for field in dataclasses.fields(cls):
            assert values[field.name].help.endswith(field.metadata["help"]), field.name
    assert values["proximal"].help.startswith("[ours, not in the paper]")


def test_flags_parse_into_validated_options():
    @dataclasses.dataclass
    class Sizes:
        sizes: tuple = option((4, 5), "Units per layer.")
        names: tuple = option((), "Names.", choices=("a", "b"), element=str)

        def __post_init__(self):
            if min(self.sizes) < 1:
                raise ValueError(f"sizes must be positive. Received: {list(self.sizes)}")

    values = flags.FlagValues()
    define_flags(Sizes, flag_values=values)
    values(["trainer", "--sizes=7,8,9", "--names=b"])
    assert read_flags(Sizes, flag_values=values) == Sizes(sizes=(7, 8, 9), names=("b",))
    for bad, message in (("--sizes=7,x", "takes integers"), ("--sizes=0", "positive"),
                         ("--names=c", "takes a, b")):
        values.unparse_flags()
        values(["trainer", bad])
        with pytest.raises(ValueError, match=message):
            read_flags(Sizes, flag_values=values)


def test_importing_the_library_registers_no_flag():
    code = ("from absl import flags; import iss_keras.training.trainer as t; "
            "import iss_keras.tasks, iss_keras.sparsity; "
            "assert 'workdir' not in flags.FLAGS; t.define_trainer_flags(); "
            "assert 'workdir' in flags.FLAGS; print('ok')")
    out = run_python(code)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_flag_name_two_options_share_is_refused():
    @dataclasses.dataclass
    class First:
        seed: int = option(0, "A seed.")

    @dataclasses.dataclass
    class Second:
        seed: int = option(1, "Another seed.")

    values = flags.FlagValues()
    with pytest.raises(ValueError, match="'seed' of Second is already a flag \\(from First\\)"):
        define_flags(First, Second, flag_values=values)
    with pytest.raises(ValueError, match="'seed' of First is already a flag"):
        define_flags(First, flag_values=values)  # defined by an earlier call

