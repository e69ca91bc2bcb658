"""SparseNetwork.step (lazy, sparse, Cython kernels) against a dense reference.

The reference below is written from the specification of one training step,
not from the implementation: it materialises the minibatch as a dense array,
updates every row of the first-layer matrix eagerly each step (a row whose
feature is absent from the batch keeps its weights and optimizer state, but
is regularised like every other row), and applies the regularisation as a
plain decay followed by soft-thresholding. The fast path must agree with it
to float64 rounding after every step.
"""

import copy
import math

import numpy as np
import pytest
import scipy.sparse as sp

from sksparsenn._network import (
    _LOGP_FLUSH,
    SparseAutoencoderNetwork,
    SparseNetwork,
    compute_row_scales,
)
from sksparsenn._network import _k as K

N_THREADS = 1
RTOL = 1e-8
ATOL = 1e-10

N_ROWS = 46
N_FEATURES = 30
BATCH = 8
HIDDEN = [7, 5]
N_OUT = 3

# Features of the batch-controlled part of X (see _make_data).
RARE_FEATURES = {
    24: [0, 4],     # batch B0 and B4 only
    25: [],         # only in the two dense rows (batch B1)
    26: [2],        # batch B2 only
    27: [0],        # batch B0 only
    28: [5],        # the short last batch B5 only
}
EMPTY_FEATURE = 29  # never stored at all


# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #
def _make_data(seed=0):
    """X (CSR, float64), Y, sample weights and the list of minibatches.

    Rows are grouped into six batches B0..B5 of a fixed permutation (the
    last has 6 rows); the run is the epoch B0..B5 followed by the epoch
    B3, B1, B5, B0, B4, B2, i.e. 12 steps. Features 24..28 are stored only in
    rows of the batches listed in RARE_FEATURES, so they are absent from the
    batch for several consecutive steps; feature 29 is never stored. Two rows
    (both in B1) are much denser than the others, and one row is empty.
    """
    rng = np.random.RandomState(seed)
    perm = rng.permutation(N_ROWS)
    groups = [perm[i:i + BATCH] for i in range(0, N_ROWS, BATCH)]
    assert [len(g) for g in groups] == [8, 8, 8, 8, 8, 6]

    dense = rng.standard_normal((N_ROWS, N_FEATURES))
    mask = rng.random_sample((N_ROWS, N_FEATURES)) < 0.15
    mask[:, 24:] = False
    # two much denser rows, in batch B1, also carrying feature 25
    for r in groups[1][:2]:
        mask[r, :24] = rng.random_sample(24) < 0.9
        mask[r, 25] = True
    for j, batch_ids in RARE_FEATURES.items():
        for b in batch_ids:
            for r in groups[b][rng.choice(len(groups[b]), 2, replace=False)]:
                mask[r, j] = True
    # one empty row (not a dense one)
    empty_row = groups[3][5]
    mask[empty_row] = False
    X = sp.csr_matrix(np.where(mask, dense, 0.0))
    X.sort_indices()
    assert X.dtype == np.float64
    assert X.getnnz(axis=1)[empty_row] == 0
    assert X.getnnz(axis=0)[EMPTY_FEATURE] == 0

    Y = rng.standard_normal((N_ROWS, N_OUT))
    sw = rng.uniform(0.2, 3.0, N_ROWS)
    order = [0, 1, 2, 3, 4, 5, 3, 1, 5, 0, 4, 2]
    batches = [np.ascontiguousarray(np.sort(groups[b]) if k % 2 else groups[b], dtype=np.int64)
               for k, b in enumerate(order)]
    return X, Y, sw, batches


def _with_explicit_zeros(X, seed=1):
    """A copy of CSR X with extra explicitly stored zeros (same values otherwise)."""
    rng = np.random.RandomState(seed)
    D = X.toarray()
    extra = (rng.random_sample(D.shape) < 0.2) & (D == 0)
    extra[:, EMPTY_FEATURE] |= rng.random_sample(D.shape[0]) < 0.5
    extra[:, 26] |= (rng.random_sample(D.shape[0]) < 0.5) & (D[:, 26] == 0)
    indptr = [0]
    indices, data = [], []
    for i in range(D.shape[0]):
        cols = np.flatnonzero((D[i] != 0) | extra[i])
        indices.extend(cols)
        data.extend(D[i, cols])
        indptr.append(len(indices))
    Xz = sp.csr_matrix(
        (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int32),
         np.asarray(indptr, dtype=np.int32)),
        shape=D.shape,
    )
    assert Xz.nnz > X.nnz
    assert (Xz.data == 0).sum() == Xz.nnz - X.nnz
    clean = Xz.copy()
    clean.eliminate_zeros()
    assert (clean != X).nnz == 0
    return Xz


# --------------------------------------------------------------------------- #
# Dense reference, from the specification
# --------------------------------------------------------------------------- #
def _act(name, Z):
    if name == "relu":
        return np.maximum(Z, 0.0)
    if name == "tanh":
        return np.tanh(Z)
    if name == "logistic":
        return 1.0 / (1.0 + np.exp(-Z))
    if name == "identity":
        return Z.copy()
    raise ValueError(name)


