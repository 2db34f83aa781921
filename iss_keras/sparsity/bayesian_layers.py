"""The noisy layers of SparseVD (Lobacheva et al. 2018, Molchanov et al. 2017), and their folding
into plain Keras layers.

Multiplicative Gaussian noise with a log-uniform prior on three levels, as
the original Theano code (tipt0p/SparseBayesianRNN, Code/layers_lstm.py):

* W: every weight `w ~ N(theta, sigma^2)`, sampled once per minibatch with the
  additive reparametrisation `theta + sigma * eps` (log sigma starts at -3);
* G: a variable per gate preactivation `z_g ~ N(mu, sigma^2)`, per example,
  multiplying `x W + h U` **before** the bias, so a removed gate is exactly
  `act(b)`;
* N: a variable per input neuron `z_x` (multiplying the LSTM's input) and per
  hidden neuron `z_h` (multiplying its output), per example; for the
  embedding, one per vocabulary word `z_v`.

The KL term per variable is Molchanov et al.'s approximation with their exact
constants, `k1 - k1 sigmoid(k2 + k3 log alpha) + 0.5 log1p(1 / alpha)`
(k1 = 0.63576, k2 = 1.87320, k3 = 1.48695; the original code uses the rounded
0.64, 1.5 * 1.3 and 1.5 and drops the constant), with `log alpha = 2 log sigma
- log(theta^2)` clipped to [-8, 8] as the original (plus 1e-8 inside the log:
ours, so a weight at exactly 0 has a finite gradient), summed and divided by
the number of training examples (tokens for a language model). Where `log
alpha > 3` the variable is pruned. At evaluation the noise is off and the
pruned variables are zero.

`fold_into_plain_model` folds the means into a plain Keras model (LSTM /
Embedding / Dense): `z_x` into the kernel's rows, `z_g` into the kernel's and
recurrent kernel's columns, `z_h` into the hidden unit's outgoing rows
(recurrent row, consumer rows), `z_v` into the embedding's rows. The method
that uses these layers is `iss_keras.sparsity.bayesian.SparseVD`.
"""

import keras
import numpy as np
from keras import ops

from iss_keras.discovery import discover_groups
from iss_keras.gates import LSTM_GATES as GATES
from iss_keras.groups import Footprint, variables_by_path
from iss_keras.lstm_step import lstm_step

K1, K2, K3 = 0.63576, 1.87320, 1.48695
LOG_ALPHA_CLIP = 8.0   # the original's clip_func(to=8)
THRESHOLD = 3.0        # pruned where log alpha > 3 (the original's self.thresh)
LOG_SIGMA_INIT = -3.0
EPSILON = 1e-8


def log_alpha(mu, log_sigma):
    """`clip(2 log sigma - log(mu^2 + 1e-8), -8, 8)`."""
    return ops.clip(2.0 * log_sigma - ops.log(ops.square(mu) + EPSILON), -LOG_ALPHA_CLIP,
                    LOG_ALPHA_CLIP)


def kl_log_uniform(log_alpha_value):
    """Molchanov et al.'s approximation of KL(N(mu, sigma^2) || log-uniform), per variable."""
    return (K1 - K1 * ops.sigmoid(K2 + K3 * log_alpha_value)
            + 0.5 * ops.log1p(ops.exp(-log_alpha_value)))


def kept_mask(mu, log_sigma):
    """Boolean: the variable survives (log alpha <= 3)."""
    return log_alpha(mu, log_sigma) <= THRESHOLD


def kept(mu, log_sigma):
    """0/1 (float): the variable survives (log alpha <= 3)."""
    return ops.cast(kept_mask(mu, log_sigma), mu.dtype)


def _noisy(mu, log_sigma, training, seed_generator, shape=None):
    """Training: `mu + sigma * eps`; evaluation: `mu` where kept, else 0."""
    if training:
        shape = ops.shape(mu) if shape is None else shape
        return mu + ops.exp(log_sigma) * keras.random.normal(shape, seed=seed_generator)
    return mu * kept(mu, log_sigma)


