"""Epoch time must not depend on n_features.

The same rows (same non-zeros, same values) are laid out over 2**16 and over
2**22 columns: the 2**16-column matrix is generated, and its column numbers
are mapped injectively at random into the wider range. A training epoch
touches only the weight rows of the features present, so its time should be
the same for both.

An epoch's time is measured as the difference of a fit with 1 + k epochs and
a fit with 1 epoch, divided by k, so that neither the O(n_features x H)
initialisation, nor the first epoch (which pays the page faults of the
lazily zeroed optimizer state), nor the final flush of the lazy
regularisation is counted. Runs of the two widths are interleaved and
repeated; the medians are compared.

    python benchmarks/bench_n_features.py [--n-samples 20000] [--repeats 3]
"""

import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

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


def fit_seconds(X, y, n_epochs, hidden, solver):
    model = SparseMLPRegressor(
        hidden_layer_sizes=(hidden,), solver=solver, batch_size=256, max_iter=n_epochs,
        tol=0.0, n_iter_no_change=10**6, shuffle=True, random_state=0,
    )
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return time.perf_counter() - tic


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-samples", type=int, default=20000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--solver", default="adam")
    p.add_argument("--extra-epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    X, y = make_sparse_regression(n_samples=args.n_samples, n_features=2**16, random_state=0)
    widths = [2**16, 2**22]
    data = {w: (X if w == X.shape[1] else widen(X, w)) for w in widths}
    print(f"{X.shape[0]:,} rows, {X.nnz:,} non-zeros, hidden={args.hidden}, "
          f"solver={args.solver}, {_openmp_effective_n_threads()} threads")
    epoch = {w: [] for w in widths}
    for r in range(args.repeats):
        for w in widths:  # interleaved
            Xw = data[w]
            t1 = fit_seconds(Xw, y, 1, args.hidden, args.solver)
            tk = fit_seconds(Xw, y, 1 + args.extra_epochs, args.hidden, args.solver)
            epoch[w].append((tk - t1) / args.extra_epochs)
            print(f"  repeat {r}: n_features=2**{int(np.log2(w))}: epoch {epoch[w][-1]:.2f}s "
                  f"(fit of 1 epoch incl. init {t1:.2f}s)", flush=True)
    print("\nn_features   median epoch (s)")
    med = {w: float(np.median(epoch[w])) for w in widths}
    for w in widths:
        print(f"2**{int(np.log2(w)):<9d} {med[w]:.3f}")
    ratio = med[widths[1]] / med[widths[0]]
    print(f"\nratio 2**22 / 2**16 = {ratio:.2f} (target < 1.5)")


if __name__ == "__main__":
    main()
