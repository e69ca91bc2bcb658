"""The two builds of the kernels, and which one runs.

On x86-64 the kernels are compiled twice from one source: ``_sparse_kernels``
for any processor and ``_sparse_kernels_avx2`` for processors with AVX2
(sksparsenn/meson.build). ``select_kernels`` picks one at import. The builds
must be interchangeable: every kernel, and a whole fit, gives bit-identical
results on both, so a model's numbers do not depend on the processor it
was trained on.
"""

import builtins
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from sksparsenn import SparseMLPRegressor, _network, _sparse_kernels

_sparse_kernels_avx2 = None
if _sparse_kernels.cpu_has_avx2():  # its import runs AVX2 code: only where it can
    try:
        from sksparsenn import _sparse_kernels_avx2
    except ImportError:  # not built here (not x86-64, or not gcc/clang)
        pass

needs_avx2 = pytest.mark.skipif(
    _sparse_kernels_avx2 is None,
    reason="the AVX2 build of the kernels is not installed or this processor lacks AVX2",
)
BUILDS = [_sparse_kernels, _sparse_kernels_avx2]


def _csr(dtype, index_dtype, n_features, seed):
    """Rows of 0 to 300 non-zeros, plus one of 6,000 (split in the forward
    pass) and an explicit zero."""
    rng = np.random.default_rng(seed)
    sizes = [6000, 0] + list(rng.integers(1, 300, size=30))
    blocks = []
    for n in sizes:
        cols = np.sort(rng.choice(n_features, n, replace=False))
        blocks.append(sp.csr_matrix((rng.standard_normal(n), (np.zeros(n, int), cols)),
                                    shape=(1, n_features)))
    X = sp.vstack(blocks).tocsr().astype(dtype)
    X.data[5] = 0.0
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    return X


