"""Behavioural tests of SparseMLPRegressor, from a demanding scikit-learn user's side.

These tests use the public API, except where a test has to reach in: to
simulate an interrupt during a training step, to check that no training step
runs on rejected input (both by patching ``SparseNetwork.step``), and to
reproduce the validation split of early stopping; each place says so.

Equality is asserted exactly (``assert_array_equal``) where the package
promises, or its design implies, that two paths run the same arithmetic on the
same numbers: every accepted input format is converted once to the same
canonical float32/float64 CSR before any arithmetic, the kernels sum in a
fixed order for any number of threads, and the random stream is consumed the
same way by ``partial_fit``, ``warm_start`` and ``fit``. Where two paths are
equal in exact arithmetic only (a different summation order), ``assert_allclose``
is used with a tolerance a few orders above the rounding of the dtype.
"""

import os
import pickle
import signal
import subprocess
import sys
import threading
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.preprocessing import normalize
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

import sksparsenn._network as _network
from sksparsenn import SparseMLPRegressor
from sksparsenn.datasets import make_sparse_regression

# Almost every fit here runs a handful of epochs on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_SAMPLES = 300
N_FEATURES = 2**12


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """Run the kernels on one OpenMP thread unless a test asks for more.

    On a small, busy machine the OpenMP barriers of two threads make these
    tiny fits tens of times slower. Results do not depend on the thread count
    (asserted bit for bit by ``test_results_do_not_depend_on_n_threads``), so
    nothing else here loses coverage.
    """
    with threadpool_limits(1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def data():
    """X (CSR float32, 3 almost-full rows among 300), Y with 8 targets."""
    X, Y = make_sparse_regression(
        n_samples=N_SAMPLES, n_features=N_FEATURES, random_state=0, dense_row_fraction=0.01
    )
    assert X.format == "csr" and X.dtype == np.float32 and X.has_canonical_format
    return X, Y


def _reg(**params):
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    kw.update(params)
    return SparseMLPRegressor(**kw)


def _weights(est):
    return est.coefs_ + est.intercepts_


def _copy_weights(est):
    return [w.copy() for w in _weights(est)]


def assert_same_weights(a, b):
    wa = a if isinstance(a, list) else _weights(a)
    wb = b if isinstance(b, list) else _weights(b)
    assert len(wa) == len(wb)
    for p, q in zip(wa, wb):
        assert p.dtype == q.dtype
        assert_array_equal(p, q)


def assert_different_weights(a, b):
    wa = a if isinstance(a, list) else _weights(a)
    wb = b if isinstance(b, list) else _weights(b)
    assert any(not np.array_equal(p, q) for p, q in zip(wa, wb))


# --------------------------------------------------------------------------- #
# Builders of equivalent inputs
# --------------------------------------------------------------------------- #
def _csr(data, indices, indptr, shape):
    return sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)


def _unsorted(X, seed=1):
    """Same matrix, with the entries of every row in a random order."""
    rng = np.random.RandomState(seed)
    data, indices = X.data.copy(), X.indices.copy()
    for i in range(X.shape[0]):
        s, e = X.indptr[i], X.indptr[i + 1]
        p = s + rng.permutation(e - s)
        data[s:e], indices[s:e] = X.data[p], X.indices[p]
    Xu = _csr(data, indices, X.indptr.copy(), X.shape)
    assert not Xu.has_sorted_indices
    return Xu


def _int64_indices(X):
    X = X.copy()
    X.indices = X.indices.astype(np.int64)
    X.indptr = X.indptr.astype(np.int64)
    assert X.indices.dtype == X.indptr.dtype == np.int64
    return X


def _mixed_index_dtypes(X):
    X = X.copy()
    X.indptr = X.indptr.astype(np.int64)
    assert X.indices.dtype == np.int32 and X.indptr.dtype == np.int64
    return X


def _read_only(X):
    X = X.copy()
    for a in (X.data, X.indices, X.indptr):
        a.flags.writeable = False
    return X


def _dense_read_only(X):
    D = X.toarray()
    D.flags.writeable = False
    return D


def _non_contiguous_data(X):
    buf = np.zeros(2 * X.nnz, dtype=X.dtype)
    buf[::2] = X.data
    Xn = X.copy()
    Xn.data = buf[::2]
    assert not Xn.data.flags.c_contiguous
    return Xn


def _with_duplicates(X, seed=2):
    """Every stored value split into two random parts, stored as two entries."""
    rng = np.random.RandomState(seed)
    coo = X.tocoo()
    u = rng.uniform(0.1, 0.9, coo.nnz).astype(X.dtype)
    rows = np.r_[coo.row, coo.row]
    order = np.argsort(rows, kind="stable")
    data = np.r_[coo.data * u, coo.data * (1 - u)][order]
    cols = np.r_[coo.col, coo.col][order]
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=X.shape[0]))]
    # built from CSR arrays: scipy's (data, (row, col)) constructor would sum them
    Xd = _csr(data, cols.astype(np.int32), indptr.astype(np.int32), X.shape)
    assert Xd.nnz == 2 * X.nnz and not Xd.has_canonical_format
    return Xd


def _with_explicit_zeros(X, seed=3, fraction=0.01):
    rng = np.random.RandomState(seed)
    D = X.toarray()
    keep = (D != 0) | (rng.random_sample(D.shape) < fraction)
    rows, cols = np.nonzero(keep)
    Xz = sp.csr_matrix((D[rows, cols], (rows, cols)), shape=X.shape)
    assert Xz.nnz > X.nnz and (Xz.data == 0).sum() == Xz.nnz - X.nnz
    assert Xz.has_canonical_format
    return Xz


# Each builder returns the same matrix as its CSR float32 input, in another form.
EQUIVALENT_INPUTS = {
    "csr_array": sp.csr_array,
    "csc_matrix": lambda X: X.tocsc(),
    "csc_array": lambda X: sp.csc_array(X),
    "coo_matrix": lambda X: X.tocoo(),
    "coo_array": lambda X: sp.coo_array(X),
    "lil_matrix": lambda X: X.tolil(),
    "dense_float32": lambda X: X.toarray(),
    "dense_float64": lambda X: X.toarray().astype(np.float64),
    "dense_read_only": _dense_read_only,
    "list_of_lists": lambda X: X.toarray().tolist(),
    "csr_float64": lambda X: X.astype(np.float64),
    "csr_int64_data": lambda X: X.astype(np.int64),  # values are small counts
    "csr_int32_index": lambda X: X,
    "csr_int64_index": _int64_indices,
    "csr_int32_indices_int64_indptr": _mixed_index_dtypes,
    "csr_unsorted_indices": _unsorted,
    "csr_read_only": _read_only,
    "csr_read_only_unsorted": lambda X: _read_only(_unsorted(X)),
    "csr_read_only_float64": lambda X: _read_only(X.astype(np.float64)),
    "csr_non_contiguous_data": _non_contiguous_data,
}


