"""What a structure is: serializable groups of weight slices.

An ISS *component* is every weight that exists only because one hidden unit
exists. A layer with `size` hidden units has `size` components, all of the same
shape, so groups are stored per layer as a `UnitFamily`: a list of
`Footprint`s, each one saying "component j owns these whole hyperplanes of this
variable". This is the same information as the original repository's JSON
group files, written compactly and with the indices computed on demand.

Example: for a Keras LSTM with H units the input kernel footprint is
`Footprint("lstm/lstm_cell/kernel", axis=1, start=0, offsets=(0, H, 2H, 3H))`:
component j owns columns j, H+j, 2H+j and 3H+j.
"""

import json

import numpy as np
from keras import ops


class Footprint:
    """The hyperplanes of one variable owned by each component of a family.

    Component `j` owns the indices `start + j * step + o` for every `o` in
    `offsets`, along `axis` (all other axes are taken whole).

    Args:
        variable: the variable's `path` in the model (e.g.
            `"lstm/lstm_cell/kernel"`).
        axis: the axis the indices run along.
        start: the index owned by component 0 at offset 0.
        offsets: one entry per gate (or tied copy) of the unit.
        step: distance between consecutive components (1 for contiguous).
        penalized: whether the group Lasso norm includes this slice. Biases
            are removed with their unit but not penalized.
        role: a free-text tag for reports (`"incoming"`, `"recurrent"`,
            `"outgoing"`, `"bias"`).
    """

    def __init__(self, variable, axis, start=0, offsets=(0,), step=1,
                 penalized=True, role="outgoing"):
        if not isinstance(variable, str) or not variable:
            raise ValueError(
                f"Footprint needs a variable path. Received: variable={variable!r}")
        if int(axis) < 0:
            raise ValueError(f"Footprint axis must be >= 0. Received: axis={axis}")
        if int(step) < 1:
            raise ValueError(f"Footprint step must be >= 1. Received: step={step}")
        self.variable = variable
        self.axis = int(axis)
        self.start = int(start)
        self.offsets = tuple(int(o) for o in offsets)
        self.step = int(step)
        self.penalized = bool(penalized)
        self.role = str(role)

    def indices(self, size):
        """Integer array (size, len(offsets)): row j holds component j's indices."""
        j = np.arange(size, dtype=np.int64)[:, None]
        return self.start + j * self.step + np.asarray(self.offsets, np.int64)[None, :]

    def key(self):
        return (self.variable, self.axis, self.start, self.offsets, self.step)

    def get_config(self):
        return {"variable": self.variable, "axis": self.axis, "start": self.start,
                "offsets": list(self.offsets), "step": self.step,
                "penalized": self.penalized, "role": self.role}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, Footprint) and self.get_config() == other.get_config()

    def __repr__(self):
        return (f"Footprint({self.variable!r}, axis={self.axis}, start={self.start}, "
                f"offsets={list(self.offsets)}, step={self.step}, "
                f"penalized={self.penalized}, role={self.role!r})")


