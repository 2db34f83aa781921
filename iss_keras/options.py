"""Options as dataclasses: one source of truth for defaults, help and flags.

Every group of hyperparameters (training, a task's data layout, a sparsity
method, a model) is a dataclass whose fields are declared with `option()`:
the default, the help text, and whether the option is ours rather than the
paper's. The absl trainers generate their flags from these dataclasses
(`define_flags`) and read them back (`read_flags`), so a flag cannot drift
from the library's default. Importing this module registers no flag.

Example:

>>> @dataclasses.dataclass
... class Schedule:
...     epochs: int = option(13, "Total epochs.")
...     decay: float = option(0.5, "Learning-rate decay factor.")
>>> define_flags(Schedule)          # --epochs, --decay
>>> read_flags(Schedule)            # Schedule(epochs=..., decay=...) from the parsed flags
"""

import dataclasses

from absl import flags

OURS = "[ours, not in the paper] "


def option(default, help, choices=None, ours=False, element=None):
    """A dataclass field with its help text (and allowed values) for the flags.

    Args:
        default: the default value (tuples for lists).
        help: one or two sentences for `--help`.
        choices: allowed values of a string option (an enum flag), or of each
            element of a list option.
        ours: the option is this package's addition, not the paper's; its help
            starts with "[ours, not in the paper]".
        element: the element type of a tuple option (default: the type of the
            default's first element, else str).
    """
    if element is None and isinstance(default, tuple):
        element = type(default[0]) if default else str
    metadata = {"help": (OURS if ours else "") + help, "choices": choices, "element": element}
    return dataclasses.field(default=default, metadata=metadata)


def _flag_kind(field):
    kinds = {bool: "bool", int: "integer", float: "float", str: "string", tuple: "list"}
    kind = kinds.get(field.type)
    if kind is None:
        raise TypeError(f"Option {field.name!r} has type {field.type!r}; options are bool, int, "
                        "float, str or tuple.")
    if kind == "string" and field.metadata.get("choices") is not None:
        return "enum"
    return kind


def define_flags(*classes, flag_values=None, module_name=None):
    """Register one absl flag per field of each dataclass.

    Flags share one namespace: a field name that is already a flag (defined by
    another dataclass, or by an earlier call) raises ValueError naming both, so
    two options never silently become one flag.

    Args:
        classes: option dataclasses.
        flag_values: absl `FlagValues` (default: the global `FLAGS`).
        module_name: the module the flags belong to for `--help` and
            `get_key_flags_for_module` (default: the caller's, as absl decides).

    Returns the names defined now.
    """
    values = flags.FLAGS if flag_values is None else flag_values
    defined, owners = [], {}
    for cls in classes:
        for field in dataclasses.fields(cls):
            if field.name in values:
                before = owners.get(field.name, "an earlier definition")
                raise ValueError(f"Option {field.name!r} of {cls.__name__} is already a flag "
                                 f"(from {before}); flags share one namespace, so rename one "
                                 "of the two fields.")
            owners[field.name] = cls.__name__
            kind = _flag_kind(field)
            help_text = field.metadata.get("help", "")
            default = field.default
            where = {"flag_values": values}
            if module_name is not None:
                where["module_name"] = module_name
            if kind == "enum":
                flags.DEFINE_enum(field.name, default, field.metadata["choices"], help_text,
                                  **where)
            elif kind == "list":
                flags.DEFINE_list(field.name, [str(v) for v in default], help_text, **where)
            else:
                getattr(flags, f"DEFINE_{kind}")(field.name, default, help_text, **where)
            defined.append(field.name)
    return defined


def read_flags(cls, flag_values=None):
    """An instance of dataclass `cls` from the parsed flags of the same names.

    List flags come back as tuples of the element type of the default (ints
    for a default of ints, else strings). Validation is the dataclass's own
    (`__post_init__`), so bad values raise ValueError naming the option.
    """
    values = flags.FLAGS if flag_values is None else flag_values
    kwargs = {}
    for field in dataclasses.fields(cls):
        value = values[field.name].value
        if _flag_kind(field) == "list":
            value = _list_value(field, value or [])
        kwargs[field.name] = value
    return cls(**kwargs)


def _list_value(field, items):
    element = field.metadata.get("element") or str
    if element is int:
        try:
            return tuple(int(v) for v in items)
        except ValueError:
            raise ValueError(f"--{field.name} takes integers separated by commas. "
                             f"Received: {','.join(items)}") from None
    choices = field.metadata.get("choices")
    bad = sorted(set(items) - set(choices)) if choices is not None else []
    if bad:
        raise ValueError(f"--{field.name} takes {', '.join(choices)}. Received: {bad}")
    return tuple(str(v) for v in items)


def as_dict(*instances):
    """The fields of several option dataclasses as one JSON-ready dict."""
    out = {}
    for instance in instances:
        for key, value in dataclasses.asdict(instance).items():
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def check_at_least(instance, minimum, *names):
    """Raise ValueError unless every named field of `instance` is finite and >= `minimum`."""
    for name in names:
        value = getattr(instance, name)
        if not (minimum <= value < float("inf")):
            raise ValueError(f"{name} must be >= {minimum}. Received: {name}={value}")


def check_fraction(instance, *names, low_open=False, high_open=True):
    """Raise ValueError unless every named field of `instance` is a fraction in range.

    The range is [0, 1) by default (a rate that may be 0, never 1);
    `low_open=True` excludes 0, `high_open=False` includes 1. The message
    quotes the field and its value.
    """
    for name in names:
        check_fraction_value(name, getattr(instance, name), low_open=low_open, high_open=high_open)


def check_fraction_value(name, value, low_open=False, high_open=True):
    """`check_fraction` for a plain value: ValueError quoting `name=value` when out of range."""
    too_low = value <= 0.0 if low_open else value < 0.0
    too_high = value >= 1.0 if high_open else value > 1.0
    if too_low or too_high or value != value:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}. Received: {name}={value}")


def check_choices(instance, *names):
    """Raise ValueError unless every named field of `instance` is one of its `choices` (a
    list field: each of its elements), what the flag parser checks, for options built in
    code."""
    fields = {field.name: field for field in dataclasses.fields(instance)}
    for name in names:
        allowed, value = tuple(fields[name].metadata["choices"]), getattr(instance, name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(v not in allowed for v in values):
            raise ValueError(f"{name} must be one of {allowed}. Received: {name}={value!r}")


def check_positive(instance, *names):
    """Raise ValueError unless every named field of `instance` is finite and > 0."""
    for name in names:
        value = getattr(instance, name)
        if not (0 < value < float("inf")):
            raise ValueError(f"{name} must be > 0. Received: {name}={value}")