# --------------------------------------------------------------------------- #
# 1. Input formats
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def reference_fit(data):
    X, Y = data
    y = Y[:, 0]
    return _reg().fit(X, y)


@pytest.mark.parametrize("name", list(EQUIVALENT_INPUTS))
def test_equivalent_inputs_give_identical_models(data, reference_fit, name):
    # The generator's values are small integer counts, exactly representable in
    # every dtype used here, and every format is converted to the same
    # canonical float32 CSR (sorted, int32 or int64 indices) before any
    # arithmetic: fits and predictions must be bit-identical, not just close.
    X, Y = data
    y = Y[:, 0]
    X_other = EQUIVALENT_INPUTS[name](X)
    est = _reg().fit(X_other, y)
    assert_same_weights(est, reference_fit)
    assert est.n_features_in_ == N_FEATURES
    assert_array_equal(est.predict(X_other), reference_fit.predict(X))
    # and the reference model predicts the other format as it predicts CSR
    assert_array_equal(reference_fit.predict(X_other), reference_fit.predict(X))


def test_bool_data_is_converted(data):
    X, Y = data
    y = Y[:, 0]
    Xb = X.astype(bool)
    Xf = Xb.astype(np.float32)
    assert_same_weights(_reg().fit(Xb, y), _reg().fit(Xf, y))


def test_duplicate_entries_are_summed_as_scipy_does(data):
    # The package sums duplicates with scipy's own sum_duplicates, so the
    # comparison against the scipy-summed matrix is exact. (The summed values
    # differ from X by float32 rounding; that is why the reference is
    # Xd.sum_duplicates(), not X.)
    X, Y = data
    y = Y[:, 0]
    Xd = _with_duplicates(X)
    clean = Xd.copy()
    clean.sum_duplicates()
    assert clean.nnz == X.nnz
    a = _reg().fit(Xd, y)
    b = _reg().fit(clean, y)
    assert_same_weights(a, b)
    assert_array_equal(a.predict(Xd), b.predict(clean))


def test_explicit_zeros_give_identical_fit(data):
    X, Y = data
    y = Y[:, 0]
    Xz = _with_explicit_zeros(X)
    assert_same_weights(_reg().fit(Xz, y), _reg().fit(X, y))


def test_explicit_zeros_train_and_predict_like_clean_matrix(data):
    # Isolates the training from the initialisation (tested above): both
    # models are initialised by a first partial_fit on the clean matrix, then
    # trained on the clean matrix or on the same matrix with stored zeros.
    # The kernels skip stored zeros (row scales, forward pass, lazy updates),
    # so the arithmetic is the same, in the same order.
    X, Y = data
    y = Y[:, :2]
    Xz = _with_explicit_zeros(X)
    for row_scaling in ("mean", "sqrt", "l2"):
        a = _reg(row_scaling=row_scaling).partial_fit(X, y)
        b = _reg(row_scaling=row_scaling).partial_fit(X, y)
        a.partial_fit(X, y)
        b.partial_fit(Xz, y)
        assert_same_weights(a, b)
        assert_array_equal(b.predict(Xz), a.predict(X))


def test_float64_input_with_default_float32_compute(data):
    X, Y = data
    X64 = X.astype(np.float64)
    # values not exactly representable in float32: rounding happens once, on
    # conversion, so the fit equals a fit on the rounded float32 matrix
    X64.data *= 1 + 1e-3 * np.random.RandomState(0).standard_normal(X64.nnz)
    X32 = X64.astype(np.float32)
    a = _reg().fit(X64, Y)
    b = _reg().fit(X32, Y)
    assert a.coefs_[0].dtype == np.float32
    assert_same_weights(a, b)
    assert_array_equal(a.predict(X64), b.predict(X32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_and_predict_do_not_modify_inputs(data, dtype):
    # unsorted, with duplicates, and (for float64) in need of a dtype conversion
    X, Y = data
    Xd = _unsorted(_with_duplicates(X.astype(dtype)))
    saved = (Xd.data.copy(), Xd.indices.copy(), Xd.indptr.copy())
    y = Y[:, :2].copy()
    y_saved = y.copy()
    sw = np.random.RandomState(0).uniform(0.5, 2, N_SAMPLES)
    sw_saved = sw.copy()
    est = _reg().fit(Xd, y, sample_weight=sw)
    est.partial_fit(Xd, y, sample_weight=sw)
    est.predict(Xd)
    for before, after in zip(saved, (Xd.data, Xd.indices, Xd.indptr)):
        assert_array_equal(before, after)
    assert Xd.nnz == saved[0].shape[0]
    assert_array_equal(y, y_saved)
    assert_array_equal(sw, sw_saved)


@pytest.mark.parametrize("index_dtype", [np.int16, np.uint32])
def test_other_integer_index_dtypes(data, index_dtype):
    # scipy accepts any integer index dtype (its routines upcast them), and the
    # package already accepts int16 indices with an int32 indptr; both arrays
    # in int16 (or both in uint32) should work as well.
    X, Y = data
    X = X[:100, :2048].copy()  # small enough for int16 indptr
    y = Y[:100, 0]
    assert X.nnz < 2**15
    Xo = X.copy()
    Xo.indices = Xo.indices.astype(index_dtype)
    Xo.indptr = Xo.indptr.astype(index_dtype)
    assert Xo.indices.dtype == Xo.indptr.dtype == index_dtype
    assert_same_weights(_reg().fit(Xo, y), _reg().fit(X, y))


# --------------------------------------------------------------------------- #
# 2. dtype
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "dtype, expected",
    [(None, np.float32), ("float32", np.float32), (np.float32, np.float32),
     ("float64", np.float64), (np.float64, np.float64)],
)
def test_compute_dtype(data, dtype, expected):
    X, Y = data
    est = _reg() if dtype is None else _reg(dtype=dtype)
    est.fit(X, Y[:, :2])
    for w in _weights(est):
        assert w.dtype == expected
    pred = est.predict(X)
    assert pred.dtype == np.float64
    # float32 and float64 input predict the same
    assert_array_equal(pred, est.predict(X.astype(np.float64)))


# --------------------------------------------------------------------------- #
# 3. Target shapes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "y_shape, pred_shape, n_outputs",
    [((N_SAMPLES,), (N_SAMPLES,), 1), ((N_SAMPLES, 1), (N_SAMPLES,), 1),
     ((N_SAMPLES, 3), (N_SAMPLES, 3), 3)],
)
def test_target_shapes(data, y_shape, pred_shape, n_outputs):
    X, Y = data
    y = Y[:, : (y_shape[1] if len(y_shape) == 2 else 1)].reshape(y_shape)
    est = _reg().fit(X, y)
    assert est.n_outputs_ == n_outputs
    assert est.coefs_[-1].shape == (8, n_outputs)
    assert est.predict(X).shape == pred_shape
    assert est.predict(X[:1]).shape == (1,) + pred_shape[1:]