class BayesianLayer:
    """What the Bayesian layers share (a mixin): the KL scale and the log sigma initializer."""

    kl_scale = 0.0  # 1 / training examples, set by the method before training

    def weight_pairs(self):
        """`(theta, log_sigma)` of every weight with noise (the W level)."""
        return []

    def _log_sigma(self, shape, name):
        return self.add_weight(shape=shape, name=name,
                               initializer=keras.initializers.Constant(self.log_sigma_init))


@keras.saving.register_keras_serializable(package="iss_keras")
class BayesianEmbedding(BayesianLayer, keras.layers.Embedding):
    """`Embedding` with weight noise (W) and a variable per vocabulary word (`vocabulary`)."""

    def __init__(self, input_dim, output_dim, weight_noise=True, vocabulary=False,
                 log_sigma_init=LOG_SIGMA_INIT, seed=None, **kwargs):
        super().__init__(input_dim, output_dim, **kwargs)
        self.weight_noise, self.vocabulary = bool(weight_noise), bool(vocabulary)
        self.log_sigma_init, self.seed = float(log_sigma_init), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.weight_noise:
            self.embeddings_log_sigma = self._log_sigma((self.input_dim, self.output_dim),
                                                        "embeddings_log_sigma")
        if self.vocabulary:
            self.vocabulary_mu = self.add_weight(shape=(self.input_dim,), name="vocabulary_mu",
                                                 initializer="ones")
            self.vocabulary_log_sigma = self._log_sigma((self.input_dim,), "vocabulary_log_sigma")

    def call(self, inputs, training=False):
        tokens = ops.cast(inputs, "int32")
        table = (_noisy(self.embeddings, self.embeddings_log_sigma, training, self.seed_generator)
                 if self.weight_noise else self.embeddings)
        out = ops.take(table, tokens, axis=0)
        if self.vocabulary:
            if training:  # one draw per (sequence, word), as the original
                z = _noisy(self.vocabulary_mu, self.vocabulary_log_sigma, True,
                           self.seed_generator, (ops.shape(tokens)[0], self.input_dim))
                z = ops.take_along_axis(z, ops.reshape(tokens, (ops.shape(tokens)[0], -1)),
                                        axis=1)
                z = ops.reshape(z, ops.shape(tokens))
            else:
                z = ops.take(_noisy(self.vocabulary_mu, self.vocabulary_log_sigma, False, None),
                             tokens, axis=0)
            out = out * ops.expand_dims(z, -1)
        self.add_loss(self.kl_scale * self.kl())
        return out

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs, 0) if self.mask_zero else None

    def compute_output_spec(self, inputs, training=False):
        return super().compute_output_spec(inputs)

    def weight_pairs(self):
        return [(self.embeddings, self.embeddings_log_sigma)] if self.weight_noise else []

    def kl(self):
        total = 0.0
        if self.weight_noise:
            total += ops.sum(kl_log_uniform(log_alpha(self.embeddings, self.embeddings_log_sigma)))
        if self.vocabulary:
            total += ops.sum(kl_log_uniform(log_alpha(self.vocabulary_mu,
                                                      self.vocabulary_log_sigma)))
        return total

    def folded(self):
        """The plain embedding table: means, pruned entries and words at 0, `z_v` folded."""
        table = np.asarray(ops.convert_to_numpy(_noisy(self.embeddings, self.embeddings_log_sigma,
                                                       False, None)
                                                if self.weight_noise else self.embeddings))
        if self.vocabulary:
            z = np.asarray(ops.convert_to_numpy(_noisy(self.vocabulary_mu,
                                                       self.vocabulary_log_sigma, False, None)))
            table = table * z[:, None]
        return [table]

    def get_config(self):
        return {**super().get_config(), "weight_noise": self.weight_noise,
                "vocabulary": self.vocabulary, "log_sigma_init": self.log_sigma_init,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="iss_keras")
