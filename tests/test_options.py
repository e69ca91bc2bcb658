"""Options against overfitting and for linear structure, at the estimator level.

The numerical definitions (wide-and-deep term, max-norm, input dropout) are
checked step by step against the dense numpy reference in
test_reference.py; here: what a user sees.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal
from sklearn.linear_model import Ridge

from sksparsenn import SparseMLPRegressor
from sksparsenn.datasets import make_sparse_regression

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _linear_data(n=3000, n_features=500, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, n_features, density=0.03, format="csr", random_state=seed,
                  data_rvs=lambda k: rng.random(k) + 0.5)
    w = rng.standard_normal((n_features, 2))
    y = X @ w + 0.05 * rng.standard_normal((n, 2))
    return X, y


def test_linear_term_learns_a_linear_target():
    X, y = _linear_data()
    kw = dict(hidden_layer_sizes=(1,), solver="sgd", learning_rate_init=0.05, max_iter=40,
              row_scaling="none", alpha=0.0, random_state=0)
    wide = SparseMLPRegressor(linear_term=True, **kw).fit(X[:2400], y[:2400])
    deep = SparseMLPRegressor(**kw).fit(X[:2400], y[:2400])
    ridge = Ridge(alpha=1.0).fit(X[:2400], y[:2400])
    r2_wide = wide.score(X[2400:], y[2400:])
    assert wide.linear_coef_.shape == (500, 2)
    assert r2_wide > 0.9
    assert r2_wide > deep.score(X[2400:], y[2400:]) + 0.2  # one hidden unit: rank-1 outputs
    assert r2_wide > ridge.score(X[2400:], y[2400:]) - 0.05
    # the linear weights point where the true ones do
    assert np.corrcoef(wide.linear_coef_[:, 0], ridge.coef_[0])[0, 1] > 0.8


def test_linear_term_cannot_change_on_warm_start():
    X, y = _linear_data(n=300)
    est = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=2, warm_start=True,
                             random_state=0).fit(X, y)
    assert not hasattr(est, "linear_coef_")
    est.set_params(linear_term=True)
    with pytest.raises(ValueError, match="linear_term changed"):
        est.fit(X, y)


def test_early_stopping_restores_the_linear_term_too():
    X, y = make_sparse_regression(n_samples=1500, n_features=2**11, random_state=0)
    est = SparseMLPRegressor(hidden_layer_sizes=(8,), linear_term=True, solver="sgd",
                             learning_rate_init=0.05, row_scaling="l2", early_stopping=True,
                             n_iter_no_change=3, max_iter=50, random_state=0).fit(X, y)
    best = int(np.argmax(est.validation_scores_))
    assert best < len(est.validation_scores_) - 1  # stopped after a worse epoch
    net = est._network
    # the restored weights (linear term included) give the best validation score:
    # refitting the same path for exactly best + 1 epochs ends on the same weights
    again = SparseMLPRegressor(hidden_layer_sizes=(8,), linear_term=True, solver="sgd",
                               learning_rate_init=0.05, row_scaling="l2", early_stopping=True,
                               n_iter_no_change=10**6, tol=0, max_iter=best + 1,
                               random_state=0).fit(X, y)
    np.testing.assert_allclose(net.linear_coef, again._network.linear_coef, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(est.predict(X), again.predict(X), rtol=1e-5, atol=1e-6)


def test_input_dropout_is_seeded_and_changes_training():
    X, y = make_sparse_regression(n_samples=800, n_features=2**11, random_state=0)
    kw = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    a = SparseMLPRegressor(input_dropout=0.3, **kw).fit(X, y)
    b = SparseMLPRegressor(input_dropout=0.3, **kw).fit(X, y)
    c = SparseMLPRegressor(**kw).fit(X, y)
    assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    assert_array_equal(a.predict(X), a.predict(X))  # no dropout at prediction


def test_max_norm_bounds_every_first_layer_row():
    X, y = make_sparse_regression(n_samples=800, n_features=2**11, random_state=0)
    est = SparseMLPRegressor(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.5,
                             row_scaling="none", max_norm=0.5, max_iter=5,
                             random_state=0).fit(X, y)
    norms = np.linalg.norm(est.coefs_[0].astype(np.float64), axis=1)
    assert norms.max() <= 0.5 * (1 + 1e-5)
    assert (norms > 0.49).sum() > 10  # the bound was reached


@pytest.mark.parametrize("param, value", [("input_dropout", 1.0), ("input_dropout", -0.1),
                                          ("max_norm", 0.0), ("max_norm", -1.0),
                                          ("linear_term", "yes")])
def test_bad_option_values_are_rejected(param, value):
    X, y = _linear_data(n=50)
    with pytest.raises(ValueError, match=param):
        SparseMLPRegressor(**{param: value}).fit(X, y)
