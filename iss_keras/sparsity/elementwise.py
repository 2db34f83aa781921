"""Element-wise methods: L1, weight decay, and zeroing small weights after every step.

These are the original repository's non-structured pieces (ptb_word_lm.py:
`--regularizer` with `weight_decay`, and the zeroing of every weight below a
threshold after each step in sparsity runs, :380-389). `ZeroOut` is the
constraint that does the zeroing inside the compiled train step.
"""

import dataclasses

import keras
from keras import ops

from iss_keras.options import check_at_least, option
from iss_keras.sparsity.base import SparsityMethod, check_strength

@keras.saving.register_keras_serializable(package="iss_keras")
class ZeroOut(keras.constraints.Constraint):
    """Set weights with `|w| < threshold` to exactly zero after each update.

    Args:
        threshold: magnitude below which a weight becomes 0 (> 0).

    Example:

    >>> lstm = keras.layers.LSTM(64, kernel_constraint=ZeroOut(1e-4),
    ...                          recurrent_constraint=ZeroOut(1e-4))
    """

    def __init__(self, threshold=1e-4):
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise ValueError(f"threshold must be a number > 0. Received: threshold={threshold!r}")
        if not threshold > 0:
            raise ValueError(f"threshold must be a number > 0. Received: threshold={threshold}")
        self.threshold = threshold

    def __call__(self, w):
        w = ops.convert_to_tensor(w)
        # A scalar zero, not zeros_like(w): one pass less over the weight, same values.
        return ops.where(ops.abs(w) < self.threshold, ops.cast(0, w.dtype), w)

    def get_config(self):
        return {"threshold": self.threshold}


@dataclasses.dataclass
class L1Options:
    l1_strength: float = option(
        0.0, "L1 coefficient (the original's weight_decay with its L1 regularizer; original's "
        "units) on the weights the model regularizes (PTB: all but the embedding, as the "
        "original).")

    def __post_init__(self):
        check_at_least(self, 0.0, "l1_strength")


class L1Sparsity(SparsityMethod):
    """Element-wise L1 on every weight a builder asks a regularizer for (the original's L1 run).

    Args:
        strength: coefficient per unit of the training loss (Keras's mean).
    """

    name = "l1"
    sparsifies = True
    original_zeroing = True
    Options = L1Options

    def __init__(self, strength):
        self.strength = check_strength(strength)

    @classmethod
    def from_options(cls, options, context, chosen=()):
        return cls(options.l1_strength / context.loss_scale) if options.l1_strength else None

    @property
    def zero_threshold_floor(self):
        """The original zeroes below max(threshold, 2 x its weight_decay) (ptb_word_lm.py:385)."""
        return 2.0 * self.strength

    def regularizer(self, slot):
        return keras.regularizers.L1(self.strength)  # exactly `strength * sum |w|`, as the original's

    def get_config(self):
        return {"strength": self.strength}


@dataclasses.dataclass
class WeightDecayOptions:
    weight_decay: float = option(
        0.0, "L2 weight decay (original's units), TF1's weight_decay * sum(w^2) / 2.")

    def __post_init__(self):
        check_at_least(self, 0.0, "weight_decay")


class WeightDecay(SparsityMethod):
    """TF1 weight decay `strength * sum(w^2) / 2` (Keras's `L2(c)` is `c * sum(w^2)`).

    Both originals use TF1's `l2_loss`, which halves (rhns/rhn.py:136-137).
    Not a sparsity method by itself (`sparsifies` is False): it shares the
    weights' regularizer slots, so it is given the same way.
    """

    name = "weight_decay"
    Options = WeightDecayOptions

    def __init__(self, strength):
        self.strength = check_strength(strength)

    @classmethod
    def from_options(cls, options, context, chosen=()):
        return cls(options.weight_decay / context.loss_scale) if options.weight_decay else None

    @classmethod
    def describe(cls, config):
        return None  # not a sparsity method: the tables leave it out

    def regularizer(self, slot):
        return keras.regularizers.L2(self.strength / 2.0)

    def get_config(self):
        return {"strength": self.strength}


@dataclasses.dataclass
class WeightZeroingOptions:
    zero_threshold: float = option(
        1e-4, "Sparsity runs only (ISS or L1 on), as the original: every weight (embedding and "
        "biases too) below max(zero_threshold, 2 x l1_strength) is zeroed after every step. "
        "Baselines zero nothing. 0: off.")

    def __post_init__(self):
        check_at_least(self, 0.0, "zero_threshold")


class WeightZeroing(SparsityMethod):
    """Every weight below `threshold` becomes exactly 0 after every step (`ZeroOut`).

    From options it is on in sparsity runs only, at
    `max(zero_threshold, 2 x l1_strength)`, as the original
    (ptb_word_lm.py:380-389); a run with no sparsity method zeroes nothing.
    """

    name = "weight_zeroing"
    Options = WeightZeroingOptions

    def __init__(self, threshold=1e-4):
        self.threshold = ZeroOut(threshold).threshold

    @classmethod
    def from_options(cls, options, context, chosen=()):
        if not options.zero_threshold or not any(m.sparsifies and m.original_zeroing
                                                  for m in chosen):
            return None
        floors = [getattr(m, "zero_threshold_floor", 0.0) * context.loss_scale for m in chosen]
        return cls(max([options.zero_threshold] + floors))

    @classmethod
    def describe(cls, config):
        return None  # the original's companion of ISS and L1: the tables leave it out

    def constraint(self, slot):
        return ZeroOut(self.threshold)

    def get_config(self):
        return {"threshold": self.threshold}