def _run_all_kernels(K, dtype, index_dtype, width):
    """Every kernel of module K on the same inputs; returns all outputs."""
    rng = np.random.default_rng(width)
    n_features = 8000
    X = _csr(dtype, index_dtype, n_features, seed=width)
    rows = np.array([0, 3, 1, 7, 2, 9, 30, 4, 0], dtype=np.int64)
    out = {}
    for mode in range(4):
        s = np.empty(X.shape[0], dtype=dtype)
        K.row_scales(X.data, X.indptr, mode, s, 2)
        out[f"scale{mode}"] = s
    scale = out["scale3"][rows]
    W = rng.standard_normal((n_features, width)).astype(dtype)
    bias = rng.standard_normal(width).astype(dtype)
    Z = np.empty((rows.shape[0], width), dtype=dtype)
    K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, bias, Z, 2)
    out["forward"] = Z
    slot = np.full(n_features, -1, dtype=np.int64)
    plan = K.batch_transpose(X.data, X.indices, X.indptr, rows, scale, slot)
    out.update(features=plan[0], offsets=plan[1])
    D = rng.standard_normal((rows.shape[0], width)).astype(dtype)
    out["gradient"] = K.sparse_gradient(*plan, D, 2)
    full = lambda: np.abs(rng.standard_normal((n_features, width))).astype(dtype)  # noqa: E731
    # (solver code, momentum, nesterov, max_norm, state shapes)
    for solver, momentum, nesterov, max_norm in [(0, 0.0, False, 0.0), (0, 0.9, False, 0.0),
                                                 (0, 0.9, True, 3.0), (1, 0.0, False, 0.0),
                                                 (2, 0.0, False, 0.0), (3, 0.0, False, 0.0)]:
        W1 = W.copy()
        if solver == 3:
            s1 = np.abs(rng.standard_normal((n_features, 1))).astype(dtype)
            s2 = s1
        else:
            s1, s2 = full(), full()
        b1 = rng.standard_normal(n_features).astype(dtype)
        bs1, bs2 = (np.abs(rng.standard_normal(n_features)).astype(dtype) for _ in range(2))
        for _ in range(3):
            K.sparse_update(*plan, D, W1, s1, s2, solver, 0.01, 0.9, 0.999, 1e-8, momentum,
                            nesterov, 2, max_norm=max_norm, bias=b1, bias_state1=bs1,
                            bias_state2=bs2)
        out[f"update{solver}-{momentum}-{nesterov}"] = (W1, s1, s2, b1, bs1, bs2)
    logp = np.linspace(-2, 0, n_features)
    acc = np.linspace(0, 1e-3, n_features)
    marks = dict(lazy_logp=logp.copy(), lazy_acc=acc.copy(), logp_now=0.5, acc_now=2e-3)
    Z_lazy = np.empty_like(Z)
    K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, bias, Z_lazy, 2, **marks)
    out["forward_lazy"] = Z_lazy
    Z_group = np.empty_like(Z)
    group_slot = np.full(n_features, -1, dtype=np.int64)
    plan_f = K.sparse_forward(X.data, X.indices, X.indptr, rows, scale, W, bias, Z_group, 2,
                              slot=group_slot)
    n_pairs = plan_f[1][-1]  # the pair arrays have room for all stored values
    out["forward_group"] = (Z_group, plan_f[0], plan_f[1], plan_f[2][:n_pairs],
                            plan_f[3][:n_pairs])
    W_lazy, s_lazy = W.copy(), full()
    K.sparse_update(*plan, D, W_lazy, s_lazy, s_lazy, 2, 0.01, 0.9, 0.999, 1e-8, 0.0, False,
                    2, **marks)
    out["update_lazy"] = (W_lazy, s_lazy, marks["lazy_logp"], marks["lazy_acc"])
    W2 = W.copy()
    K.catch_up_rows(W2, logp.copy(), acc.copy(), plan[0], 0.5, 2e-3, 2)
    out["catch_up_rows"] = W2
    W3, lp3, acc3 = W.copy(), logp.copy(), acc.copy()
    K.catch_up_all(W3, lp3, acc3, 0.5, 2e-3, 2)
    out["catch_up_all"] = W3
    pair_row = rng.integers(0, rows.shape[0], 200).astype(np.int64)
    pair_col = rng.integers(0, n_features, 200).astype(np.int64)
    dots = np.empty(200, dtype=dtype)
    dec_bias = rng.standard_normal(n_features).astype(dtype)
    K.sampled_dot(Z, W, dec_bias, pair_row, pair_col, dots, 2)
    out["sampled_dot"] = dots
    dots_lazy = np.empty(200, dtype=dtype)
    K.sampled_dot(Z, W, dec_bias, pair_row, pair_col, dots_lazy, 2, lazy_logp=logp,
                  lazy_acc=acc, logp_now=0.5, acc_now=2e-3)
    out["sampled_dot_lazy"] = dots_lazy
    order = np.argsort(pair_row, kind="stable")  # sampled_backward takes pairs by row
    pair_indptr = np.concatenate([[0], np.cumsum(np.bincount(pair_row, minlength=Z.shape[0]))])
    target = rng.standard_normal(200).astype(dtype)
    coef = rng.uniform(0.5, 1.5, 200).astype(dtype)
    diff, delta, dA = np.empty(200, dtype), np.empty(200, dtype), np.empty_like(Z)
    dec_plan = K.sampled_backward(Z, W, dec_bias, pair_indptr.astype(np.int64),
                                  pair_col[order], target, coef, diff, delta, dA, 2,
                                  slot=np.full(n_features, -1, dtype=np.int64), lazy_logp=logp,
                                  lazy_acc=acc, logp_now=0.5, acc_now=2e-3)
    nnz = np.empty(rows.shape[0], dtype=np.int64)
    K.row_nonzeros(X.data, X.indptr, rows, nnz)
    n_draw = nnz + 1
    draws = rng.integers(0, n_features, int(n_draw.sum()))
    draws[::5] = X.indices[X.indptr[rows[0]]]  # some hit a non-zero of row 0
    room = int((np.diff(X.indptr)[rows] + n_draw).sum())  # every stored value and draw
    pairs = [np.empty(room, dtype=np.int64), np.empty(room, dtype=np.int64), np.empty(room),
             np.empty(room), np.empty(rows.shape[0] + 1, dtype=np.int64)]
    n = K.reconstruction_pairs(X.data, X.indices, X.indptr, rows, scale.astype(np.float64),
                               dtype == np.float32, nnz, n_draw, draws, n_features, *pairs)
    out["reconstruction_pairs"] = tuple(a[:n] for a in pairs[:4]) + (pairs[4], nnz)
    out["sampled_backward"] = (diff, delta, dA, dec_plan[0], dec_plan[1],
                               dec_plan[2][:dec_plan[1][-1]], dec_plan[3][:dec_plan[1][-1]])
    delta = rng.standard_normal(Z.shape).astype(dtype)
    K.relu_backward(np.maximum(Z, 0), delta)
    out["relu_backward"] = delta
    return out