def _act_grad(name, Z):
    """d act(Z) / dZ, elementwise, from the pre-activation."""
    if name == "relu":
        return (Z > 0).astype(np.float64)
    if name == "tanh":
        return 1.0 - np.tanh(Z) ** 2
    if name == "logistic":
        a = 1.0 / (1.0 + np.exp(-Z))
        return a * (1.0 - a)
    if name == "identity":
        return np.ones_like(Z)
    raise ValueError(name)


def _soft(x, a):
    return np.sign(x) * np.maximum(np.abs(x) - a, 0.0)


def reference_row_scales(Xdense, mode):
    nz = Xdense != 0
    count = nz.sum(axis=1).astype(np.float64)
    norm = np.sqrt((Xdense ** 2).sum(axis=1))
    out = np.ones(Xdense.shape[0])
    has = count > 0
    if mode == "mean":
        out[has] = 1.0 / count[has]
    elif mode == "sqrt":
        out[has] = 1.0 / np.sqrt(count[has])
    elif mode == "l2":
        out[has] = 1.0 / norm[has]
    else:
        assert mode == "none"
    return out


def _penalty_denominator(hp, Xb, sw):
    """Divisor of lr * alpha and lr * alpha_l1 in the per-step penalty.

    The batch's total sample weight (its number of rows without weights), as
    in scikit-learn's L2 term ``alpha / (2 * sw_sum) * ||W||^2``.
    """
    return float(Xb.shape[0]) if sw is None else float(np.sum(sw))


class DenseReference:
    """Eager dense implementation of one SparseNetwork training step."""

    def __init__(self, coefs, intercepts, activation, solver, linear_term=False,
                 initial_accumulator=0.0):
        self.W = [np.array(c, dtype=np.float64, copy=True) for c in coefs]
        self.b = [np.array(c, dtype=np.float64, copy=True) for c in intercepts]
        self.activation = activation
        # wide-and-deep: a linear map from the scaled input to the outputs,
        # starting at zero, updated and regularised like the first layer
        self.Wlin = np.zeros((self.W[0].shape[0], self.W[-1].shape[1])) if linear_term else None
        if linear_term:
            n_lin = 2 if solver == "adam" else 1
            width = 1 if solver == "rowwise_adagrad" else self.Wlin.shape[1]
            self.lin_state = [np.zeros((self.Wlin.shape[0], width)) for _ in range(n_lin)]
        self.solver = solver
        self.t = 0
        n_state = 2 if solver == "adam" else 1
        # state[k][i]: k-th optimizer array of parameter i, parameters ordered
        # as all W's then all b's (the layout of SparseNetwork.state). Row-wise
        # Adagrad keeps one accumulator per row of the first layer.
        self.state = [[np.zeros_like(p) for p in self.W + self.b] for _ in range(n_state)]
        if solver == "rowwise_adagrad":
            self.state[0][0] = np.zeros((self.W[0].shape[0], 1))
        if solver in ("adagrad", "rowwise_adagrad"):  # Adagrad's G starts at G0
            for a in self.state[0] + (self.lin_state if linear_term else []):
                a += initial_accumulator

    def forward(self, Xb, s):
        """Pre-activations Z_l and activations A_l of every layer."""
        Zs, As = [], []
        n = len(self.W)
        A = None
        for l in range(n):
            if l == 0:
                Z = s[:, None] * (Xb @ self.W[0]) + self.b[0]
            else:
                Z = A @ self.W[l] + self.b[l]
            A = _act(self.activation, Z) if l < n - 1 else Z
            if l == n - 1 and self.Wlin is not None:
                A = A + s[:, None] * (Xb @ self.Wlin)
            Zs.append(Z)
            As.append(A)
        return Zs, As

    def gradients(self, Xb, s, Y, sw):
        Zs, As = self.forward(Xb, s)
        P = As[-1]
        B = Xb.shape[0]
        c = np.full(B, 1.0 / B) if sw is None else sw / sw.sum()
        loss = 0.5 * np.average((P - Y) ** 2, weights=sw, axis=0).mean()
        n = len(self.W)
        gW, gb = [None] * n, [None] * n
        delta = c[:, None] * (P - Y)  # dL/dZ_out
        self.g_lin = None if self.Wlin is None else (s[:, None] * Xb).T @ delta
        for l in range(n - 1, -1, -1):
            inp = s[:, None] * Xb if l == 0 else As[l - 1]
            gW[l] = inp.T @ delta
            gb[l] = delta.sum(axis=0)
            if l > 0:
                delta = (delta @ self.W[l].T) * _act_grad(self.activation, Zs[l - 1])
        return loss, gW, gb

    def _optimizer(self, w, g, st, hp, lr_t, first_layer=False):
        """New (w, state arrays) for one parameter; pure function."""
        st = [a.copy() for a in st]
        if self.solver == "sgd":
            mom = hp["momentum"]
            if mom > 0:
                v = st[0]
                v[...] = mom * v - hp["lr"] * g
                if hp["nesterov"]:
                    w = w + mom * v - hp["lr"] * g
                else:
                    w = w + v
            else:
                w = w - hp["lr"] * g
        elif self.solver == "adam":
            m, v = st
            m[...] = hp["beta_1"] * m + (1 - hp["beta_1"]) * g
            v[...] = hp["beta_2"] * v + (1 - hp["beta_2"]) * g * g
            w = w - lr_t * m / (np.sqrt(v) + hp["epsilon"])
        elif self.solver == "adagrad" or (self.solver == "rowwise_adagrad" and not first_layer):
            G = st[0]
            G += g * g
            w = w - hp["lr"] * g / (np.sqrt(G) + hp["epsilon"])
        elif self.solver == "rowwise_adagrad":  # first layer: one accumulator per row
            G = st[0]
            G += (g * g).mean(axis=1, keepdims=True)
            w = w - hp["lr"] * g / (np.sqrt(G) + hp["epsilon"])
        else:
            raise ValueError(self.solver)
        return w, st

    def step(self, Xb, s, Y, sw, hp):
        """One step on the dense batch ``Xb`` (explicit zeros are just zeros)."""
        loss, gW, gb = self.gradients(Xb, s, Y, sw)
        self.t += 1
        lr = hp["lr"]
        lr_t = lr * math.sqrt(1 - hp["beta_2"] ** self.t) / (1 - hp["beta_1"] ** self.t)
        n = len(self.W)
        touched = (Xb != 0).any(axis=0)  # features with a stored non-zero in the batch
        params = self.W + self.b
        grads = gW + gb
        for i in range(len(params)):
            st = [self.state[k][i] for k in range(len(self.state))]
            new_w, new_st = self._optimizer(params[i], grads[i], st, hp, lr_t, first_layer=i == 0)
            if i == 0:  # lazy first layer: absent rows keep weights and state
                new_w = np.where(touched[:, None], new_w, params[i])
                new_st = [np.where(touched[:, None], a, b) for a, b in zip(new_st, st)]
                if hp.get("max_norm"):  # touched rows above the norm are scaled to it
                    norms = np.sqrt((new_w ** 2).sum(axis=1, keepdims=True))
                    over = touched[:, None] & (norms > hp["max_norm"])
                    new_w = np.where(over, new_w * hp["max_norm"] / np.maximum(norms, 1e-300),
                                     new_w)
            params[i][...] = new_w
            for k in range(len(self.state)):
                self.state[k][i][...] = new_st[k]
        if self.Wlin is not None:
            new_w, new_st = self._optimizer(self.Wlin, self.g_lin, self.lin_state, hp, lr_t,
                                            first_layer=True)
            self.Wlin[...] = np.where(touched[:, None], new_w, self.Wlin)
            for k in range(len(self.lin_state)):
                self.lin_state[k][...] = np.where(touched[:, None], new_st[k], self.lin_state[k])
        denom = _penalty_denominator(hp, Xb, sw)
        decay = 1.0 - lr * hp["alpha"] / denom
        threshold = lr * hp["alpha_l1"] / denom
        self.W[0][...] = _soft(decay * self.W[0], threshold)
        if self.Wlin is not None:
            self.Wlin[...] = _soft(decay * self.Wlin, threshold)
        for l in range(1, n):
            self.W[l] *= decay
        return loss