def test_column_target_same_model_as_1d(data):
    X, Y = data
    a = _reg().fit(X, Y[:, 0])
    b = _reg().fit(X, Y[:, :1])
    c = _reg().fit(X, Y[:, 0].tolist())
    assert_same_weights(a, b)
    assert_same_weights(a, c)


def test_score_is_r2(data):
    X, Y = data
    est = _reg().fit(X, Y)
    assert est.score(X, Y) == pytest.approx(r2_score(Y, est.predict(X)))


# --------------------------------------------------------------------------- #
# 4. sample_weight
# --------------------------------------------------------------------------- #
def _constant_nnz_data(seed=0, nnz_per_row=20):
    """Rows that all store the same number of values."""
    rng = np.random.RandomState(seed)
    rows = np.repeat(np.arange(N_SAMPLES), nnz_per_row)
    cols = np.concatenate([rng.choice(N_FEATURES, nnz_per_row, replace=False)
                           for _ in range(N_SAMPLES)])
    X = sp.csr_matrix((rng.uniform(0.5, 1.5, rows.shape[0]), (rows, cols)),
                      shape=(N_SAMPLES, N_FEATURES))
    y = X @ rng.standard_normal(N_FEATURES) + 0.1 * rng.standard_normal(N_SAMPLES)
    return X, y


def _weighted_vs_repeated(X, y, solver):
    sw = np.random.RandomState(1).randint(1, 4, X.shape[0])
    idx = np.repeat(np.arange(X.shape[0]), sw)
    # one batch per epoch holding every row (and every repetition), in order
    kw = dict(batch_size=idx.shape[0], shuffle=False, dtype="float64", max_iter=5,
              learning_rate_init=0.01, solver=solver)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Got `batch_size`", UserWarning)
        weighted = _reg(**kw).fit(X, y, sample_weight=sw)
    repeated = _reg(**kw).fit(X[idx], y[idx])
    return weighted, repeated


@pytest.mark.parametrize("solver", ["adam", "adagrad", "sgd"])
def test_integer_sample_weight_equals_repeated_rows(solver):
    X, y = _constant_nnz_data()
    weighted, repeated = _weighted_vs_repeated(X, y, solver)
    assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-6, atol=1e-9)


def test_integer_sample_weight_equals_repeated_rows_varying_row_lengths(data):
    X, Y = data
    weighted, repeated = _weighted_vs_repeated(X, Y[:, 0], "adam")
    assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-6, atol=1e-9)


def test_unit_sample_weight_equals_none(data):
    X, Y = data
    a = _reg(dtype="float64").fit(X, Y)
    b = _reg(dtype="float64").fit(X, Y, sample_weight=np.ones(N_SAMPLES))
    assert_allclose(a.predict(X), b.predict(X), rtol=1e-10, atol=1e-12)


def test_sample_weight_scale_does_not_matter_without_penalty(data):
    # Loss and gradients are normalised by the batch's total weight; only the
    # penalties depend on it (alpha / sum of weights, as MLPRegressor), so with
    # alpha=0 multiplying all weights by 3 gives the same model.
    X, Y = data
    sw = np.random.RandomState(0).uniform(0.2, 2.0, N_SAMPLES)
    a = _reg(dtype="float64", alpha=0.0).fit(X, Y, sample_weight=sw)
    b = _reg(dtype="float64", alpha=0.0).fit(X, Y, sample_weight=3 * sw)
    assert_allclose(a.predict(X), b.predict(X), rtol=1e-10, atol=1e-12)
    # while non-uniform weights do change the model
    c = _reg(dtype="float64", alpha=0.0).fit(X, Y)
    assert not np.allclose(a.predict(X), c.predict(X), rtol=1e-6)


@pytest.mark.parametrize(
    "sample_weight",
    [np.ones(N_SAMPLES - 1), np.ones(N_SAMPLES + 1), np.ones((N_SAMPLES, 2)),
     np.zeros(N_SAMPLES)],
    ids=["too_short", "too_long", "2d", "all_zero"],
)
def test_invalid_sample_weight(data, sample_weight):
    # Negative weights are not asserted: sklearn's _check_sample_weight accepts
    # them by default (ensure_non_negative=False), as MLPRegressor does.
    X, Y = data
    with pytest.raises(ValueError):
        _reg().fit(X, Y, sample_weight=sample_weight)
    with pytest.raises(ValueError):
        _reg().partial_fit(X, Y, sample_weight=sample_weight)


