"""The original's other structured penalties: group Lasso over whole rows or columns.

wenwei202/iss-rnns offers them beside ISS (row_col_grouplasso.json): each row
(or column) of a 2-D weight is one group. They act on one variable, so they
are plain Keras regularizers with no coupling.
"""

import keras
from keras import ops

from iss_keras.sparsity.base import check_strength
from iss_keras.sparsity.components import EPSILON


class _HyperplaneGroupLasso(keras.regularizers.Regularizer):
    """Group Lasso whose groups are the rows or the columns of a 2-D weight."""

    reduce_axis = None  # the axis summed within a group

    def __init__(self, strength=1e-3):
        self.strength = check_strength(strength)

    def __call__(self, x):
        if len(x.shape) != 2:
            raise ValueError(f"{type(self).__name__} expects a 2-D weight matrix. "
                             f"Received shape {tuple(x.shape)}.")
        norms = ops.sqrt(ops.sum(ops.square(x), axis=self.reduce_axis) + EPSILON)
        return self.strength * ops.sum(norms)

    def get_config(self):
        return {"strength": self.strength}


@keras.saving.register_keras_serializable(package="iss_keras")
class RowGroupLasso(_HyperplaneGroupLasso):
    """`strength * sum_rows sqrt(||row||^2 + 1e-8)` on a 2-D weight (the original's row lasso)."""

    reduce_axis = 1


@keras.saving.register_keras_serializable(package="iss_keras")
class ColumnGroupLasso(_HyperplaneGroupLasso):
    """`strength * sum_cols sqrt(||column||^2 + 1e-8)` on a 2-D weight."""

    reduce_axis = 0
