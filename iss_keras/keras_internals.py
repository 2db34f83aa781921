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


def replace_rnn_states(layer, make_variable):
    """Give a built stateful RNN new state variables, `make_variable(old)` for each.

    Keras creates them untracked (`_create_state_variables`); setting the
    attribute through Keras's tracking would be refused on a built layer.
    """
    object.__setattr__(layer, "states", [make_variable(v) for v in layer.states])


def clip_after_all_reduce(optimizer):
    """`optimizer` (with `global_clipnorm`) clipping the gradient summed over replicas.

    Under `tf.distribute`, Keras's `BaseOptimizer.apply` clips each replica's
    gradient (`_clip_gradients`) before the TensorFlow update step sums them
    over replicas, so with several replicas the clip acts on partial
    gradients. The returned copy sums first, clips the global gradient, and
    hands each replica its 1/N share, which the update step sums back to the
    clipped global gradient: the step of one device with the same batch.
    """
    import tensorflow as tf

    base = type(optimizer)

    def _clip_gradients(self, grads):
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if not self.global_clipnorm or replicas == 1:
            return base._clip_gradients(self, grads)
        dense = [tf.convert_to_tensor(g) if g is not None else None for g in grads]
        present = [g for g in dense if g is not None]
        total = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present))
        summed = [next(total) if g is not None else None for g in dense]
        clipped = base._clip_gradients(self, summed)
        return [g / replicas if g is not None else None for g in clipped]

    cls = type(f"GloballyClipped{base.__name__}", (base,), {"_clip_gradients": _clip_gradients})
    return cls.from_config(optimizer.get_config())



def optimizer_slots(optimizer, variable):
    """The optimizer's variables kept for `variable` (momentum, Adam's moments, ...).

    Keras names them after the variable's path (`add_variable_from_reference`:
    "<path with / as _>_<slot>"); matched by that name and the shape.
    """
    if optimizer is None or not optimizer.built:
        return []
    prefix = variable.path.replace("/", "_") + "_"
    return [slot for slot in optimizer.variables
            if slot.name.startswith(prefix) and tuple(slot.shape) == tuple(variable.shape)]