class BayesianDense(BayesianLayer, keras.layers.Dense):
    """`Dense` with weight noise on its kernel.

    In training the noise is drawn on the outputs, as Lobacheva et al.'s
    `BayesianDense.pre_activation` (layers_dense.py:55-75, the local
    reparameterization): `x W + eps * sqrt(x^2 sigma^2 + 1e-8)`, one `eps` per
    example and output (per sequence and output for a sequence input, shared by
    its steps), which is what one weight sample per example would give.
    """

    def __init__(self, units, log_sigma_init=LOG_SIGMA_INIT, seed=None, **kwargs):
        super().__init__(units, **kwargs)
        self.log_sigma_init, self.seed = float(log_sigma_init), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel_log_sigma = self._log_sigma(tuple(self.kernel.shape), "kernel_log_sigma")

    def call(self, inputs, training=False):
        if training:
            out = ops.matmul(inputs, self.kernel)
            spread = ops.sqrt(ops.matmul(ops.square(inputs), ops.exp(2.0 * self.kernel_log_sigma))
                              + 1e-8)
            shape = ops.shape(out)
            if len(shape) > 2:  # a sequence: one draw per sequence and output (theirs)
                shape = (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)
            out = out + keras.random.normal(shape, seed=self.seed_generator) * spread
        else:
            out = ops.matmul(inputs, _noisy(self.kernel, self.kernel_log_sigma, False, None))
        if self.use_bias:
            out = out + self.bias
        self.add_loss(self.kl_scale * self.kl())
        return self.activation(out) if self.activation is not None else out

    def weight_pairs(self):
        return [(self.kernel, self.kernel_log_sigma)]

    def kl(self):
        return ops.sum(kl_log_uniform(log_alpha(self.kernel, self.kernel_log_sigma)))

    def folded(self):
        kernel = np.asarray(ops.convert_to_numpy(_noisy(self.kernel, self.kernel_log_sigma,
                                                        False, None)))
        return [kernel] + ([np.asarray(ops.convert_to_numpy(self.bias))] if self.use_bias else [])

    def get_config(self):
        return {**super().get_config(), "log_sigma_init": self.log_sigma_init, "seed": self.seed}


