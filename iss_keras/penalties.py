"""Penalties: ISS group Lasso, row/column group Lasso and L1.

`ISSRegularizer` is attached to a recurrent layer as its
`recurrent_regularizer`. Keras hands a regularizer only that one variable, but
an ISS component also spans the input kernel and the rows of every consumer, so
the regularizer is *coupled* to the whole model once with `couple(model)`.
Until then it refuses to compute anything: a penalty over the recurrent kernel
alone would silently under-regularize.
"""

import keras
from keras import ops

from iss_keras.discovery import discover_groups, recurrent_layers_by_family
from iss_keras.groups import check_footprints, group_lasso, variables_by_path

EPSILON = 1e-8


class UncoupledRegularizerError(RuntimeError):
    """An ISSRegularizer was evaluated before `iss_keras.couple(model)`."""


def _check_strength(strength):
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a number >= 0. Received: strength={strength!r}")
    if not strength >= 0.0:
        raise ValueError(f"strength must be a number >= 0. Received: strength={strength}")
    return strength


@keras.saving.register_keras_serializable(package="iss_keras")
class ISSRegularizer(keras.regularizers.Regularizer):
    """Group Lasso over the Intrinsic Sparse Structures of a recurrent layer.

    Penalty: `strength * sum_k sqrt(||component k||^2 + 1e-8)`, where
    component k holds the unit's gate columns of `kernel` and
    `recurrent_kernel`, row k of `recurrent_kernel`, and row k of every
    consumer's input kernel, each weight counted once. Biases are not
    penalized.

    Attach it as `recurrent_regularizer`, one instance per layer, then call
    `iss_keras.couple(model)` once the model is built (and again after
    `keras.saving.load_model`).

    Args:
        strength: the group Lasso coefficient (lambda), >= 0.
        proximal: if True the penalty still appears in the loss (for logging)
            but carries no gradient; `ComponentEnforcer(mode="proximal")` then
            applies it as a group soft-threshold after every step.
        elementwise: optional regularizer (e.g. `keras.regularizers.L1L2`)
            applied to the recurrent kernel itself as well; ISS occupies the
            layer's `recurrent_regularizer` slot, so weight decay on that
            kernel goes here.

    Example:

    >>> lstm = keras.layers.LSTM(650, recurrent_regularizer=ISSRegularizer(1e-3))
    """

    def __init__(self, strength=1e-3, proximal=False, elementwise=None):
        self.strength = _check_strength(strength)
        self.proximal = bool(proximal)
        self.elementwise = keras.regularizers.get(elementwise)
        self._family = None
        self._variables = None

    @property
    def family(self):
        """The `UnitFamily` this regularizer is coupled to, or None."""
        return self._family

    def bind(self, family, variables):
        check_footprints(family, variables)
        self._family = family
        self._variables = {fp.variable: variables[fp.variable] for fp in family.footprints}

    def penalty(self):
        """The unscaled group Lasso sum over this layer's components."""
        if self._family is None:
            raise UncoupledRegularizerError(
                "ISSRegularizer is not coupled to its model, so it cannot see the input "
                "kernel or the consumer rows of its units. Call iss_keras.couple(model) "
                "after building the model (and after keras.saving.load_model).")
        return group_lasso(self._family, self._variables, EPSILON)

    def __call__(self, x):
        value = self.strength * self.penalty()
        value = ops.stop_gradient(value) if self.proximal else value
        return value + self.elementwise(x) if self.elementwise is not None else value

    def get_config(self):
        return {"strength": self.strength, "proximal": self.proximal,
                "elementwise": keras.regularizers.serialize(self.elementwise)
                if self.elementwise is not None else None}


class _HyperplaneGroupLasso(keras.regularizers.Regularizer):
    """Group Lasso whose groups are the rows or the columns of a 2-D weight."""

    reduce_axis = None  # the axis summed within a group

    def __init__(self, strength=1e-3):
        self.strength = _check_strength(strength)

    def __call__(self, x):
        if len(x.shape) != 2:
            raise ValueError(f"{type(self).__name__} expects a 2-D weight matrix. "
                             f"Received shape {tuple(x.shape)}.")
        norms = ops.sqrt(ops.sum(ops.square(x), axis=self.reduce_axis) + EPSILON)
        return self.strength * ops.sum(norms)

    def get_config(self):
        return {"strength": self.strength}


@keras.saving.register_keras_serializable(package="iss_keras")
class RowGroupLasso(_HyperplaneGroupLasso):
    """`strength * sum_rows sqrt(||row||^2 + 1e-8)` on a 2-D weight (the original's row lasso)."""

    reduce_axis = 1


@keras.saving.register_keras_serializable(package="iss_keras")
class ColumnGroupLasso(_HyperplaneGroupLasso):
    """`strength * sum_cols sqrt(||column||^2 + 1e-8)` on a 2-D weight."""

    reduce_axis = 0


# Element-wise (non-structured) sparsity, as the original's L1 recipe:
# Keras' own L1 is exactly `strength * sum |w|`.
L1 = keras.regularizers.L1


def iss_regularizers(model):
    """Map family name -> the ISSRegularizer attached to that layer (coupled or not)."""
    found = {}
    for name, where in recurrent_layers_by_family(model).items():
        cell = where.rnn.cell
        for attr in ("kernel", "bias"):
            var = getattr(cell, attr, None)
            if var is not None and isinstance(var.regularizer, ISSRegularizer):
                raise ValueError(
                    f"Layer {name!r} has ISSRegularizer as its {attr}_regularizer. Attach it "
                    "as recurrent_regularizer only: it already covers the whole component.")
        reg = getattr(getattr(cell, "recurrent_kernel", None), "regularizer", None)
        if isinstance(reg, ISSRegularizer):
            found[name] = reg
    return found


def couple(model):
    """Discover the ISS components of `model` and bind every ISSRegularizer to them.

    Call once after the model is built, and again after loading it. Safe to
    call repeatedly.

    Args:
        model: a built Sequential or Functional `keras.Model`.

    Returns:
        The `GroupSet` of the model's components.

    Raises:
        UnsupportedLayerError: if a consumer of hidden units is not supported.
        ValueError: if one ISSRegularizer instance is attached to two layers.
    """
    groups = discover_groups(model)
    variables = variables_by_path(model)
    regs = iss_regularizers(model)
    owners = {}
    for name, reg in regs.items():
        if id(reg) in owners:
            raise ValueError(
                f"The same ISSRegularizer instance is attached to layers {owners[id(reg)]!r} "
                f"and {name!r}. Create one ISSRegularizer per layer.")
        owners[id(reg)] = name
        reg.bind(groups[name], variables)
    return groups


def iss_penalty(model):
    """Total ISS penalty (strength-weighted) of all coupled regularizers in `model`."""
    total = 0.0
    for reg in iss_regularizers(model).values():
        total = total + reg.strength * reg.penalty()
    return total
