"""Peak memory of fit against what it must hold.

What a fit must hold: X (its CSR arrays), y, the weights, the optimizer
state, and the activations of one minibatch. The script fits in a child
process and measures the growth of its resident set from just before X is
loaded to the peak of the fit (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, Linux only), and prints the ratio of the two. The
optimizer state is counted in full, although only the pages of the features
a fit touches are ever mapped.

    python benchmarks/bench_memory.py [--n-samples 50000] [--hidden 128] [--solver adam]
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
# Warm up: load every lazily imported module before the baseline.
SparseMLPRegressor(hidden_layer_sizes=(2,), max_iter=1).fit(sp.random(20, 5, 0.5, "csr"), np.ones(20))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS
base = rss("VmRSS:")
data = np.load(path)
X = sp.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=tuple(data["shape"]))
y = data["y"]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    SparseMLPRegressor(hidden_layer_sizes=(hidden,), solver=solver, max_iter=max_iter,
                       batch_size=256, random_state=0).fit(X, y)
print(json.dumps({"base": base, "peak": rss("VmHWM:")}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-samples", type=int, default=50_000)
    p.add_argument("--n-features", type=int, default=2**20)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--solver", default="adam", choices=["adam", "adagrad", "sgd"])
    p.add_argument("--max-iter", type=int, default=2)
    args = p.parse_args()

    from sksparsenn.datasets import make_sparse_regression

    X, y = make_sparse_regression(n_samples=args.n_samples, n_features=args.n_features,
                                  random_state=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, data=X.data, indices=X.indices, indptr=X.indptr,
                 shape=np.array(X.shape), y=y)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, path, str(args.hidden), args.solver,
             str(args.max_iter)],
            check=True, capture_output=True, text=True, cwd=tmp,
        ).stdout
    m = json.loads(out.strip().splitlines()[-1])

    itemsize = 4  # float32 compute dtype
    n, N, H, K = X.shape[0], X.shape[1], args.hidden, y.shape[1]
    x_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    y_bytes = y.nbytes
    weights = (N * H + H + H * K + K) * itemsize
    n_state = {"adam": 2, "adagrad": 1, "sgd": 1}[args.solver]
    state = n_state * weights
    batch = 256 * (H + K) * itemsize
    expected = x_bytes + y_bytes + weights + state + batch
    measured = m["peak"] - m["base"]
    mib = 2**20
    print(f"{n:,} rows x {N:,} features, {X.nnz:,} non-zeros; H={H}, solver={args.solver}")
    print(f"  X {x_bytes / mib:,.0f} MiB, y {y_bytes / mib:,.1f} MiB, weights {weights / mib:,.0f} "
          f"MiB, optimizer state {state / mib:,.0f} MiB, one batch {batch / mib:,.2f} MiB")
    print(f"  expected (sum)      {expected / mib:,.0f} MiB")
    print(f"  measured peak fit   {measured / mib:,.0f} MiB (RSS growth from before X is loaded)")
    print(f"  ratio measured / expected = {measured / expected:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
