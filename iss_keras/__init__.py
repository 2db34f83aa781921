"""iss_keras: Intrinsic Sparse Structures for Keras 3 recurrent networks.

Train LSTMs (GRUs, SimpleRNNs) with a group Lasso over each hidden unit's whole
footprint, drive whole units to exactly zero, and rebuild the network as a
smaller dense model whose outputs are verified to be the same.
"""

from iss_keras.startup import start_backend_quietly

start_backend_quietly()  # before anything imports Keras: no C++ start-up noise on a CPU machine

from iss_keras.discovery import PASS_THROUGH_LAYERS, UnsupportedLayerError, discover_groups
from iss_keras.export import (ExportReport, ExportVerificationError, export_saved_model,
                              export_tflite)
from iss_keras.groups import Footprint, GroupSet, UnitFamily, group_lasso, group_sq_norms
from iss_keras.models.rhn import RHNCell, rhn_language_model
from iss_keras.rebuild import (ShrinkPlan, ShrinkVerificationError, apply_plan, make_plan,
                               shrink, verify_equivalence)
from iss_keras.report import SparsityReport, SparsityReportCallback, sparsity_report
from iss_keras.sparsity.components import (ComponentEnforcer, ISSRegularizer,
                                           UncoupledRegularizerError, couple, iss_penalty)
from iss_keras.sparsity.elementwise import L1, ZeroOut
from iss_keras.sparsity.row_column import ColumnGroupLasso, RowGroupLasso

__version__ = "0.1.0"

__all__ = [
    "ColumnGroupLasso", "ComponentEnforcer", "ExportReport", "ExportVerificationError", "Footprint", "GroupSet", "ISSRegularizer", "L1",
    "PASS_THROUGH_LAYERS", "RHNCell", "RowGroupLasso", "ShrinkPlan", "ShrinkVerificationError",
    "SparsityReport", "SparsityReportCallback", "UncoupledRegularizerError", "UnitFamily",
    "UnsupportedLayerError", "ZeroOut", "apply_plan", "couple", "discover_groups", "export_saved_model", "export_tflite",
    "group_lasso", "group_sq_norms", "iss_penalty", "make_plan", "rhn_language_model", "shrink", "sparsity_report",
    "verify_equivalence",
]