# --------------------------------------------------------------------------- #
# Driver
# --------------------------------------------------------------------------- #
SOLVER_CASES = {
    "sgd_nesterov": ("sgd", 0.9, True),
    "sgd_momentum": ("sgd", 0.9, False),
    "sgd_plain": ("sgd", 0.0, False),
    "adam": ("adam", 0.0, False),
    "adagrad": ("adagrad", 0.0, False),
    "rowwise_adagrad": ("rowwise_adagrad", 0.0, False),
}
REG_CASES = {
    "noreg": (0.0, 0.0),
    "l2": (0.5, 0.0),
    "l1": (0.0, 0.5),
    "l2l1": (0.5, 0.5),
}


def _hp(solver_case, alpha, alpha_l1, lr=0.05):
    solver, momentum, nesterov = SOLVER_CASES[solver_case]
    return solver, dict(lr=lr, alpha=alpha, alpha_l1=alpha_l1, batch_size=float(BATCH),
                        beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                        momentum=momentum, nesterov=nesterov)


def _make_pair(solver, activation, seed=0, linear_term=False, initial_accumulator=0.0):
    net = SparseNetwork(layer_units=[N_FEATURES] + HIDDEN + [N_OUT], activation=activation,
                        solver=solver, dtype=np.float64, rng=np.random.RandomState(seed),
                        fan_in=5.0, linear_term=linear_term,
                        initial_accumulator=initial_accumulator)
    ref = DenseReference(net.coefs, net.intercepts, activation, solver, linear_term,
                         initial_accumulator)
    return net, ref


def _assert_matches(net, ref, step=None, flush_copy=True, rtol=RTOL, atol=ATOL):
    """Compare all weights and all optimizer state (first layer flushed in a copy)."""
    if flush_copy:
        net = copy.deepcopy(net)
        net.flush_regularization(N_THREADS)
    msg = f"after step {step}"
    assert net.t == ref.t
    for l in range(len(ref.W)):
        np.testing.assert_allclose(net.coefs[l], ref.W[l], rtol=rtol, atol=atol,
                                   err_msg=f"coefs[{l}] {msg}")
        np.testing.assert_allclose(net.intercepts[l], ref.b[l], rtol=rtol, atol=atol,
                                   err_msg=f"intercepts[{l}] {msg}")
    assert len(net.state) == len(ref.state)
    for k in range(len(ref.state)):
        for i in range(len(ref.state[k])):
            np.testing.assert_allclose(net.state[k][i], ref.state[k][i], rtol=rtol, atol=atol,
                                       err_msg=f"state[{k}][{i}] {msg}")
    if ref.Wlin is not None:
        np.testing.assert_allclose(net.linear_coef, ref.Wlin, rtol=rtol, atol=atol,
                                   err_msg=f"linear_coef {msg}")
        for k in range(len(ref.lin_state)):
            np.testing.assert_allclose(net.linear_state[k], ref.lin_state[k], rtol=rtol,
                                       atol=atol, err_msg=f"linear_state[{k}] {msg}")


