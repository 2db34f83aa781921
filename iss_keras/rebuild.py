"""Rebuild: a sparse model as a smaller dense one (`shrink`), proven equal.

(The module is `rebuild` so that `iss_keras.shrink` is the function only.)

Planning and executing are separate (as in Distiller's thinning):
`make_plan(model)` decides which units each recurrent layer keeps and returns a
serializable `ShrinkPlan`; `apply_plan(model, plan)` builds the smaller model
and copies the sliced weights. `shrink(model)` does both and then checks on
random input that the small model computes what the sparse one computes.

A unit is removed only when every one of its outgoing weights (its row of the
recurrent kernel and its row in every consumer) is exactly zero, so removing it
is exact whatever its own incoming weights and bias are.
"""

import json

import keras
import numpy as np
from keras import ops

from iss_keras.discovery import discover_groups, functional_graph, recurrent_layers_by_family
from iss_keras.files import write_text
from iss_keras.groups import GroupSet, check_footprints, outgoing_zero_mask, variables_by_path
from iss_keras.keras_internals import all_layers, outputs_from_zero_state


class ShrinkVerificationError(AssertionError):
    """The shrunk model does not reproduce the sparse model's outputs."""


class ShrinkPlan:
    """What to keep: for each unit family, the kept unit indices and the new size.

    `new_size` can exceed `len(kept)` when the two directions of a
    `Bidirectional` layer must have equal sizes; the extra units are all-zero
    units that output exactly 0.

    Args:
        groups: the `GroupSet` the plan refers to.
        kept: dict family name -> sorted list of kept unit indices.
        new_sizes: dict family name -> new number of units.
    """

    def __init__(self, groups, kept, new_sizes):
        self.groups = groups
        self.kept = {name: [int(i) for i in idx] for name, idx in kept.items()}
        self.new_sizes = {name: int(n) for name, n in new_sizes.items()}
        for family in groups:
            kept_here = self.kept[family.name]
            if any(not 0 <= i < family.size for i in kept_here) or sorted(set(kept_here)) != kept_here:
                raise ValueError(
                    f"Kept units of {family.name!r} must be sorted, unique indices in "
                    f"[0, {family.size}). Received: {kept_here}")
            if not len(kept_here) <= self.new_sizes[family.name]:
                raise ValueError(
                    f"new size {self.new_sizes[family.name]} of {family.name!r} is smaller "
                    f"than the {len(kept_here)} kept units.")

    @property
    def removed(self):
        return {f.name: sorted(set(range(f.size)) - set(self.kept[f.name])) for f in self.groups}

    def summary(self):
        """dict family name -> (units before, units after)."""
        return {f.name: (f.size, self.new_sizes[f.name]) for f in self.groups}

    def get_config(self):
        return {"groups": self.groups.get_config(), "kept": self.kept, "new_sizes": self.new_sizes}

    @classmethod
    def from_config(cls, config):
        return cls(GroupSet.from_config(config["groups"]), config["kept"], config["new_sizes"])

    def to_json(self, **kwargs):
        return json.dumps(self.get_config(), **kwargs)

    @classmethod
    def from_json(cls, text):
        return cls.from_config(json.loads(text))

    def save(self, path):
        """Write the plan as JSON atomically (temporary file, then rename)."""
        write_text(path, self.to_json(indent=1))

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_json(f.read())

    def __repr__(self):
        sizes = ", ".join(f"{n}: {a}->{b}" for n, (a, b) in self.summary().items())
        return f"ShrinkPlan({sizes})"


def _bidirectional_pairs(groups):
    names = {f.name for f in groups}
    for name in names:
        if name.endswith("/forward") and name[: -len("forward")] + "backward" in names:
            yield name, name[: -len("forward")] + "backward"


