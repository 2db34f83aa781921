"""Training pictures: each recurrent layer's nonzero weights, units and metrics per epoch, and
the pictures a sparsity method asks for (`draw`).

Drawing only: nothing here works out a structure. `plot_training` reads the weights of the
layers it is handed; a method's pictures come as data from its
`pictures(model)` hook (`iss_keras.sparsity.base.SparsityMethod`), a dict picture kind ->
data, and `draw` hands each to its drawing function (`DRAWINGS`).
"""

import os

import numpy as np
from keras import ops

from iss_keras.groups import variables_by_path


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_training(history, model, groups, directory, metrics=("train_perplexity", "valid_perplexity"),
                  log_scale=True):
    """PNG plots: each recurrent layer's weight pattern, and active units and `metrics` per epoch.

    Returns the paths written (none without matplotlib).
    """
    plt = _pyplot()
    if plt is None:
        print("Plots skipped: matplotlib is not installed (pip install 'iss_keras[plots]').")
        return []
    os.makedirs(directory, exist_ok=True)
    written = []
    variables = variables_by_path(model)
    for family in groups:
        incoming = [fp for fp in family.footprints if fp.role == "incoming"]
        if not incoming:
            continue
        # The unit-by-unit picture of the paper: the stacked input and recurrent
        # kernels; removed units show as white columns (all gates) and rows.
        matrix = np.concatenate([np.asarray(ops.convert_to_numpy(variables[fp.variable]))
                                 for fp in incoming], axis=0)
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.imshow(matrix != 0, aspect="auto", cmap="Greys", interpolation="nearest")
        ax.set_title(f"{family.name}: nonzero weights (input and recurrent kernels)")
        ax.set_xlabel("gate columns (one block per gate)")
        ax.set_ylabel("input rows, then recurrent rows")
        path = os.path.join(directory, f"weights_{family.name.replace('/', '_')}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if history:
        epochs = [row["epoch"] for row in history]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for i, name in enumerate(f.name for f in groups):
            left.plot(epochs, [row["active_units"][i] for row in history], marker="o", label=name)
        left.set_xlabel("epoch"), left.set_ylabel("active units"), left.legend()
        for key in metrics:
            if all(key in row for row in history):
                right.plot(epochs, [row[key] for row in history], marker="o",
                           label=key.replace("_", " "))
        right.set_xlabel("epoch")
        if log_scale:
            right.set_yscale("log")
        right.legend()
        fig.tight_layout()
        path = os.path.join(directory, "progress.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def plot_gate_structure(structure, directory):
    """PNG per gated recurrent layer: which gates of which units still compute (black) and
    which are constant or belong to a removed unit (white), one row per gate type, as
    Lobacheva et al.'s figures; and whether each hidden unit is kept. The title's gate count
    is the count of results.json's `nonconstant_gates`. Returns the paths written (none
    without matplotlib).

    Args:
        structure: dict layer name -> {"gates": the gate names (e.g. ("i", "f", "c", "o")), "active": a
            boolean array [gates, units] (the rebuilt model computes the gate), "kept": a boolean
            array [units] (the hidden unit is kept)}, as
            `iss_keras.sparsity.structured.gate_structure` gives.
        directory: where the pictures go (`gates_<layer>.png`).
    """
    plt = _pyplot()
    if plt is None:
        return []
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, layer in structure.items():
        names, active = list(layer["gates"]), np.asarray(layer["active"], bool)
        alive = np.asarray(layer["kept"], bool).astype(float)
        units = alive.size
        fig, ax = plt.subplots(figsize=(max(6, units / 12), 2.2))
        ax.imshow(np.vstack([active.astype(float), alive[None]]), aspect="auto", cmap="Greys",
                  interpolation="nearest", vmin=0, vmax=1)
        ax.set_yticks(range(len(names) + 1), names + ["kept"])
        ax.set_xlabel("hidden unit")
        ax.set_title(f"{name}: gates the rebuilt model computes ({int(active.sum())}/"
                     f"{active.size}), kept units ({int(alive.sum())}/{units})")
        path = os.path.join(directory, f"gates_{name.replace('/', '_')}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


# Picture kind (a key of a method's `pictures(model)`) -> the function drawing its data.
DRAWINGS = {"gate_structure": plot_gate_structure}


def draw(pictures, directory):
    """Draw a method's pictures (dict kind -> data, from its `pictures(model)` hook) into
    `directory`; returns the paths written (none without matplotlib)."""
    unknown = sorted(set(pictures) - set(DRAWINGS))
    if unknown:
        raise ValueError(f"No drawing for pictures {unknown}; known kinds: {sorted(DRAWINGS)}.")
    return [path for kind, data in pictures.items() for path in DRAWINGS[kind](data, directory)]