def _assert_identical(a, b, name=""):
    if isinstance(a, tuple):
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{name}[{i}]")
        return
    np.testing.assert_array_equal(a, b, err_msg=name, strict=True)


@needs_avx2
@pytest.mark.parametrize("width", [37, 256])
@pytest.mark.parametrize("dtype, index_dtype", [(np.float32, np.int32),
                                                (np.float64, np.int64)])
def test_builds_give_bit_identical_kernel_results(dtype, index_dtype, width):
    base = _run_all_kernels(_sparse_kernels, dtype, index_dtype, width)
    avx2 = _run_all_kernels(_sparse_kernels_avx2, dtype, index_dtype, width)
    assert base.keys() == avx2.keys()
    for name in base:
        _assert_identical(base[name], avx2[name], name)
    # The inputs above reach every branch that differs between solvers.
    assert not np.array_equal(base["update1-0.0-False"][0], base["update3-0.0-False"][0])


@needs_avx2
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "rowwise_adagrad", "sgd"])
def test_builds_give_bit_identical_fits(monkeypatch, solver):
    X = _csr(np.float32, np.int32, 8000, seed=1)
    y = np.asarray(X[:, :50].sum(axis=1)).ravel() + 0.1 * np.arange(X.shape[0])
    preds = []
    for K in BUILDS:
        monkeypatch.setattr(_network, "_k", K)
        model = SparseMLPRegressor(hidden_layer_sizes=(64, 16), solver=solver, batch_size=8,
                                   max_iter=3, alpha=1e-3, early_stopping=False,
                                   random_state=0)
        model.fit(X, y)
        preds.append((model.predict(X), model.coefs_[0], model.loss_curve_))
    np.testing.assert_array_equal(preds[0][0], preds[1][0], strict=True)
    np.testing.assert_array_equal(preds[0][1], preds[1][1], strict=True)
    assert preds[0][2] == preds[1][2]


def test_each_build_says_what_it_is():
    assert _sparse_kernels.INSTRUCTION_SET == "baseline"
    if _sparse_kernels_avx2 is not None:
        assert _sparse_kernels_avx2.INSTRUCTION_SET == "avx2"


def test_select_kernels_choices(monkeypatch):
    assert _network.select_kernels("baseline") is _sparse_kernels
    if _sparse_kernels_avx2 is not None:
        assert _network.select_kernels("auto") is _sparse_kernels_avx2
        assert _network.select_kernels("avx2") is _sparse_kernels_avx2
    # A processor without AVX2: "auto" quietly, "avx2" with a warning, runs the baseline.
    monkeypatch.setattr(_sparse_kernels, "cpu_has_avx2", lambda: False)
    assert _network.select_kernels("auto") is _sparse_kernels
    with pytest.warns(RuntimeWarning, match="using the baseline kernels"):
        assert _network.select_kernels("avx2") is _sparse_kernels
    with pytest.warns(RuntimeWarning, match="is not one of"):
        assert _network.select_kernels("sse9") is _sparse_kernels


def test_avx2_build_is_imported_only_where_the_processor_has_avx2(monkeypatch):
    # Its module initialisation is AVX2 code too: importing it on a processor
    # without AVX2 could stop the process with an illegal instruction.
    imported = []
    real_import = builtins.__import__

    def spy(name, globals=None, locals=None, fromlist=(), level=0):
        imported.extend(fromlist or ())
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", spy)
    monkeypatch.setattr(_sparse_kernels, "cpu_has_avx2", lambda: False)
    assert _network.select_kernels("auto") is _sparse_kernels
    with pytest.warns(RuntimeWarning, match="this processor has no AVX2"):
        assert _network.select_kernels("avx2") is _sparse_kernels
    assert "_sparse_kernels_avx2" not in imported
    monkeypatch.setattr(_sparse_kernels, "cpu_has_avx2", lambda: True)
    _network.select_kernels("auto")
    assert "_sparse_kernels_avx2" in imported


def test_environment_variable_picks_the_build(tmp_path):
    code = "from sksparsenn import _network; print(_network._k.INSTRUCTION_SET)"
    env = dict(os.environ, SKSPARSENN_KERNELS="baseline")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "baseline"


def test_main_job_names_the_build_it_runs(capsys):
    from sksparsenn.__main__ import main

    main(["--n-samples", "2000", "--n-features", "4096", "--hidden", "8", "--max-iter", "2"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f", {_network._k.INSTRUCTION_SET} build of the kernels")
