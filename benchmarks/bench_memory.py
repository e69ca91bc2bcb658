"""Peak memory of fit against what it must hold.

What a fit must hold: X (its CSR arrays), y, the weights, the optimizer
state, and the activations of one minibatch. The script fits in a child
process and measures the growth of its resident set from just before X is
loaded to the peak of the fit (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, Linux only), and prints the ratio of the two. The
optimizer state is counted in full, although only the pages of the features
a fit touches are ever mapped.

Each solver runs in its own child on the same data (the last 20% of the
rows held out), so that the lower-memory choice, ``rowwise_adagrad`` (one
accumulator per feature instead of H for Adagrad or 2 x H for Adam), shows
its memory and its test R^2 beside lazy Adam after the same epochs.

Each solver is fitted twice: with ``early_stopping=False``, and with the
default ``early_stopping='auto'``, which holds out 10% of the training rows
and keeps a copy of the best epoch's weights; that copy is part of what
the second fit must hold.

    python benchmarks/bench_memory.py [--n-samples 50000] [--hidden 128]
        [--solvers adam rowwise_adagrad] [--max-iter 3]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.sparse as sp

CHILD = r"""
import json, sys, warnings
import numpy as np, scipy.sparse as sp
from sksparsenn import SparseMLPRegressor

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)

path, hidden, solver, max_iter = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
lr, early_stopping = float(sys.argv[5]), {"auto": "auto", "off": False}[sys.argv[6]]
# Warm up: load every lazily imported module before the baseline.
SparseMLPRegressor(hidden_layer_sizes=(2,), max_iter=1).fit(sp.random(20, 5, 0.5, "csr"), np.ones(20))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS
base = rss("VmRSS:")
data = np.load(path)
X = sp.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=tuple(data["shape"]))
y = data["y"]
n_train = int(0.8 * X.shape[0])
# Train / test rows as views of X's arrays: no copy of X during the fit.
ip = X.indptr
X_train = sp.csr_matrix((X.data[:ip[n_train]], X.indices[:ip[n_train]], ip[:n_train + 1]),
                        shape=(n_train, X.shape[1]))
X_test = sp.csr_matrix((X.data[ip[n_train]:], X.indices[ip[n_train]:], ip[n_train:] - ip[n_train]),
                       shape=(X.shape[0] - n_train, X.shape[1]))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = SparseMLPRegressor(hidden_layer_sizes=(hidden,), solver=solver, max_iter=max_iter,
                               learning_rate_init=lr, row_scaling="l2", batch_size=256,
                               early_stopping=early_stopping,
                               random_state=0).fit(X_train, y[:n_train])
peak = rss("VmHWM:")
print(json.dumps({"base": base, "peak": peak, "r2": model.score(X_test, y[n_train:])}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-samples", type=int, default=50_000)
    p.add_argument("--n-features", type=int, default=2**20)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--solvers", nargs="+", default=["adam", "rowwise_adagrad"],
                   choices=list(N_STATE_ROWS))
    p.add_argument("--max-iter", type=int, default=3)
    args = p.parse_args()

    from sksparsenn.datasets import make_sparse_regression

    X, y = make_sparse_regression(n_samples=args.n_samples, n_features=args.n_features,
                                  random_state=0)
    n_train = int(0.8 * X.shape[0])
    itemsize = 4  # float32 compute dtype
    N, H, K = X.shape[1], args.hidden, y.shape[1]
    Xtr = X[:n_train]
    x_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes  # all rows are loaded
    y_bytes = y.nbytes
    weights = (N * H + H + H * K + K) * itemsize
    batch = 256 * (H + K) * itemsize
    mib = 2**20
    print(f"{n_train:,} training rows x {N:,} features, {Xtr.nnz:,} non-zeros; H={H}, "
          f"float32, {args.max_iter} epochs, row_scaling='l2'")
    print(f"  X {x_bytes / mib:,.0f} MiB (train and test rows), y {y_bytes / mib:,.1f} MiB, "
          f"weights {weights / mib:,.0f} MiB, per-feature bookkeeping {3 * N * 8 / mib:,.0f} MiB, "
          f"one batch {batch / mib:,.2f} MiB")
    print(f"\n| solver | early_stopping | lr | optimizer state MiB | expected MiB | "
          f"measured peak MiB | measured / expected | test R^2 |\n"
          f"|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, data=X.data, indices=X.indices, indptr=X.indptr,
                 shape=np.array(X.shape), y=y)
        for solver, early_stopping in [(s, e) for s in args.solvers for e in ("off", "auto")]:
            lr = LEARNING_RATE[solver]
            out = subprocess.run(
                [sys.executable, "-c", CHILD, path, str(args.hidden), solver,
                 str(args.max_iter), str(lr), early_stopping],
                check=True, capture_output=True, text=True, cwd=tmp,
            ).stdout
            m = json.loads(out.strip().splitlines()[-1])
            # state: first-layer rows (H wide, or 1 for row-wise Adagrad) plus
            # the dense layers' full-size state
            per_row, n_arrays = N_STATE_ROWS[solver]
            state = n_arrays * (N * per_row(H) + H + H * K + K) * itemsize
            # per-feature bookkeeping: two float64 lazy-regularisation marks and
            # the int64 slot map of the batch transpose
            marks = 3 * N * 8
            expected = x_bytes + y_bytes + weights + state + marks + batch
            if early_stopping == "auto":
                expected += weights  # the best epoch's weights
            measured = m["peak"] - m["base"]
            print(f"| {solver} | {early_stopping} | {lr:g} | {state / mib:,.0f} | "
                  f"{expected / mib:,.0f} | "
                  f"{measured / mib:,.0f} | {measured / expected:.2f} | {m['r2']:.4f} |",
                  flush=True)
    print("\nexpected = X + y + weights + optimizer state + per-feature bookkeeping "
          "(2 float64 lazy-penalty marks, 1 int64 slot) + one batch of activations, "
          "+ one copy of the weights with early_stopping='auto' (the best epoch's); "
          "measured = growth of the "
          "child's peak RSS from before X is loaded (target: ratio <= 1.2).")


# Optimizer state: (width of a first-layer state row, number of state arrays).
N_STATE_ROWS = {
    "adam": (lambda H: H, 2),
    "adagrad": (lambda H: H, 1),
    "sgd": (lambda H: H, 1),
    "rowwise_adagrad": (lambda H: 1, 1),
}
LEARNING_RATE = {"adam": 1e-3, "adagrad": 0.05, "sgd": 0.05, "rowwise_adagrad": 0.05}


if __name__ == "__main__":
    main()