class UnitFamily:
    """The `size` components of one recurrent layer (one direction).

    Args:
        name: the layer (or layer direction) the units belong to.
        size: number of hidden units, i.e. number of components.
        footprints: list of `Footprint`.
        removal_blockers: reasons no unit of this family may be removed (for
            example, its hidden state is a model output). Empty if none.
        resized_tensors: model inputs/outputs whose last axis holds these units
            and is resized with them: dicts `{"kind": "input"|"output",
            "index": i, "start": offset}`.
    """

    def __init__(self, name, size, footprints, removal_blockers=(), resized_tensors=()):
        if int(size) < 1:
            raise ValueError(f"UnitFamily size must be >= 1. Received: size={size}")
        self.name = name
        self.size = int(size)
        self.footprints = list(footprints)
        self.removal_blockers = list(removal_blockers)
        self.resized_tensors = [dict(t) for t in resized_tensors]

    @property
    def penalized(self):
        return [f for f in self.footprints if f.penalized]

    @property
    def outgoing(self):
        """Footprints whose zeros make a unit removable (what the unit feeds)."""
        return [f for f in self.footprints if f.role in ("recurrent", "outgoing")]

    def get_config(self):
        return {"name": self.name, "size": self.size,
                "footprints": [f.get_config() for f in self.footprints],
                "removal_blockers": list(self.removal_blockers),
                "resized_tensors": [dict(t) for t in self.resized_tensors]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["footprints"] = [Footprint.from_config(f) for f in config["footprints"]]
        return cls(**config)

    def __repr__(self):
        return f"UnitFamily({self.name!r}, size={self.size}, {len(self.footprints)} footprints)"


class GroupSet:
    """All unit families of a model; serializable to JSON."""

    def __init__(self, families):
        self.families = list(families)
        names = [f.name for f in self.families]
        if len(set(names)) != len(names):
            raise ValueError(f"GroupSet family names must be unique. Received: {names}")

    def __iter__(self):
        return iter(self.families)

    def __len__(self):
        return len(self.families)

    def __getitem__(self, name):
        for family in self.families:
            if family.name == name:
                return family
        raise KeyError(f"No unit family named {name!r}; have {[f.name for f in self.families]}")

    def get_config(self):
        return {"families": [f.get_config() for f in self.families]}

    @classmethod
    def from_config(cls, config):
        return cls([UnitFamily.from_config(f) for f in config["families"]])

    def to_json(self, **kwargs):
        return json.dumps(self.get_config(), **kwargs)

    @classmethod
    def from_json(cls, text):
        return cls.from_config(json.loads(text))


def variables_by_path(model):
    """Map `variable.path` to the variable, for every weight of `model`."""
    return {v.path: v for v in model.weights}


def check_footprints(family, variables):
    """Raise if a footprint names a missing variable or runs past its shape."""
    for fp in family.footprints:
        if fp.variable not in variables:
            raise ValueError(
                f"Unit family {family.name!r} refers to variable {fp.variable!r}, which "
                f"the model does not have. Rebuild the groups from this model "
                f"(iss_keras.couple / discover_groups) instead of reusing old ones.")
        shape = tuple(variables[fp.variable].shape)
        if fp.axis >= len(shape):
            raise ValueError(f"{fp!r} names axis {fp.axis} of a variable of shape {shape}.")
        idx = fp.indices(family.size)
        if idx.min() < 0 or idx.max() >= shape[fp.axis]:
            raise ValueError(
                f"{fp!r} with {family.size} units needs indices "
                f"{idx.min()}..{idx.max()} but axis {fp.axis} of {fp.variable!r} has "
                f"length {shape[fp.axis]}.")


def _hyperplane_sums(value, axis):
    """Sum of `value` over all axes except `axis` (a vector along `axis`)."""
    other = tuple(a for a in range(len(value.shape)) if a != axis)
    return ops.sum(value, axis=other) if other else value


def group_sq_norms(family, variables, footprints=None):
    """Squared L2 norm of each component, each weight counted once.

    Works on any backend with `keras.ops`, so it can sit inside a loss.

    Args:
        family: a `UnitFamily`.
        variables: dict path -> variable (or tensor).
        footprints: which footprints to include (default: the penalized ones).

    Returns:
        A tensor of shape `(family.size,)`.
    """
    footprints = family.penalized if footprints is None else footprints
    total = None
    squares = {}
    for fp in footprints:
        if fp.variable not in squares:
            w = variables[fp.variable]
            squares[fp.variable] = ops.square(ops.convert_to_tensor(w))
        sums = _hyperplane_sums(squares[fp.variable], fp.axis)
        part = ops.sum(ops.take(sums, fp.indices(family.size), axis=0), axis=1)
        total = part if total is None else total + part
    # A weight in two footprints of the same 2-D variable (e.g. the recurrent
    # kernel's row j and its gate columns j) was added twice: subtract it once.
    for path, r, c in crossings(family, footprints):
        sq = squares[path]
        if len(sq.shape) != 2:
            raise ValueError(
                f"Overlapping footprints are supported on 2-D variables only; "
                f"{path!r} has shape {tuple(sq.shape)}.")
        flat_idx = r * int(sq.shape[1]) + c
        overlap = ops.take(ops.reshape(sq, (-1,)), flat_idx.reshape(family.size, -1), axis=0)
        total = total - ops.sum(overlap, axis=1)
    return ops.maximum(total, 0.0)


def crossings(family, footprints):
    """Where two footprints of one 2-D variable cross (a row footprint and a column one).

    Yields `(variable path, rows, cols)`: index arrays of shapes
    `(size, n_rows, 1)` and `(size, 1, n_cols)`, so `w[rows, cols]` is each
    component's block of weights that both footprints hold.
    """
    for a_pos, fa in enumerate(footprints):
        for fb in footprints[a_pos + 1:]:
            if fa.variable != fb.variable:
                continue
            if fa.axis == fb.axis:
                raise ValueError(
                    f"Two footprints of family {family.name!r} index the same axis of "
                    f"{fa.variable!r}: {fa!r} and {fb!r}. Merge them into one.")
            rows, cols = (fa, fb) if fa.axis == 0 else (fb, fa)
            yield (fa.variable, rows.indices(family.size)[:, :, None],
                   cols.indices(family.size)[:, None, :])


def group_lasso(family, variables, epsilon=1e-8):
    """`sum_j sqrt(||component j||^2 + epsilon)` for one family."""
    return ops.sum(ops.sqrt(group_sq_norms(family, variables) + epsilon))


def outgoing_zero_mask(family, variables):
    """NumPy bool array: True where every outgoing weight of the unit is exactly 0."""
    if family.removal_blockers:
        return np.zeros(family.size, dtype=bool)
    nonzero = np.zeros(family.size, dtype=bool)
    for fp in family.outgoing:
        w = np.abs(np.asarray(ops.convert_to_numpy(variables[fp.variable])))
        other = tuple(a for a in range(w.ndim) if a != fp.axis)
        plane = w.max(axis=other) if other else w
        nonzero |= (plane[fp.indices(family.size)] > 0).any(axis=1)
    return ~nonzero


def all_zero_mask(family, variables):
    """NumPy bool array: True where every penalized weight of the unit is exactly 0.

    The original repository's count of removed units (ptb_word_lm.py:196-203,
    `match_map == 6`): the unit's recurrent row, its row in the consumer and
    all four gate columns are zero. `outgoing_zero_mask` is ours: a unit whose
    outgoing weights are zero is already exactly removable, whatever its gate
    columns hold, so our count is never smaller.
    """
    norms = np.asarray(ops.convert_to_numpy(group_sq_norms(family, variables)))
    return norms == 0.0
