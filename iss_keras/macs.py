"""Multiply-adds per token: which kernels each layer multiplies once per token (time step).

The one rule behind every multiply-add count (`iss_keras.sparsity_report`,
`iss_keras.compact`, the W+G+N report). Matrix products only, as in the
papers: embedding lookups, biases and element-wise work are not counted. A
token costs one multiply-add per weight of each kernel below:

* a layer that declares its own kernels with a `matmul_kernels()` method (the
  protocol; `iss_keras.compact.CompactCell` lists its computed columns);
* `Dense` (also inside `TimeDistributed`): its `kernel`;
* Keras's `LSTMCell`, `GRUCell`, `SimpleRNNCell` and any cell with
  `iss_footprints()` (`iss_keras.discovery.rnn_cell`): `kernel` and
  `recurrent_kernel` (an RHN cell's recurrent kernel stacks its micro-steps:
  each row is used once a step);
* `ReversibleEmbedding` called with `reverse=True`: its softmax matrix.

A variable is counted once, however many layers list it.
"""

import keras
import numpy as np

from iss_keras.discovery import is_reverse_call
from iss_keras.gates import CELL_KINDS
from iss_keras.keras_internals import all_layers, inbound_nodes


def _reverse_called(layer):
    return any(is_reverse_call(node) for node in inbound_nodes(layer))


def layer_matmul_kernels(layer):
    """The variables `layer` itself multiplies once per token (see the module docstring)."""
    if callable(getattr(layer, "matmul_kernels", None)):
        return list(layer.matmul_kernels())
    if isinstance(layer, keras.layers.Dense):
        return [layer.kernel]
    if isinstance(layer, tuple(CELL_KINDS)) or hasattr(layer, "iss_footprints"):
        return [v for v in (getattr(layer, "kernel", None),
                            getattr(layer, "recurrent_kernel", None)) if v is not None]
    if isinstance(layer, keras.layers.ReversibleEmbedding) and _reverse_called(layer):
        return [layer.embeddings if layer.tie_weights else layer.reverse_embeddings]
    return []


def matmul_kernels(model):
    """path -> variable of every kernel `model` multiplies once per token, each once."""
    kernels = {}
    for layer in all_layers(model):
        for variable in layer_matmul_kernels(layer):
            kernels.setdefault(variable.path, variable)
    return kernels


def macs_per_token(model, shapes=None):
    """Multiply-adds per token of `model`'s matrix products.

    Args:
        model: a built Keras model.
        shapes: optional dict variable path -> shape, counted instead of the
            variables' own shapes (e.g. the shapes a shrink plan would leave);
            it must hold every kernel's path.
    """
    kernels = matmul_kernels(model)
    return int(sum(np.prod(tuple(v.shape) if shapes is None else shapes[path])
                   for path, v in kernels.items()))