def _run(X, Y, sw, batches, net, ref, hp, row_scaling, check_every_step=True,
         hp_per_step=None):
    """Drive both implementations over the batches; compare loss (and weights) each step."""
    scale = compute_row_scales(X, row_scaling, N_THREADS)
    Xd = X.toarray()
    losses = []
    for k, rows in enumerate(batches):
        h = hp if hp_per_step is None else hp_per_step[k]
        w = None if sw is None else sw[rows]
        loss = net.step(X, rows, scale[rows], Y[rows], w, h, N_THREADS)
        ref_loss = ref.step(Xd[rows], scale[rows], Y[rows], w, h)
        np.testing.assert_allclose(loss, ref_loss, rtol=RTOL, atol=0, err_msg=f"loss step {k}")
        losses.append(loss)
        if check_every_step:
            _assert_matches(net, ref, step=k + 1)
    net.flush_regularization(N_THREADS)
    assert net.reg_logp == 0.0 and net.reg_acc == 0.0
    _assert_matches(net, ref, step="final", flush_copy=False)
    return losses


# --------------------------------------------------------------------------- #
# Tests
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def data():
    return _make_data()


def test_data_has_intended_structure(data):
    X, Y, sw, batches = data
    nnz = X.getnnz(axis=1)
    assert nnz.max() > 4 * np.median(nnz)          # a couple of much denser rows
    assert min(len(rows) for rows in batches) < BATCH  # a smaller batch
    present = np.array([(X[rows].getnnz(axis=0) > 0) for rows in batches])
    # every rare feature is absent from at least 4 consecutive steps
    for j in list(RARE_FEATURES) + [EMPTY_FEATURE]:
        longest, run = 0, 0
        for p in present[:, j]:
            run = 0 if p else run + 1
            longest = max(longest, run)
        assert longest >= 4, j
    assert not present[:, EMPTY_FEATURE].any()


@pytest.mark.parametrize("mode", ["none", "mean", "sqrt", "l2"])
def test_row_scales_match_reference(data, mode):
    X = data[0]
    Xz = _with_explicit_zeros(X)
    expected = reference_row_scales(X.toarray(), mode)
    np.testing.assert_allclose(compute_row_scales(X, mode, N_THREADS), expected, rtol=1e-14)
    np.testing.assert_allclose(compute_row_scales(Xz, mode, N_THREADS), expected, rtol=1e-14)


@pytest.mark.parametrize("row_scaling", ["none", "l2"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("reg", list(REG_CASES))
@pytest.mark.parametrize("solver_case", list(SOLVER_CASES))
def test_step_matches_dense_reference(data, solver_case, reg, activation, weighted, row_scaling):
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, *REG_CASES[reg])
    net, ref = _make_pair(solver, activation)
    _run(X, Y, sw if weighted else None, batches, net, ref, hp, row_scaling)


@pytest.mark.parametrize("row_scaling", ["none", "mean", "sqrt", "l2"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("solver_case", ["sgd_nesterov", "adam", "adagrad", "rowwise_adagrad"])
def test_activations_and_row_scalings(data, solver_case, activation, row_scaling):
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, 0.5, 0.3)
    net, ref = _make_pair(solver, activation, seed=3)
    _run(X, Y, sw, batches, net, ref, hp, row_scaling)


@pytest.mark.parametrize("linear_term", [False, True])
@pytest.mark.parametrize("solver_case", ["adagrad", "rowwise_adagrad"])
def test_initial_accumulator_matches_dense_reference(data, solver_case, linear_term):
    # G0 = 0.01 is of the order of the squared gradients here, so that both
    # terms of sqrt(G0 + sum g^2) matter.
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, 0.5, 0.0)
    net, ref = _make_pair(solver, "relu", seed=5, linear_term=linear_term,
                          initial_accumulator=0.01)
    first = net.state[0][0].copy()
    assert (first == 0.01).all()
    _run(X, Y, sw, batches, net, ref, hp, "l2")
    # a feature never in a batch keeps G0; the others have added to it
    assert net.state[0][0][EMPTY_FEATURE].min() == 0.01
    assert (net.state[0][0] > 0.01).any()


def test_absent_feature_state_is_untouched(data):
    """Rows of features absent from a batch keep weights (before reg.) and state."""
    X, Y, sw, batches = data
    solver, hp = _hp("adam", 0.0, 0.0)
    net, ref = _make_pair(solver, "tanh")
    scale = compute_row_scales(X, "none", N_THREADS)
    for rows in batches:
        before_w = net.coefs[0].copy()
        before_m, before_v = net.state[0][0].copy(), net.state[1][0].copy()
        net.step(X, rows, scale[rows], Y[rows], None, hp, N_THREADS)
        absent = X[rows].getnnz(axis=0) == 0
        assert absent.any()
        np.testing.assert_array_equal(net.coefs[0][absent], before_w[absent])
        np.testing.assert_array_equal(net.state[0][0][absent], before_m[absent])
        np.testing.assert_array_equal(net.state[1][0][absent], before_v[absent])
        assert not np.array_equal(net.coefs[0][~absent], before_w[~absent])
    # a never-seen feature keeps its initial weights and zero state
    np.testing.assert_array_equal(net.state[0][0][EMPTY_FEATURE], 0)
    np.testing.assert_array_equal(net.coefs[0][EMPTY_FEATURE], ref.W[0][EMPTY_FEATURE])


@pytest.mark.parametrize("solver_case", ["sgd_plain", "sgd_momentum", "adam", "adagrad", "rowwise_adagrad"])
def test_lazy_l1_catch_up_zero_pattern(data, solver_case):
    """Strong L1: rows of rare features are driven exactly to zero while absent.

    The zero pattern of the first layer must be the same in both
    implementations, and it must include rows of features that were absent
    from the batches for many steps (their weights were only touched by the
    lazy catch-up).
    """
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, 0.2, 3.0)  # threshold 0.01875 per step
    net, ref = _make_pair(solver, "relu")
    _run(X, Y, None, batches, net, ref, hp, "sqrt")
    W, Wr = net.coefs[0], ref.W[0]
    np.testing.assert_array_equal(W == 0, Wr == 0)
    assert (W == 0).sum() > 10
    # the never-stored feature was decayed/thresholded purely lazily
    assert (W[EMPTY_FEATURE] == 0).any()
    rare = list(RARE_FEATURES)
    assert (W[rare] == 0).any()
    # ... and not every weight is zero
    assert (W != 0).sum() > W.size // 4