@keras.saving.register_keras_serializable(package="iss_keras")
class BayesianLSTMCell(BayesianLayer, keras.layers.Layer):
    """One step of the Bayesian LSTM. Its input is `[(x * z_x) W, z_g, z_h]`: the input's
    projection through this batch's noisy kernel is computed for every step before the time
    loop, and the per-sequence variables ride along (see `BayesianLSTM`); the noisy
    recurrent kernel of the current batch is set by the layer before the loop too."""

    def __init__(self, units, weight_noise=True, gates=False, inputs=False, hidden=False,
                 activation="tanh", recurrent_activation="sigmoid",
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None,
                 log_sigma_init=LOG_SIGMA_INIT, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.weight_noise, self.gates, self.inputs, self.hidden = (
            bool(weight_noise), bool(gates), bool(inputs), bool(hidden))
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.log_sigma_init, self.seed = float(log_sigma_init), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = [self.units, self.units]
        self.output_size = self.units
        self.now = None  # (kernel, recurrent kernel) of the current batch
        self.input_dim = None  # the layer's input width, set by BayesianLSTM.build

    def build(self, input_shape):
        if self.input_dim is None:
            raise ValueError("BayesianLSTMCell runs inside BayesianLSTM, which gives it its "
                             "input width; use BayesianLSTM(units, ...).")
        n, u = int(self.input_dim), self.units
        self.kernel = self.add_weight(shape=(n, GATES * u), name="kernel",
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.recurrent_kernel = self.add_weight(shape=(u, GATES * u), name="recurrent_kernel",
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer)

        def bias_init(shape, dtype=None):
            bias = self.bias_initializer((GATES * u,), dtype=dtype)
            if self.unit_forget_bias:  # as Keras's LSTMCell: forget gates start at 1
                bias = ops.concatenate([bias[:u], ops.ones((u,), dtype=dtype), bias[2 * u:]])
            return bias

        self.bias = self.add_weight(shape=(GATES * u,), name="bias", initializer=bias_init,
                                    regularizer=self.bias_regularizer)
        if self.weight_noise:
            self.kernel_log_sigma = self._log_sigma((n, GATES * u), "kernel_log_sigma")
            self.recurrent_log_sigma = self._log_sigma((u, GATES * u), "recurrent_kernel_log_sigma")
        for on, name, size in ((self.inputs, "inputs", n), (self.gates, "gates", GATES * u),
                               (self.hidden, "hidden", u)):
            if on:
                setattr(self, f"{name}_mu", self.add_weight(shape=(size,), name=f"{name}_mu",
                                                            initializer="ones"))
                setattr(self, f"{name}_log_sigma", self._log_sigma((size,), f"{name}_log_sigma"))

    def kernels(self, training):
        """(kernel, recurrent kernel) for one batch: noisy (training) or pruned means."""
        if not self.weight_noise:
            return self.kernel, self.recurrent_kernel
        return (_noisy(self.kernel, self.kernel_log_sigma, training, self.seed_generator),
                _noisy(self.recurrent_kernel, self.recurrent_log_sigma, training,
                       self.seed_generator))

    def variables_for(self, batch, training):
        """Per-sequence `z_x`, `z_g`, `z_h` (ones where the level is off)."""
        n, u = int(self.kernel.shape[0]), self.units
        out = []
        for on, name, size in ((self.inputs, "inputs", n), (self.gates, "gates", GATES * u),
                               (self.hidden, "hidden", u)):
            if not on:
                out.append(ops.ones((batch, size), dtype=self.compute_dtype))
                continue
            mu, log_sigma = getattr(self, f"{name}_mu"), getattr(self, f"{name}_log_sigma")
            z = _noisy(mu, log_sigma, training, self.seed_generator, (batch, size))
            out.append(ops.broadcast_to(z, (batch, size)))
        return out

    def call(self, inputs, states, training=False):
        u = self.units
        recurrent = self.now[1] if self.now is not None else self.kernels(False)[1]
        g = GATES * u
        projected, z_g, z_h = inputs[:, :g], inputs[:, g:2 * g], inputs[:, 2 * g:]
        h, c = states
        h, c = lstm_step((projected + ops.matmul(h, recurrent)) * z_g + self.bias, c, u,
                         self.activation, self.recurrent_activation)
        h = h * z_h
        return h, [h, c]

    def weight_pairs(self):
        if not self.weight_noise:
            return []
        return [(self.kernel, self.kernel_log_sigma),
                (self.recurrent_kernel, self.recurrent_log_sigma)]

    def kl(self):
        total = 0.0
        if self.weight_noise:
            total += ops.sum(kl_log_uniform(log_alpha(self.kernel, self.kernel_log_sigma)))
            total += ops.sum(kl_log_uniform(log_alpha(self.recurrent_kernel,
                                                      self.recurrent_log_sigma)))
        for on, name in ((self.inputs, "inputs"), (self.gates, "gates"), (self.hidden, "hidden")):
            if on:
                total += ops.sum(kl_log_uniform(log_alpha(getattr(self, f"{name}_mu"),
                                                          getattr(self, f"{name}_log_sigma"))))
        return total

    def means(self, name):
        """A variable's evaluation value (pruned mean), NumPy; ones when the level is off."""
        n, u = int(self.kernel.shape[0]), self.units
        if not getattr(self, name):
            return np.ones({"inputs": n, "gates": GATES * u, "hidden": u}[name], "float32")
        return np.asarray(ops.convert_to_numpy(_noisy(getattr(self, f"{name}_mu"),
                                                      getattr(self, f"{name}_log_sigma"),
                                                      False, None)))

    def iss_footprints(self):
        """The ISS component of unit k (for discovery and reports), as a Keras LSTMCell's."""
        offsets = [g * self.units for g in range(4)]
        return [Footprint(self.kernel.path, axis=1, offsets=offsets, role="incoming"),
                Footprint(self.recurrent_kernel.path, axis=1, offsets=offsets, role="incoming"),
                Footprint(self.recurrent_kernel.path, axis=0, role="recurrent"),
                Footprint(self.bias.path, axis=0, offsets=offsets, penalized=False, role="bias")]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "weight_noise": self.weight_noise,
                "gates": self.gates, "inputs": self.inputs, "hidden": self.hidden,
                "activation": keras.activations.serialize(self.activation),
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "unit_forget_bias": self.unit_forget_bias,
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "log_sigma_init": self.log_sigma_init, "seed": self.seed}


@keras.saving.register_keras_serializable(package="iss_keras")
class BayesianLSTM(keras.layers.RNN):
    """A Bayesian LSTM layer, with the arguments of `keras.layers.LSTM` it supports.

    The weight noise is drawn once per batch and the per-sequence variables once
    per sequence, here, before the time loop; the input's projection `(x * z_x) W`
    is computed for all steps at once, and it and the variables ride along the
    input so the stock `keras.layers.RNN` loop (masks, states) runs the cell.

    `one_hot_input=True` says the input is one-hot (or all zero) rows, as
    `iss_keras.models.lstm_lm.OneHot` gives: Lobacheva et al.'s word-level LM feeds
    the 10,000-word one-hot vectors straight into the LSTM, so its kernel is the
    word table (lm_net.py:18-20). The projection is then a row lookup of the
    kernel (the same numbers as the product, without 10,000 multiplications by
    zero per token), and the plain model it folds into is the stock LSTM on the
    same one-hot input.
    """

    def __init__(self, units=None, cell=None, weight_noise=True, gates=False, inputs=False,
                 hidden=False, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, dropout=0.0, recurrent_dropout=0.0,
                 one_hot_input=False, **kwargs):
        if isinstance(units, keras.layers.Layer):  # RNN.from_config passes the cell first
            cell, units = units, None
        if dropout or recurrent_dropout:
            raise ValueError("BayesianLSTM takes no dropout: its noise is the regularizer. "
                             f"Received: dropout={dropout}, recurrent_dropout={recurrent_dropout}")
        layer_kwargs = {k: kwargs.pop(k) for k in ("name", "dtype", "trainable") if k in kwargs}
        for key in ("kernel_constraint", "recurrent_constraint", "bias_constraint",
                    "activity_regularizer", "implementation", "use_cudnn"):
            kwargs.pop(key, None)  # constraints would fight the noise; the rest are Keras's own
        if cell is None:
            cell = BayesianLSTMCell(units, weight_noise=weight_noise, gates=gates, inputs=inputs,
                                    hidden=hidden, **kwargs)
        elif isinstance(cell, dict):
            cell = keras.saving.deserialize_keras_object(cell)
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                         **layer_kwargs)
        self.one_hot_input = bool(one_hot_input)

    def build(self, sequences_shape, initial_state_shape=None):
        self.cell.input_dim = int(sequences_shape[-1])
        carried = tuple(sequences_shape[:-1]) + (9 * self.cell.units,)
        super().build(carried, initial_state_shape)

    def _projection(self, sequences, kernel, z_x):
        """`(x * z_x) W` for every step: `[batch, steps, 4 units]`."""
        if not self.one_hot_input:
            return ops.matmul(sequences * ops.expand_dims(z_x, 1), kernel)
        ids = ops.argmax(sequences, axis=-1)
        on = ops.max(sequences, axis=-1, keepdims=True)  # 1, or 0 for an all-zero row
        if self.cell.inputs:
            on = on * ops.expand_dims(ops.take_along_axis(z_x, ids, axis=1), -1)
        return ops.take(kernel, ids, axis=0) * on

    def call(self, sequences, initial_state=None, mask=None, training=False):
        cell = self.cell
        batch = ops.shape(sequences)[0]
        cell.now = cell.kernels(training)
        z_x, z_g, z_h = cell.variables_for(batch, training)
        steps = ops.shape(sequences)[1]

        def along_time(z):
            return ops.repeat(ops.expand_dims(z, 1), steps, axis=1)

        carried = ops.concatenate([self._projection(sequences, cell.now[0], z_x),
                                   along_time(z_g), along_time(z_h)], axis=-1)
        out = super().call(carried, initial_state=initial_state, mask=mask, training=training)
        cell.now = None
        self.add_loss(cell.kl_scale * cell.kl())
        return out

    def get_config(self):
        config = super().get_config()
        config["cell"] = keras.saving.serialize_keras_object(self.cell)
        config["one_hot_input"] = self.one_hot_input
        return config


