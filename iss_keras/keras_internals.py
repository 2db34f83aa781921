"""The one module that touches private attributes of Keras (and LiteRT).

Keras 3 has no public API for a few things this package needs: every layer of
a model including nested ones, a Functional graph's nodes in order, the calls
of a layer, and a TFLite interpreter's op list. They are read here only, so a
Keras upgrade that moves them breaks one file.
"""

import keras
import numpy as np
from keras import ops


def all_layers(model, include_self=True):
    """Every layer of `model`, nested ones and cells included."""
    return list(model._flatten_layers(include_self=include_self))


def sequential_graph(model):
    """The Functional graph a built Sequential model keeps inside (None before it is built)."""
    return getattr(model, "_functional", None)


def is_graph_model(model):
    """Whether `model` has a Functional graph of nodes (not a subclassed model)."""
    return hasattr(model, "_nodes_by_depth")


def graph_nodes(graph):
    """The nodes of a Functional graph, inputs first."""
    nodes = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        nodes.extend(graph._nodes_by_depth[depth])
    return nodes


def inbound_nodes(layer):
    """The calls of `layer` recorded in the graphs it belongs to."""
    return list(layer._inbound_nodes)


def reset_states(model):
    """Zero the carried state of every stateful recurrent layer of `model`."""
    for layer in all_layers(model):
        if getattr(layer, "stateful", False) and hasattr(layer, "reset_states"):
            layer.reset_states()


def outputs_from_zero_state(model, inputs):
    """NumPy outputs of `model` on a list of inputs, stateful layers starting from zero."""
    reset_states(model)
    out = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return [np.asarray(ops.convert_to_numpy(o)) for o in keras.tree.flatten(out)]


def tflite_op_names(interpreter):
    """Op names of a LiteRT interpreter (before delegation)."""
    return [d["op_name"] for d in interpreter._get_ops_details()]
