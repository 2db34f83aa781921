"""SparseVD, the method: Bayesian sparsification of gated RNNs (Lobacheva et al. 2018) as a
`SparsityMethod`.

`SparseVD` makes a model builder's `Embedding`, `LSTM` and `Dense` layers the
noisy ones of `iss_keras.sparsity.bayesian_layers` (weights W, gates G, neurons
N, by level), sets their KL term's scale before training, reports the weights
kept each epoch, and at `finalize` folds them into a plain Keras model; then
`iss_keras.sparsity.structured` removes dead units and channels and folds
constant gates, both verified. `theano_hard_sigmoid` is the original's gate
activation.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from iss_keras.keras_internals import all_layers
from iss_keras.options import option
from iss_keras.sparsity.base import LAYER_HINTS, SparsityMethod
from iss_keras.sparsity.bayesian_layers import (BayesianDense, BayesianEmbedding, BayesianLayer,
                                                BayesianLSTM, fold_into_plain_model, kept_mask)
from iss_keras.sparsity.structured import LEVELS, StructuredRebuild


@keras.saving.register_keras_serializable(package="iss_keras")
def theano_hard_sigmoid(x):
    """Theano's hard sigmoid, `clip(0.2 x + 0.5, 0, 1)`, the original's gate activation
    (Keras 3's `hard_sigmoid` is `relu6(x + 3) / 6`, slope 1/6)."""
    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)


@dataclasses.dataclass
class SparseVDOptions:
    sparse_vd: str = option(
        "", "Bayesian sparsification (SparseVD; Lobacheva et al.): W (each weight), W+N (+ "
        "vocabulary words and the LSTM's input and hidden neurons), W+G+N (+ each gate's "
        "preactivation). The original's config strings: classification W = LCLCCL, W+N = "
        "LLLCLL, W+G+N = LLLLLL. Empty: off.", choices=("",) + LEVELS)
    sparse_vd_dense: bool = option(True, "Also noise on the output layer's weights (the last "
                                   "letter of the original's config).")

    def __post_init__(self):
        if self.sparse_vd not in ("",) + LEVELS:
            raise ValueError(f"sparse_vd must be one of {LEVELS} or empty. Received: "
                             f"{self.sparse_vd!r}")


class SparseVD(StructuredRebuild, SparsityMethod):
    """Variational-dropout sparsification of the embedding, LSTMs and output layer.

    Args:
        levels: "W", "W+N" or "W+G+N".
        dense: weight noise on Dense layers too.
        seed: noise seed.

    Model builders create their layers through `sparsity.layer(cls, ...)`; this method
    makes `Embedding`, `LSTM` and `Dense` Bayesian.
    """

    name = "sparse_vd"
    sparsifies = True
    Options = SparseVDOptions

    def __init__(self, levels, dense=True, seed=0):
        if levels not in LEVELS:
            raise ValueError(f"levels must be one of {LEVELS}. Received: levels={levels!r}")
        self.levels, self.dense, self.seed = levels, bool(dense), int(seed)
        self._layers = []

    @classmethod
    def from_options(cls, options, context, chosen=()):
        if not options.sparse_vd:
            return None
        return cls(options.sparse_vd, dense=options.sparse_vd_dense,
                   seed=getattr(context, "seed", 0))

    @classmethod
    def describe(cls, config):
        return f"SparseVD {config['levels']}"

    def make_layer(self, cls, args, kwargs):
        neurons, gates = "N" in self.levels, "G" in self.levels
        kwargs = dict(kwargs)
        seed = kwargs.pop("seed", None) or self.seed
        if cls is not keras.layers.LSTM:
            for hint in LAYER_HINTS:
                kwargs.pop(hint, None)
        if cls is keras.layers.Embedding:
            for key in ("embeddings_regularizer", "embeddings_constraint"):
                kwargs.pop(key, None)
            return BayesianEmbedding(*args, vocabulary=neurons, seed=seed, **kwargs)
        if cls is keras.layers.LSTM:
            # On a one-hot input the N level is the hidden neurons only: the original's LM
            # config letter "R" (W+N = LCRL, W+G+N = LLRL; layers_lstm.py:287-289).
            one_hot = bool(kwargs.pop("one_hot_input", False))
            return BayesianLSTM(*args, gates=gates, inputs=neurons and not one_hot,
                                hidden=neurons, seed=seed, one_hot_input=one_hot, **kwargs)
        if cls is keras.layers.Dense and self.dense:
            for key in ("kernel_constraint", "bias_constraint"):
                kwargs.pop(key, None)
            return BayesianDense(*args, seed=seed, **kwargs)
        return None

    def bind(self, model, groups):
        self._layers = [layer for layer in all_layers(model) if isinstance(layer, BayesianLayer)]
        if not self._layers:
            raise ValueError(f"SparseVD found no Bayesian layer in model {model.name!r}: its "
                             "builder must create layers with sparsity.layer(...).")

    def callbacks(self, run):
        size = max(1, int(run.train_size or 1))
        for layer in self._layers:
            layer.kl_scale = 1.0 / size
        return []

    def epoch_summary(self):
        """Weights with noise kept so far (log alpha <= 3) and their compression, as the
        original prints every epoch (before folding: dead units and gates come at the end)."""
        kept = total = 0
        for layer in self._layers:
            for theta, log_sigma in layer.weight_pairs():
                kept += int(np.count_nonzero(np.asarray(ops.convert_to_numpy(
                    kept_mask(theta, log_sigma)))))
                total += int(np.prod(theta.shape))
        if not total:
            return {}
        return {"sparse_vd_kept_weights": kept, "sparse_vd_noisy_weights": total,
                "sparse_vd_compression": total / max(1, kept)}

    def finalize(self, model):
        return fold_into_plain_model(model) if any(isinstance(l, BayesianLayer)
                                                   for l in model.layers) else model

    def get_config(self):
        return {"levels": self.levels, "dense": self.dense, "seed": self.seed}
