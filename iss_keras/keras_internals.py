"""The one module that touches private attributes of Keras (and LiteRT).

Keras 3 has no public API for a few things this package needs: every layer of
a model including nested ones, a Functional graph's nodes in order, the calls
of a layer, an RNN unrolled after it is built, and a TFLite interpreter's op
list. They are read here only, so a Keras upgrade that moves them breaks one file.
"""

import contextlib

import keras
import numpy as np
from keras import ops


def all_layers(model, include_self=True):
    """Every layer of `model`, nested ones and cells included."""
    return list(model._flatten_layers(include_self=include_self))


@contextlib.contextmanager
def rnns_unrolled(model):
    """Every RNN layer of `model` traced as straight-line steps while inside (Keras reads
    `unroll` at each call; there is no public way to change it on a built layer)."""
    rnns = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.RNN)]
    before = [layer.unroll for layer in rnns]
    for layer in rnns:
        layer.unroll = True
    try:
        yield
    finally:
        for layer, unroll in zip(rnns, before):
            layer.unroll = unroll


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


def averaged_weights_callback(resumed):
    """`keras.callbacks.SwapEMAWeights(swap_on_epoch=True)`: each epoch is evaluated and
    checkpointed with the optimizer's moving averages of the weights, and training goes on
    from the raw weights. Two additions:

    * `resumed`: the run restarts from a checkpoint written after the swap, so the
      averages are already in the model (Keras's callback would assume the raw weights).
    * A weight that is exactly zero in the raw weights (a removed unit, a masked
      connection) is exactly zero in the averaged ones too: the average of a weight
      zeroed at some step only decays towards zero, and a rebuild needs exact zeros.
    """

    class _SwapEMAWeights(keras.callbacks.SwapEMAWeights):
        def __init__(self):
            super().__init__(swap_on_epoch=True)
            self._ema_weights_in_model = bool(resumed)

        def on_epoch_end(self, epoch, logs=None):
            if self._ema_weights_in_model:
                return
            self._swap_variables()  # the model holds the averages, the optimizer the raw weights
            self._ema_weights_in_model = True
            optimizer = self.model.optimizer
            for var, raw in zip(optimizer._trainable_variables,
                                optimizer._model_variables_moving_average):
                # `.value`: JAX cannot take the dtype of a Keras variable (sharded or not).
                var.assign(ops.where(ops.equal(raw.value, 0), ops.zeros_like(var.value),
                                     var.value))
            if epoch == self.params["epochs"] - 1:
                # fit ends by copying the optimizer's slot (now the raw weights) into the
                # model; the checkpoint just written keeps the raw weights there, so that a
                # longer run can go on from it. Put the averages back after fit.
                self._final = [ops.convert_to_numpy(v) for v in optimizer._trainable_variables]

        def on_train_end(self, logs=None):
            final = getattr(self, "_final", None)
            if final is not None:
                for var, value in zip(self.model.optimizer._trainable_variables, final):
                    var.assign(value)

    return _SwapEMAWeights()


@contextlib.contextmanager
def raw_weights(model):
    """Within: `model` holds its raw weights, which `averaged_weights_callback` keeps in the
    optimizer's average slots once it has put the averages into the model at an epoch's
    end; after: the averages again (e.g. to validate the raw weights, as the BiDAF original)."""
    optimizer = model.optimizer
    averages = [ops.convert_to_numpy(v) for v in optimizer._trainable_variables]
    for var, raw in zip(optimizer._trainable_variables,
                        optimizer._model_variables_moving_average):
        var.assign(raw)
    try:
        yield model
    finally:
        for var, value in zip(optimizer._trainable_variables, averages):
            var.assign(value)


def restart_averages(optimizer, variables):
    """Start the optimizer's moving averages of the weights at their current values
    (after loading weights to fine-tune from)."""
    for var, average in zip(optimizer._trainable_variables,
                            optimizer._model_variables_moving_average):
        average.assign(var)
