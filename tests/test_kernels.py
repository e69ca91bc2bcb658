"""The Cython kernels called directly, against plain numpy.

The estimator-level tests (test_reference.py, test_regressor.py) cover the
kernels through training; these pin down the paths that only large inputs
reach: an almost-full row split into chunks of non-zeros in the forward
pass, and the row-wise Adagrad state layout.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import threadpoolctl

from sksparsenn._network import _k as K  # the build this processor runs (select_kernels)
from sksparsenn._network import _SingleThreadBlas, blas_threads_limit

H = 40


def _batch(dtype, index_dtype, seed=0):
    """CSR with rows of 4097, 9000, 5000 (split) and 1..300 (not split) non-zeros."""
    rng = np.random.default_rng(seed)
    n_features = 12_000
    sizes = [4097, 17, 9000, 0, 5000] + list(rng.integers(1, 300, size=20))
    rows = []
    for n in sizes:
        cols = np.sort(rng.choice(n_features, n, replace=False))
        rows.append(sp.csr_matrix((rng.standard_normal(n), (np.zeros(n, int), cols)),
                                  shape=(1, n_features)))
    X = sp.vstack(rows).tocsr().astype(dtype)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    W = rng.standard_normal((n_features, H)).astype(dtype)
    b = rng.standard_normal(H).astype(dtype)
    return X, W, b


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_forward_with_split_rows_matches_numpy(index_dtype):
    X, W, b = _batch(np.float64, index_dtype)
    rows = np.array([5, 0, 3, 2, 4, 1, 7, 2], dtype=np.int64)  # repeats allowed
    scale = np.linspace(0.5, 2.0, rows.shape[0])
    expected = scale[:, None] * (X[rows] @ W) + b
    for n_threads in (1, 2, 3):
        Z = np.empty((rows.shape[0], H))
        K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, b, Z, n_threads)
        np.testing.assert_allclose(Z, expected, rtol=1e-12, atol=1e-12)


def test_forward_split_is_independent_of_threads_float32():
    X, W, b = _batch(np.float32, np.int32, seed=1)
    rows = np.arange(X.shape[0], dtype=np.int64)
    scale = np.ones(rows.shape[0], dtype=np.float32)
    out = []
    for n_threads in (1, 2, 4):
        Z = np.empty((rows.shape[0], H), dtype=np.float32)
        K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, b, Z, n_threads)
        out.append(Z)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    expected = X.astype(np.float64) @ W.astype(np.float64) + b
    np.testing.assert_allclose(out[0], expected, rtol=1e-4, atol=1e-3)


def _grouping(kind, X, W, rows, scale, slot, n_threads):
    """The plan from batch_transpose, or from the forward pass (with Z)."""
    if kind == "batch_transpose":
        return K.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    Z = np.empty((rows.shape[0], W.shape[1]), dtype=W.dtype)
    plan = K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, np.zeros(W.shape[1]),
                            Z, n_threads, slot=slot)
    np.testing.assert_allclose(Z, scale[:, None] * (X[rows] @ W), rtol=1e-12, atol=1e-12)
    return plan


@pytest.mark.parametrize("kind, n_threads", [("batch_transpose", 1), ("forward", 1),
                                             ("forward", 2), ("forward", 3)])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_batch_transpose_matches_numpy(index_dtype, kind, n_threads):
    # The plan of a step: explicit zeros skipped, a row twice in one batch,
    # rows of 9,000 and 5,000 stored values among short ones. The forward
    # pass with a slot map groups the batch too (one thread, meanwhile).
    X, W, _ = _batch(np.float64, index_dtype, seed=5)
    X.data[::13] = 0.0
    rows = np.array([2, 0, 7, 4, 2, 1, 3, 9, 12, 5], dtype=np.int64)
    scale = np.linspace(0.5, 1.5, rows.shape[0])
    # Reference: the batch's pairs in storage order, grouped by feature in
    # order of first appearance (a stable sort keeps storage order within).
    ks = np.concatenate([np.arange(X.indptr[r], X.indptr[r + 1]) for r in rows])
    pos = np.repeat(np.arange(rows.shape[0]), np.diff(X.indptr)[rows])
    keep = X.data[ks] != 0
    ks, pos = ks[keep], pos[keep]
    feats = X.indices[ks].astype(np.int64)
    _, first = np.unique(feats, return_index=True)
    in_order = feats[np.sort(first)]
    rank = np.empty(X.shape[1], dtype=np.int64)
    rank[in_order] = np.arange(in_order.shape[0])
    by_feature = np.argsort(rank[feats], kind="stable")
    expected_offsets = np.concatenate([[0], np.cumsum(np.bincount(rank[feats]))])
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    for _ in range(2):  # the slot map is clean again after a batch
        features, offsets, pair_row, pair_val = _grouping(kind, X, W, rows, scale, slot,
                                                          n_threads)
        n = offsets[-1]
        np.testing.assert_array_equal(features, in_order)
        np.testing.assert_array_equal(offsets, expected_offsets)
        np.testing.assert_array_equal(pair_row[:n], pos[by_feature])
        np.testing.assert_array_equal(pair_val[:n], (X.data[ks] * scale[pos])[by_feature])
        assert (slot == -1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_matches_numpy_mask(dtype):
    rng = np.random.default_rng(7)
    A = np.maximum(rng.standard_normal((37, 19)), 0).astype(dtype)
    A[0, :5] = [np.nan, -0.0, 0.0, np.inf, -np.inf]
    delta = rng.standard_normal((37, 19)).astype(dtype)
    delta[1, :3] = [np.nan, -0.0, np.inf]
    expected = delta.copy()
    expected[A <= 0] = 0
    K.relu_backward(A, delta)
    np.testing.assert_array_equal(delta, expected, strict=True)
    assert np.array_equal(np.signbit(delta), np.signbit(expected))
    assert (delta == 0).sum() > 37 * 19 // 4  # the mask did something
    with pytest.raises(ValueError, match="shape"):
        K.relu_backward(A, delta[:, :18].copy())
    # the network's derivative: the kernel for C-contiguous arrays of one
    # dtype, numpy's masked assignment otherwise; the same values either way
    from sksparsenn._network import _relu_deriv
    fresh = rng.standard_normal(A.shape).astype(dtype)
    d_c, d_f = fresh.copy(), np.asfortranarray(fresh)
    _relu_deriv(A, d_c)
    _relu_deriv(np.asfortranarray(A), d_f)
    np.testing.assert_array_equal(d_c, d_f)
    assert not np.array_equal(d_c, fresh)


def _lazy_marks(n_features, seed, l1):
    """Marks of rows at various steps behind (log P, A), a few of them current."""
    rng = np.random.default_rng(seed)
    logp_now, acc_now = -0.3, (2e-2 if l1 else 0.0)
    logp = logp_now + rng.uniform(0, 0.3, n_features)
    acc = acc_now - rng.uniform(0, 2e-2, n_features) if l1 else np.zeros(n_features)
    current = rng.random(n_features) < 0.2
    logp[current], acc[current] = logp_now, acc_now
    return logp, acc, logp_now, acc_now


@pytest.mark.parametrize("l1", [False, True], ids=["l2", "l2l1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_catches_up_on_the_fly_like_catch_up_rows(dtype, l1):
    """The forward pass with marks equals catch_up_rows followed by the plain
    forward pass, bit for bit, split rows included, and leaves W and the
    marks as they were."""
    X, W, b = _batch(dtype, np.int32, seed=5)
    rows = np.array([0, 5, 2, 7, 4, 1, 9], dtype=np.int64)
    scale = np.linspace(0.5, 2.0, rows.shape[0]).astype(dtype)
    logp, acc, logp_now, acc_now = _lazy_marks(X.shape[1], 6, l1)
    W_lazy, lp, la = W.copy(), logp.copy(), acc.copy()
    Z_lazy = np.empty((rows.shape[0], H), dtype=dtype)
    K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W_lazy, b, Z_lazy, 2,
                     lazy_logp=lp, lazy_acc=la, logp_now=logp_now, acc_now=acc_now)
    np.testing.assert_array_equal(W_lazy, W)
    np.testing.assert_array_equal(lp, logp)
    np.testing.assert_array_equal(la, acc)

    slot = np.full(X.shape[1], -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    W_eager = W.copy()
    K.catch_up_rows(W_eager, logp.copy(), acc.copy(), plan[0], logp_now, acc_now, 2)
    assert not np.array_equal(W_eager, W)
    Z_eager = np.empty_like(Z_lazy)
    K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W_eager, b, Z_eager, 2)
    np.testing.assert_array_equal(Z_lazy, Z_eager, strict=True)
    if not l1:  # L1 marks all 0: they may be left out
        K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, b, Z_lazy, 2,
                         lazy_logp=lp, logp_now=logp_now, acc_now=acc_now)
        np.testing.assert_array_equal(Z_lazy, Z_eager, strict=True)


@pytest.mark.parametrize("l1", [False, True], ids=["l2", "l2l1"])
@pytest.mark.parametrize("solver, momentum, nesterov, max_norm", [
    (0, 0.0, False, 0.0), (0, 0.9, True, 0.0), (0, 0.9, False, 3.0), (1, 0.0, False, 0.0),
    (2, 0.0, False, 0.0), (3, 0.0, False, 0.0), (1, 0.0, False, 3.0),
], ids=["sgd", "sgd_nesterov", "sgd_momentum_max_norm", "adam", "adagrad",
        "rowwise_adagrad", "adam_max_norm"])
def test_update_catches_up_in_the_same_pass_as_catch_up_rows(solver, momentum, nesterov,
                                                             max_norm, l1):
    """sparse_update with marks equals catch_up_rows on the plan's features
    followed by sparse_update without marks: weights, state and marks."""
    X, W, b = _batch(np.float32, np.int64, seed=7)
    rows = np.array([3, 0, 8, 2, 11], dtype=np.int64)
    scale = np.ones(rows.shape[0], dtype=np.float32)
    D = np.random.default_rng(8).standard_normal((rows.shape[0], H)).astype(np.float32)
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    logp, acc, logp_now, acc_now = _lazy_marks(X.shape[1], 9, l1)
    shape = (X.shape[1], 1) if solver == 3 else W.shape
    s0 = np.abs(np.random.default_rng(10).standard_normal(shape)).astype(np.float32)
    results = []
    # the pass of its own; in the kernel; in the kernel without the L1 marks (all 0 for L2)
    for variant in ("pass", "fused", "fused_l2") if not l1 else ("pass", "fused"):
        W1, s1, s2, lp, la = W.copy(), s0.copy(), s0.copy(), logp.copy(), acc.copy()
        marks = dict(lazy_logp=lp, lazy_acc=la, logp_now=logp_now, acc_now=acc_now)
        if variant == "pass":
            K.catch_up_rows(W1, lp, la, plan[0], logp_now, acc_now, 2)
            marks = {}
        elif variant == "fused_l2":
            del marks["lazy_acc"]
        K.sparse_update(*plan, D, W1, s1, s2, solver, 0.01, 0.9, 0.999, 1e-8, momentum,
                        nesterov, 2, max_norm, **marks)
        results.append((W1, s1, s2, lp, la))
    for other in results[1:]:
        for name, a, c in zip(["W", "state1", "state2", "logp", "acc"], results[0], other):
            np.testing.assert_array_equal(a, c, err_msg=name, strict=True)
    touched = np.zeros(X.shape[1], bool)
    touched[plan[0]] = True
    np.testing.assert_array_equal(results[1][3][touched], logp_now)
    np.testing.assert_array_equal(results[1][3][~touched], logp[~touched])


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver, momentum, nesterov", [
    (0, 0.0, False), (0, 0.9, True), (0, 0.9, False), (1, 0.0, False), (2, 0.0, False),
    (3, 0.0, False),
], ids=["sgd", "sgd_nesterov", "sgd_momentum", "adam", "adagrad", "rowwise_adagrad"])
def test_update_of_the_biases_in_the_same_pass_equals_a_call_of_their_own(
        solver, momentum, nesterov, dtype, n_threads):
    """sparse_update with ``bias`` gives W and its state what it gives them
    without, and the biases and their state what a second call gives them
    with W = bias[:, None] and a column of ones for D: bit for bit. Rows of
    the plan only; the others are left as they were."""
    X, W, b = _batch(dtype, np.int64, seed=12)
    rows = np.array([3, 0, 8, 2, 11, 5], dtype=np.int64)
    scale = np.linspace(0.5, 1.5, rows.shape[0]).astype(dtype)
    D = np.random.default_rng(13).standard_normal((rows.shape[0], H)).astype(dtype)
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    rng = np.random.default_rng(14)
    logp, acc, logp_now, acc_now = _lazy_marks(X.shape[1], 15, False)
    shape = (X.shape[1], 1) if solver == 3 else W.shape
    s0 = np.abs(rng.standard_normal(shape)).astype(dtype)
    bias0 = rng.standard_normal((X.shape[1], 1)).astype(dtype)
    bs0 = np.abs(rng.standard_normal((X.shape[1], 1))).astype(dtype)
    args = (solver, 0.01, 0.9, 0.999, 1e-8, momentum, nesterov, n_threads)
    out = {}
    for variant in ("separate", "fused"):
        W1, s1, s2, lp = W.copy(), s0.copy(), s0.copy(), logp.copy()
        bias, bs1, bs2 = bias0.copy(), bs0.copy(), (2 * bs0).copy()
        marks = dict(lazy_logp=lp, logp_now=logp_now)
        if variant == "separate":
            K.sparse_update(*plan, D, W1, s1, s2, *args, 0.0, **marks)
            K.sparse_update(*plan, np.ones((rows.shape[0], 1), dtype), bias, bs1, bs2, *args)
        else:
            K.sparse_update(*plan, D, W1, s1, s2, *args, 0.0, **marks,
                            bias=bias[:, 0], bias_state1=bs1[:, 0], bias_state2=bs2[:, 0])
        out[variant] = (W1, s1, s2, lp, bias, bs1, bs2)
    names = ["W", "state1", "state2", "logp", "bias", "bias_state1", "bias_state2"]
    for name, a, c in zip(names, out["separate"], out["fused"]):
        np.testing.assert_array_equal(a, c, err_msg=name, strict=True)
    touched = np.zeros(X.shape[1], bool)
    touched[plan[0]] = True
    bias = out["fused"][4]
    assert not np.array_equal(bias[touched], bias0[touched])
    np.testing.assert_array_equal(bias[~touched], bias0[~touched])


def test_update_checks_the_biases():
    X, W, b = _batch(np.float64, np.int64)
    rows = np.array([1, 2], dtype=np.int64)
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, np.ones(2), slot)
    D = np.ones((2, H))
    n = X.shape[1]
    full = np.zeros_like(W)
    with pytest.raises(ValueError, match="bias must have one entry per row of W"):
        K.sparse_update(*plan, D, W, full, full, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1,
                        bias=np.zeros(n - 1), bias_state1=np.zeros(n), bias_state2=np.zeros(n))
    with pytest.raises(ValueError, match="bias_state1 must have one entry"):
        K.sparse_update(*plan, D, W, full, full, 2, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1,
                        bias=np.zeros(n))
    with pytest.raises(ValueError, match="bias_state2 must have one entry per row of W for Adam"):
        K.sparse_update(*plan, D, W, full, full, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1,
                        bias=np.zeros(n), bias_state1=np.zeros(n), bias_state2=np.zeros(3))
    # plain SGD has no state: the bias needs none either
    bias = np.zeros(n)
    K.sparse_update(*plan, D, W, full, full, 0, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1,
                    bias=bias)
    assert np.count_nonzero(bias) == plan[0].shape[0]


def test_forward_checks_the_slot_map_and_groups_without_columns():
    X, W, b = _batch(np.float64, np.int64)
    rows = np.array([1, 2], dtype=np.int64)
    Z = np.empty((2, H))
    with pytest.raises(ValueError, match="one entry per row of W"):
        K.sparse_forward(X.data, X.indices, X.indptr, rows, np.ones(2), W, b, Z, 1,
                         slot=np.full(X.shape[1] - 1, -1, dtype=np.int64))
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    expected = K.batch_transpose(X.data, X.indices, X.indptr, rows, np.ones(2), slot)
    plan = K.sparse_forward(X.data, X.indices, X.indptr, rows, np.ones(2), W[:, :0], b[:0],
                            Z[:, :0], 1, slot=slot)  # H = 0: nothing to sum, still a plan
    for a, e in zip(plan, expected):
        np.testing.assert_array_equal(a, e)
    assert K.sparse_forward(X.data, X.indices, X.indptr, rows, np.ones(2), W, b, Z, 1) is None


@pytest.mark.parametrize("l1", [False, True], ids=["l2", "l2l1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sampled_dot_catches_up_on_the_fly_like_catch_up_rows(dtype, l1):
    """The decoder's sampled product with marks equals catch_up_rows on the
    pairs' columns followed by the plain product, bit for bit, for 1 to 3
    threads, and leaves W and the marks as they were."""
    rng = np.random.default_rng(11)
    n_features, n_rows, width, n_pairs = 300, 9, 37, 400
    W = rng.standard_normal((n_features, width)).astype(dtype)
    A = rng.standard_normal((n_rows, width)).astype(dtype)
    bias = rng.standard_normal(n_features).astype(dtype)
    pair_row = np.sort(rng.integers(0, n_rows, n_pairs)).astype(np.int64)
    pair_col = rng.integers(0, n_features, n_pairs).astype(np.int64)
    logp, acc, logp_now, acc_now = _lazy_marks(n_features, 12, l1)
    W_eager = W.copy()
    K.catch_up_rows(W_eager, logp.copy(), acc.copy(), np.unique(pair_col), logp_now, acc_now, 1)
    assert not np.array_equal(W_eager, W)
    expected = np.empty(n_pairs, dtype=dtype)
    K.sampled_dot(A, W_eager, bias, pair_row, pair_col, expected, 1)
    ref = (A.astype(np.float64)[pair_row] * W_eager[pair_col]).sum(axis=1) + bias[pair_col]
    np.testing.assert_allclose(expected, ref, rtol=1e-4 if dtype == np.float32 else 1e-12)
    lp, la = logp.copy(), acc.copy()
    for n_threads in (1, 2, 3):
        out = np.empty(n_pairs, dtype=dtype)
        K.sampled_dot(A, W, bias, pair_row, pair_col, out, n_threads,
                      lazy_logp=lp, lazy_acc=la, logp_now=logp_now, acc_now=acc_now)
        np.testing.assert_array_equal(out, expected, strict=True)
        if not l1:  # L1 marks all 0: they may be left out
            K.sampled_dot(A, W, bias, pair_row, pair_col, out, n_threads,
                          lazy_logp=lp, logp_now=logp_now)
            np.testing.assert_array_equal(out, expected, strict=True)
    np.testing.assert_array_equal(lp, logp)
    np.testing.assert_array_equal(la, acc)
    with pytest.raises(ValueError, match="one mark per row of W"):
        K.sampled_dot(A, W, bias, pair_row, pair_col, out, 1, lazy_logp=lp[:-1],
                      logp_now=logp_now)


def _sampled_pairs(rng, n_features, n_rows, lens):
    """Pairs grouped by row (row b has lens[b] pairs), with repeated columns."""
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    pair_row = np.repeat(np.arange(n_rows), lens).astype(np.int64)
    pair_col = rng.integers(0, n_features, indptr[-1]).astype(np.int64)
    return indptr, pair_row, pair_col


@pytest.mark.parametrize("marks", [False, True], ids=["current", "lazy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sampled_backward_equals_sampled_dot_then_forward(dtype, marks):
    """One read of W gives what sampled_dot, the deltas in numpy and
    sparse_forward over them give, bit for bit, for 1 to 3 threads: a row of
    9,000 pairs (split into chunks) among short ones, zero coefficients
    (left out of the plan) and an empty row. Also against numpy."""
    rng = np.random.default_rng(13)
    n_features, width = 5000, 37
    lens = np.array([3, 9000, 0, 40, 1, 200, 7])
    n_rows = lens.shape[0]
    indptr, pair_row, pair_col = _sampled_pairs(rng, n_features, n_rows, lens)
    n_pairs = pair_col.shape[0]
    A = rng.standard_normal((n_rows, width)).astype(dtype)
    W = rng.standard_normal((n_features, width)).astype(dtype)
    bias = rng.standard_normal(n_features).astype(dtype)
    target = rng.standard_normal(n_pairs).astype(dtype)
    coef = rng.uniform(0.5, 1.5, n_pairs).astype(dtype)
    coef[::17] = 0
    kw = {}
    if marks:
        logp, acc, logp_now, acc_now = _lazy_marks(n_features, 14, True)
        kw = dict(lazy_logp=logp, lazy_acc=acc, logp_now=logp_now, acc_now=acc_now)

    out = np.empty(n_pairs, dtype=dtype)
    K.sampled_dot(A, W, bias, pair_row, pair_col, out, 2, **kw)
    diff_ref = out - target
    delta_ref = coef * diff_ref
    dA_ref = np.empty_like(A)
    slot = np.full(n_features, -1, dtype=np.int64)
    K.sparse_forward(delta_ref, pair_col, indptr, np.arange(n_rows, dtype=np.int64),
                     np.ones(n_rows, dtype), W, np.zeros(width, dtype), dA_ref, 2, **kw)
    features, offsets, prow, _ = K.batch_transpose(coef, pair_col, indptr,
                                                   np.arange(n_rows, dtype=np.int64),
                                                   np.ones(n_rows, dtype), slot)
    n = offsets[-1]
    assert n == (coef != 0).sum()

    for n_threads in (1, 2, 3):
        diff, delta, dA = np.empty_like(out), np.empty_like(out), np.empty_like(A)
        plan = K.sampled_backward(A, W, bias, indptr, pair_col, target, coef, diff, delta, dA,
                                  n_threads, slot=slot, **kw)
        np.testing.assert_array_equal(diff, diff_ref, strict=True)
        np.testing.assert_array_equal(delta, delta_ref, strict=True)
        np.testing.assert_array_equal(dA, dA_ref, strict=True)
        np.testing.assert_array_equal(plan[0], features)
        np.testing.assert_array_equal(plan[1], offsets)
        np.testing.assert_array_equal(plan[2][:n], prow[:n])
        # pair_val: the kept pairs' deltas in the plan's order (columns in
        # order of first appearance, pairs in storage order within each)
        kept = np.flatnonzero(coef != 0)
        rank = np.empty(n_features, dtype=np.int64)
        rank[features] = np.arange(features.shape[0])
        in_plan = kept[np.argsort(rank[pair_col[kept]], kind="stable")]
        np.testing.assert_array_equal(plan[3][:n], delta[in_plan], strict=True)
        assert (slot == -1).all()
        assert K.sampled_backward(A, W, bias, indptr, pair_col, target, coef, diff, delta,
                                  dA, n_threads, **kw) is None

    if not marks:  # against numpy, in float64
        W64, A64 = W.astype(np.float64), A.astype(np.float64)
        d64 = (A64[pair_row] * W64[pair_col]).sum(axis=1) + bias[pair_col] - target
        dA64 = np.zeros_like(A64)
        np.add.at(dA64, pair_row, (coef * d64)[:, None] * W64[pair_col])
        tol = dict(rtol=1e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(diff, d64, **tol)
        np.testing.assert_allclose(dA, dA64, **tol)


def test_sampled_backward_checks_its_arguments():
    rng = np.random.default_rng(0)
    indptr, _, pair_col = _sampled_pairs(rng, 50, 3, np.array([2, 0, 3]))
    A, W, b = np.ones((3, 4)), np.ones((50, 4)), np.zeros(50)
    t = np.zeros(5)
    args = [A, W, b, indptr, pair_col, t, t.copy(), t.copy(), t.copy(), np.empty((3, 4)), 1]
    K.sampled_backward(*args)
    with pytest.raises(ValueError, match="delimit the pairs"):
        K.sampled_backward(*args[:3], indptr[:-1], *args[4:])
    with pytest.raises(ValueError, match="one entry per pair"):
        K.sampled_backward(*args[:5], t[:4], *args[6:])
    with pytest.raises(ValueError, match="same number of columns"):
        K.sampled_backward(*args[:9], np.empty((3, 5)), 1)
    with pytest.raises(ValueError, match="one entry per row of W"):
        K.sampled_backward(*args, slot=np.full(49, -1, dtype=np.int64))
    with pytest.raises(ValueError, match="at least one column"):
        K.sampled_backward(A[:, :0], W[:, :0], *args[2:9], np.empty((3, 0)), 1)
    with pytest.raises(ValueError, match="row numbers of W"):
        K.sampled_backward(*args[:4], np.where(pair_col == pair_col[0], 50, pair_col),
                           *args[5:])
    with pytest.raises(ValueError, match="delimit the pairs"):
        K.sampled_backward(*args[:3], np.array([0, 3, 2, 5]), *args[4:])
    with pytest.raises(ValueError, match="at least 1"):
        K.sampled_backward(*args[:10], 0)
    # sampled_dot
    pair_row, out = np.array([0, 0, 2, 2, 2]), np.empty(5)
    K.sampled_dot(A, W, b, pair_row, pair_col, out, 1)
    with pytest.raises(ValueError, match="row numbers of W"):
        K.sampled_dot(A, W, b, pair_row, pair_col - 1 - pair_col.max(), out, 1)
    with pytest.raises(ValueError, match="row numbers of A"):
        K.sampled_dot(A, W, b, pair_row + 1, pair_col, out, 1)
    with pytest.raises(ValueError, match="one entry per pair"):
        K.sampled_dot(A, W, b, pair_row, pair_col, out[:4], 1)
    with pytest.raises(ValueError, match="same number of columns"):
        K.sampled_dot(A, np.ones((50, 3)), b, pair_row, pair_col, out, 1)
    with pytest.raises(ValueError, match="one entry per row of W"):
        K.sampled_dot(A, W, b[:-1], pair_row, pair_col, out, 1)
    with pytest.raises(ValueError, match="at least 1"):
        K.sampled_dot(A, W, b, pair_row, pair_col, out, 0)


def test_lazy_marks_are_checked():
    X, W, b = _batch(np.float64, np.int64)
    rows = np.array([1, 2], dtype=np.int64)
    scale = np.ones(2)
    Z = np.empty((2, H))
    marks = np.zeros(W.shape[0])
    with pytest.raises(ValueError, match="without lazy_logp"):
        K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, b, Z, 1, lazy_acc=marks)
    with pytest.raises(ValueError, match="only while acc_now is 0"):
        K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, b, Z, 1, lazy_logp=marks,
                         logp_now=-0.1, acc_now=1e-3)
    with pytest.raises(ValueError, match="one mark per row of W"):
        K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, b, Z, 1,
                         lazy_logp=marks[:-1], lazy_acc=marks[:-1])
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    full = np.zeros_like(W)
    with pytest.raises(ValueError, match="without lazy_logp"):
        K.sparse_update(*plan, Z, W, full, full, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1,
                        lazy_acc=marks)
    with pytest.raises(ValueError, match="only while acc_now is 0"):
        K.sparse_update(*plan, Z, W, full, full, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1,
                        lazy_logp=marks, logp_now=-0.1, acc_now=1e-3)
    with pytest.raises(ValueError, match="one mark per row of W"):
        K.sparse_update(*plan, Z, W, full, full, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1,
                        lazy_logp=marks[:-1], lazy_acc=marks[:-1])


def _rowwise_adagrad_reference(W, G0, grad, touched, lr, eps):
    """Row-wise Adagrad in numpy: the touched rows' accumulators grow by the
    mean square of their gradient row, and the rows step by lr / (sqrt(G) + eps)."""
    G = G0 + touched[:, None] * (grad ** 2).mean(axis=1, keepdims=True)
    return W - touched[:, None] * lr * grad / (np.sqrt(G) + eps), G


def test_rowwise_adagrad_update_matches_numpy():
    X, W, b = _batch(np.float64, np.int64, seed=2)
    rows = np.array([1, 6, 9, 12], dtype=np.int64)
    scale = np.ones(rows.shape[0])
    D = np.random.default_rng(3).standard_normal((rows.shape[0], H))
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    G0 = np.abs(np.random.default_rng(4).standard_normal((X.shape[1], 1)))
    W1, G1 = W.copy(), G0.copy()
    K.sparse_update(*plan, D, W1, G1, G1, 3, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 2)
    grad = (X[rows].T @ D)  # dense (n_features, H) gradient
    touched = np.zeros(X.shape[1], bool)
    touched[plan[0]] = True
    W_ref, G_ref = _rowwise_adagrad_reference(W, G0, grad, touched, lr=0.1, eps=1e-8)
    np.testing.assert_allclose(G1, G_ref, rtol=1e-12)
    np.testing.assert_allclose(W1, W_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [1, 15, 16, 17, 40, 256])
def test_row_reductions_match_numpy_for_any_width(width, dtype):
    # Sums over a row (row-wise Adagrad's mean square, max-norm's row norm,
    # the sampled dot products) run in 16 interleaved partial sums plus a
    # tail: widths below, at and above a multiple of 16.
    rng = np.random.default_rng(width)
    n_features, n_rows = 300, 6
    X = sp.random(n_rows, n_features, density=0.2, format="csr", random_state=width,
                  dtype=np.float64)
    X = X.astype(dtype)
    X.indices = X.indices.astype(np.int64)
    X.indptr = X.indptr.astype(np.int64)
    rows = np.arange(n_rows, dtype=np.int64)
    D = rng.standard_normal((n_rows, width)).astype(dtype)
    W = rng.standard_normal((n_features, width)).astype(dtype)
    slot = np.full(n_features, -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, np.ones(n_rows, dtype), slot)
    grad = X.astype(np.float64)[rows].T @ D.astype(np.float64)
    touched = np.zeros(n_features, bool)
    touched[plan[0]] = True
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)

    G0 = np.full((n_features, 1), 0.5, dtype=dtype)
    W1, G1 = W.copy(), G0.copy()
    K.sparse_update(*plan, D, W1, G1, G1, 3, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 2)
    W_ref, G_ref = _rowwise_adagrad_reference(W, G0, grad, touched, lr=0.1, eps=1e-8)
    np.testing.assert_allclose(G1, G_ref, **tol)
    np.testing.assert_allclose(W1, W_ref, **tol)

    W2 = W.copy()
    unused = np.zeros((1, width), dtype=dtype)
    K.sparse_update(*plan, D, W2, unused, unused, 0, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 2,
                    max_norm=1.0)
    stepped = W - 0.1 * grad
    norms = np.linalg.norm(stepped, axis=1, keepdims=True)
    W2_ref = np.where(touched[:, None] & (norms > 1.0), stepped / norms,
                      np.where(touched[:, None], stepped, W))
    np.testing.assert_allclose(W2, W2_ref, **tol)
    assert (touched[:, None] & (norms > 1.0)).any()

    A = rng.standard_normal((n_rows, width)).astype(dtype)
    bias = rng.standard_normal(n_features).astype(dtype)
    pair_row = rng.integers(0, n_rows, 50).astype(np.int64)
    pair_col = rng.integers(0, n_features, 50).astype(np.int64)
    out = np.empty(50, dtype=dtype)
    K.sampled_dot(A, W, bias, pair_row, pair_col, out, 2)
    ref = (A.astype(np.float64)[pair_row] * W[pair_col]).sum(axis=1) + bias[pair_col]
    np.testing.assert_allclose(out, ref, **tol)


def test_update_rejects_state_of_the_wrong_shape():
    X, W, b = _batch(np.float64, np.int64)
    rows = np.array([1], dtype=np.int64)
    D = np.zeros((1, H))
    slot = np.full(X.shape[1], -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, np.ones(1), slot)
    full = np.zeros_like(W)
    with pytest.raises(ValueError, match="one accumulator per row"):
        K.sparse_update(*plan, D, W, full, full, 3, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1)
    with pytest.raises(ValueError, match="n_threads must be at least 1"):
        K.sparse_update(*plan, D, W, full, full, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 0)
    with pytest.raises(ValueError, match="W's shape"):
        K.sparse_update(*plan, D, W, np.zeros((W.shape[0], 1)), full, 1, 0.1, 0.9, 0.999,
                        1e-8, 0.0, False, 1)
    short = np.zeros((W.shape[0] - 1, H))
    with pytest.raises(ValueError, match="one row per row of W"):  # Adam's second moment
        K.sparse_update(*plan, D, W, full, short, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1)
    with pytest.raises(ValueError, match="one row per row of W"):  # momentum's velocity
        K.sparse_update(*plan, D, W, short, short, 0, 0.1, 0.9, 0.999, 1e-8, 0.9, False, 1)
    # Plain SGD reads no state: a one-row placeholder is accepted, W still steps.
    W2 = W.copy()
    K.sparse_update(*plan, np.ones((1, H)), W2, np.zeros((1, H)), np.zeros((1, H)), 0, 0.1,
                    0.9, 0.999, 1e-8, 0.0, False, 1)
    assert not np.array_equal(W2[plan[0]], W[plan[0]])


def _blas_threads():
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_blas_single_thread_for_small_layers_and_restored():
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library reported by threadpoolctl")
    # a 256-row batch through 256 x 8 is small; 4096 rows through 1024 x 1024 is not
    assert isinstance(blas_threads_limit([10, 256, 8], 256), _SingleThreadBlas)
    assert not isinstance(blas_threads_limit([10, 1024, 1024, 1], 4096), _SingleThreadBlas)
    limiter = _SingleThreadBlas()
    with limiter:
        assert set(_blas_threads()) == {1}
        with limiter:  # nested / concurrent entries: restored by the last to leave
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before


def test_fit_and_predict_leave_blas_threads_as_they_were():
    from sksparsenn import SparseMLPRegressor
    from sksparsenn.datasets import make_sparse_regression

    before = _blas_threads()
    X, y = make_sparse_regression(n_samples=300, n_features=2**10, random_state=0)
    est = SparseMLPRegressor(hidden_layer_sizes=(16,), max_iter=2, random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning after 2 epochs
        est.fit(X, y)
    est.predict(X)
    assert _blas_threads() == before


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_rowwise_adagrad_keeps_one_accumulator_per_feature():
    from sksparsenn import SparseMLPRegressor
    from sksparsenn.datasets import make_sparse_regression

    X, y = make_sparse_regression(n_samples=400, n_features=2**12, random_state=0)
    est = SparseMLPRegressor(hidden_layer_sizes=(32,), solver="rowwise_adagrad",
                             learning_rate_init=0.05, row_scaling="l2", max_iter=30,
                             alpha=1e-4, random_state=0).fit(X[:300], y[:300])
    net = est._network
    assert net.state[0][0].shape == (2**12, 1)  # first layer: one number per feature
    assert net.state[0][1].shape == (32, 8)  # dense layer: elementwise Adagrad
    seen = X[:300].getnnz(axis=0) > 0
    # unseen features keep the initial accumulator; seen ones have added to it
    g0 = np.float32(est.initial_accumulator_value)
    assert (net.state[0][0][seen] > g0).all() and (net.state[0][0][~seen] == g0).all()
    assert est.loss_curve_[-1] < 0.7 * est.loss_curve_[0]  # it learns (observed 0.58)
