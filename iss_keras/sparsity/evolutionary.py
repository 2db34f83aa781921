"""Sparse evolutionary training (SET; Mocanu et al. 2018, SET-LSTM: Liu et al. 2019).

Unlike ISS, which starts dense and prunes, SET keeps the embedding and the
recurrent cells sparse during all of training:

* **Topology**: a 0/1 mask per sparse weight (`Topology`), applied by a
  constraint (`MaskConstraint`) after every optimizer step, so masked weights
  are exactly zero; saved in `.keras` files (the constraint's config) and in
  checkpoints (the method's state).
* **Erdős–Rényi start**: each matrix has density `eps * (n_in + n_out) /
  (n_in * n_out)` (SET's default `eps` = 20), or `eps` is solved so that all
  sparse matrices together have a given density. A recurrent cell's kernels
  hold one matrix per gate (LSTM: i, f, c, o; GRU: z, r, h): each gate is its
  own weight matrix in the cell's equations and has its own fan-out `n_out =
  units`, so each block gets its own density and evolves on its own.
* **Evolution** before every epoch but the first: in each matrix the fraction
  `zeta` of the positive weights closest to zero and of the negative weights
  closest to zero are removed, as SET does, and as many connections are grown
  at random empty positions, starting at 0 with their optimizer state reset.
  The count of connections stays exact. (Evolving before an epoch rather than
  after keeps each epoch's validation on the trained topology, as SET's code
  evaluates before it evolves.)
* The output layer stays dense, as in SET.

The masks are `sparsity.masks`' (shared with magnitude pruning): live variables
of the compiled step under TensorFlow and torch, constants of the trace under
JAX, where the step is rebuilt after each evolution. The fused LSTM kernel is
kept: SET here saves storage, not time (unstructured zeros do not speed up a
dense kernel; see the trainer's results).
"""

import dataclasses
import zlib

import keras
import numpy as np
from keras import ops

from iss_keras.gates import gate_names
from iss_keras.keras_internals import all_layers, optimizer_slots
from iss_keras.options import check_at_least, check_fraction, check_fraction_value, option
from iss_keras.sparsity.base import SparsityMethod
from iss_keras.sparsity.masks import (apply_masks, attach_mask, pack_mask,
                                      rebuild_after_new_masks, unpack_mask)


def erdos_renyi_density(n_in, n_out, epsilon):
    """SET's density of an n_in x n_out matrix: `eps * (n_in + n_out) / (n_in * n_out)`, at most 1."""
    return min(1.0, epsilon * (n_in + n_out) / (n_in * n_out))


def solve_epsilon(shapes, density):
    """The `eps` giving all matrices (`[(n_in, n_out), ...]`) together `density` (bisection)."""
    check_fraction_value("density", density, low_open=True, high_open=False)
    total = sum(r * c for r, c in shapes)

    def kept(eps):
        return sum(erdos_renyi_density(r, c, eps) * r * c for r, c in shapes) / total

    low, high = 0.0, max(r * c for r, c in shapes)
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if kept(mid) < density else (low, mid)
    return high


class Block:
    """One matrix of the topology: columns `start:stop` of a 2-D weight (the whole of an embedding)."""

    def __init__(self, path, start, stop, rows):
        self.path, self.start, self.stop, self.rows = path, int(start), int(stop), int(rows)

    @property
    def shape(self):
        return self.rows, self.stop - self.start

    def key(self):
        return f"{self.path}[:, {self.start}:{self.stop}]"


class Topology:
    """The masks of the sparse weights, and the blocks that are evolved one by one.

    Attributes:
        masks: dict variable path -> boolean array.
        blocks: list of `Block`.
    """

    def __init__(self, masks, blocks):
        self.masks = {path: np.asarray(m, bool) for path, m in masks.items()}
        self.blocks = list(blocks)

    def density(self):
        """Present connections / all positions over every sparse weight."""
        present = sum(int(m.sum()) for m in self.masks.values())
        return present / max(1, sum(m.size for m in self.masks.values()))

    def block_densities(self):
        return {b.key(): float(self.masks[b.path][:, b.start:b.stop].mean()) for b in self.blocks}

    def connections(self):
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def get_config(self):
        return {"masks": {p: pack_mask(m) for p, m in self.masks.items()},
                "blocks": [[b.path, b.start, b.stop, b.rows] for b in self.blocks]}

    @classmethod
    def from_config(cls, config):
        return cls({p: unpack_mask(m) for p, m in config["masks"].items()},
                   [Block(*b) for b in config["blocks"]])


def sparse_weights(model, embedding=True):
    """`(layer, attribute, variable, gates)` of each weight SET makes sparse in `model`.

    The embedding (when `embedding`) and each recurrent cell's `kernel` and
    `recurrent_kernel`; Dense layers (the classifier, the softmax) stay dense.
    """
    found = []
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Embedding) and embedding:
            found.append((layer, "embeddings_constraint", layer.embeddings, 1))
        names = gate_names(layer)
        if names:
            gates = len(names)
            found.append((layer, "kernel_constraint", layer.kernel, gates))
            found.append((layer, "recurrent_constraint", layer.recurrent_kernel, gates))
    return found


