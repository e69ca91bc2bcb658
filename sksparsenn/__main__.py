"""The main job: ``python -m sksparsenn``.

Generates the built-in data set (2**20 count features, rare almost-full
rows, 8 targets from a nonlinear teacher), fits SparseMLPRegressor with
verbose progress, and prints its test R^2 next to a Ridge baseline trained on
the same rows, the training throughput and the peak memory.
"""

import argparse
import resource
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge

from . import SparseMLPRegressor, __version__, _network
from ._network import compute_row_scales
from ._openmp_helpers import _openmp_effective_n_threads
from .datasets import make_sparse_regression


def _parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m sksparsenn",
        description="Fit SparseMLPRegressor on the built-in sparse data set and "
        "compare it with Ridge.",
    )
    p.add_argument("--n-samples", type=int, default=50_000,
                   help="rows of the generated data set (80%% train, 20%% test)")
    p.add_argument("--n-features", type=int, default=2**20, help="columns of X")
    p.add_argument("--hidden", type=int, nargs="+", default=[128],
                   help="hidden_layer_sizes")
    # SGD with momentum: on this data, Adam's per-coordinate step sizes give
    # each rare feature a full-size step whenever it appears, so it memorises
    # the training rows (test R^2 below Ridge's); plain gradient steps scale
    # with the evidence a feature has seen.
    p.add_argument("--solver", default="sgd", choices=["adam", "adagrad", "rowwise_adagrad", "sgd"])
    p.add_argument("--learning-rate-init", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=1e-4,
                   help="L2 penalty (the estimator's default, 1.0, suits its default "
                   "solver, row-wise Adagrad)")
    p.add_argument("--row-scaling", default="l2", choices=["none", "mean", "sqrt", "l2"],
                   help="scaling of each input row (see SparseMLPRegressor)")
    p.add_argument("--max-iter", type=int, default=20,
                   help="maximum epochs (early stopping on a 10%% validation split)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--random-state", type=int, default=0,
                   help="seed of the data and of the model")
    return p.parse_args(argv)


def _peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    args = _parse_args(argv)
    print(f"sksparsenn {__version__}, {_openmp_effective_n_threads()} OpenMP threads, "
          f"{_network._k.INSTRUCTION_SET} build of the kernels")

    tic = time.perf_counter()
    X, y = make_sparse_regression(
        n_samples=args.n_samples, n_features=args.n_features, random_state=args.random_state
    )
    nnz = X.getnnz(axis=1)
    dense = nnz > 0.1 * X.shape[1]
    print(
        f"data: {X.shape[0]:,} rows x {X.shape[1]:,} features, {X.nnz:,} non-zeros "
        f"(median {int(np.median(nnz))} per row; {int(dense.sum())} almost-full rows hold "
        f"{nnz[dense].sum() / max(X.nnz, 1):.0%} of them), {y.shape[1]} targets "
        f"[{time.perf_counter() - tic:.1f}s]"
    )
    n_train = int(0.8 * X.shape[0])
    X_train, X_test, y_train, y_test = X[:n_train], X[n_train:], y[:n_train], y[n_train:]

    model = SparseMLPRegressor(
        hidden_layer_sizes=tuple(args.hidden),
        solver=args.solver,
        learning_rate_init=args.learning_rate_init,
        alpha=args.alpha,
        row_scaling=args.row_scaling,
        batch_size=args.batch_size,
        max_iter=args.max_iter,
        early_stopping=True,
        n_iter_no_change=2,
        random_state=args.random_state,
        verbose=True,
    )
    print(f"\nfitting {model!r}")
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - tic
    r2_mlp = model.score(X_test, y_test)

    # The linear bar: Ridge on the same rows, scaled the same way.
    print("\nfitting Ridge(alpha=1.0) on the same rows, same row scaling")
    tic = time.perf_counter()
    s_train = compute_row_scales(X_train, args.row_scaling, _openmp_effective_n_threads())
    s_test = compute_row_scales(X_test, args.row_scaling, _openmp_effective_n_threads())
    ridge = Ridge(alpha=1.0, solver="sparse_cg").fit(sp.diags(s_train) @ X_train, y_train)
    ridge_seconds = time.perf_counter() - tic
    r2_ridge = ridge.score(sp.diags(s_test) @ X_test, y_test)

    print(
        f"\nresults on {X_test.shape[0]:,} test rows\n"
        f"  SparseMLPRegressor  test R^2 = {r2_mlp:.4f}   fit {fit_seconds:6.1f}s, "
        f"{model.n_iter_} epochs, {model.t_ / fit_seconds:,.0f} samples/s\n"
        f"  Ridge               test R^2 = {r2_ridge:.4f}   fit {ridge_seconds:6.1f}s\n"
        f"  peak memory (RSS) {_peak_rss_mib():,.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
