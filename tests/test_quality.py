"""The network must beat the linear bar on a task shaped like the user's.

The built-in generator's data (Zipf-distributed count features, a few
almost-full rows, targets from a nonlinear teacher on the L2-normalised
rows), at a size that trains in seconds. Measured with random_state=0:
Ridge(alpha=1) on the L2-normalised rows reaches a test R^2 of 0.333 (the
best of alpha in {0.3, 1, 3}: 0.307, 0.333, 0.322); SparseMLPRegressor with
the settings below reaches 0.559 (36 epochs), and with all its defaults
0.756 (random_state 1 and 2: 0.669, 0.706; about 110 epochs). The assertions
leave a margin around those numbers.
"""

import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.preprocessing import normalize

from sksparsenn import SparseMLPRegressor
from sksparsenn.datasets import make_sparse_regression


@pytest.fixture(scope="module")
def task():
    X, y = make_sparse_regression(
        n_samples=8000, n_features=2**15, n_informative=200, n_teacher_units=4,
        dense_row_fraction=0.002, random_state=0,
    )
    assert X.getnnz(axis=1).max() > 0.2 * X.shape[1]  # almost-full rows are there
    n_train = 6000
    return X[:n_train], X[n_train:], y[:n_train], y[n_train:]


def test_mlp_beats_ridge_on_seed_shaped_task(task):
    X_train, X_test, y_train, y_test = task
    ridge = Ridge(alpha=1.0).fit(normalize(X_train), y_train)
    r2_ridge = ridge.score(normalize(X_test), y_test)

    model = SparseMLPRegressor(
        hidden_layer_sizes=(32,), solver="sgd", learning_rate_init=0.05,
        row_scaling="l2", max_iter=40, early_stopping=True, n_iter_no_change=4,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    r2_mlp = model.score(X_test, y_test)

    assert 0.2 < r2_ridge < 0.45, r2_ridge  # the linear part only (30% of signal)
    assert r2_mlp > r2_ridge + 0.15, (r2_mlp, r2_ridge)


def test_defaults_beat_ridge_on_seed_shaped_task(task):
    # SparseMLPRegressor() as a user writes it: no parameter set.
    X_train, X_test, y_train, y_test = task
    r2_ridge = Ridge(alpha=1.0).fit(normalize(X_train), y_train).score(normalize(X_test), y_test)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # early stopping ends it
        model = SparseMLPRegressor(random_state=0).fit(X_train, y_train)
    assert model.validation_scores_ is not None  # 'auto' held out 600 rows
    r2_default = model.score(X_test, y_test)
    assert r2_default > r2_ridge + 0.2, (r2_default, r2_ridge)
