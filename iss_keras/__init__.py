"""iss_keras: Intrinsic Sparse Structures for Keras 3 recurrent networks.

Train LSTMs (GRUs, SimpleRNNs) with a group Lasso over each hidden unit's whole
footprint, drive whole units to exactly zero, and rebuild the network as a
smaller dense model whose outputs are verified to be the same.

The top level holds what a user of the README needs, in three tiers:

* the ISS pieces attached to stock Keras layers: `ISSRegularizer`, `ZeroOut`,
  `ComponentEnforcer`, `couple`, `iss_penalty`;
* the structures and their rebuild: `discover_groups`, `Footprint`,
  `UnitFamily`, `GroupSet`, `make_plan`, `ShrinkPlan`, `apply_plan`,
  `shrink`, `sparsity_report`, `SparsityReportCallback`, `export_saved_model`,
  `export_tflite`;
* the errors a contract raises: `UnsupportedLayerError`,
  `UncoupledRegularizerError`, `ShrinkVerificationError`,
  `ExportVerificationError`.

Everything else lives in its module (`iss_keras.sparsity` for the methods,
`iss_keras.models` for the paper's models, `iss_keras.tasks`,
`iss_keras.training`, `iss_keras.datasets`). Each public name is exported
from one place.

Importing the package starts nothing: names are loaded when first used, and
the backend starts when Keras is first imported. Scripts that want the
backend's C++ start-up messages hidden call
`iss_keras.startup.start_backend_quietly()` before anything imports Keras, as
the trainers do.
"""

import importlib
import importlib.util

# Only reads whether the user asked for the backend's C++ messages, before anything imports a
# backend (TensorFlow's import changes the variable it reads); starts nothing.
from iss_keras import startup as _startup  # noqa: F401

__version__ = "0.1.0"

# Each top-level name and the module that defines it.
_EXPORTS = {
    # ISS on stock Keras layers
    "ISSRegularizer": "iss_keras.sparsity.components",
    "ZeroOut": "iss_keras.sparsity.elementwise",
    "ComponentEnforcer": "iss_keras.sparsity.components",
    "couple": "iss_keras.sparsity.components",
    "iss_penalty": "iss_keras.sparsity.components",
    # structures, report, rebuild, deploy
    "discover_groups": "iss_keras.discovery",
    "Footprint": "iss_keras.groups",
    "UnitFamily": "iss_keras.groups",
    "GroupSet": "iss_keras.groups",
    "make_plan": "iss_keras.rebuild",
    "ShrinkPlan": "iss_keras.rebuild",
    "apply_plan": "iss_keras.rebuild",
    "shrink": "iss_keras.rebuild",
    "sparsity_report": "iss_keras.report",
    "SparsityReportCallback": "iss_keras.report",
    "export_saved_model": "iss_keras.export",
    "export_tflite": "iss_keras.export",
    # errors
    "UnsupportedLayerError": "iss_keras.discovery",
    "UncoupledRegularizerError": "iss_keras.sparsity.components",
    "ShrinkVerificationError": "iss_keras.rebuild",
    "ExportVerificationError": "iss_keras.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Load a public name (or a subpackage, e.g. `iss_keras.models`) on first use."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