def test_zero_weights_on_a_whole_minibatch(data):
    # A minibatch whose weights are all zero carries no information: it is
    # skipped (no step, no division by its zero total weight).
    X, Y = data
    sw = np.ones(N_SAMPLES)
    sw[:50] = 0.0  # exactly the first minibatch
    est = _reg(batch_size=50, shuffle=False, max_iter=1).fit(X, Y, sample_weight=sw)
    assert np.all(np.isfinite(est.predict(X)))
    n_batches = -(-N_SAMPLES // 50)
    assert est._network.t == n_batches - 1


# --------------------------------------------------------------------------- #
# 5. partial_fit and warm_start
# --------------------------------------------------------------------------- #
def test_partial_fit_continues_training(data):
    X, Y = data
    est = _reg()
    previous = None
    for k in range(1, 4):
        est.partial_fit(X, Y)
        assert est.n_iter_ == k
        assert est.t_ == k * N_SAMPLES
        assert len(est.loss_curve_) == k
        assert est.loss_ == est.loss_curve_[-1]
        if previous is not None:
            assert_different_weights(est, previous)
        previous = _copy_weights(est)
    assert all(np.isfinite(est.loss_curve_))


@pytest.mark.parametrize("solver", ["adam", "adagrad", "sgd"])
def test_partial_fit_epochs_equal_fit_epochs(data, solver):
    # partial_fit is one epoch that continues weights, optimizer state and the
    # random stream: three calls are three epochs of fit. alpha=0 keeps the
    # lazy penalty (flushed at the end of every call) out of the comparison,
    # so the result is bit-identical.
    X, Y = data
    kw = dict(solver=solver, alpha=0.0, batch_size=64)
    est = _reg(**kw)
    for _ in range(3):
        est.partial_fit(X, Y)
    full = _reg(max_iter=3, **kw).fit(X, Y)
    assert_same_weights(est, full)
    assert est.loss_curve_ == full.loss_curve_


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_warm_start_fit_continues(data, solver):
    X, Y = data
    kw = dict(solver=solver, alpha=0.0, batch_size=64)
    warm = _reg(max_iter=1, warm_start=True, **kw).fit(X, Y)
    first = _copy_weights(warm)
    warm.fit(X, Y)
    warm.fit(X, Y)
    assert warm.n_iter_ == 3
    assert len(warm.loss_curve_) == 3
    fresh_1 = _reg(max_iter=1, **kw).fit(X, Y)
    assert_same_weights(first, fresh_1)
    assert_different_weights(warm, fresh_1)
    # continuing is the same as having run three epochs at once
    assert_same_weights(warm, _reg(max_iter=3, **kw).fit(X, Y))


def test_partial_fit_then_warm_start_fit_continues(data):
    X, Y = data
    est = _reg(max_iter=2, warm_start=True, alpha=0.0).partial_fit(X, Y)
    est.fit(X, Y)
    assert est.n_iter_ == 3
    assert_same_weights(est, _reg(max_iter=3, alpha=0.0).fit(X, Y))


def test_fit_without_warm_start_reinitialises(data):
    X, Y = data
    est = _reg()
    est.fit(X, Y)
    first = _copy_weights(est)
    est.fit(X, Y)
    assert_same_weights(first, est)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    # also after partial_fit calls
    est.partial_fit(X, Y)
    est.partial_fit(X, Y)
    est.fit(X, Y)
    assert_same_weights(first, est)
    assert est.n_iter_ == 3


def test_predict_between_partial_fits_does_not_change_training(data):
    X, Y = data
    a = _reg(alpha_l1=1e-3)
    b = _reg(alpha_l1=1e-3)
    a.partial_fit(X, Y)
    b.partial_fit(X, Y)
    a.predict(X)
    a.predict(X[:7])
    a.partial_fit(X, Y)
    b.partial_fit(X, Y)
    assert_same_weights(a, b)


def test_partial_fit_rejects_early_stopping(data):
    X, Y = data
    with pytest.raises(ValueError, match="early_stopping"):
        _reg(early_stopping=True).partial_fit(X, Y)


def test_partial_fit_wrong_n_features(data):
    X, Y = data
    est = _reg().partial_fit(X, Y)
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:, :100], Y)
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(sp.hstack([X, X]).tocsr(), Y)


@pytest.mark.parametrize(
    "change, match",
    [(dict(hidden_layer_sizes=(9,)), "hidden_layer_sizes"),
     (dict(hidden_layer_sizes=(8, 4)), "hidden_layer_sizes"),
     (dict(solver="sgd"), "solver"),
     (dict(activation="tanh"), "activation"),
     (dict(dtype="float64"), "dtype")],
)
def test_changed_architecture_is_rejected_when_continuing(data, change, match):
    X, Y = data
    est = _reg().partial_fit(X, Y)
    est.set_params(**change)
    with pytest.raises(ValueError, match=match):
        est.partial_fit(X, Y)
    est = _reg(warm_start=True).fit(X, Y)
    est.set_params(**change)
    with pytest.raises(ValueError, match=match):
        est.fit(X, Y)


def test_partial_fit_with_different_number_of_outputs(data):
    X, Y = data
    est = _reg().partial_fit(X, Y[:, :2])
    with pytest.raises(ValueError, match="outputs"):
        est.partial_fit(X, Y[:, :3])


# --------------------------------------------------------------------------- #
# 6. Early stopping
# --------------------------------------------------------------------------- #
ES_PARAMS = dict(early_stopping=True, max_iter=200, n_iter_no_change=3,
                 learning_rate_init=0.01, validation_fraction=0.2, dtype="float64")


@pytest.fixture(scope="module")
def early_stopped(data):
    X, Y = data
    with threadpool_limits(1, user_api="openmp"):
        return _reg(**ES_PARAMS).fit(X, Y[:, 0])


def test_early_stopping_attributes(early_stopped):
    est = early_stopped
    assert isinstance(est.validation_scores_, list)
    assert len(est.validation_scores_) == est.n_iter_ == len(est.loss_curve_)
    assert est.n_iter_ < ES_PARAMS["max_iter"]  # it did stop early
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.best_loss_ is None
    # the best epoch is not the last: restoring the best weights matters
    assert int(np.argmax(est.validation_scores_)) < est.n_iter_ - 1


def test_early_stopping_restores_best_weights(data, early_stopped):
    # Run-independent check: training with max_iter = the best epoch follows
    # the same path (same split, same shuffles) and ends on the best weights.
    X, Y = data
    best_epoch = int(np.argmax(early_stopped.validation_scores_)) + 1
    short = _reg(**{**ES_PARAMS, "max_iter": best_epoch}).fit(X, Y[:, 0])
    assert short.validation_scores_ == early_stopped.validation_scores_[:best_epoch]
    assert_same_weights(early_stopped, short)


def test_early_stopping_keeps_one_copy_of_the_weights(data, monkeypatch):
    # Each new best epoch is copied into the previous best's arrays, so the
    # fit never holds two copies of the weights (1 GiB at 2**20 x 256).
    X, Y = data
    calls = []
    copy_params = _network.SparseNetwork.copy_params

    def spy(self, out=None):
        calls.append(out)
        return copy_params(self, out)

    monkeypatch.setattr(_network.SparseNetwork, "copy_params", spy)
    est = _reg(**ES_PARAMS).fit(X, Y[:, 0])
    scores = est.validation_scores_
    n_best = sum(s > max(scores[:i], default=-np.inf) for i, s in enumerate(scores))
    assert n_best >= 2 and len(calls) == n_best
    assert calls[0] is None  # the first best allocates ...
    assert all(out is not None for out in calls[1:])  # ... later ones reuse its arrays
    assert_same_weights(est, _reg(**{**ES_PARAMS, "max_iter": int(np.argmax(scores)) + 1})
                        .fit(X, Y[:, 0]))


def test_early_stopping_best_score_is_r2_on_held_out_rows(data, early_stopped):
    # Reproduces the validation split from the way _base.py consumes
    # random_state (not documented): the network's initialisation draws one
    # integer from the RandomState, then train_test_split draws from it. If
    # that order changes, this test needs updating; the test above does not
    # depend on it.
    X, Y = data
    y = Y[:, 0].astype(np.float64)
    rng = check_random_state(0)
    rng.randint(np.iinfo(np.int32).max)
    _, val = train_test_split(np.arange(N_SAMPLES), random_state=rng,
                              test_size=ES_PARAMS["validation_fraction"])
    score = r2_score(y[val], early_stopped.predict(X[val]))
    assert score == pytest.approx(early_stopped.best_validation_score_, rel=1e-9, abs=1e-12)


