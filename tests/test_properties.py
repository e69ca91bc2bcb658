"""Property-based tests (hypothesis): any valid CSR trains and predicts, and
gives the same answer as its clean equivalent; malformed CSR is rejected
before any kernel runs.

Each property runs ``max_examples`` generated cases (see the settings below).
"""

import warnings
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from sksparsenn import SparseMLPRegressor

N_EXAMPLES = 200
_SETTINGS = settings(max_examples=N_EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@st.composite
def raw_csr(draw):
    """A valid CSR matrix in a raw form: any shape from 1 x 1, empty rows,
    duplicate entries, unsorted indices, explicit zeros, int32 or int64."""
    n_rows = draw(st.integers(1, 12))
    n_cols = draw(st.integers(1, 15))
    index_dtype = draw(st.sampled_from([np.int32, np.int64]))
    counts = draw(st.lists(st.integers(0, 2 * n_cols), min_size=n_rows, max_size=n_rows))
    nnz = sum(counts)
    indices = np.asarray(draw(st.lists(st.integers(0, n_cols - 1), min_size=nnz,
                                       max_size=nnz)), dtype=index_dtype)
    values = draw(st.lists(st.one_of(st.just(0.0), st.floats(-5, 5, allow_nan=False,
                                                             width=32)),
                           min_size=nnz, max_size=nnz))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(index_dtype)
    X = sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
    # Set the arrays directly: the constructor would canonicalise them.
    X.data = np.asarray(values, dtype=np.float32)
    X.indices = indices
    X.indptr = indptr
    X._has_canonical_format = False
    X._has_sorted_indices = False
    return X


def _clean(X):
    # In float64, the compute dtype of the fits below, so that duplicates are
    # summed with the same rounding as the estimator does after converting.
    C = sp.csr_matrix((X.data.astype(np.float64), X.indices.copy(), X.indptr.copy()),
                      shape=X.shape)
    C.sum_duplicates()
    C.eliminate_zeros()
    C.sort_indices()
    return C


def _fit_predict(X, y, **params):
    est = SparseMLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0,
                             dtype="float64", **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return est.predict(X)


@_SETTINGS
@given(X=raw_csr(), row_scaling=st.sampled_from(["none", "mean", "sqrt", "l2"]),
       solver=st.sampled_from(["adam", "adagrad", "sgd"]))
def test_any_valid_csr_equals_its_clean_equivalent(X, row_scaling, solver):
    y = np.arange(X.shape[0], dtype=np.float64) % 3
    pred = _fit_predict(X, y, row_scaling=row_scaling, solver=solver)
    assert pred.shape == (X.shape[0],)
    assert np.isfinite(pred).all()
    clean = _fit_predict(_clean(X), y, row_scaling=row_scaling, solver=solver)
    np.testing.assert_allclose(pred, clean, rtol=1e-10, atol=1e-12)


@st.composite
def malformed_csr(draw):
    """A CSR matrix with one structural defect that would make a kernel read
    out of bounds if it were not caught."""
    n_rows = draw(st.integers(1, 8))
    n_cols = draw(st.integers(1, 8))
    X = sp.random(n_rows, n_cols, density=0.5, format="csr", dtype=np.float64,
                  random_state=draw(st.integers(0, 1000)))
    X = sp.csr_matrix((np.ones(max(X.nnz, 1)), np.zeros(max(X.nnz, 1), np.int32),
                       np.r_[0, np.full(n_rows, max(X.nnz, 1))].astype(np.int32)),
                      shape=(n_rows, n_cols)) if X.nnz == 0 else X
    defect = draw(st.sampled_from(["index_high", "index_negative", "indptr_decreasing",
                                   "indptr_end", "indptr_start", "indptr_short"]))
    data, indices, indptr = X.data.copy(), X.indices.copy(), X.indptr.copy()
    k = draw(st.integers(0, indices.shape[0] - 1))
    if defect == "index_high":
        indices[k] = n_cols + draw(st.integers(0, 10**6))
    elif defect == "index_negative":
        indices[k] = -draw(st.integers(1, 10**6))
    elif defect == "indptr_decreasing":
        i = draw(st.integers(1, n_rows))
        indptr[i] = indptr[i - 1] - draw(st.integers(1, 5))
    elif defect == "indptr_end":
        indptr[-1] += draw(st.sampled_from([-1, 1, 10**6]))
    elif defect == "indptr_start":
        indptr[0] = draw(st.sampled_from([-1, 1]))
    else:
        indptr = indptr[:-1]
    M = sp.csr_matrix((n_rows, n_cols), dtype=np.float64)
    M.data, M.indices, M.indptr = data, indices, indptr
    dtype = draw(st.sampled_from(["float32", "float64"]))  # conversion or not
    return M, dtype


@_SETTINGS
@given(case=malformed_csr())
def test_malformed_csr_is_rejected_before_any_kernel(case):
    from sksparsenn import _network

    X, dtype = case
    calls = []
    with mock.patch.object(_network.SparseNetwork, "step", lambda *a, **k: calls.append(1)):
        with pytest.raises((ValueError, TypeError)):
            SparseMLPRegressor(hidden_layer_sizes=(3,), max_iter=1, dtype=dtype).fit(
                X, np.zeros(X.shape[0]))
    assert calls == []
    good = sp.csr_matrix(np.eye(X.shape[0], X.shape[1]))
    est = SparseMLPRegressor(hidden_layer_sizes=(3,), max_iter=1, dtype=dtype,
                             random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(good, np.zeros(X.shape[0]))
    with pytest.raises((ValueError, TypeError)):
        est.predict(X)