def make_plan(model, groups=None):
    """Decide which units to keep: those with any nonzero outgoing weight.

    Args:
        model: the sparse model.
        groups: its `GroupSet` (discovered if not given).

    Returns:
        A `ShrinkPlan`.
    """
    groups = discover_groups(model) if groups is None else groups
    variables = variables_by_path(model)
    kept, sizes = {}, {}
    for family in groups:
        check_footprints(family, variables)
        removable = outgoing_zero_mask(family, variables)
        kept[family.name] = np.nonzero(~removable)[0].tolist()
        # Keras layers need at least one unit; an all-zero unit outputs 0.
        sizes[family.name] = max(1, len(kept[family.name]))
    for forward, backward in _bidirectional_pairs(groups):
        sizes[forward] = sizes[backward] = max(sizes[forward], sizes[backward])
    return ShrinkPlan(groups, kept, sizes)


def index_maps(plan, shapes):
    """For each (variable path, axis), the old index feeding each new position.

    -1 marks a padding position that is filled with zeros.
    """
    owners = {}
    for family in plan.groups:
        kept = set(plan.kept[family.name])
        pad = plan.new_sizes[family.name] - len(kept)
        for fp in family.footprints:
            length = shapes[fp.variable][fp.axis]
            owner = owners.setdefault((fp.variable, fp.axis), [None] * length)
            for unit, row in enumerate(fp.indices(family.size)):
                for index in row:
                    if owner[index] is not None and owner[index][0] != family.name:
                        raise ValueError(
                            f"Index {index} along axis {fp.axis} of {fp.variable!r} belongs to "
                            f"units of both {owner[index][0]!r} and {family.name!r} (a layer "
                            "shared between two recurrent layers); it cannot be shrunk.")
                    owner[index] = (family.name, unit, unit in kept,
                                    pad if unit == family.size - 1 else 0)
    maps = {}
    for key, owner in owners.items():
        order = []
        for index, who in enumerate(owner):
            if who is None:
                order.append(index)
                continue
            _, _, is_kept, pad = who
            if is_kept:
                order.append(index)
            order.extend([-1] * pad)
        maps[key] = np.asarray(order, dtype=np.int64)
    return maps


def remap(value, axis_maps):
    """Apply {axis: index map} to a NumPy array (-1 positions become 0)."""
    out = np.asarray(value)
    for axis, order in axis_maps.items():
        out = np.take(out, np.maximum(order, 0), axis=axis)
        if (order < 0).any():
            moved = np.moveaxis(out, axis, 0).copy()
            moved[order < 0] = 0
            out = np.moveaxis(moved, 0, axis)
    return out


def _without_build_configs(config):
    if isinstance(config, dict):
        return {k: _without_build_configs(v) for k, v in config.items() if k != "build_config"}
    if isinstance(config, list):
        return [_without_build_configs(v) for v in config]
    return config


def _set_units(rnn_config, units):
    # keras.layers.RNN(cell) keeps the size in its cell's config.
    cell = rnn_config.get("cell")
    target = cell["config"] if isinstance(cell, dict) else rnn_config
    target["units"] = units


def _embedding_widths(model, maps):
    """layer id -> new output_dim, for embeddings whose columns belong to units (tied)."""
    widths = {}
    for layer in functional_graph(model).operations:
        if isinstance(layer, keras.layers.Embedding):
            order = maps.get((layer.embeddings.path, 1))
            if order is not None:
                widths[id(layer)] = len(order)
    return widths