@pytest.mark.parametrize("row_scaling", ["none", "mean", "sqrt", "l2"])
@pytest.mark.parametrize("solver_case", ["sgd_momentum", "adam", "adagrad"])
def test_explicit_zeros_train_like_eliminated(data, solver_case, row_scaling):
    """X with stored zeros trains bit for bit as X.eliminate_zeros()."""
    X, Y, sw, batches = data
    Xz = _with_explicit_zeros(X)
    solver, hp = _hp(solver_case, 0.5, 0.5)
    net_z, _ = _make_pair(solver, "tanh")
    net_c, _ = _make_pair(solver, "tanh")
    scale_z = compute_row_scales(Xz, row_scaling, N_THREADS)
    scale_c = compute_row_scales(X, row_scaling, N_THREADS)
    np.testing.assert_array_equal(scale_z, scale_c)
    for rows in batches:
        lz = net_z.step(Xz, rows, scale_z[rows], Y[rows], sw[rows], hp, N_THREADS)
        lc = net_c.step(X, rows, scale_c[rows], Y[rows], sw[rows], hp, N_THREADS)
        assert lz == lc
    net_z.flush_regularization(N_THREADS)
    net_c.flush_regularization(N_THREADS)
    for a, b in zip(net_z.coefs + net_z.intercepts, net_c.coefs + net_c.intercepts):
        np.testing.assert_array_equal(a, b)
    for sa, sb in zip(net_z.state, net_c.state):
        for a, b in zip(sa, sb):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reg", ["noreg", "l2l1"])
@pytest.mark.parametrize("row_scaling", ["mean", "sqrt"])
@pytest.mark.parametrize("solver_case", ["sgd_momentum", "adam", "adagrad"])
def test_explicit_zeros_match_reference(data, solver_case, row_scaling, reg):
    """The run on X with stored zeros matches the dense reference."""
    X, Y, sw, batches = data
    Xz = _with_explicit_zeros(X)
    solver, hp = _hp(solver_case, *REG_CASES[reg])
    net, ref = _make_pair(solver, "tanh")
    _run(Xz, Y, sw, batches, net, ref, hp, row_scaling)


