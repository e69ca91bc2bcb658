"""Several Python threads using the package at once.

The kernels release the GIL, so calls from different threads do run at the
same time; they must not interfere.
"""

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from sksparsenn import SparseMLPRegressor, SparseMLPTransformer
from sksparsenn.datasets import make_sparse_regression

# warnings.catch_warnings is not thread-safe: filter for the whole module.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    return make_sparse_regression(n_samples=600, n_features=2**12,
                                  dense_row_fraction=0.005, random_state=0)


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def test_concurrent_predict_and_transform_equal_serial(data):
    X, y = data
    reg = _fit(SparseMLPRegressor(hidden_layer_sizes=(16,), max_iter=3, random_state=0), X, y)
    tra = _fit(SparseMLPTransformer(hidden_layer_sizes=(16,), max_iter=3, random_state=0), X, y)
    serial_reg, serial_tra = reg.predict(X), tra.transform(X)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(reg.predict, X) for _ in range(8)]
        futures += [pool.submit(tra.transform, X) for _ in range(8)]
        results = [f.result() for f in futures]
    for r in results[:8]:
        np.testing.assert_array_equal(r, serial_reg)
    for r in results[8:]:
        np.testing.assert_array_equal(r, serial_tra)


def test_concurrent_fits_do_not_interfere(data):
    X, y = data
    params = [dict(solver=s, random_state=r) for s in ("adam", "sgd") for r in (0, 1)]

    def fit_one(p):
        return _fit(SparseMLPRegressor(hidden_layer_sizes=(8,), max_iter=3, **p), X, y)

    serial = [fit_one(p) for p in params]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(fit_one, params))
    for a, b in zip(serial, threaded):
        for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_array_equal(wa, wb)