def _stock_config(layer):
    """The config of the plain Keras layer a Bayesian one becomes."""
    config = layer.get_config()
    for key in ("weight_noise", "vocabulary", "log_sigma_init", "seed", "gates", "inputs",
                "hidden", "one_hot_input"):
        config.pop(key, None)
    return config


def _stock_layer(layer):
    if isinstance(layer, BayesianEmbedding):
        return keras.layers.Embedding.from_config(_stock_config(layer))
    if isinstance(layer, BayesianDense):
        return keras.layers.Dense.from_config(_stock_config(layer))
    if isinstance(layer, BayesianLSTM):
        cell = layer.cell
        return keras.layers.LSTM(
            cell.units, activation=cell.activation, recurrent_activation=cell.recurrent_activation,
            unit_forget_bias=cell.unit_forget_bias, return_sequences=layer.return_sequences,
            return_state=layer.return_state, go_backwards=layer.go_backwards,
            stateful=layer.stateful, name=layer.name)
    return layer.__class__.from_config(layer.get_config())


def fold_into_plain_model(model):
    """A plain Keras model computing what `model` computes at evaluation (noise off, pruned
    variables at 0), every multiplicative variable folded into the weights."""
    plain = keras.models.clone_model(model, clone_function=_stock_layer)
    hidden = {}
    for layer in model.layers:
        twin = plain.get_layer(layer.name) if layer.weights else None
        if twin is None:
            continue
        if isinstance(layer, (BayesianEmbedding, BayesianDense)):
            twin.set_weights(layer.folded())
        elif isinstance(layer, BayesianLSTM):
            cell = layer.cell
            kernel, recurrent = (np.asarray(ops.convert_to_numpy(w)) for w in cell.kernels(False))
            gates = cell.means("gates")
            kernel = kernel * cell.means("inputs")[:, None] * gates[None, :]
            recurrent = recurrent * gates[None, :]
            twin.set_weights([kernel, recurrent, np.asarray(ops.convert_to_numpy(cell.bias))])
            hidden[layer.name] = cell.means("hidden")
        else:
            twin.set_weights(layer.get_weights())
    # z_h multiplies the hidden output: its recurrent row and every consumer row.
    variables = variables_by_path(plain)
    for family in discover_groups(plain):
        z = hidden.get(family.name)
        if z is None or np.all(z == 1.0):
            continue
        for fp in family.outgoing:
            w = np.asarray(ops.convert_to_numpy(variables[fp.variable]))
            index = fp.indices(family.size)  # (units, offsets)
            moved = np.moveaxis(w, fp.axis, 0).copy()
            for k in range(family.size):
                moved[index[k]] *= z[k]
            variables[fp.variable].assign(np.moveaxis(moved, 0, fp.axis))
    return plain