def _clone_with_sizes(model, plan, maps):
    widths = _embedding_widths(model, maps)
    new_units = {}
    for name, where in recurrent_layers_by_family(model).items():
        layer, key = where.layer, where.config_key
        if name not in plan.new_sizes:
            raise ValueError(f"The plan has no entry for recurrent layer {name!r}; make the "
                             "plan from this model.")
        new_units.setdefault(id(layer), {})[key] = plan.new_sizes[name]

    def clone_layer(layer):
        # Wrapped layers carry their old input shape in "build_config"; drop it
        # so they are built for the (possibly smaller) input they now receive.
        config = _without_build_configs(layer.get_config())
        if id(layer) in widths:
            config["output_dim"] = widths[id(layer)]
        sizes = new_units.get(id(layer))
        if sizes is None:
            return layer.__class__.from_config(config)
        if isinstance(layer, keras.layers.Bidirectional):
            _set_units(config["layer"]["config"], sizes["layer"])
            backward = config.get("backward_layer")
            if backward is None:
                raise ValueError(f"Cannot read the backward layer of {layer.name!r}.")
            _set_units(backward["config"], sizes["backward_layer"])
        else:
            _set_units(config, sizes[None])
        return layer.__class__.from_config(config)

    if isinstance(model, keras.Sequential):
        return keras.models.clone_model(model, clone_function=clone_layer)
    resized_inputs = {}
    for family in plan.groups:
        for t in family.resized_tensors:
            if t["kind"] == "input":
                resized_inputs[t["index"]] = plan.new_sizes[family.name]
    inputs = []
    for index, tensor in enumerate(model.inputs):
        shape = list(tensor.shape)
        if index in resized_inputs:
            shape[-1] = resized_inputs[index]
        inputs.append(keras.Input(batch_shape=tuple(shape), dtype=tensor.dtype,
                                  name=getattr(tensor, "name", None)))
    inputs = keras.tree.pack_sequence_as(model.input, inputs)
    return keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)


def _tensor_maps(plan, model):
    """Index maps for resized model inputs and outputs: {("input"|"output", i): order}."""
    out = {}
    for family in plan.groups:
        for t in family.resized_tensors:
            key = (t["kind"], t["index"])
            tensors = model.inputs if t["kind"] == "input" else model.outputs
            width = int(tensors[t["index"]].shape[-1])
            order = out.get(key, np.arange(width))
            kept = plan.kept[family.name]
            pad = plan.new_sizes[family.name] - len(kept)
            block = np.arange(t["start"], t["start"] + family.size)
            head = order[order < t["start"]] if order.size else order
            tail = order[order >= t["start"] + family.size]
            new_block = np.concatenate([block[kept], -np.ones(pad, np.int64)])
            out[key] = np.concatenate([head, new_block, tail]).astype(np.int64)
    return out


def _pair_variables(model, new_model):
    """Map each variable path of `model` to the matching variable of its clone.

    Paths depend on how layers were built (a clone's wrapped layers get other
    paths), so variables are paired layer by layer, by layer name and order.
    """
    new_layers = {layer.name: layer for layer in new_model.layers}
    pairs = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        twin = new_layers.get(layer.name)
        if twin is None or len(twin.weights) != len(layer.weights):
            raise ValueError(f"Layer {layer.name!r} has no matching layer in the rebuilt model.")
        for old, new in zip(layer.weights, twin.weights):
            pairs[old.path] = new
    missing = set(variables_by_path(model)) - set(pairs)
    if missing:
        raise ValueError(f"Variables {sorted(missing)} have no match in the rebuilt model.")
    return pairs


def apply_plan(model, plan):
    """Build the shrunk model described by `plan` and copy the sliced weights.

    Args:
        model: the sparse model the plan was made from.
        plan: a `ShrinkPlan`.

    Returns:
        A new, dense `keras.Model` (no verification; see `shrink`).
    """
    old_vars = variables_by_path(model)
    for family in plan.groups:
        check_footprints(family, old_vars)
    shapes = {p: tuple(v.shape) for p, v in old_vars.items()}
    maps = index_maps(plan, shapes)
    new_model = _clone_with_sizes(model, plan, maps)
    new_vars = _pair_variables(model, new_model)
    per_variable = {}
    for (path, axis), order in maps.items():
        per_variable.setdefault(path, {})[axis] = order
    for path, old in old_vars.items():
        value = remap(ops.convert_to_numpy(old), per_variable.get(path, {}))
        target = new_vars[path]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"Sliced {path!r} has shape {value.shape} but the rebuilt layer expects "
                f"{tuple(target.shape)}; the plan does not describe this model.")
        target.assign(value)
    return new_model