@pytest.mark.parametrize("reg", ["l2", "l2l1"])
@pytest.mark.parametrize("solver_case", ["sgd_plain", "sgd_nesterov", "adam", "adagrad"])
def test_logp_flush_renormalisation(data, solver_case, reg):
    """A strong decay makes the running log-decay cross _LOGP_FLUSH mid-run."""
    X, Y, sw, batches = data
    # decay = 1 - 0.05 * 12.8 / 8 = 0.92 (log -0.083) at lr 0.05, and
    # 1 - 0.5 * 12.8 / 8 = 0.2 (log -1.61) in the lr=0.5 stretches, so the
    # running log-decay crosses -20 twice in 36 steps, with rare features
    # pending catch-up on both sides of each flush.
    # Unweighted full batches only, so that the decay per step does not
    # depend on how the penalty is normalised.
    alpha, alpha_l1 = (12.8, 0.0) if reg == "l2" else (12.8, 0.4)
    solver, hp = _hp(solver_case, alpha, alpha_l1)
    full = [rows for rows in batches if rows.shape[0] == BATCH]
    all_batches = (full + full[::-1] + full[2:] + full[:2]) * 2
    all_batches = all_batches[:36]
    hp_steps = []
    for k in range(len(all_batches)):
        h = dict(hp)
        if 4 <= k < 18 or k >= 22:
            h["lr"] = 0.5
        hp_steps.append(h)
    net, ref = _make_pair(solver, "tanh")
    scale = compute_row_scales(X, "l2", N_THREADS)
    Xd = X.toarray()
    n_flushes = 0
    for k, rows in enumerate(all_batches):
        h = hp_steps[k]
        loss = net.step(X, rows, scale[rows], Y[rows], None, h, N_THREADS)
        ref_loss = ref.step(Xd[rows], scale[rows], Y[rows], None, h)
        assert net.reg_logp >= _LOGP_FLUSH
        if net.reg_logp == 0.0:
            # the running log-decay crossed _LOGP_FLUSH inside this step:
            # everything was folded into the weights
            n_flushes += 1
            assert net.reg_acc == 0.0
            assert not net.reg_logp_feat.any() and not net.reg_acc_feat.any()
            # compare directly, without any further catch-up
            _assert_matches(net, ref, step=k + 1, flush_copy=False, atol=1e-14)
        np.testing.assert_allclose(loss, ref_loss, rtol=RTOL, err_msg=f"loss step {k}")
        _assert_matches(net, ref, step=k + 1, atol=1e-14)
    assert n_flushes >= 2
    net.flush_regularization(N_THREADS)
    _assert_matches(net, ref, step="final", flush_copy=False, atol=1e-14)


@pytest.mark.parametrize("solver_case", ["sgd_nesterov", "adam", "adagrad"])
def test_learning_rate_changes_between_steps(data, solver_case):
    """Per-step lr (as a schedule would do) with lazy regularisation pending."""
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, 0.5, 0.4)
    lrs = [0.05, 0.05, 0.01, 0.2, 0.05, 0.002, 0.1, 0.1, 0.03, 0.05, 0.3, 0.01]
    hp_steps = [dict(hp, lr=lr) for lr in lrs]
    net, ref = _make_pair(solver, "relu")
    _run(X, Y, sw, batches, net, ref, hp, "sqrt", hp_per_step=hp_steps)


@pytest.mark.parametrize("solver_case", ["sgd_momentum", "adam"])
def test_thread_count_does_not_change_results(data, solver_case):
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, 0.5, 0.5)
    nets = []
    for n_threads in (1, 4):
        net, _ = _make_pair(solver, "tanh")
        scale = compute_row_scales(X, "l2", n_threads)
        for rows in batches:
            net.step(X, rows, scale[rows], Y[rows], sw[rows], hp, n_threads)
        net.flush_regularization(n_threads)
        nets.append(net)
    for a, b in zip(nets[0].coefs + nets[0].intercepts, nets[1].coefs + nets[1].intercepts):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- #
# Focused diagnostics: each isolates one ingredient of the comparison above.
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("reg", ["l2", "l1", "l2l1"])
@pytest.mark.parametrize("solver_case", ["sgd_plain", "adam"])
def test_forward_sees_pending_lazy_regularisation(data, solver_case, reg):
    """The lazy bookkeeping must be invisible to the forward pass of a step.

    After some regularised steps, the next step must compute the same loss
    (its forward pass) and end in the same weights as the same step taken
    from an up-to-date copy (flushed: nothing pending).
    """
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, *REG_CASES[reg])
    net, _ = _make_pair(solver, "tanh")
    scale = compute_row_scales(X, "none", N_THREADS)
    for k in range(3):
        rows = batches[k]
        net.step(X, rows, scale[rows], Y[rows], None, hp, N_THREADS)
        nxt = batches[k + 1]
        flushed = copy.deepcopy(net)
        flushed.flush_regularization(N_THREADS)
        lazy = copy.deepcopy(net)
        lazy_loss = lazy.step(X, nxt, scale[nxt], Y[nxt], None, hp, N_THREADS)
        exact_loss = flushed.step(X, nxt, scale[nxt], Y[nxt], None, hp, N_THREADS)
        np.testing.assert_allclose(lazy_loss, exact_loss, rtol=RTOL,
                                   err_msg=f"loss of step {k + 2}")
        lazy.flush_regularization(N_THREADS)
        flushed.flush_regularization(N_THREADS)
        for a, b in zip(lazy.coefs + lazy.intercepts, flushed.coefs + flushed.intercepts):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL,
                                       err_msg=f"weights after step {k + 2}")


class _EagerCatchUpMixin:
    """The step in separate passes: the batch grouped by feature, then
    catch_up_rows on its features, then the forward pass; kernels without
    marks. The autoencoder's decoder rows are caught up the same way,
    before they are read."""

    def _lazy_marks(self, linear=False):
        return {}

    def _forward_and_plan(self, X, rows, scale, n_threads):
        plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, scale, self._slot_map())
        nt = self._plan_threads(plan, n_threads)
        if self.reg_logp != 0.0 or self.reg_acc != 0.0:
            K.catch_up_rows(self.coefs[0], self.reg_logp_feat, self.reg_acc_feat, plan[0],
                            self.reg_logp, self.reg_acc, nt)
            if self.linear_coef is not None:
                K.catch_up_rows(self.linear_coef, self.lin_logp_feat, self.lin_acc_feat,
                                plan[0], self.reg_logp, self.reg_acc, nt)
        return self.forward(X, rows, scale, n_threads), plan, nt

    def _decoder_marks(self, pair_col, indptr, n_threads):
        # The autoencoder's decoder rows of the step's pairs, caught up first.
        if self.reg_logp != 0.0:
            n_rows = indptr.shape[0] - 1
            touched = K.batch_transpose(np.ones(pair_col.shape[0], self.dtype), pair_col,
                                        indptr, np.arange(n_rows, dtype=np.int64),
                                        np.ones(n_rows, self.dtype), self._slot_map())[0]
            K.catch_up_rows(self.decoder_coef, self.dec_logp_feat, self.dec_acc_feat, touched,
                            self.reg_logp, 0.0, n_threads)
        return {}


