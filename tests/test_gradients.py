"""Gradients of the network against central finite differences.

The first layer's gradient comes from the Cython kernels (batch_transpose +
sparse_gradient, the code path of the fused update); the dense layers' from
numpy backprop. Both must match the derivative of the objective that the
optimizers descend, J = sum_b c_b * 0.5 * ||P_b - Y_b||^2 with
c_b = w_b / sum(w), which is n_outputs times the reported loss.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from sksparsenn._network import _k  # the build this processor runs (select_kernels)
from sksparsenn._network import SparseNetwork, compute_row_scales

N_THREADS = 2


def _data(seed=0):
    rng = np.random.RandomState(seed)
    X = sp.random(12, 40, density=0.1, format="csr", random_state=rng)
    X = X.tolil()
    X[3, :] = rng.uniform(0.5, 2.0, 40)  # one almost-full row
    X = X.tocsr()
    Y = rng.standard_normal((12, 3))
    sw = rng.uniform(0.5, 2.0, 12)
    return X, Y, sw


def _objective(net, X, rows, scale, Y, sw):
    acts = net.forward(X, rows, scale, N_THREADS)
    loss, _, _ = net.backward(acts, Y[rows], sw)
    return loss * Y.shape[1]


@pytest.mark.parametrize("activation", ["tanh", "logistic", "identity"])
@pytest.mark.parametrize("row_scaling", ["none", "l2", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_match_finite_differences(activation, row_scaling, weighted):
    X, Y, sw_all = _data()
    rows = np.array([0, 3, 5, 7, 8, 11], dtype=np.int64)
    sw = sw_all[rows] if weighted else None
    net = SparseNetwork([40, 6, 4, 3], activation, "sgd", np.float64,
                        np.random.RandomState(1), fan_in=4.0)
    scale = compute_row_scales(X, row_scaling, N_THREADS)[rows]

    acts = net.forward(X, rows, scale, N_THREADS)
    _, D1, grads = net.backward(acts, Y[rows], sw)
    slot = np.full(40, -1, dtype=np.int64)
    plan = _k.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    assert np.all(slot == -1), "the slot map must be left clean for the next batch"
    G_rows = _k.sparse_gradient(*plan, np.ascontiguousarray(D1), N_THREADS)
    G1 = np.zeros_like(net.coefs[0])
    G1[plan[0]] = G_rows

    analytic = [G1] + [g[0] for g in grads[1:]] + [g[1] for g in grads]
    params = net.coefs + net.intercepts
    eps = 1e-6
    rng = np.random.RandomState(0)
    for param, grad in zip(params, analytic):
        # A sample of entries of each parameter, including, for the first
        # layer, features that are absent from the batch (gradient 0).
        flat = param.reshape(-1)
        for idx in rng.choice(flat.size, size=min(flat.size, 25), replace=False):
            old = flat[idx]
            flat[idx] = old + eps
            up = _objective(net, X, rows, scale, Y, sw)
            flat[idx] = old - eps
            down = _objective(net, X, rows, scale, Y, sw)
            flat[idx] = old
            numeric = (up - down) / (2 * eps)
            np.testing.assert_allclose(grad.reshape(-1)[idx], numeric, rtol=1e-5, atol=1e-8)


def test_sparse_gradient_matches_dense_product():
    """G = X_batch^T diag(scale) D, rows of absent features exactly zero."""
    X, _, _ = _data(3)
    rows = np.array([1, 3, 4, 10], dtype=np.int64)
    scale = np.random.RandomState(0).uniform(0.5, 2, rows.shape[0])
    D = np.random.RandomState(1).standard_normal((rows.shape[0], 5))
    slot = np.full(40, -1, dtype=np.int64)
    feats, *_rest = plan = _k.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    G = np.zeros((40, 5))
    G[feats] = _k.sparse_gradient(*plan, D, N_THREADS)
    expected = X[rows].toarray().T @ (scale[:, None] * D)
    np.testing.assert_allclose(G, expected, rtol=1e-12, atol=1e-14)
    present = np.unique(X[rows].indices)
    np.testing.assert_array_equal(np.sort(feats), present)
