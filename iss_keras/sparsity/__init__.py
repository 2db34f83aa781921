"""Sparsity methods: one module per method behind one interface (`base.SparsityMethod`).

* `elementwise`: L1, weight decay, and the original's zeroing of small weights;
* `components`: ISS's building blocks (the coupled `ISSRegularizer`, `couple`,
  `ComponentEnforcer`);
* `iss`: ISS, the method (group Lasso on whole hidden units), with `target` for
  ours target-size mode;
* `row_column`: the original's row / column group Lasso regularizers;
* `evolutionary`: SET, sparse evolutionary training (masks, Erdős–Rényi start, evolution);
* `magnitude`: gradual magnitude pruning with TF-MOT's schedules (weights), and our
  unit-level variant (whole ISS components, then `shrink`);
* `bayesian`: SparseVD, Bayesian sparsification of weights, gates and neurons (W+G+N),
  on the noisy layers of `bayesian_layers`;
* `gate_neuron`: W / W+N / W+G+N pruning of gates and neurons (group Lasso), rebuilt by
  `structured.compress_structured` (dead units and channels out, constant gates folded).

A trainer builds the run's methods from their options with `from_options`;
each method's options are a dataclass (`Method.Options`) from which the
trainers' flags are generated. A new method is a new module plus one line in
`METHODS`, which registers it (`base.register`: it must declare `Options` and
`from_options`).
"""

import dataclasses

from iss_keras.sparsity.base import (NO_SPARSITY, Sparsity, SparsityMethod, as_sparsity,
                                     merge_regularizers, method_class, register, registered)
from iss_keras.sparsity.bayesian import SparseVD
from iss_keras.sparsity.elementwise import L1Sparsity, WeightDecay, WeightZeroing
from iss_keras.sparsity.evolutionary import SET
from iss_keras.sparsity.gate_neuron import GateNeuronPruning
from iss_keras.sparsity.iss import ISS
from iss_keras.sparsity.magnitude import ConstantSparsity, MagnitudePruning, PolynomialDecay
from iss_keras.sparsity.row_column import ColumnGroupLasso, RowGroupLasso

# The registry, in the order methods are built from options. The order matters: a later
# method sees the earlier ones (`chosen`: ISS's freeze applies when L1 is on; zeroing only
# in sparsity runs, so WeightZeroing comes last). MagnitudePruning sits beside SET, the
# other method of per-weight masks: of the methods built before it, it reads only SET, which it
# refuses (both would mask the same weights); and it comes before WeightZeroing, which it leaves
# off (its zeros come from its masks, not from the original's threshold).
METHODS = tuple(register(method) for method in (
    WeightDecay, L1Sparsity, ISS, SET, MagnitudePruning, GateNeuronPruning, SparseVD,
    WeightZeroing))


@dataclasses.dataclass
class OptionContext:
    """What options in the original's units need to become Keras's.

    Attributes:
        loss_scale: the original's training loss / Keras's mean loss (a
            language model summing over `steps` unrolled steps: `steps`).
            Strengths are divided by it.
        epochs: the run's epochs (for options given in epochs).
        seed: the run's seed (for methods that draw at random).
    """

    loss_scale: float = 1.0
    epochs: int = 0
    seed: int = 0


def option_classes():
    """The options dataclass of every registered method (for the trainers' flags)."""
    return tuple(m.Options for m in registered())


def from_options(options, context=None):
    """The `Sparsity` a run's options ask for (methods left out when their options are off).

    Args:
        options: instances of the methods' `Options` dataclasses (missing ones
            take their defaults).
        context: an `OptionContext` (default: no rescaling).

    Example:

    >>> from_options([ISSOptions(iss_strength=0.004), WeightZeroingOptions()],
    ...              OptionContext(loss_scale=20, epochs=13))
    Sparsity([WeightDecay..., ISS(strength=0.0002, ...), WeightZeroing(threshold=0.0001)])
    """
    context = context or OptionContext()
    given = {type(o): o for o in options}
    unknown = set(given) - set(option_classes())
    if unknown:
        raise TypeError(f"Not options of a registered sparsity method: {sorted(map(str, unknown))}")
    chosen = []
    for method in registered():
        made = method.from_options(given.get(method.Options) or method.Options(), context, chosen)
        if made is not None:
            chosen.append(made)
    return Sparsity(chosen)


# The methods and the registry. The pieces ISS attaches to stock Keras layers (`ISSRegularizer`,
# `ZeroOut`, `ComponentEnforcer`, `couple`) are exported once, by the top-level `iss_keras`.
__all__ = ["ColumnGroupLasso", "ConstantSparsity", "GateNeuronPruning", "ISS", "L1Sparsity",
           "METHODS", "MagnitudePruning", "NO_SPARSITY", "OptionContext", "PolynomialDecay",
           "RowGroupLasso", "SET", "SparseVD", "Sparsity", "SparsityMethod",
           "WeightDecay", "WeightZeroing", "as_sparsity", "from_options", "merge_regularizers",
           "method_class", "option_classes", "register", "registered"]
