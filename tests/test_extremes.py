"""Extreme values never turn into silent NaN or inf."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from sksparsenn import SparseMLPRegressor
from sksparsenn.datasets import make_sparse_regression


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.mark.parametrize("row_scaling", ["none", "mean", "sqrt", "l2"])
def test_values_near_float32_limit(row_scaling):
    # Either a clear error, or a model whose weights and predictions are finite.
    rng = np.random.RandomState(0)
    X = sp.random(200, 50, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    X.data[:5] = 3e38
    y = rng.randn(200)
    est = SparseMLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                             row_scaling=row_scaling)
    try:
        _fit(est, X, y)
    except ValueError as exc:
        assert "non-finite" in str(exc)
    else:
        assert all(np.isfinite(w).all() for w in est.coefs_ + est.intercepts_)
        assert np.isfinite(est.predict(X)).all()


def test_divergence_stops_with_a_clear_error_and_finite_weights():
    rng = np.random.RandomState(0)
    X = sp.random(500, 50, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    X.data *= 100
    est = SparseMLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0,
                             solver="sgd", learning_rate_init=10.0, row_scaling="none")
    with pytest.raises(ValueError, match="non-finite"):
        _fit(est, X, rng.randn(500))
    assert all(np.isfinite(w).all() for w in est.coefs_ + est.intercepts_)
    assert np.isfinite(est.predict(X)).all()


def test_rare_almost_full_rows_train_without_overflow():
    X, y = make_sparse_regression(n_samples=2000, n_features=2**14,
                                  dense_row_fraction=0.01, dense_row_density=0.9,
                                  random_state=0)
    for row_scaling in ["none", "l2"]:
        est = _fit(SparseMLPRegressor(hidden_layer_sizes=(16,), max_iter=3,
                                      row_scaling=row_scaling, random_state=0), X, y)
        assert np.isfinite(est.loss_curve_).all()
        assert np.isfinite(est.predict(X)).all()


def test_overflowing_input_at_predict_is_an_error_not_nan():
    rng = np.random.RandomState(0)
    X = sp.random(200, 50, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    est = _fit(SparseMLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                                  row_scaling="none"), X, rng.randn(200))
    big = X.copy()
    big.data[:] = 3e38
    with pytest.raises(ValueError, match="too large for the compute dtype"):
        est.predict(big)
    assert np.isfinite(est.predict(X)).all()
