"""Training pictures: each recurrent layer's nonzero weights, and units and metrics per epoch."""

import os

import numpy as np
from keras import ops

from iss_keras.groups import variables_by_path


def plot_training(history, model, groups, directory, metrics=("train_perplexity", "valid_perplexity"),
                  log_scale=True):
    """PNG plots: each recurrent layer's weight pattern, and active units and `metrics` per epoch.

    Returns the paths written (none without matplotlib).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
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


def plot_gate_structure(model, directory):
    """PNG per gated recurrent layer: which gates of which units still compute (black) and
    which are constant (white), one row per gate type, as Lobacheva et al.'s figures; and
    whether each hidden unit is kept. Returns the paths written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from iss_keras.compact import GATE_NAMES, make_gate_plan
    from iss_keras.rebuild import make_plan
    from iss_keras.sparsity.structured import structured_groups

    os.makedirs(directory, exist_ok=True)
    gates, kept = make_gate_plan(model), make_plan(model, structured_groups(model)).kept
    written = []
    for name, entry in gates.layers.items():
        units, names = entry["units"], GATE_NAMES[entry["kind"]]
        active = np.zeros(len(names) * units, bool)
        active[entry["input_columns"]] = True
        active[entry["recurrent_columns"]] = True
        grid = active.reshape(len(names), units).astype(float)
        alive = np.zeros(units)
        alive[kept.get(name, range(units))] = 1.0
        fig, ax = plt.subplots(figsize=(max(6, units / 12), 2.2))
        ax.imshow(np.vstack([grid, alive[None]]), aspect="auto", cmap="Greys",
                  interpolation="nearest", vmin=0, vmax=1)
        ax.set_yticks(range(len(names) + 1), list(names) + ["kept"])
        ax.set_xlabel("hidden unit")
        ax.set_title(f"{name}: non-constant gates ({int(active.sum())}/{active.size}), "
                     f"kept units ({int(alive.sum())}/{units})")
        path = os.path.join(directory, f"gates_{name.replace('/', '_')}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
