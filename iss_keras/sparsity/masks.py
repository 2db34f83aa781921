"""Per-weight masks on stock Keras layers: the one mechanism SET and magnitude pruning share.

A mask is a `MaskConstraint` on the weight's variable (applied by the optimizer after every
step, so masked weights stay exactly zero) and on the layer's constraint attribute (so a
`.keras` file carries it in the layer's config). A method attaches its masks once
(`attach_mask`), then changes them as it likes (`apply_masks`: the constraints take the new
masks and the masked weights become zero at once).

**Live masks.** Under TensorFlow and torch the constraint reads its mask from a
non-trainable variable, so a new mask takes effect in the compiled training step without
rebuilding it. JAX's compiled step is a pure function of the model's own variables: a mask
held elsewhere is a constant of the trace, so under JAX a method that changes masks rebuilds
the step (`rebuild_after_new_masks`).
"""

import base64

import keras
import numpy as np
from keras import ops


def pack_mask(mask):
    """A boolean array as JSON-ready text (packed bits, base64)."""
    mask = np.asarray(mask, bool)
    return {"shape": list(mask.shape),
            "bits": base64.b64encode(np.packbits(mask.reshape(-1)).tobytes()).decode("ascii")}


def unpack_mask(packed):
    shape = tuple(packed["shape"])
    bits = np.frombuffer(base64.b64decode(packed["bits"]), np.uint8)
    return np.unpackbits(bits, count=int(np.prod(shape))).astype(bool).reshape(shape)


def masks_are_live():
    """Whether a compiled training step reads a `MaskConstraint`'s mask when it runs
    (TensorFlow, torch) rather than when it was traced (JAX)."""
    return keras.backend.backend() != "jax"


@keras.saving.register_keras_serializable(package="iss_keras")
class MaskConstraint(keras.constraints.Constraint):
    """`w * mask` after every update (then another constraint, if given).

    Args:
        mask: a boolean array of the weight's shape (True: connection present).
        then: an optional constraint applied afterwards (e.g. `ZeroOut`).

    Example:

    >>> constraint = MaskConstraint(np.array([[True, False]]))
    >>> keras.ops.convert_to_numpy(constraint(keras.ops.ones((1, 2))))
    array([[1., 0.]], dtype=float32)
    """

    def __init__(self, mask, then=None):
        self._mask = unpack_mask(mask) if isinstance(mask, dict) else np.asarray(mask, bool)
        self.then = keras.constraints.get(then)
        self._live = None  # a variable holding the mask, once `make_live` is called

    @property
    def mask(self):
        return self._mask

    @mask.setter
    def mask(self, value):
        value = np.asarray(value, bool)
        if value.shape != self._mask.shape:
            raise ValueError(f"A new mask must keep the weight's shape {self._mask.shape}. "
                             f"Received a mask of shape {value.shape}.")
        self._mask = value
        if self._live is not None:
            self._live.assign(value.astype(self._live.dtype))

    def make_live(self, dtype):
        """Hold the mask in a non-trainable variable of `dtype`, read at every step (see the
        module's docstring; only where `masks_are_live()`)."""
        if self._live is None and masks_are_live():
            self._live = keras.Variable(self._mask.astype(dtype), trainable=False,
                                        name="mask", dtype=dtype)
        return self

    def __call__(self, w):
        if self._live is not None and self._live.dtype == w.dtype:
            mask = self._live.value
        else:
            mask = ops.convert_to_tensor(self._mask, dtype=w.dtype)
        w = ops.multiply(w, mask)
        return self.then(w) if self.then is not None else w

    def get_config(self):
        return {"mask": pack_mask(self._mask),
                "then": keras.constraints.serialize(self.then) if self.then is not None else None}


def attach_mask(variable, mask, slot=None):
    """Put `mask` on `variable` as a (live) `MaskConstraint` wrapping its constraint.

    Args:
        variable: the weight's `keras.Variable`.
        mask: boolean array of its shape.
        slot: `(layer, attribute)` whose constraint attribute the layer saves in its config
            (e.g. `(lstm_cell, "recurrent_constraint")`), or None.

    Returns:
        The constraint.
    """
    previous = getattr(*slot) if slot is not None else getattr(variable, "constraint", None)
    if isinstance(previous, MaskConstraint):
        previous = previous.then
    constraint = MaskConstraint(mask, then=previous).make_live(variable.dtype)
    if slot is not None:
        setattr(*slot, constraint)  # saved with the layer's config (.keras)
    variable.constraint = constraint  # applied by the optimizer after each step
    return constraint


def apply_masks(variables, masks):
    """Give each variable's `MaskConstraint` its new mask and zero the masked weights now.

    Args:
        variables: iterable of variables (those without a mask in `masks` are skipped).
        masks: dict variable path -> boolean array.
    """
    for variable in variables:
        mask = masks.get(variable.path)
        if mask is None:
            continue
        constraint = getattr(variable, "constraint", None)
        if not isinstance(constraint, MaskConstraint):
            raise ValueError(f"Variable {variable.path!r} has no MaskConstraint to take its new "
                             f"mask (its constraint: {constraint!r}); attach one first.")
        constraint.mask = mask
        variable.assign(ops.multiply(variable, ops.convert_to_tensor(mask, variable.dtype)))


def rebuild_after_new_masks(model):
    """Rebuild `model`'s compiled training step if it holds masks as constants (JAX)."""
    if not masks_are_live():
        model.make_train_function(force=True)