@dataclasses.dataclass
class SETOptions:
    set_density: float = option(
        0.0, "Sparse evolutionary training: the density of the sparse matrices together "
        "(e.g. 0.04); SET's epsilon is solved for it. 0 (and --set_epsilon 0): off.")
    set_epsilon: float = option(0.0, "SET's Erdos-Renyi epsilon instead: each matrix has density "
                                "eps * (n_in + n_out) / (n_in * n_out) (SET's default 20).")
    set_zeta: float = option(0.3, "Fraction of each matrix's connections removed (and grown "
                             "again at random) before every epoch but the first.")
    set_embedding: bool = option(True, "Make the embedding sparse too (as SET-LSTM).")

    def __post_init__(self):
        check_at_least(self, 0.0, "set_density", "set_epsilon")
        if self.set_density and self.set_epsilon:
            raise ValueError("Give set_density or set_epsilon, not both. Received: "
                             f"set_density={self.set_density}, set_epsilon={self.set_epsilon}")
        if self.set_density:
            check_fraction(self, "set_density", low_open=True, high_open=False)
        check_fraction(self, "set_zeta")


class SET(SparsityMethod):
    """Sparse evolutionary training of the embedding and the recurrent cells.

    Args:
        density: overall density of the sparse matrices (eps solved for it), or
        epsilon: SET's Erdős–Rényi epsilon (one of the two).
        zeta: fraction removed and regrown per matrix before each epoch (0.3).
        embedding: make the embedding sparse too.
        seed: seed of the initial topology and of every evolution.

    Example:

    >>> sparsity = SET(density=0.04)
    >>> model = lstm_classifier(20000, sparsity=sparsity)
    >>> sparsity.bind(model, None)        # masks drawn and attached
    >>> model.fit(x, y, epochs=10, callbacks=sparsity.callbacks(run_info))
    """

    name = "set"
    sparsifies = True
    Options = SETOptions

    def __init__(self, density=None, epsilon=None, zeta=0.3, embedding=True, seed=0):
        if (density is None) == (epsilon is None):
            raise ValueError(f"Give SET one of density or epsilon. Received: density={density}, "
                             f"epsilon={epsilon}")
        self.density = None if density is None else float(density)
        self.epsilon = None if epsilon is None else float(epsilon)
        self.zeta = float(zeta)
        self.embedding = bool(embedding)
        self.seed = int(seed)
        self.topology = None
        self.epsilon_used = self.epsilon
        self.turnover = []          # connections changed at each evolution
        self._rng = np.random.default_rng(self.seed)
        self._model = None

    @classmethod
    def from_options(cls, options, context, chosen=()):
        if not (options.set_density or options.set_epsilon):
            return None
        return cls(density=options.set_density or None, epsilon=options.set_epsilon or None,
                   zeta=options.set_zeta, embedding=options.set_embedding,
                   seed=getattr(context, "seed", 0))

    @classmethod
    def describe(cls, config):
        if config.get("density"):
            return f"SET {100 * config['density']:.0f}%"
        return f"SET eps {config['epsilon']}"

    # -- topology ------------------------------------------------------------------------

    def _blocks(self, weights):
        blocks = []
        for _, _, variable, gates in weights:
            rows, cols = (int(d) for d in variable.shape)
            width = cols // gates
            blocks += [Block(variable.path, g * width, (g + 1) * width, rows) for g in range(gates)]
        return blocks

    def initial_topology(self, model):
        """Erdős–Rényi masks for `model`'s sparse weights (exact counts per block)."""
        weights = sparse_weights(model, self.embedding)
        if not weights:
            raise ValueError(f"SET found no embedding or recurrent cell to make sparse in "
                             f"model {model.name!r}.")
        blocks = self._blocks(weights)
        epsilon = self.epsilon if self.epsilon is not None else solve_epsilon(
            [b.shape for b in blocks], self.density)
        masks = {v.path: np.zeros(tuple(v.shape), bool) for _, _, v, _ in weights}
        for b in blocks:
            rows, cols = b.shape
            count = int(round(erdos_renyi_density(rows, cols, epsilon) * rows * cols))
            chosen = self._rng.choice(rows * cols, size=count, replace=False)
            block = np.zeros(rows * cols, bool)
            block[chosen] = True
            masks[b.path][:, b.start:b.stop] = block.reshape(rows, cols)
        self.epsilon_used = epsilon
        return Topology(masks, blocks)

    def bind(self, model, groups):
        self._model = model
        weights = sparse_weights(model, self.embedding)
        if self.topology is None:
            self.topology = self.initial_topology(model)
        for layer, attribute, variable, _ in weights:
            attach_mask(variable, self.topology.masks[variable.path], (layer, attribute))
        self._apply_masks()

    def _apply_masks(self):
        apply_masks(self._model.weights, self.topology.masks)

    def evolve(self):
        """One SET step on every block: remove the weakest fraction zeta, regrow as many.

        Returns the number of connections changed.
        """
        variables = {v.path: v for v in self._model.weights}
        values = {p: np.asarray(ops.convert_to_numpy(variables[p])) for p in self.topology.masks}
        grown = {p: np.zeros(m.shape, bool) for p, m in self.topology.masks.items()}
        changed = 0
        for b in self.topology.blocks:
            mask = self.topology.masks[b.path][:, b.start:b.stop]
            w = values[b.path][:, b.start:b.stop]
            present = np.flatnonzero(mask.reshape(-1))
            flat = w.reshape(-1)[present]
            positive = present[flat > 0][np.argsort(flat[flat > 0])]
            negative = present[flat < 0][np.argsort(-flat[flat < 0])]
            removed = np.concatenate([
                positive[:int(round(self.zeta * len(positive)))],
                negative[:int(round(self.zeta * len(negative)))],
                present[flat == 0]])  # present but exactly 0: no weight to keep
            new = mask.reshape(-1).copy()
            new[removed] = False
            empty = np.flatnonzero(~new)
            regrow = self._rng.choice(empty, size=len(removed), replace=False)
            new[regrow] = True
            self.topology.masks[b.path][:, b.start:b.stop] = new.reshape(mask.shape)
            grown_block = np.zeros(new.shape, bool)
            grown_block[regrow] = True
            grown[b.path][:, b.start:b.stop] = grown_block.reshape(mask.shape)
            changed += len(removed)
        for path, variable in variables.items():
            if path not in self.topology.masks:
                continue
            keep = self.topology.masks[path] & ~grown[path]  # regrown connections start at 0
            variable.assign(values[path] * keep)
            for slot in optimizer_slots(self._model.optimizer, variable):
                slot.assign(np.asarray(ops.convert_to_numpy(slot)) * ~grown[path])
        self._apply_masks()
        rebuild_after_new_masks(self._model)
        self.turnover.append(changed)
        return changed

    # -- training ------------------------------------------------------------------------

    def callbacks(self, run):
        return [_EvolveBeforeEachEpoch(self)]

    def get_state(self):
        return {"topology": self.topology.get_config(), "turnover": list(self.turnover),
                "rng": self._rng.bit_generator.state, "epsilon": self.epsilon_used}

    def set_state(self, state):
        if not state:
            return
        self.topology = Topology.from_config(state["topology"])
        self.turnover = list(state["turnover"])
        self._rng.bit_generator.state = state["rng"]
        self.epsilon_used = state.get("epsilon")
        if self._model is not None:
            self._apply_masks()

    def epoch_summary(self):
        return {"set": {"density": self.topology.density(),
                        "connections": self.topology.connections(),
                        "turnover": self.turnover[-1] if self.turnover else 0}}

    def result_fields(self, history, model=None):
        out = {"set": {"density": self.topology.density(), "epsilon": self.epsilon_used,
                       "density_asked": self.density, "zeta": self.zeta,
                       "connections": self.topology.connections(),
                       "block_densities": self.topology.block_densities(),
                       "turnover": list(self.turnover)}}
        if model is not None:
            out["set"]["storage"] = storage_sizes(model)
        return out

    def get_config(self):
        return {"density": self.density, "epsilon": self.epsilon, "zeta": self.zeta,
                "embedding": self.embedding, "seed": self.seed}


