"""Element-wise freezing of zero weights: the ISS original's optional `--freeze_mode element`.

The PTB original (wenwei202/iss-rnns, ptb/ptb_word_lm.py:221-247 and
:419-420) can zero, after clipping and before the update, the gradient of
every trainable weight whose magnitude is below its fixed `zero_threshold`
(1e-4, :75), so a weight that is (nearly) zero stays where it is. Its
README (ptb/README.md:18) uses it to fine-tune a trained sparse model
without letting the removed weights regrow. `FreezeZeros` is that step as
a mixin for any Keras optimizer; `frozen_optimizer_class` makes the
concrete class.
"""

import keras
from keras import ops

ORIGINAL_FREEZE_THRESHOLD = 1e-4  # ptb_word_lm.py:75 (a constant there, not a flag)
FREEZE_MODES = ("", "element")


class FreezeZeros:
    """Optimizer mixin: no update for weights with |w| < `freeze_threshold`.

    The gradients reach the update already clipped (as the original's
    `clip_by_global_norm` comes first, so the frozen weights' gradients
    still count in the global norm) and leave it zero wherever the weight
    is below the threshold, for every trainable variable.

    Example:

    >>> SGD = frozen_optimizer_class(keras.optimizers.SGD)
    >>> optimizer = SGD(1.0, freeze_threshold=1e-4)
    """

    def __init__(self, *args, freeze_threshold=ORIGINAL_FREEZE_THRESHOLD, **kwargs):
        if not float(freeze_threshold) > 0.0:
            raise ValueError("freeze_threshold must be > 0 (weights below it stay frozen). "
                             f"Received: freeze_threshold={freeze_threshold!r}")
        super().__init__(*args, **kwargs)
        self.freeze_threshold = float(freeze_threshold)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        grads = [g if g is None else ops.where(ops.less(ops.abs(v), self.freeze_threshold),
                                               ops.zeros_like(g), g)
                 for g, v in zip(grads, trainable_variables)]
        return super()._backend_update_step(grads, trainable_variables, learning_rate)

    def get_config(self):
        return {**super().get_config(), "freeze_threshold": self.freeze_threshold}


_CLASSES = {}


def frozen_optimizer_class(base):
    """`base` (a Keras optimizer class) with `FreezeZeros` mixed in; one class per base."""
    if not (isinstance(base, type) and issubclass(base, keras.optimizers.Optimizer)):
        raise TypeError(f"frozen_optimizer_class takes a Keras optimizer class. Received: {base!r}")
    if base not in _CLASSES:
        _CLASSES[base] = type(f"FrozenZeros{base.__name__}", (FreezeZeros, base), {})
    return _CLASSES[base]