def test_early_stopping_validation_set_too_small(data):
    X, Y = data
    with pytest.raises(ValueError, match="validation set is too small"):
        _reg(early_stopping=True).fit(X[:5], Y[:5])


def test_early_stopping_without_improvement_stops_after_n_iter_no_change(data):
    X, Y = data
    # A huge tol: only the first epoch counts as an improvement (on -inf).
    # As in MLPRegressor, training stops when the count of epochs without
    # improvement exceeds n_iter_no_change, i.e. after n_iter_no_change + 2.
    est = _reg(early_stopping=True, max_iter=100, n_iter_no_change=2, tol=1e6).fit(X, Y)
    assert est.n_iter_ == 4
    assert len(est.validation_scores_) == 4


# --------------------------------------------------------------------------- #
# 7. Errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fmt", ["csr", "dense", "y"])
def test_non_finite_input_rejected_before_training(data, monkeypatch, value, fmt):
    X, Y = data
    X, y = X.copy(), Y[:, 0].copy()
    if fmt == "csr":
        X.data[5] = value
    elif fmt == "dense":
        X = X.toarray()
        X[3, 7] = value
    else:
        y[4] = value

    def no_step(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("a training step ran on non-finite input")

    monkeypatch.setattr(_network.SparseNetwork, "step", no_step)
    with pytest.raises(ValueError, match="NaN|infinity"):
        _reg().fit(X, y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        _reg().partial_fit(X, y)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_non_finite_input_rejected_at_predict(data):
    X, Y = data
    est = _reg().fit(X, Y)
    Xn = X.copy()
    Xn.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.predict(Xn)
    # float64 values beyond float32's range become infinite in the compute dtype
    Xo = X.astype(np.float64)
    Xo.data[0] = 1e300
    with pytest.raises(ValueError, match="infinity|too large"):
        est.predict(Xo)


def test_wrong_y_length(data):
    X, Y = data
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        _reg().fit(X, Y[:-1])


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        _reg().predict(sp.csr_matrix((3, 10)))


def test_predict_wrong_n_features(data):
    X, Y = data
    est = _reg().fit(X, Y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :-1])
    with pytest.raises(ValueError, match="features"):
        est.predict(sp.hstack([X, X[:, :1]]).tocsr())


@pytest.mark.parametrize(
    "params",
    [dict(activation="foo"), dict(solver="lbfgs"), dict(row_scaling="bogus"),
     dict(alpha=-1), dict(alpha_l1=-1), dict(hidden_layer_sizes=(0,)),
     dict(hidden_layer_sizes=(8, 0)), dict(hidden_layer_sizes=(-3,)),
     dict(hidden_layer_sizes=0), dict(dtype="float16"), dict(dtype=np.float16),
     dict(dtype=np.int32), dict(batch_size=0), dict(max_iter=0),
     dict(learning_rate_init=0.0), dict(learning_rate="bogus"),
     dict(validation_fraction=1.0), dict(momentum=1.5), dict(n_iter_no_change=0),
     dict(epsilon=0.0)],
    ids=repr,
)
def test_invalid_params_raise_at_fit(data, params):
    X, Y = data
    est = _reg(**params)  # no validation in __init__ (sklearn convention)
    with pytest.raises(ValueError):
        est.fit(X, Y)
    with pytest.raises(ValueError):
        _reg(**params).partial_fit(X, Y)
    assert not hasattr(est, "coefs_")


def test_penalty_that_zeroes_weights_is_rejected(data):
    X, Y = data
    with pytest.raises(ValueError, match="decay"):
        _reg(alpha=1e7).fit(X, Y)


def _malformed(kind, dtype=np.float32):
    rng = np.random.RandomState(0)
    X = sp.random(20, 50, density=0.2, format="csr", random_state=rng, dtype=dtype)
    X = _csr(X.data, X.indices, X.indptr, X.shape)
    # Mutated after construction: scipy's constructor would reject some of these.
    if kind == "index_too_large":
        X.indices[3] = 50
    elif kind == "index_huge":
        X.indices[3] = 10**9
    elif kind == "index_negative":
        X.indices[3] = -1
    elif kind == "indptr_not_monotone":
        X.indptr[5], X.indptr[6] = X.indptr[6], X.indptr[5]
    elif kind == "indptr_negative":
        X.indptr[1] = -3
    elif kind == "indptr_first_not_zero":
        X.indptr[0] = 1
    elif kind == "indptr_middle_too_large":
        X.indptr[5] = X.nnz + 1000
    elif kind == "indptr_middle_huge":
        X.indptr[5] = 10**8
    elif kind == "indptr_too_short":
        X.indptr = X.indptr[:-1].copy()
    elif kind == "indptr_too_long":
        X.indptr = np.r_[X.indptr, X.indptr[-1]].astype(X.indptr.dtype)
    elif kind == "indptr_last_too_large":
        X.indptr[-1] += 5
    elif kind == "indptr_last_too_small":
        X.indptr[-1] -= 5
    elif kind == "data_too_short":
        X.data = X.data[:-2].copy()
    elif kind == "float_indices":
        X.indices = X.indices.astype(np.float64)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return X


MALFORMED = ["index_too_large", "index_huge", "index_negative", "indptr_not_monotone",
             "indptr_negative", "indptr_first_not_zero", "indptr_middle_too_large",
             "indptr_middle_huge", "indptr_too_short", "indptr_too_long",
             "indptr_last_too_large", "indptr_last_too_small", "data_too_short",
             "float_indices"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_csr_is_rejected(kind, dtype):
    # Input already in the compute dtype: nothing converts X before the
    # package's structural check, which must reject it with a clear message
    # (the kernels do no bounds checks). TypeError for non-integer indices.
    y = np.random.RandomState(0).standard_normal(20)
    valid = sp.random(20, 50, density=0.2, format="csr", random_state=0, dtype=dtype)
    fitted = _reg(hidden_layer_sizes=(4,), dtype=dtype).fit(valid, y)
    expected = TypeError if kind == "float_indices" else ValueError
    with pytest.raises(expected, match="Malformed CSR"):
        _reg(hidden_layer_sizes=(4,), dtype=dtype).fit(_malformed(kind, dtype), y)
    with pytest.raises(expected, match="Malformed CSR"):
        _reg(hidden_layer_sizes=(4,), dtype=dtype).partial_fit(_malformed(kind, dtype), y)
    with pytest.raises(expected, match="Malformed CSR"):
        fitted.predict(_malformed(kind, dtype))


def _malformed_outcome(kind, data_dtype, compute_dtype):
    """What fit and predict do with a malformed CSR matrix: e.g. 'ValueError ValueError'.

    Each part is 'ValueError', 'TypeError', another exception's name, or
    'no-error'. Run in a child process by ``_isolated_outcomes``.
    """
    data_dtype, compute_dtype = np.dtype(data_dtype), np.dtype(compute_dtype)
    y = np.random.RandomState(0).standard_normal(20)
    valid = sp.random(20, 50, density=0.2, format="csr", random_state=0, dtype=data_dtype)
    fitted = _reg(hidden_layer_sizes=(4,), dtype=compute_dtype.name).fit(valid, y)
    outcome = []
    for call in (lambda X: _reg(hidden_layer_sizes=(4,), dtype=compute_dtype.name).fit(X, y),
                 fitted.predict):
        try:
            call(_malformed(kind, data_dtype))
            outcome.append("no-error")
        except ValueError:
            outcome.append("ValueError")
        except TypeError:
            outcome.append("TypeError")
        except Exception as exc:
            outcome.append(type(exc).__name__)
    return " ".join(outcome)


_CHILD = """
import importlib.util, sys, warnings
warnings.simplefilter("ignore")
spec = importlib.util.spec_from_file_location("_test_regressor_child", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for item in sys.argv[2:]:
    print("RESULT", item, module._malformed_outcome(*item.split(":")), flush=True)
"""


def _isolated_outcomes(items):
    """``_malformed_outcome`` of every item, in child processes.

    A crash (segfault, abort) ends the child: its exit status is recorded for
    the item being run, and a new child goes on with the rest.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outcomes, pending = {}, list(items)
    while pending:
        proc = subprocess.run([sys.executable, "-c", _CHILD, __file__, *pending],
                              capture_output=True, text=True, env=env, timeout=600)
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                _, item, outcome = line.split(" ", 2)
                outcomes[item] = outcome
        pending = [item for item in pending if item not in outcomes]
        if pending:
            # the first item without an outcome is the one the child died in
            outcomes[pending.pop(0)] = f"crash (exit status {proc.returncode}) " + (
                proc.stderr.strip().splitlines() or [""])[-1]
    return outcomes


CONVERSIONS = [("float64", "float32"), ("float32", "float64")]


@pytest.fixture(scope="module")
def conversion_outcomes():
    items = [f"{kind}:{d}:{c}" for d, c in CONVERSIONS for kind in MALFORMED
             if kind != "float_indices"]  # scipy itself casts those to integers
    return _isolated_outcomes(items)


@pytest.mark.parametrize("data_dtype, compute_dtype", CONVERSIONS)
@pytest.mark.parametrize(
    "kind",
    [kind for kind in MALFORMED if kind != "float_indices"],
)
def test_malformed_csr_needing_dtype_conversion(conversion_outcomes, kind, data_dtype,
                                                compute_dtype):
    # Same matrices, in the other float dtype: X must be converted. Run in a
    # child process, since a crash is one of the possible outcomes. scipy or
    # sklearn may reject the matrix before the package does (any ValueError or
    # TypeError will do), but it must be rejected, and the process must live.
    outcome = conversion_outcomes[f"{kind}:{data_dtype}:{compute_dtype}"]
    fit_outcome, _, predict_outcome = outcome.partition(" ")
    assert fit_outcome in ("ValueError", "TypeError"), outcome
    assert predict_outcome in ("ValueError", "TypeError"), outcome


# --------------------------------------------------------------------------- #
# 8. Degenerate data
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("row_scaling", ["none", "mean", "sqrt", "l2"])
@pytest.mark.parametrize("fmt", ["csr", "dense"])
def test_all_zero_matrix(row_scaling, fmt):
    y = np.random.RandomState(0).standard_normal(30)
    X = sp.csr_matrix((30, 100), dtype=np.float32)
    if fmt == "dense":
        X = X.toarray()
    est = _reg(row_scaling=row_scaling, max_iter=5).fit(X, y)
    pred = est.predict(X)
    assert pred.shape == (30,)
    assert np.all(np.isfinite(pred))
    assert np.all(pred == pred[0])  # every row is the same (empty) input
    assert np.isfinite(est.loss_)


def test_single_sample():
    X = sp.csr_matrix(np.array([[0.0, 2.0, 0.0, 1.0]]))
    est = _reg(max_iter=5).fit(X, [1.5])
    assert est.t_ == 5
    assert est.predict(X).shape == (1,)
    assert np.isfinite(est.predict(X)).all()
    est = _reg(max_iter=5).fit([[0.0, 1.0, 2.0]], [[1.5, -1.0]])
    assert est.predict([[1.0, 0.0, 0.0]]).shape == (1, 2)


@pytest.mark.parametrize("fmt", ["csr", "dense"])
def test_one_feature(fmt):
    rng = np.random.RandomState(0)
    X = rng.uniform(0.5, 2.0, (40, 1))
    y = 2 * X[:, 0]
    if fmt == "csr":
        X = sp.csr_matrix(X)
    est = _reg(max_iter=5, row_scaling="none").fit(X, y)
    assert est.coefs_[0].shape == (1, 8)
    assert np.isfinite(est.predict(X)).all()


def test_empty_rows(data):
    X, Y = data
    X = X.tolil()
    X[::3] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    assert (X.getnnz(axis=1) == 0).sum() == N_SAMPLES // 3
    for row_scaling in ("none", "mean", "sqrt", "l2"):
        est = _reg(row_scaling=row_scaling).fit(X, Y)
        pred = est.predict(X)
        assert np.isfinite(pred).all()
        # every empty row gets the same prediction, that of an all-zero row
        empty = pred[::3]
        assert_array_equal(empty, np.broadcast_to(empty[0], empty.shape))
        # A one-row call goes through other BLAS kernels than a many-row
        # call, which may round the float32 dense layers differently.
        assert_allclose(empty[0], est.predict(sp.csr_matrix((1, N_FEATURES)))[0],
                        rtol=1e-6, atol=1e-6 * np.abs(empty[0]).max())


def test_no_hidden_layer_and_int_hidden_layer_size(data):
    X, Y = data
    linear = _reg(hidden_layer_sizes=()).fit(X, Y)
    assert linear.n_layers_ == 2
    assert linear.coefs_[0].shape == (N_FEATURES, 8)
    assert np.isfinite(linear.predict(X)).all()
    assert_same_weights(_reg(hidden_layer_sizes=8).fit(X, Y), _reg().fit(X, Y))


# --------------------------------------------------------------------------- #
# 9. Row scaling
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("row_scaling", ["none", "mean", "sqrt", "l2"])
def test_row_scaling_equals_prescaled_input(data, row_scaling):
    # Fitting with a row scaling is fitting row_scaling='none' on the rows
    # scaled beforehand: 1, 1 / nnz, 1 / sqrt(nnz) or 1 / ||row||_2.
    X, Y = data
    X = X.astype(np.float64)
    X.data *= np.random.RandomState(0).uniform(0.5, 2.0, X.nnz)  # not all ones
    nnz = X.getnnz(axis=1).astype(np.float64)
    if row_scaling == "none":
        Xs = X
    elif row_scaling == "mean":
        Xs = sp.diags(1 / nnz) @ X
    elif row_scaling == "sqrt":
        Xs = sp.diags(1 / np.sqrt(nnz)) @ X
    else:
        Xs = normalize(X)
    Xs = sp.csr_matrix(Xs)
    a = _reg(row_scaling=row_scaling, dtype="float64").fit(X, Y)
    b = _reg(row_scaling="none", dtype="float64").fit(Xs, Y)
    for p, q in zip(_weights(a), _weights(b)):
        assert_allclose(p, q, rtol=1e-9, atol=1e-12)
    assert_allclose(a.predict(X), b.predict(Xs), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("row_scaling", ["none", "mean", "sqrt", "l2"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_scaling_and_multiplying_a_row(data, row_scaling, dtype):
    # With activation='identity' the network is affine in its scaled input:
    # multiplying a row by c multiplies (prediction - prediction of an empty row)
    # by c under 'none', 'mean' and 'sqrt' (their scale depends only on the
    # number of non-zeros), and changes nothing under 'l2'.
    X, Y = data
    c = 7.0
    X7 = X.tolil()
    X7[0] = X7[0] * c
    X7 = X7.tocsr()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for activation in ("identity", "relu"):
        # Adam's small steps: with 'none', a ReLU net stepped by row-wise
        # Adagrad at 0.05 can end with every unit dead for most rows.
        est = _reg(row_scaling=row_scaling, dtype=dtype, activation=activation,
                   solver="adam").fit(X, Y)
        p, p7 = est.predict(X), est.predict(X7)
        assert_array_equal(p[1:], p7[1:])  # other rows: untouched
        if row_scaling == "l2":
            assert_allclose(p7[0], p[0], **tol)
        else:
            assert not np.allclose(p7[0], p[0], rtol=1e-3)
            if activation == "identity":
                p_empty = est.predict(sp.csr_matrix((1, N_FEATURES)))[0]
                assert_allclose(p7[0] - p_empty, c * (p[0] - p_empty), **tol)


def test_binary_rows_sqrt_equals_l2(data):
    # For 0/1 rows, 1 / sqrt(nnz) is the inverse L2 norm: the same model
    X, Y = data
    Xb = X.copy()
    Xb.data[:] = 1
    a = _reg(row_scaling="sqrt").fit(Xb, Y)
    b = _reg(row_scaling="l2").fit(Xb, Y)
    assert_same_weights(a, b)


# --------------------------------------------------------------------------- #
# 10. verbose
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("early_stopping", [False, True])
def test_verbose(data, capsys, early_stopping):
    X, Y = data
    est = _reg(verbose=True, early_stopping=early_stopping, n_iter_no_change=50).fit(X, Y)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("Iteration")]
    assert len(lines) == est.n_iter_ == 3
    for k, line in enumerate(lines, start=1):
        assert line.startswith(f"Iteration {k}, ")
        assert "loss = " in line
        assert "samples/s" in line
        assert ("validation score" in line) == early_stopping
    assert f"{est.loss_curve_[0]:.8f}" in lines[0]
    if early_stopping:
        assert f"{est.validation_scores_[-1]:.6f}" in lines[-1]


def test_not_verbose_prints_nothing(data, capsys):
    X, Y = data
    _reg().fit(X, Y)
    assert capsys.readouterr().out == ""


def test_verbose_reports_stopping(data, capsys):
    X, Y = data
    est = _reg(verbose=True, max_iter=100, n_iter_no_change=2, tol=1e6).fit(X, Y)
    out = capsys.readouterr().out
    assert est.n_iter_ == 4  # see test_early_stopping_without_improvement_...
    assert "Stopping" in out


# --------------------------------------------------------------------------- #
# 11. Persistence and cloning
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("how", ["pickle", "joblib"])
def test_persistence_round_trip(data, tmp_path, dtype, how):
    X, Y = data
    est = _reg(dtype=dtype, alpha_l1=1e-3).fit(X, Y)
    path = tmp_path / "model.bin"
    if how == "pickle":
        path.write_bytes(pickle.dumps(est))
        loaded = pickle.loads(path.read_bytes())
    else:
        joblib.dump(est, path)
        loaded = joblib.load(path)
    assert_array_equal(loaded.predict(X), est.predict(X))
    assert_same_weights(loaded, est)
    assert loaded.get_params() == est.get_params()
    # and the loaded model continues training exactly like the original
    est.partial_fit(X, Y)
    loaded.partial_fit(X, Y)
    assert_same_weights(loaded, est)
    assert loaded.loss_curve_ == est.loss_curve_
    assert_array_equal(loaded.predict(X), est.predict(X))


def test_clone(data):
    X, Y = data
    est = _reg(alpha=0.01, row_scaling="l2", solver="adagrad").fit(X, Y)
    cloned = clone(est)
    assert cloned.get_params() == est.get_params()
    assert not hasattr(cloned, "coefs_")
    with pytest.raises(NotFittedError):
        cloned.predict(X)
    # cloning does not touch the original
    assert hasattr(est, "coefs_")
    assert_same_weights(cloned.fit(X, Y), est)


# --------------------------------------------------------------------------- #
# 12. L1 penalty
# --------------------------------------------------------------------------- #
def test_alpha_l1_zeroes_first_layer_rows(data):
    X, Y = data
    counts = []
    for alpha_l1 in (0.0, 10.0, 15.0, 20.0):
        est = _reg(solver="sgd", momentum=0.0, learning_rate_init=0.1, alpha=0.0,
                   alpha_l1=alpha_l1, max_iter=10).fit(X, Y[:, 0])
        W = est.coefs_[0]
        assert np.isfinite(est.predict(X)).all()
        counts.append(int(np.all(W == 0, axis=1).sum()))
        # the penalty acts on the first layer only
        assert np.count_nonzero(est.coefs_[1]) == est.coefs_[1].size
    assert counts[0] == 0
    assert counts[1] > 0
    assert counts == sorted(counts) and counts[-1] > counts[1]


# --------------------------------------------------------------------------- #
# 13. Thread-count independence
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def data_with_full_rows():
    # rows with ~6500 of 8192 features: above the forward kernel's threshold
    # (4096) for splitting a row into chunks of 2048 non-zeros
    X, Y = make_sparse_regression(n_samples=N_SAMPLES, n_features=2**13,
                                  random_state=1, dense_row_fraction=0.01,
                                  dense_row_density=0.8)
    assert (X.getnnz(axis=1) > 4096).sum() >= 2
    return X, Y


@pytest.mark.parametrize("solver", ["adam", "adagrad", "rowwise_adagrad", "sgd"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_results_do_not_depend_on_n_threads(data_with_full_rows, solver, dtype):
    X, Y = data_with_full_rows
    results = []
    for n_threads in (1, 2):
        with threadpool_limits(n_threads, user_api="openmp"):
            est = _reg(hidden_layer_sizes=(40,), solver=solver, dtype=dtype, max_iter=2,
                       batch_size=50, alpha_l1=1e-3, row_scaling="none").fit(X, Y)
            results.append((est, est.predict(X)))
    (a, pa), (b, pb) = results
    assert_same_weights(a, b)
    assert a.loss_curve_ == b.loss_curve_
    assert_array_equal(pa, pb)


# --------------------------------------------------------------------------- #
# 14. Chunked prediction
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-6), ("float64", 1e-12)])
def test_predict_many_rows_equals_predict_in_pieces(data, dtype, rtol):
    X, Y = data
    X_big, _ = make_sparse_regression(n_samples=10_000, n_features=N_FEATURES,
                                      n_targets=1, random_state=5, dense_row_fraction=0.001)
    est = _reg(hidden_layer_sizes=(16, 8), dtype=dtype).fit(X, Y[:, :3])
    whole = est.predict(X_big)
    assert whole.shape == (10_000, 3)
    pieces = np.vstack([est.predict(X_big[i:i + 7]) for i in range(0, 10_000, 7)])
    # BLAS may sum the dense layers in another order for 7 rows than for
    # 10,000, a rounding of the order of the terms, not of their sum: an
    # output near 0 differs by that much in absolute terms.
    assert_allclose(whole, pieces, rtol=rtol, atol=rtol * np.abs(whole).max())


# --------------------------------------------------------------------------- #
# 15. Interruption
# --------------------------------------------------------------------------- #
def _interrupting_step(monkeypatch, action, at_call=3):
    """Patch SparseNetwork.step so that its ``at_call``-th call runs ``action``."""
    original = _network.SparseNetwork.step
    counter = {"calls": 0, "completed": 0}

    def step(self, *args, **kwargs):
        counter["calls"] += 1
        if counter["calls"] == at_call:
            action()
        out = original(self, *args, **kwargs)
        counter["completed"] += 1
        return out

    monkeypatch.setattr(_network.SparseNetwork, "step", step)
    return counter


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


def test_keyboard_interrupt_during_fit(data, monkeypatch):
    X, Y = data
    counter = _interrupting_step(monkeypatch, _raise_keyboard_interrupt)
    est = _reg(max_iter=10, batch_size=50)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, Y)
    assert counter["completed"] == 2
    assert est.n_iter_ == 0  # no epoch was completed
    pred = est.predict(X)
    assert np.isfinite(pred).all()
    monkeypatch.undo()
    est.partial_fit(X, Y)
    assert est.n_iter_ == 1
    assert np.isfinite(est.predict(X)).all()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="SIGINT handlers can only be set in the main thread")
def test_sigint_during_fit_finishes_step_and_restores_handler(data, monkeypatch):
    X, Y = data
    calls = []

    def custom_handler(signum, frame):  # pragma: no cover - must not be called
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, custom_handler)
    try:
        counter = _interrupting_step(monkeypatch, lambda: signal.raise_signal(signal.SIGINT))
        est = _reg(max_iter=10, batch_size=50)
        with pytest.warns(UserWarning, match="interrupted"):
            est.fit(X, Y)
        # the signal arrived in the 3rd step; that step still ran to the end,
        # and no further step started
        assert counter["completed"] == 3 and counter["calls"] == 3
        assert calls == []  # the package's handler, not ours, got the signal
        assert signal.getsignal(signal.SIGINT) is custom_handler
        assert np.isfinite(est.predict(X)).all()
        monkeypatch.undo()
        est.partial_fit(X, Y)
        assert est.n_iter_ == 1
        assert signal.getsignal(signal.SIGINT) is custom_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigint_handler_restored_with_default_handler(data, monkeypatch):
    X, Y = data
    before = signal.getsignal(signal.SIGINT)
    _interrupting_step(monkeypatch, lambda: signal.raise_signal(signal.SIGINT))
    with pytest.warns(UserWarning, match="interrupted"):
        _reg(max_iter=10, batch_size=50).fit(X, Y)
    assert signal.getsignal(signal.SIGINT) is before


def test_sigint_handler_restored_after_error_in_fit(data):
    X, Y = data
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(ValueError):
        _reg(alpha=1e7).fit(X, Y)  # raises inside the training loop
    assert signal.getsignal(signal.SIGINT) is before


# --------------------------------------------------------------------------- #
# Miscellaneous scikit-learn behaviour
# --------------------------------------------------------------------------- #
def test_fit_in_a_worker_thread(data):
    # signal handlers cannot be installed outside the main thread; fitting
    # there (threading backends, GUIs, servers) must still work, identically
    X, Y = data
    result = {}

    def work():
        with threadpool_limits(1, user_api="openmp"):
            result["est"] = _reg().fit(X, Y)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert "est" in result
    assert_same_weights(result["est"], _reg().fit(X, Y))


def test_convergence_warning_when_max_iter_reached(data):
    X, Y = data
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        _reg(max_iter=2).fit(X, Y)


def test_batch_size_larger_than_n_samples_warns_and_clips(data):
    X, Y = data
    with pytest.warns(UserWarning, match="batch_size"):
        a = _reg(batch_size=10 * N_SAMPLES).fit(X, Y)
    b = _reg(batch_size=N_SAMPLES).fit(X, Y)
    assert_same_weights(a, b)


def test_cross_val_score(data):
    X, Y = data
    scores = cross_val_score(_reg(max_iter=2), X, Y[:, 0], cv=3)
    assert scores.shape == (3,)
    assert np.isfinite(scores).all()


def test_random_state_matters(data):
    X, Y = data
    assert_different_weights(_reg(random_state=0).fit(X, Y), _reg(random_state=1).fit(X, Y))
    rs = np.random.RandomState(3)
    a = _reg(random_state=rs).fit(X, Y)
    b = _reg(random_state=np.random.RandomState(3)).fit(X, Y)
    assert_same_weights(a, b)