class _EvolveBeforeEachEpoch(keras.callbacks.Callback):
    """SET's evolution between epochs (before epoch e > 0, so it also follows a resume)."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def on_epoch_begin(self, epoch, logs=None):
        if epoch > len(self.method.turnover):
            self.method.evolve()


def storage_sizes(model):
    """Bytes to store `model`'s trainable weights densely and sparsely (zeros left out).

    `dense`: float32 values; `sparse`: float32 values of the nonzeros plus a
    bitmap of where they are; `*_compressed`: the same through zlib (as a
    compressed `.npz` would be).
    """
    dense = sparse = dense_z = sparse_z = 0
    for v in model.trainable_weights:
        w = np.asarray(ops.convert_to_numpy(v), np.float32)
        nonzero = w != 0
        dense_bytes = w.tobytes()
        sparse_bytes = w[nonzero].tobytes() + np.packbits(nonzero.reshape(-1)).tobytes()
        dense += len(dense_bytes)
        sparse += len(sparse_bytes)
        dense_z += len(zlib.compress(dense_bytes, 6))
        sparse_z += len(zlib.compress(sparse_bytes, 6))
    return {"dense_bytes": dense, "sparse_bytes": sparse, "dense_compressed_bytes": dense_z,
            "sparse_compressed_bytes": sparse_z}