def _vocabulary_bound(model):
    sizes = [l.input_dim for l in all_layers(model) if isinstance(l, keras.layers.Embedding)]
    return min(sizes) if sizes else 2


def probe_inputs(model, batch=3, steps=7, seed=0):
    """Random inputs that fit `model` (integers below the smallest vocabulary)."""
    rng = np.random.default_rng(seed)
    values = []
    for tensor in model.inputs:
        shape = [d if d is not None else (batch if i == 0 else steps)
                 for i, d in enumerate(tensor.shape)]
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "int" in dtype:
            values.append(rng.integers(0, _vocabulary_bound(model), size=shape).astype(dtype))
        else:
            values.append(rng.normal(size=shape).astype(dtype))
    return values


def output_difference(expected, got):
    """`(absolute, relative)`: the largest |expected - got| of one output, and the same
    divided by `max(1, max|expected|)`, the measure every verification here compares with
    its tolerance (shrink, gate compression, export). Both 0 for an empty output."""
    if not expected.size:
        return 0.0, 0.0
    absolute = float(np.abs(expected.astype(np.float64) - got).max())
    return absolute, absolute / max(1.0, float(np.abs(expected).max()))


def verify_equivalence(model, shrunk, plan, tolerance=1e-5, trials=2, seed=0):
    """Check that `shrunk` reproduces `model` on random inputs.

    Resized inputs (initial states) and outputs (returned states) are compared
    on the kept units. Returns the largest relative difference seen.

    Raises:
        ShrinkVerificationError: if any output differs by more than
            `tolerance * max(1, max|output|)`.
    """
    maps = _tensor_maps(plan, model)
    worst = 0.0
    for trial in range(trials):
        inputs = probe_inputs(model, seed=seed + trial)
        small_inputs = [remap(x, {x.ndim - 1: maps[("input", i)]}) if ("input", i) in maps else x
                        for i, x in enumerate(inputs)]
        expected = outputs_from_zero_state(model, inputs)
        got = outputs_from_zero_state(shrunk, small_inputs)
        for i, (e, g) in enumerate(zip(expected, got)):
            if ("output", i) in maps:
                e = remap(e, {e.ndim - 1: maps[("output", i)]})
            if e.shape != g.shape:
                raise ShrinkVerificationError(
                    f"Output {i} of the shrunk model has shape {g.shape}, expected {e.shape}.")
            _, diff = output_difference(e, g)
            worst = max(worst, diff)
            if not diff <= tolerance:
                raise ShrinkVerificationError(
                    f"Output {i} of the shrunk model differs from the sparse model's by "
                    f"{diff:.3g} (relative), above tolerance {tolerance}. The plan removed "
                    "units that still carry signal; this is a bug: please report it.")
    return worst


def shrink(model, groups=None, verify=True, tolerance=1e-5):
    """Return a smaller dense model without the removable units, and its plan.

    Args:
        model: a trained, sparse Sequential or Functional model.
        groups: its `GroupSet` (discovered if not given).
        verify: compare outputs of the two models on random input (default).
        tolerance: largest allowed relative output difference.

    Returns:
        `(shrunk_model, plan)`.

    Raises:
        UnsupportedLayerError: a layer around the recurrent layers cannot be
            shrunk.
        ShrinkVerificationError: the shrunk model's outputs differ.

    Example:

    >>> small, plan = iss_keras.shrink(model)
    >>> plan.summary()
    {'lstm': (650, 212), 'lstm_1': (650, 180)}
    """
    plan = make_plan(model, groups)
    shrunk = apply_plan(model, plan)
    if verify:
        verify_equivalence(model, shrunk, plan, tolerance=tolerance)
    return shrunk, plan
