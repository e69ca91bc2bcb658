"""scikit-learn's estimator checks, run on both estimators."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sksparsenn import SparseMLPRegressor, SparseMLPTransformer

# Each expected failure carries the reason it cannot pass. They concern the
# float32 default and input dropout only: the other float64 instances pass
# every check.
_WEIGHTS_VS_REPEATS = (
    "float32 compute dtype: equal in exact arithmetic, but a weighted row and its "
    "repeated copies are summed in a different order, which changes float32 "
    "results by about 1e-7 relative, the check's own rtol"
)
_SUBSET = (
    "float32 compute dtype: BLAS sums the dense layers in an order that depends on "
    "how many rows one call predicts, which changes float32 results by about 1e-7 "
    "relative, the check's own rtol"
)
FLOAT32_EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_VS_REPEATS,
    "check_sample_weight_equivalence_on_sparse_data": _WEIGHTS_VS_REPEATS,
    "check_methods_subset_invariance": _SUBSET,
}


_DROPOUT_DRAWS = (
    "input dropout draws one mask value per stored non-zero: a row repeated "
    "twice gets two independent masks where its weighted copy gets one, so the "
    "fits differ by design (with input_dropout=0 the float64 instances pass)"
)


def _expected_failed_checks(estimator):
    if estimator.input_dropout > 0:
        return {"check_sample_weight_equivalence_on_dense_data": _DROPOUT_DRAWS,
                "check_sample_weight_equivalence_on_sparse_data": _DROPOUT_DRAWS}
    if estimator.dtype not in ("float32", np.float32):
        return {}
    expected = dict(FLOAT32_EXPECTED_FAILED_CHECKS)
    if isinstance(estimator, SparseMLPTransformer) and len(estimator.hidden_layer_sizes) == 1:
        # transform() of a single hidden layer is the row-wise sparse kernel
        # alone: no BLAS, so subsets give identical rows.
        del expected["check_methods_subset_invariance"]
    return expected


def _instances():
    return [
        SparseMLPRegressor(hidden_layer_sizes=(16,), random_state=0),
        SparseMLPRegressor(hidden_layer_sizes=(8, 4), solver="adagrad", learning_rate_init=0.05, row_scaling="l2",
                           dtype="float64", random_state=0),
        SparseMLPRegressor(hidden_layer_sizes=(8,), solver="rowwise_adagrad", learning_rate_init=0.05,
                           linear_term=True, input_dropout=0.2, max_norm=3.0, dtype="float64",
                           random_state=0),
        SparseMLPTransformer(hidden_layer_sizes=(8,), random_state=0),
        SparseMLPTransformer(hidden_layer_sizes=(8, 3), dtype="float64", random_state=0),
        SparseMLPTransformer(hidden_layer_sizes=(8,), objective="reconstruction",
                             dtype="float64", random_state=0),
    ]


# The checks fit with few iterations on purpose.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    _instances(),
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