class _EagerCatchUp(_EagerCatchUpMixin, SparseNetwork):
    pass


class _EagerCatchUpAutoencoder(_EagerCatchUpMixin, SparseAutoencoderNetwork):
    pass


@pytest.mark.parametrize("solver_case", ["adam", "rowwise_adagrad"])
def test_autoencoder_catch_up_inside_the_kernels_equals_a_separate_pass(data, solver_case):
    """The same for the autoencoder's step: its encoder's first layer, and its
    decoder, whose rows the sampled product and the backward pass read as
    if caught up and the update catches up."""
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, *REG_CASES["l2"])
    nets = []
    for cls in (SparseAutoencoderNetwork, _EagerCatchUpAutoencoder):
        net = cls([N_FEATURES, 6, 4], "relu", solver, np.float64, np.random.RandomState(0),
                  5.0, zero_sampling=1.0)
        scale = compute_row_scales(X, "l2", 2)
        net.losses = [net.step(X, rows, scale[rows], None, None, hp, 2)
                      for rows in batches + batches[::-1]]
        nets.append(net)
    fused, eager = nets
    assert fused.reg_logp < 0
    assert fused.losses == eager.losses
    np.testing.assert_array_equal(fused.reg_logp_feat, eager.reg_logp_feat)
    np.testing.assert_array_equal(fused.dec_logp_feat, eager.dec_logp_feat)
    assert (fused.dec_logp_feat < 0).any()
    for a, b in zip(sum(fused.param_arrays(), []) + sum(fused.state + fused.decoder_state, []),
                    sum(eager.param_arrays(), []) + sum(eager.state + eager.decoder_state, [])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reg", ["l2", "l2l1"])
@pytest.mark.parametrize("solver_case", ["sgd_nesterov", "adam", "rowwise_adagrad"])
def test_catch_up_inside_the_kernels_equals_a_separate_pass(data, solver_case, reg):
    """A step groups the batch during the forward pass and catches rows up
    inside the forward and update kernels; that gives the same losses,
    weights, optimizer state and marks, bit for bit, as grouping, catch-up
    and forward pass done one after the other."""
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, *REG_CASES[reg])
    nets = []
    for cls in (SparseNetwork, _EagerCatchUp):
        net = cls(layer_units=[N_FEATURES] + HIDDEN + [N_OUT], activation="relu",
                  solver=solver, dtype=np.float64, rng=np.random.RandomState(0), fan_in=5.0,
                  linear_term=True)
        scale = compute_row_scales(X, "l2", 2)
        net.losses = [net.step(X, rows, scale[rows], Y[rows], sw[rows], hp, 2)
                      for rows in batches + batches[::-1]]
        nets.append(net)
    fused, eager = nets
    assert fused.reg_logp < 0 and (reg == "l2" or fused.reg_acc > 0)
    assert fused.losses == eager.losses
    arrays = ["reg_logp_feat", "reg_acc_feat", "lin_logp_feat", "lin_acc_feat",
              "linear_coef"]
    for name in arrays:
        np.testing.assert_array_equal(getattr(fused, name), getattr(eager, name), err_msg=name)
    for a, b in zip(fused.coefs + fused.intercepts + sum(fused.state, []) + fused.linear_state,
                    eager.coefs + eager.intercepts + sum(eager.state, []) + eager.linear_state):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reg", ["l2", "l1", "l2l1"])
@pytest.mark.parametrize("solver_case", list(SOLVER_CASES))
def test_matches_reference_when_flushed_every_step(data, solver_case, reg):
    """Eager regularisation (flush after every step), unweighted, full batches.

    Here no row ever has regularisation pending when the forward pass reads
    it, so this checks the optimizer laziness and the regularisation formula
    separately from the lazy catch-up.
    """
    X, Y, sw, batches = data
    full = [rows for rows in batches if rows.shape[0] == BATCH]
    solver, hp = _hp(solver_case, *REG_CASES[reg])
    net, ref = _make_pair(solver, "relu")
    scale = compute_row_scales(X, "sqrt", N_THREADS)
    Xd = X.toarray()
    for k, rows in enumerate(full):
        loss = net.step(X, rows, scale[rows], Y[rows], None, hp, N_THREADS)
        net.flush_regularization(N_THREADS)
        ref_loss = ref.step(Xd[rows], scale[rows], Y[rows], None, hp)
        np.testing.assert_allclose(loss, ref_loss, rtol=RTOL, err_msg=f"loss step {k}")
        _assert_matches(net, ref, step=k + 1, flush_copy=False)


