"""The unsupervised SparseMLPTransformer: reconstruction sampling."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from sksparsenn import SparseMLPTransformer
from sksparsenn._network import ACTIVATIONS, DERIVATIVES, SparseAutoencoderNetwork, compute_row_scales

N_THREADS = 1


def _data(seed=0, n_rows=12, n_features=30):
    rng = np.random.RandomState(seed)
    X = sp.random(n_rows, n_features, density=0.15, format="csr", random_state=rng)
    X = X.tolil()
    X[2, :] = rng.uniform(0.5, 2.0, n_features)  # one full row: no zero to sample
    X[5, :] = 0  # one empty row
    X = sp.csr_matrix(X)
    X.sort_indices()
    return X


def _net(X, activation="tanh", zero_sampling=1.0, solver="sgd"):
    return SparseAutoencoderNetwork([X.shape[1], 6, 4], activation, solver, np.float64,
                                    np.random.RandomState(0), fan_in=4.0,
                                    zero_sampling=zero_sampling)


def _dense_code(net, Xs):
    act = ACTIVATIONS[net.activation]
    A = [Xs]
    for W, b in zip(net.coefs, net.intercepts):
        Z = A[-1] @ W + b
        act(Z)
        A.append(Z)
    return A


def test_sampled_pairs_cover_nonzeros_and_only_zeros():
    X = _data()
    net = _net(X, zero_sampling=2.0)
    rows = np.arange(X.shape[0], dtype=np.int64)
    scale = compute_row_scales(X, "l2", N_THREADS)
    pair_row, pair_col, target, weight, indptr = net.sample_pairs(X, rows, scale)
    Xd = X.toarray()
    for b in range(X.shape[0]):
        sel = slice(indptr[b], indptr[b + 1])
        assert np.all(pair_row[sel] == b)
        nz = np.flatnonzero(Xd[b])
        cols, tgt, w = pair_col[sel], target[sel], weight[sel]
        is_nz = np.isin(cols, nz)
        assert set(cols[is_nz]) == set(nz)  # every non-zero, once
        assert is_nz.sum() == nz.size
        np.testing.assert_array_equal(cols[:nz.size], nz)  # first, in column order
        np.testing.assert_allclose(tgt[is_nz], Xd[b, cols[is_nz]] * scale[b])
        assert np.all(tgt[~is_nz] == 0) and np.all(w[is_nz] == 1)
        n_zero = X.shape[1] - nz.size
        if n_zero == 0:
            assert (~is_nz).sum() == 0  # the full row: nothing to sample
        else:
            # about zero_sampling samples per non-zero (at least one), each
            # weighted so that the sampled zeros stand for all of the row's zeros
            assert 1 <= (~is_nz).sum() <= max(1, int(np.ceil(2.0 * nz.size)))
            np.testing.assert_allclose(w[~is_nz].sum(), n_zero)
    assert (net._slot_map() == -1).all()  # the rejection's marks are cleared


@pytest.mark.parametrize("row_scaling", ["none", "l2"])
def test_sampled_loss_is_unbiased(row_scaling):
    """Averaged over draws, the sampled loss is the full reconstruction loss."""
    X = _data(1)
    net = _net(X, zero_sampling=0.5)
    rows = np.arange(X.shape[0], dtype=np.int64)
    scale = compute_row_scales(X, row_scaling, N_THREADS)
    Xs = X.toarray() * scale[:, None]
    code = _dense_code(net, Xs)[-1]
    recon = code @ net.decoder_coef.T + net.decoder_intercept[:, 0]
    full = 0.5 * np.mean(np.sum((recon - Xs) ** 2, axis=1))
    draws = []
    for _ in range(3000):
        pr, pc, tgt, w, _ = net.sample_pairs(X, rows, scale)
        out = recon[pr, pc]
        draws.append(0.5 * np.sum(w * (out - tgt) ** 2) / X.shape[0])
    draws = np.asarray(draws)
    stderr = draws.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - full) < 4 * stderr, (draws.mean(), full, stderr)


@pytest.mark.parametrize("activation", ["tanh", "relu", "logistic"])
def test_autoencoder_step_matches_numpy(activation):
    """One plain SGD step equals the dense gradient of the sampled objective."""
    X = _data(2)
    net = _net(X, activation=activation)
    rows = np.array([0, 2, 3, 5, 7, 11], dtype=np.int64)
    scale = compute_row_scales(X, "sqrt", N_THREADS)[rows]
    sampled = net.sample_pairs(X, rows, scale)
    net.sample_pairs = lambda *args: sampled  # the same draw for the reference
    pr, pc, tgt, w, _ = sampled

    W = [c.copy() for c in net.coefs]
    b = [c.copy() for c in net.intercepts]
    Wd, bd = net.decoder_coef.copy(), net.decoder_intercept[:, 0].copy()
    Xs = X[rows].toarray() * scale[:, None]
    # Dense reference: forward, sampled objective, backprop.
    A = [Xs]
    for Wi, bi in zip(W, b):
        Z = A[-1] @ Wi + bi
        ACTIVATIONS[activation](Z)
        A.append(Z)
    code = A[-1]
    out = np.einsum("kh,kh->k", code[pr], Wd[pc]) + bd[pc]
    coef = w / rows.shape[0]
    delta = coef * (out - tgt)
    gWd = np.zeros_like(Wd)
    np.add.at(gWd, pc, delta[:, None] * code[pr])
    gbd = np.zeros_like(bd)
    np.add.at(gbd, pc, delta)
    dA = np.zeros_like(code)
    np.add.at(dA, pr, delta[:, None] * Wd[pc])
    DERIVATIVES[activation](code, dA)
    gW, gb = [None] * len(W), [None] * len(W)
    d = dA
    for i in range(len(W) - 1, -1, -1):
        gW[i] = A[i].T @ d
        gb[i] = d.sum(axis=0)
        if i:
            d = d @ W[i].T
            DERIVATIVES[activation](A[i], d)

    lr = 0.1
    hp = dict(lr=lr, alpha=0.0, alpha_l1=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
              momentum=0.0, nesterov=False)
    loss = net.step(X, rows, scale, None, None, hp, N_THREADS)
    np.testing.assert_allclose(loss, 0.5 * np.sum(coef * (out - tgt) ** 2) / X.shape[1])
    for i in range(len(W)):
        np.testing.assert_allclose(net.coefs[i], W[i] - lr * gW[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(net.intercepts[i], b[i] - lr * gb[i], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net.decoder_coef, Wd - lr * gWd, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net.decoder_intercept[:, 0], bd - lr * gbd, rtol=1e-10,
                               atol=1e-12)


@pytest.fixture(scope="module")
def counts():
    from sksparsenn.datasets import make_sparse_regression

    X, y = make_sparse_regression(n_samples=1500, n_features=2**12, random_state=0)
    return X, y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_unsupervised_transformer(counts):
    X, y = counts
    est = SparseMLPTransformer(hidden_layer_sizes=(16,), max_iter=8, random_state=0,
                               row_scaling="l2", learning_rate_init=0.01)
    codes = est.fit(X).transform(X)
    assert codes.shape == (X.shape[0], 16)
    assert np.isfinite(codes).all()
    assert est.n_outputs_ == X.shape[1]
    assert list(est.get_feature_names_out()) == [f"sparsemlptransformer{i}" for i in range(16)]
    assert est.loss_curve_[-1] < est.loss_curve_[0]  # it learns to reconstruct
    again = SparseMLPTransformer(**est.get_params()).fit(X).transform(X)
    np.testing.assert_array_equal(codes, again)  # seeded sampling: reproducible
    for objective, unsupervised in [("auto", False), ("reconstruction", True)]:
        # A Pipeline passes y to every step: 'reconstruction' ignores it.
        pipe = make_pipeline(SparseMLPTransformer(hidden_layer_sizes=(16,), max_iter=3,
                                                  objective=objective, random_state=0),
                             Ridge())
        assert pipe.fit(X, y).predict(X).shape == y.shape
        assert pipe[0]._unsupervised is unsupervised


def test_unsupervised_errors(counts):
    X, y = counts
    with pytest.raises(ValueError, match="early_stopping"):
        SparseMLPTransformer(early_stopping=True).fit(X)
    est = SparseMLPTransformer(hidden_layer_sizes=(4,), max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    with pytest.raises(ValueError, match="without y"):
        est.partial_fit(X, y)
    with pytest.raises(ValueError, match="needs y"):
        SparseMLPTransformer(objective="targets").fit(X)
