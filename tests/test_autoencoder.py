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


def _sample_pairs_numpy(net, X, rows, scale):
    """sample_pairs in plain numpy: the batch's non-zeros as (row, column)
    keys, the draws made by the same generator call, the draws that hit a
    key rejected, both lists merged by a stable sort on the row."""
    n_features, n_rows = X.shape[1], rows.shape[0]
    lens = np.diff(X.indptr)[rows]
    src = np.concatenate([np.arange(X.indptr[r], X.indptr[r + 1]) for r in rows]
                         + [np.zeros(0, dtype=np.int64)]).astype(np.int64)
    batch_pos = np.repeat(np.arange(n_rows, dtype=np.int64), lens)
    values = X.data[src]
    keep = values != 0
    nz_row, nz_col = batch_pos[keep], X.indices[src[keep]].astype(np.int64)
    nz_target = values[keep] * scale[nz_row]
    nnz = np.bincount(nz_row, minlength=n_rows)
    n_zero = n_features - nnz
    n_draw = np.where(n_zero > 0, np.maximum(1, np.ceil(net.zero_sampling * nnz)), 0)
    cand_row = np.repeat(np.arange(n_rows, dtype=np.int64), n_draw.astype(np.int64))
    cand_col = net.sample_rng.integers(0, n_features, size=cand_row.shape[0])
    nz_keys = nz_row * n_features + nz_col
    cand_keys = cand_row * n_features + cand_col
    if nz_keys.shape[0]:
        pos = np.minimum(np.searchsorted(nz_keys, cand_keys), nz_keys.shape[0] - 1)
        accept = nz_keys[pos] != cand_keys
        cand_row, cand_col = cand_row[accept], cand_col[accept]
    n_accepted = np.bincount(cand_row, minlength=n_rows)
    weight_of_row = np.divide(n_zero, n_accepted, out=np.zeros(n_rows), where=n_accepted > 0)
    pair_row = np.concatenate([nz_row, cand_row])
    order = np.argsort(pair_row, kind="stable")
    target = np.concatenate([nz_target, np.zeros(cand_row.shape[0], net.dtype)])[order]
    weight = np.concatenate([np.ones(nz_row.shape[0]), weight_of_row[cand_row]])[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(pair_row, minlength=n_rows))])
    return (pair_row[order], np.concatenate([nz_col, cand_col])[order],
            target.astype(net.dtype), weight, indptr)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("x_dtype, scale_dtype, net_dtype", [
    (np.float64, np.float64, np.float64), (np.float32, np.float32, np.float32),
    (np.float32, np.float32, np.float64), (np.float32, np.float64, np.float32)])
def test_sample_pairs_equal_the_numpy_reference(x_dtype, scale_dtype, net_dtype, index_dtype):
    """Identical arrays to the numpy version, batch after batch (the draws
    continue one generator): explicit zeros, an empty row, a full row, a row
    twice, draws that hit non-zeros (few columns, high zero_sampling), and
    the dtypes numpy's product would give the targets."""
    rng = np.random.default_rng(4)
    X = _data(seed=1, n_rows=40, n_features=25).astype(x_dtype)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    explicit = np.arange(X.nnz) % 7 == 0
    explicit[X.indptr[2]:X.indptr[3]] = False  # row 2 stays full: nothing to draw
    X.data[explicit] = 0  # explicit zeros: columns that may be drawn
    assert np.count_nonzero(X[2].toarray()) == X.shape[1]
    nets = [SparseAutoencoderNetwork([X.shape[1], 3], "relu", "adam", net_dtype,
                                     np.random.RandomState(0), 4.0, zero_sampling=3.0)
            for _ in range(2)]
    scale = rng.uniform(0.5, 2.0, X.shape[0]).astype(scale_dtype)
    for rows in ([2, 5, 0, 7, 7], list(range(40)), [5], [3, 11, 2]):
        rows = np.array(rows, dtype=np.int64)
        got = nets[0].sample_pairs(X, rows, scale[rows])
        expected = _sample_pairs_numpy(nets[1], X, rows, scale[rows])
        for name, a, b in zip(["pair_row", "pair_col", "target", "weight", "indptr"],
                              got, expected):
            np.testing.assert_array_equal(a, b, err_msg=name, strict=True)


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
