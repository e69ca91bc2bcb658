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


# --------------------------------------------------------------------------- #
# 'auto' parameters
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("solver, expected", [("adam", 0.001), ("sgd", 0.05), ("adagrad", 0.05),
                                              ("rowwise_adagrad", 0.05)])
def test_learning_rate_init_auto_depends_on_the_solver(solver, expected):
    X, y = _linear_data(n=400)
    auto = SparseMLPRegressor(hidden_layer_sizes=(4,), solver=solver, max_iter=2,
                              random_state=0).fit(X, y)
    explicit = SparseMLPRegressor(hidden_layer_sizes=(4,), solver=solver, max_iter=2,
                                  learning_rate_init=expected, random_state=0).fit(X, y)
    assert auto.learning_rate_init == "auto"  # the parameter is left as given
    assert_array_equal(auto.predict(X), explicit.predict(X))


def test_early_stopping_auto_holds_out_rows_only_when_there_are_enough():
    # 'auto' is on when validation_fraction * n_samples >= 100
    X, y = _linear_data(n=1000)
    big = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    assert big.early_stopping == "auto"
    assert len(big.validation_scores_) == big.n_iter_ and big.best_loss_ is None
    same = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=3, early_stopping=True,
                              random_state=0).fit(X, y)
    assert_array_equal(big.predict(X), same.predict(X))

    small = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    small.fit(X[:999], y[:999])  # 99.9 rows would be held out
    assert small.validation_scores_ is None and small.best_loss_ is not None
    off = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=3, early_stopping=False,
                             random_state=0).fit(X[:999], y[:999])
    assert_array_equal(small.predict(X), off.predict(X))

    fraction = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=3, validation_fraction=0.2,
                                  random_state=0).fit(X[:999], y[:999])
    assert fraction.validation_scores_ is not None  # 199.8 rows


def test_early_stopping_auto_is_off_in_partial_fit():
    X, y = _linear_data(n=2000)
    est = SparseMLPRegressor(hidden_layer_sizes=(4,), random_state=0)
    est.partial_fit(X, y)  # no error, all rows trained on
    assert est.validation_scores_ is None and est.t_ == X.shape[0]
    with pytest.raises(ValueError, match="early_stopping=True"):
        SparseMLPRegressor(early_stopping=True).partial_fit(X, y)


@pytest.mark.parametrize("value", ["yes", 1.5, -1])
def test_auto_parameters_reject_other_values(value):
    X, y = _linear_data(n=200)
    with pytest.raises((ValueError, TypeError)):
        SparseMLPRegressor(early_stopping=value, max_iter=1).fit(X, y)
    with pytest.raises((ValueError, TypeError)):
        SparseMLPRegressor(learning_rate_init=value if value != 1.5 else "fast",
                           max_iter=1).fit(X, y)


def test_initial_accumulator_value_zero_gives_plain_adagrad_first_steps():
    # With G0 = 0 the first step of a feature moves each of its weights by
    # about lr (|g| / sqrt(g^2 / H) per weight, averaged); with G0 > 0 by
    # much less when its gradient is small.
    X, y = _linear_data(n=400)
    moves = {}
    for g0 in (0.0, 1e-3, 1e-1):
        est = SparseMLPRegressor(hidden_layer_sizes=(8,), batch_size=400, max_iter=1,
                                 initial_accumulator_value=g0, alpha=0.0, random_state=0)
        w0 = SparseMLPRegressor(hidden_layer_sizes=(8,), batch_size=400, max_iter=1,
                                random_state=0, learning_rate_init=1e-300).fit(X, y).coefs_[0]
        est.fit(X, y)
        moves[g0] = float(np.abs(est.coefs_[0] - w0).mean())
    assert moves[0.0] > moves[1e-3] > moves[1e-1] > 0, moves


# --------------------------------------------------------------------------- #
# averaging of the weights over epochs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("linear_term", [False, True])
def test_average_decay_keeps_the_moving_average_of_each_epochs_weights(linear_term):
    # Reference: the same training, one epoch per warm-started fit (the
    # random state carries over, so the epochs are the same), and the moving
    # average of the weights after each epoch taken with numpy.
    X, y = _linear_data(n=600)
    common = dict(hidden_layer_sizes=(6, 5), early_stopping=False, alpha=1e-3,
                  linear_term=linear_term, random_state=0, tol=0.0, n_iter_no_change=100)
    decay, n_epochs = 0.7, 5
    steps = SparseMLPRegressor(max_iter=1, warm_start=True, **common)
    avg = None
    for _ in range(n_epochs):
        steps.fit(X, y)
        weights = [a.astype(np.float64) for a in steps.coefs_ + steps.intercepts_]
        if linear_term:
            weights.append(steps.linear_coef_.astype(np.float64))
        avg = weights if avg is None else [decay * a + (1 - decay) * w
                                          for a, w in zip(avg, weights)]
    est = SparseMLPRegressor(max_iter=n_epochs, average_decay=decay, **common).fit(X, y)
    got = est.coefs_ + est.intercepts_ + ([est.linear_coef_] if linear_term else [])
    assert est.n_iter_ == n_epochs
    for g, a in zip(got, avg):
        np.testing.assert_allclose(g, a, rtol=1e-5, atol=1e-6)
    # the raw weights of the last epoch are not what the model keeps
    assert not np.allclose(est.coefs_[0], steps.coefs_[0], rtol=1e-5, atol=1e-6)


def test_average_decay_zero_changes_nothing():
    X, y = _linear_data(n=1500)
    a = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=4, random_state=0).fit(X, y)
    b = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=4, random_state=0,
                           average_decay=0.0).fit(X, y)
    assert_array_equal(a.predict(X), b.predict(X))


def test_average_decay_with_early_stopping_scores_and_keeps_the_average():
    X, y = _linear_data(n=2000)
    plain = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=6, random_state=0,
                               early_stopping=True, n_iter_no_change=100).fit(X, y)
    avg = SparseMLPRegressor(hidden_layer_sizes=(4,), max_iter=6, random_state=0,
                             early_stopping=True, n_iter_no_change=100,
                             average_decay=0.9).fit(X, y)
    # epoch 1: the average is the weights themselves; later the scores differ
    assert avg.validation_scores_[0] == pytest.approx(plain.validation_scores_[0], abs=1e-6)
    assert not np.allclose(avg.validation_scores_[1:], plain.validation_scores_[1:])
    assert avg.best_validation_score_ == max(avg.validation_scores_)
    # the loss curve is that of the raw training, the same in both
    np.testing.assert_allclose(avg.loss_curve_, plain.loss_curve_, rtol=1e-6)


def test_average_decay_is_refused_by_partial_fit_and_checked():
    X, y = _linear_data(n=200)
    with pytest.raises(ValueError, match="average_decay"):
        SparseMLPRegressor(average_decay=0.5).partial_fit(X, y)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="average_decay"):
            SparseMLPRegressor(average_decay=bad, max_iter=1).fit(X, y)
