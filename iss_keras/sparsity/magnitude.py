"""Gradual magnitude pruning (Zhu & Gupta 2017) with TF-MOT's semantics, on every Keras 3 backend.

TF-MOT's `tfmot.sparsity.keras` (`prune_low_magnitude`, `PolynomialDecay`,
`ConstantSparsity`, `UpdatePruningStep`, `strip_pruning`) runs on `tf_keras`
only. This module is the same method as a `SparsityMethod` on stock Keras 3
layers, written from TF-MOT's documented semantics (docs/methods.md, "From
TF-MOT to Keras 3"):

* **Schedules** (`PolynomialDecay`, `ConstantSparsity`): the masks are
  recomputed at the training steps `s` (counted from 1, one per batch) with
  `begin_step <= s` and (`s <= end_step` or `end_step == -1`) and
  `(s - begin_step) % frequency == 0`; PolynomialDecay's sparsity is
  `final + (initial - final) * (1 - p) ** power`, `p = clip((s - begin) /
  (end - begin), 0, 1)`.
* **Masks**: per pruned variable, keep the `k = max(round(size * (1 - s)), 1)`
  largest magnitudes and every weight tied with the k-th (`|w| >= threshold`).
  With `block_size` (2-D weights only) the magnitudes are first pooled over
  `block_size` blocks (mean by default, or max; partial blocks at the edges
  pool their own elements) and whole blocks are kept or pruned.
* **Which weights**: TF-MOT's choice (a layer's kernel weights, never biases:
  Dense/EinsumDense `kernel`, Embedding `embeddings`, convolution `kernel`,
  separable `pointwise_kernel`, the LSTM/GRU/SimpleRNN cells' `kernel` and
  `recurrent_kernel`, and a custom layer's `get_prunable_weights()`), or a
  filter: a callable on each trainable variable, or names (layer names or
  variable paths).
* **Masks hold**: a mask is a `MaskConstraint` (`sparsity.masks`, shared with
  SET), applied by the optimizer after every step inside the compiled train
  step, so a pruned weight is exactly zero after every step and never comes
  back (a new mask is also ANDed with the old one). Under TensorFlow and torch
  the step reads the masks from variables (a new mask needs no rebuild); under
  JAX they are constants of the trace and the step is rebuilt when they change.

And ours (not TF-MOT's): **unit-level** pruning (`granularity="unit"`). Each
ISS component (the groups `discover_groups` finds) is ranked by the L2 norm
of its whole footprint, and the smallest are zeroed on the same schedule and
with the same keep rule, per recurrent layer: a fraction of its units, or a
number of units to keep (`units`). The default compression (`shrink`) then
removes them exactly: the no-group-Lasso baseline for ISS.

The schedule's step and the masks are the method's checkpoint state (a
resumed run continues the schedule at the same step); the masks also travel
with the layers' configs in `.keras` files. `finalize` is TF-MOT's
`strip_pruning`: a copy of the model without the mask constraints, zeros
baked in.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from iss_keras.discovery import discover_groups
from iss_keras.gates import cell_kind
from iss_keras.groups import group_sq_norms, variables_by_path
from iss_keras.keras_internals import all_layers
from iss_keras.options import check_at_least, check_fraction_value, option
from iss_keras.sparsity.base import SparsityMethod
from iss_keras.sparsity.components import component_multipliers
from iss_keras.sparsity.evolutionary import storage_sizes
from iss_keras.sparsity.masks import (MaskConstraint, apply_masks, attach_mask, pack_mask,
                                      rebuild_after_new_masks, unpack_mask)


# ---- schedules ---------------------------------------------------------------------------------

class PruningSchedule:
    """When masks are recomputed and at which sparsity (TF-MOT's `PruningSchedule`).

    Subclasses define `sparsity(step)`, `final` and `with_final(sparsity)`.
    """

    allows_endless = True

    def __init__(self, begin_step, end_step, frequency):
        for name, value in (("begin_step", begin_step), ("end_step", end_step),
                            ("frequency", frequency)):
            if isinstance(value, bool) or int(value) != value:
                raise ValueError(f"{name} must be an integer. Received: {name}={value!r}")
        self.begin_step, self.end_step, self.frequency = int(begin_step), int(end_step), int(frequency)
        if self.begin_step < 0:
            raise ValueError(f"begin_step must be >= 0. Received: begin_step={begin_step}")
        if self.end_step == -1 and not self.allows_endless:
            raise ValueError(f"{type(self).__name__} needs an end_step (-1, prune forever, is "
                             f"only for ConstantSparsity). Received: end_step={end_step}")
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(f"end_step must be -1 or >= begin_step ({self.begin_step}). "
                             f"Received: end_step={end_step}")
        if self.frequency <= 0:
            raise ValueError(f"frequency must be > 0. Received: frequency={frequency}")

    def should_prune(self, step):
        """Whether the masks are recomputed at training step `step` (counted from 1)."""
        in_range = step >= self.begin_step and (self.end_step < 0 or step <= self.end_step)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def reached(self, step):
        """Whether the final sparsity is in force at `step` (always False for an endless one)."""
        return self.end_step >= 0 and step >= self.end_step

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()


def _check_sparsity(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in [0, 1). Received: {name}={value!r}")
    check_fraction_value(name, float(value))
    return float(value)


class PolynomialDecay(PruningSchedule):
    """Sparsity rising from `initial_sparsity` to `final_sparsity` between `begin_step` and
    `end_step`, fast at first (Zhu & Gupta's cubic schedule at `power=3`).

    `sparsity(step) = final + (initial - final) * (1 - p) ** power`,
    `p = min(1, max(0, (step - begin_step) / (end_step - begin_step)))`.
    """

    allows_endless = False

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step, power=3,
                 frequency=100):
        super().__init__(begin_step, end_step, frequency)
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        if not (isinstance(power, (int, float)) and 0 < power < float("inf")):
            raise ValueError(f"power must be a number > 0. Received: power={power!r}")
        self.power = power

    @property
    def final(self):
        return self.final_sparsity

    def sparsity(self, step):
        span = self.end_step - self.begin_step
        p = 1.0 if span == 0 else min(1.0, max(0.0, (step - self.begin_step) / span))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1 - p) ** self.power

    def with_final(self, sparsity):
        return PolynomialDecay(min(self.initial_sparsity, sparsity), sparsity, self.begin_step,
                               self.end_step, self.power, self.frequency)

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step, "power": self.power,
                "frequency": self.frequency}


class ConstantSparsity(PruningSchedule):
    """`target_sparsity` at every pruning step from `begin_step` to `end_step` (-1: to the end)."""

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)

    @property
    def final(self):
        return self.target_sparsity

    def sparsity(self, step):
        return self.target_sparsity

    def reached(self, step):
        return step >= self.begin_step

    def with_final(self, sparsity):
        return ConstantSparsity(sparsity, self.begin_step, self.end_step, self.frequency)

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, "begin_step": self.begin_step,
                "end_step": self.end_step, "frequency": self.frequency}


SCHEDULES = {"polynomial": PolynomialDecay, "constant": ConstantSparsity}


def schedule_config(schedule):
    """`schedule` as JSON: `{"class_name": ..., "config": ...}` (TF-MOT's layout)."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def schedule_from_config(config):
    known = {cls.__name__: cls for cls in SCHEDULES.values()}
    if config.get("class_name") not in known:
        raise ValueError(f"Unknown pruning schedule {config.get('class_name')!r}; known: "
                         f"{sorted(known)}.")
    return known[config["class_name"]].from_config(config["config"])


# ---- masks -------------------------------------------------------------------------------------

def keep_count(size, sparsity):
    """How many of `size` entries a mask keeps at `sparsity`: `max(round(size * (1 - s)), 1)`
    (TF-MOT's k; `round` halves to even, as `tf.math.round`)."""
    return max(int(np.round(size * (1.0 - sparsity))), 1)


def keep_largest(scores, sparsity):
    """Boolean mask keeping the `keep_count` largest `scores` and every score tied with the
    last one kept (TF-MOT's `|w| >= threshold`)."""
    flat = np.asarray(scores, np.float64).reshape(-1)
    k = keep_count(flat.size, sparsity)
    threshold = np.partition(flat, flat.size - k)[flat.size - k]
    return np.asarray(scores) >= threshold


def block_pool(magnitudes, block_size, pooling="avg"):
    """`magnitudes` (2-D) pooled over non-overlapping `block_size` blocks; blocks cut by
    the edges pool the elements they hold."""
    rows, cols = block_size
    height, width = magnitudes.shape
    pad = ((0, -height % rows), (0, -width % cols))
    blocks = np.pad(np.asarray(magnitudes, np.float64), pad, constant_values=np.nan)
    blocks = blocks.reshape(blocks.shape[0] // rows, rows, blocks.shape[1] // cols, cols)
    return (np.nanmax if pooling == "max" else np.nanmean)(blocks, axis=(1, 3))


def magnitude_mask(weights, sparsity, block_size=(1, 1), pooling="avg"):
    """TF-MOT's mask of one weight at `sparsity`: True where a weight is kept.

    Args:
        weights: an array.
        sparsity: fraction to prune, in [0, 1).
        block_size: `(rows, cols)` blocks kept or pruned whole (2-D weights only).
        pooling: how a block's magnitudes are pooled: "avg" (TF-MOT's default) or "max".
    """
    magnitudes = np.abs(np.asarray(weights, np.float64))
    block_size = tuple(int(b) for b in block_size)
    if block_size == (1, 1):
        return keep_largest(magnitudes, sparsity)
    if magnitudes.ndim != 2:
        raise ValueError(f"Block sparsity needs 2-D weights; received a weight of shape "
                         f"{magnitudes.shape} with block_size={block_size}.")
    kept = keep_largest(block_pool(magnitudes, block_size, pooling), sparsity)
    expanded = np.repeat(np.repeat(kept, block_size[0], axis=0), block_size[1], axis=1)
    return expanded[:magnitudes.shape[0], :magnitudes.shape[1]]


# ---- which weights -----------------------------------------------------------------------------

# TF-MOT's registry of what it prunes in Keras's own layers (prune_registry.py): kernels, never
# biases. Keras 3 names: EinsumDense holds MultiHeadAttention's kernels.
PRUNED_ATTRIBUTES = (
    ((keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Conv1D, keras.layers.Conv2D,
      keras.layers.Conv3D, keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
      keras.layers.Conv3DTranspose), ("kernel",)),
    ((keras.layers.SeparableConv1D, keras.layers.SeparableConv2D), ("pointwise_kernel",)),
    ((keras.layers.Embedding,), ("embeddings",)),
)
# A weight attribute -> the attribute of its constraint (what `.keras` saves).
CONSTRAINT_ATTRIBUTES = {"kernel": "kernel_constraint", "recurrent_kernel": "recurrent_constraint",
                         "bias": "bias_constraint", "embeddings": "embeddings_constraint",
                         "pointwise_kernel": "pointwise_constraint",
                         "depthwise_kernel": "depthwise_constraint"}


def prunable_weights(model):
    """The variables TF-MOT prunes in `model`, in layer order (see `PRUNED_ATTRIBUTES`; a
    Keras LSTM/GRU/SimpleRNN cell: `kernel` and `recurrent_kernel`; a custom layer: its
    `get_prunable_weights()`)."""
    found = {}
    for layer in all_layers(model, include_self=False):
        if hasattr(layer, "get_prunable_weights"):
            chosen = list(layer.get_prunable_weights())
        elif cell_kind(layer) is not None:
            chosen = [layer.kernel, layer.recurrent_kernel]
        else:
            names = next((n for types, n in PRUNED_ATTRIBUTES if type(layer) in types), ())
            chosen = [getattr(layer, n) for n in names]
        for variable in chosen:
            found.setdefault(variable.path, variable)
    return list(found.values())


def select_weights(model, which=None):
    """The variables to prune: TF-MOT's choice (`which=None`), those of the trainable
    variables for which the callable `which(variable)` is true, or those named by `which`
    (layer names or variable paths).

    Raises:
        ValueError: the filter selects no variable (the message quotes it).
    """
    if which is None:
        chosen = prunable_weights(model)
    elif callable(which):
        chosen = [v for v in model.trainable_weights if which(v)]
    else:
        names = [which] if isinstance(which, str) else list(which)
        chosen = [v for v in model.trainable_weights
                  if any(v.path == n or v.path.startswith(n.rstrip("/") + "/") for n in names)]
    if not chosen:
        what = "TF-MOT's choice (kernels of Dense, Embedding, convolutions, recurrent cells)" \
            if which is None else f"the filter {which!r}"
        raise ValueError(f"Magnitude pruning: {what} selects no variable of model "
                         f"{model.name!r}. Its trainable variables: "
                         f"{[v.path for v in model.trainable_weights]}")
    return chosen


def constraint_slots(model):
    """variable path -> (layer, constraint attribute), for the weights whose constraint a
    layer keeps in its config (so `.keras` files carry the masks)."""
    slots = {}
    for layer in all_layers(model, include_self=False):
        if hasattr(layer, "cell") or hasattr(layer, "forward_layer"):
            continue  # an RNN wrapper: its cell holds the weights and their constraints
        for weight, constraint in CONSTRAINT_ATTRIBUTES.items():
            variable = getattr(layer, weight, None)
            if isinstance(variable, keras.Variable):
                slots.setdefault(variable.path, (layer, constraint))
    return slots


def strip_pruning(model):
    """TF-MOT's `strip_pruning`: a copy of `model` without `MaskConstraint`s, the masked
    weights exactly zero. A model without masks is returned as it is."""
    masks = {v.path: v.constraint.mask for v in model.weights
             if isinstance(getattr(v, "constraint", None), MaskConstraint)}
    if not masks:
        return model

    def plain(layer):
        return layer.__class__.from_config(_without_masks(layer.get_config()))

    stripped = keras.models.clone_model(model, clone_function=plain)
    values = [np.asarray(ops.convert_to_numpy(v)) * masks[v.path] if v.path in masks
              else ops.convert_to_numpy(v) for v in model.weights]
    stripped.set_weights(values)
    return stripped


def _without_masks(config):
    """A layer config with every serialized `MaskConstraint` replaced by what it wraps."""
    if isinstance(config, dict):
        if config.get("class_name") == "MaskConstraint":
            return config["config"].get("then")
        return {k: _without_masks(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_without_masks(v) for v in config]
    return config


def _sync_state(model):
    """Bring the JAX trainer's step state back into the model's variables (mid-epoch)."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


# ---- the method --------------------------------------------------------------------------------

@dataclasses.dataclass
class MagnitudePruningOptions:
    prune_final_sparsity: float = option(
        0.0, "Gradual magnitude pruning (TF-MOT's prune_low_magnitude; Zhu & Gupta 2017): the "
        "sparsity of each pruned weight at --prune_end_step (at --prune_granularity=unit: the "
        "fraction of each recurrent layer's units). 0 (and no --prune_units): off.")
    prune_initial_sparsity: float = option(
        0.0, "PolynomialDecay's sparsity at --prune_begin_step.")
    prune_begin_step: int = option(0, "Training step (batches, counted from 1) at which the "
                                   "masks are first updated.")
    prune_end_step: int = option(-1, "Training step at which the final sparsity is reached; "
                                 "-1: prune until the end (ConstantSparsity only).")
    prune_frequency: int = option(100, "Update the masks every this many steps.")
    prune_power: float = option(3.0, "PolynomialDecay's exponent.")
    prune_schedule: str = option("polynomial", "PolynomialDecay (initial -> final) or "
                                 "ConstantSparsity (the final sparsity at every update).",
                                 choices=tuple(SCHEDULES))
    prune_block_size: tuple = option((1, 1), "Block sparsity: (rows, cols) blocks pruned "
                                     "whole, 2-D weights only.")
    prune_block_pooling: str = option("avg", "How a block's magnitudes are pooled.",
                                      choices=("avg", "max"))
    prune_weights: tuple = option((), "Prune only these layers or variable paths (as wrapping "
                                  "only these layers in TF-MOT); empty: every kernel TF-MOT "
                                  "prunes.", element=str)
    prune_granularity: str = option(
        "weight", "Prune single weights, or whole hidden units (ISS components ranked by the "
        "norm of their footprint, then removed by shrink).", choices=("weight", "unit"),
        ours=True)
    prune_units: tuple = option((), "Unit-level pruning: the units each recurrent layer keeps "
                                "at the end (instead of --prune_final_sparsity).", ours=True,
                                element=int)

    def __post_init__(self):
        check_fraction_value("prune_final_sparsity", self.prune_final_sparsity)
        check_fraction_value("prune_initial_sparsity", self.prune_initial_sparsity)
        check_at_least(self, 0, "prune_begin_step")
        check_at_least(self, -1, "prune_end_step")
        check_at_least(self, 1, "prune_frequency")
        if not 0 < self.prune_power < float("inf"):
            raise ValueError(f"prune_power must be > 0. Received: prune_power={self.prune_power}")
        if self.prune_units and min(self.prune_units) < 1:
            raise ValueError(f"prune_units must be unit counts >= 1. Received: "
                             f"prune_units={self.prune_units}")
        if self.prune_units and self.prune_granularity != "unit":
            raise ValueError("prune_units needs prune_granularity='unit'. Received: "
                             f"prune_units={self.prune_units}, "
                             f"prune_granularity={self.prune_granularity!r}")
        if self.prune_units and self.prune_final_sparsity:
            raise ValueError("Give prune_units or prune_final_sparsity, not both. Received: "
                             f"prune_units={self.prune_units}, "
                             f"prune_final_sparsity={self.prune_final_sparsity}")


class MagnitudePruning(SparsityMethod):
    """Gradual magnitude pruning on a schedule: single weights (TF-MOT's semantics) or whole
    hidden units (ours).

    Args:
        schedule: a `PolynomialDecay` or `ConstantSparsity`.
        granularity: "weight" or "unit".
        units: unit-level: the units each recurrent layer (family, in `discover_groups`'s
            order, skipping those whose units cannot be removed) keeps at the end; None:
            each layer reaches the schedule's final sparsity in units.
        block_size: `(rows, cols)` block sparsity (weight level).
        block_pooling: "avg" or "max".
        weights: which variables (weight level): None (TF-MOT's choice), a callable on
            a variable, or layer names / variable paths.

    Example:

    >>> pruning = MagnitudePruning(PolynomialDecay(0.0, 0.8, begin_step=0, end_step=2000))
    >>> pruning.bind(model, None)          # masks attached (all ones)
    >>> model.fit(x, y, epochs=4, callbacks=pruning.callbacks(None))
    >>> plain = pruning.finalize(model)    # strip_pruning
    """

    name = "magnitude"
    sparsifies = True
    Options = MagnitudePruningOptions

    def __init__(self, schedule, granularity="weight", units=None, block_size=(1, 1),
                 block_pooling="avg", weights=None):
        if isinstance(schedule, dict):
            schedule = schedule_from_config(schedule)
        if not isinstance(schedule, PruningSchedule):
            raise TypeError(f"schedule must be a PolynomialDecay or ConstantSparsity. "
                            f"Received: schedule={schedule!r}")
        if granularity not in ("weight", "unit"):
            raise ValueError(f"granularity must be 'weight' or 'unit'. Received: "
                             f"granularity={granularity!r}")
        if block_pooling not in ("avg", "max"):
            raise ValueError(f"block_pooling must be 'avg' or 'max'. Received: "
                             f"block_pooling={block_pooling!r}")
        block_size = tuple(block_size)
        if len(block_size) != 2 or any(isinstance(b, bool) or int(b) != b or b < 1
                                       for b in block_size):
            raise ValueError(f"block_size must be two integers >= 1. Received: "
                             f"block_size={block_size!r}")
        if granularity == "unit" and (block_size != (1, 1) or weights is not None):
            raise ValueError("Unit-level pruning takes whole ISS components; block_size and "
                             f"weights are for weight level. Received: block_size={block_size}, "
                             f"weights={weights!r}")
        if units is not None:
            if granularity != "unit":
                raise ValueError(f"units needs granularity='unit'. Received: units={units!r}")
            if any(isinstance(u, bool) or int(u) != u for u in units):
                raise ValueError(f"units must be whole unit counts. Received: units={units!r}")
            units = [int(u) for u in units]
            if not units or min(units) < 1:
                raise ValueError(f"units must be one count >= 1 per recurrent layer. "
                                 f"Received: units={units!r}")
        if isinstance(weights, str):
            weights = [weights]
        if weights is not None and not callable(weights):
            weights = [str(w) for w in weights]
            if not weights:
                raise ValueError("weights (the filter of pruned variables) is empty; give "
                                 "None for TF-MOT's choice. Received: weights=[]")
        self.schedule = schedule
        self.granularity = granularity
        self.units = units
        self.block_size = tuple(int(b) for b in block_size)
        self.block_pooling = block_pooling
        self.weights = weights
        self.step = 0            # training steps done (TF-MOT's pruning_step)
        self.masks = {}          # variable path -> boolean mask
        self.updates = 0         # mask updates done
        self._model = None
        self._families = []      # unit level: (family, schedule) pairs

    @classmethod
    def from_options(cls, options, context, chosen=()):
        if not (options.prune_final_sparsity or options.prune_units):
            return None
        clash = [m.name for m in chosen if m.name == "set"]
        if clash:
            raise ValueError("Magnitude pruning and SET both mask the same weights; use one. "
                             f"Received: prune_final_sparsity={options.prune_final_sparsity} "
                             "with SET on.")
        final = options.prune_final_sparsity
        if options.prune_units:  # each layer's final sparsity comes from its units at bind
            final = options.prune_initial_sparsity
        if options.prune_schedule == "polynomial":
            schedule = PolynomialDecay(options.prune_initial_sparsity, final,
                                       options.prune_begin_step, options.prune_end_step,
                                       options.prune_power, options.prune_frequency)
        else:
            schedule = ConstantSparsity(final, options.prune_begin_step,
                                        options.prune_end_step, options.prune_frequency)
        return cls(schedule, options.prune_granularity, list(options.prune_units) or None,
                   options.prune_block_size, options.prune_block_pooling,
                   list(options.prune_weights) or None)

    @classmethod
    def describe(cls, config):
        if config.get("granularity") == "unit":
            units = config.get("units")
            return (f"unit pruning → {'/'.join(map(str, units))} units" if units else
                    f"unit pruning {100 * schedule_from_config(config['schedule']).final:.0f}%")
        return f"GMP {100 * schedule_from_config(config['schedule']).final:g}%"

    # -- binding ------------------------------------------------------------------------------

    def _pruned_variables(self, model, groups):
        if self.granularity == "weight":
            return select_weights(model, self.weights)
        groups = groups if groups is not None else discover_groups(model)
        families = [f for f in groups if not f.removal_blockers]
        if not families:
            raise ValueError(f"Unit-level pruning found no recurrent layer whose units can be "
                             f"removed in model {model.name!r} (families: "
                             f"{[(f.name, f.removal_blockers) for f in groups]}).")
        if self.units is not None and len(self.units) != len(families):
            raise ValueError(f"units gives {len(self.units)} counts for {len(families)} "
                             f"recurrent layers {[f.name for f in families]}. Received: "
                             f"units={self.units}")
        self._families = []
        for position, family in enumerate(families):
            schedule = self.schedule
            if self.units is not None:
                kept = self.units[position]
                if kept > family.size:
                    raise ValueError(f"units asks {kept} units of {family.name!r}, which has "
                                     f"{family.size}. Received: units={self.units}")
                schedule = schedule.with_final((family.size - kept) / family.size)
            self._families.append((family, schedule))
        variables = variables_by_path(model)
        paths = dict.fromkeys(fp.variable for f, _ in self._families for fp in f.penalized)
        return [variables[p] for p in paths]

    def bind(self, model, groups):
        self._model = model
        slots = constraint_slots(model)
        for variable in self._pruned_variables(model, groups):
            mask = self.masks.get(variable.path)
            if mask is None:
                mask = self.masks[variable.path] = np.ones(tuple(variable.shape), bool)
            attach_mask(variable, mask, slots.get(variable.path))
        self._apply_masks()

    def _apply_masks(self):
        apply_masks(self._model.weights, self.masks)

    # -- the schedule -------------------------------------------------------------------------

    def sparsity(self, step=None):
        """The schedule's sparsity at `step` (default: the current one); at unit level with
        `units`, a dict: each recurrent layer's fraction of units pruned."""
        step = self.step if step is None else step
        if self.units is not None:
            return {family.name: schedule.sparsity(step) for family, schedule in self._families}
        return self.schedule.sparsity(step)

    def new_masks(self):
        """The masks the schedule asks for at the current step, from the current weights
        (ANDed with the old ones: a pruned weight never comes back)."""
        variables = variables_by_path(self._model)
        new = {}
        if self.granularity == "weight":
            sparsity = self.schedule.sparsity(self.step)
            for path in self.masks:
                value = np.asarray(ops.convert_to_numpy(variables[path]))
                new[path] = magnitude_mask(value, sparsity, self.block_size, self.block_pooling)
        else:
            for family, schedule in self._families:
                norms = np.sqrt(np.asarray(ops.convert_to_numpy(
                    group_sq_norms(family, variables)), np.float64))
                kept = keep_largest(norms, schedule.sparsity(self.step))
                shapes = {fp.variable: tuple(variables[fp.variable].shape)
                          for fp in family.penalized}
                for path, mult in component_multipliers(family, kept.astype(float), shapes).items():
                    new[path] = new.get(path, True) & (ops.convert_to_numpy(mult) != 0)
        return {path: self.masks[path] & new.get(path, True) for path in self.masks}

    def update_masks(self):
        """Recompute the masks now (under JAX the train step is rebuilt if they changed)."""
        _sync_state(self._model)
        new = self.new_masks()
        changed = any(not np.array_equal(new[p], self.masks[p]) for p in self.masks)
        self.masks = new
        self.updates += 1
        if changed:
            self._apply_masks()
            rebuild_after_new_masks(self._model)
        return changed

    def callbacks(self, run):
        return [_PruneOnSchedule(self)]

    # -- state and records --------------------------------------------------------------------

    def get_state(self):
        return {"step": self.step, "updates": self.updates,
                "masks": {p: pack_mask(m) for p, m in self.masks.items()}}

    def set_state(self, state):
        if not state:
            return
        self.step = int(state["step"])
        self.updates = int(state.get("updates", 0))
        masks = {p: unpack_mask(m) for p, m in state["masks"].items()}
        if self._model is not None:
            unknown = sorted(set(masks) - set(self.masks))
            if unknown:
                raise ValueError(f"The checkpoint holds masks for variables this model does "
                                 f"not prune: {unknown}.")
            self.masks.update(masks)
            self._apply_masks()
        else:
            self.masks = masks

    def achieved(self):
        """Zeros in the masks / entries, over the pruned variables."""
        total = sum(m.size for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / max(1, total)

    def units_kept(self):
        """Unit level: each recurrent layer's units whose footprint the masks still keep."""
        out = {}
        for family, _ in self._families:
            fp = family.penalized[0]
            mask = self.masks[fp.variable]
            other = tuple(a for a in range(mask.ndim) if a != fp.axis)
            alive = mask.any(axis=other) if other else mask
            out[family.name] = int(alive[fp.indices(family.size)].any(axis=1).sum())
        return out

    def epoch_summary(self):
        row = {"step": self.step, "sparsity": self.sparsity(), "achieved": self.achieved(),
               "reached": self.schedule.reached(self.step)}
        if self.granularity == "unit":
            row["units"] = self.units_kept()
        return {"prune": row}

    def may_be_best(self, row):
        """Only an epoch at the final sparsity may be kept as the best one."""
        return bool(row.get("prune", {}).get("reached"))

    def finalize(self, model):
        return strip_pruning(model)

    def result_fields(self, history, model=None):
        out = {"step": self.step, "updates": self.updates, "sparsity": self.sparsity(),
               "achieved": self.achieved(),
               "per_variable": {p: 1.0 - float(m.mean()) for p, m in self.masks.items()},
               "pruned_weights": int(sum(m.size for m in self.masks.values())),
               "nonzero_pruned_weights": int(sum(int(m.sum()) for m in self.masks.values()))}
        if self.granularity == "unit":
            out["units"] = self.units_kept()
        if model is not None:
            out["storage"] = storage_sizes(model)
        return {"magnitude": out}

    def get_config(self):
        weights = self.weights
        if callable(weights):  # a callable is not JSON: record what it chose
            weights = sorted(self.masks) or None
        return {"schedule": schedule_config(self.schedule), "granularity": self.granularity,
                "units": self.units, "block_size": list(self.block_size),
                "block_pooling": self.block_pooling, "weights": weights}


class _PruneOnSchedule(keras.callbacks.Callback):
    """TF-MOT's `UpdatePruningStep`: counts the steps and updates the masks before the
    batches the schedule names (so that batch trains on the new masks)."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def on_train_batch_begin(self, batch, logs=None):
        self.method.step += 1
        if self.method.schedule.should_prune(self.method.step):
            self.method.update_masks()