@pytest.mark.parametrize("case", ["unweighted_full", "unweighted_short", "weighted_full"])
@pytest.mark.parametrize("reg", ["l2", "l1"])
def test_single_step_penalty_divisor(data, reg, case):
    """One regularised step: the penalty is lr * alpha / (batch's sample weight).

    A single step starts with no pending regularisation, so this isolates the
    penalty's divisor: the batch's number of rows, or its total sample weight.
    """
    X, Y, sw, batches = data
    rows = {"unweighted_full": batches[0], "weighted_full": batches[0],
            "unweighted_short": [b for b in batches if b.shape[0] < BATCH][0]}[case]
    w = sw[rows] if case == "weighted_full" else None
    solver, hp = _hp("sgd_plain", *REG_CASES[reg])
    net, ref = _make_pair(solver, "tanh")
    scale = compute_row_scales(X, "none", N_THREADS)
    net.step(X, rows, scale[rows], Y[rows], w, hp, N_THREADS)
    ref.step(X.toarray()[rows], scale[rows], Y[rows], w, hp)
    net.flush_regularization(N_THREADS)
    _assert_matches(net, ref, step=1, flush_copy=False)


@pytest.mark.parametrize("solver_case", ["sgd_plain", "adam"])
def test_regularisation_switched_off_mid_run(data, solver_case):
    """hp may change between steps: alpha = alpha_l1 = 0 for a few steps.

    Rows with regularisation pending from earlier steps must still receive it
    (before their update) when a step without regularisation touches them.
    """
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, 0.5, 0.5)
    off = dict(hp, alpha=0.0, alpha_l1=0.0)
    full = [rows for rows in batches if rows.shape[0] == BATCH]
    hp_steps = [hp, hp, hp, off, off, hp, hp, off, hp, hp]
    net, ref = _make_pair(solver, "tanh")
    _run(X, Y, None, full, net, ref, hp, "none", hp_per_step=hp_steps)


# --------------------------------------------------------------------------- #
# Options against a tuned linear model (wide-and-deep, max-norm, input dropout)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("reg", ["noreg", "l2l1"])
@pytest.mark.parametrize("solver_case", ["sgd_momentum", "adam", "rowwise_adagrad"])
def test_linear_term_matches_dense_reference(data, solver_case, reg):
    """Wide-and-deep: the linear term is trained jointly and regularised lazily."""
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, *REG_CASES[reg])
    net, ref = _make_pair(solver, "tanh", linear_term=True)
    _run(X, Y, sw, batches, net, ref, hp, "sqrt")
    assert np.abs(net.linear_coef).max() > 0


@pytest.mark.parametrize("solver_case", ["sgd_plain", "adam", "adagrad"])
def test_max_norm_matches_dense_reference(data, solver_case):
    X, Y, sw, batches = data
    solver, hp = _hp(solver_case, 0.5, 0.0, lr=0.3)
    hp["max_norm"] = 0.6
    net, ref = _make_pair(solver, "relu")
    _run(X, Y, None, batches, net, ref, hp, "none")
    norms = np.sqrt((net.coefs[0] ** 2).sum(axis=1))
    assert norms.max() <= 0.6 * (1 + 1e-12)
    # the constraint was active: some rows sit exactly on it (before later decay)
    unconstrained, _ = _make_pair(solver, "relu")
    scale = compute_row_scales(X, "none", N_THREADS)
    for rows in batches:
        unconstrained.step(X, rows, scale[rows], Y[rows], None, dict(hp, max_norm=None),
                           N_THREADS)
    unconstrained.flush_regularization(N_THREADS)
    assert np.sqrt((unconstrained.coefs[0] ** 2).sum(axis=1)).max() > 0.6


@pytest.mark.parametrize("solver_case", ["sgd_momentum", "adam"])
def test_input_dropout_equals_a_step_on_the_masked_batch(data, solver_case):
    """A dropout step is a plain step on the batch with the dropped values zeroed
    and the kept ones scaled by 1 / (1 - p); row scales stay the full rows'."""
    X, Y, sw, batches = data
    p = 0.3
    solver, hp = _hp(solver_case, 0.5, 0.2)
    net, _ = _make_pair(solver, "tanh", linear_term=True)
    plain, _ = _make_pair(solver, "tanh", linear_term=True)
    scale = compute_row_scales(X, "l2", N_THREADS)
    n_dropped = 0
    for rows in batches:
        draw = copy.deepcopy(net.dropout_rng)
        Xb = X[rows].tocsr()
        keep = draw.random(Xb.nnz) >= p
        n_dropped += int((~keep & (Xb.data != 0)).sum())
        Xb.data = np.where(keep, Xb.data * (1.0 / (1 - p)), 0.0)  # stored zeros: absent
        loss = net.step(X, rows, scale[rows], Y[rows], sw[rows], dict(hp, input_dropout=p),
                        N_THREADS)
        local = np.arange(rows.shape[0], dtype=np.int64)
        ref_loss = plain.step(Xb, local, scale[rows], Y[rows], sw[rows], hp, N_THREADS)
        assert loss == ref_loss
    assert n_dropped > 10
    for a, b in zip(net.coefs + net.intercepts + [net.linear_coef],
                    plain.coefs + plain.intercepts + [plain.linear_coef]):
        np.testing.assert_array_equal(a, b)
