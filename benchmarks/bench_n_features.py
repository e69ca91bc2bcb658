"""Epoch time must not depend on n_features.

The same rows (same non-zeros, same values) are laid out over 2**16 and over
2**22 columns: the 2**16-column matrix is generated, and its column numbers
are mapped injectively at random into the wider range. A training epoch
touches only the weight rows of the features present, so its time should be
the same for both.

Each epoch is one ``partial_fit`` call, timed on its own. The first call of
each model (which allocates and initialises the O(n_features x H) weights
and pays the page faults of the lazily zeroed optimizer state) is reported
but not counted. ``alpha=0``, so that no call ends with the O(n_features x H)
flush of the lazy L2 decay (a once-per-fit cost, not a per-epoch one). Epochs
of the two widths are interleaved; the medians are compared.

    python benchmarks/bench_n_features.py [--n-samples 20000] [--epochs 5]
"""

import argparse
import time

import numpy as np
import scipy.sparse as sp

from sksparsenn import SparseMLPRegressor
from sksparsenn._openmp_helpers import _openmp_effective_n_threads
from sksparsenn.datasets import make_sparse_regression


def widen(X, n_features, seed=0):
    """Same rows, columns mapped injectively into range(n_features)."""
    rng = np.random.default_rng(seed)
    cols = np.sort(rng.choice(n_features, size=X.shape[1], replace=False))
    Xw = sp.csr_matrix((X.data, cols[X.indices], X.indptr), shape=(X.shape[0], n_features))
    Xw.sort_indices()
    return Xw


def timed_partial_fit(model, X, y):
    tic = time.perf_counter()
    model.partial_fit(X, y)
    return time.perf_counter() - tic


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-samples", type=int, default=20000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--solver", default="adam")
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()

    X, y = make_sparse_regression(n_samples=args.n_samples, n_features=2**16, random_state=0)
    widths = [2**16, 2**22]
    data = {w: (X if w == X.shape[1] else widen(X, w)) for w in widths}
    print(f"{X.shape[0]:,} rows, {X.nnz:,} non-zeros, hidden={args.hidden}, "
          f"solver={args.solver}, {_openmp_effective_n_threads()} threads")
    models = {
        w: SparseMLPRegressor(hidden_layer_sizes=(args.hidden,), solver=args.solver,
                              alpha=0.0, batch_size=256, random_state=0)
        for w in widths
    }
    for w in widths:
        first = timed_partial_fit(models[w], data[w], y)
        print(f"  n_features=2**{int(np.log2(w))}: first epoch incl. initialisation "
              f"{first:.2f}s (not counted)", flush=True)
    epoch = {w: [] for w in widths}
    for e in range(args.epochs):
        for w in widths:  # interleaved
            epoch[w].append(timed_partial_fit(models[w], data[w], y))
            print(f"  epoch {e + 2}: n_features=2**{int(np.log2(w))}: {epoch[w][-1]:.2f}s",
                  flush=True)
    print("\nn_features   median epoch (s)")
    med = {w: float(np.median(epoch[w])) for w in widths}
    for w in widths:
        print(f"2**{int(np.log2(w)):<9d} {med[w]:.3f}")
    ratio = med[widths[1]] / med[widths[0]]
    print(f"\nratio 2**22 / 2**16 = {ratio:.2f} (target < 1.5)")


if __name__ == "__main__":
    main()
