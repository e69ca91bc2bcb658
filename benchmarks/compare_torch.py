"""Lazy Adam against PyTorch's SparseAdam, step by step, from the same start.

Trains SparseMLPRegressor(solver='adam') and the PyTorch model of
``bench_peers.py`` (``EmbeddingBag(mode='sum', sparse=True)`` + bias, ReLU,
``Linear``; SparseAdam for the bag, Adam for the rest, lr 1e-3, MSE loss) in
lock step: the same initial weights, the same minibatches in the same order,
the same L2-normalised rows (``row_scaling='l2'`` inside ours, in the
``per_sample_weights`` for PyTorch), ``alpha=0``. After chosen steps and
after each epoch it prints the largest weight and prediction differences
and both test R^2.

The two losses differ by a constant factor (ours: half the squared error
summed over outputs, averaged over rows; PyTorch's MSELoss: averaged over
rows and outputs), which Adam's normalised steps do not see, except through
epsilon; so in exact arithmetic the two would take almost the same steps.
What this shows is how far float32 rounding and epsilon carry two equal
algorithms apart, and so how much of a difference in test R^2 between them
means anything.

``--init torch`` draws the initial weights as ``bench_peers.py`` did before
it copied ours (torch's generator, seed ``--seed``, the same Glorot bounds)
and copies them into ours; ``--init ours`` (default) copies ours into torch.

    python benchmarks/compare_torch.py --n-samples 30000 --n-features 65536 --hidden 64
    python benchmarks/compare_torch.py --n-samples 225000 --hidden 256 --epochs 2 \\
        --init torch --seed 0 --print-steps      # the bench_peers data set, ~25 min

Needs torch (``pip install torch==2.13.0``). Run it from outside the
repository root.
"""

import argparse
import time
import warnings

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-samples", type=int, default=30_000,
                   help="rows of make_sparse_regression(random_state=0); 80%% train")
    p.add_argument("--n-features", type=int, default=2**20)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--init", default="ours", choices=["ours", "torch"])
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the batch order (and of torch's initialisation)")
    p.add_argument("--print-steps", nargs="*", type=int, default=[1, 10, 100],
                   help="steps after which to print the differences")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def l2_rows(X, dtype):
    X = X.astype(dtype, copy=True)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    X.data /= np.repeat(norms, np.diff(X.indptr)).astype(dtype)
    return X


def main(argv=None):
    import torch
    from sklearn.metrics import r2_score
    from torch import nn

    from sksparsenn import SparseMLPRegressor
    from sksparsenn.datasets import make_sparse_regression

    args = parse_args(argv)
    warnings.simplefilter("ignore")  # batch_size larger than the last batch, etc.
    torch.set_num_threads(args.threads)
    dt, tdt = np.dtype(args.dtype), getattr(torch, args.dtype)
    X, y = make_sparse_regression(n_samples=args.n_samples, n_features=args.n_features,
                                  random_state=0, dtype=dt)
    k = args.n_samples * 4 // 5
    X_train, X_test, y_train, y_test = X[:k], X[k:], y[:k], y[k:]
    L_train, L_test = l2_rows(X_train, dt), l2_rows(X_test, dt)
    H, K = args.hidden, y.shape[1]

    ours = SparseMLPRegressor(hidden_layer_sizes=(H,), batch_size=args.batch_size,
                              solver="adam", alpha=0.0, learning_rate_init=1e-3,
                              shuffle=False, row_scaling="l2", dtype=args.dtype,
                              random_state=0)
    ours.n_features_in_ = X_train.shape[1]
    ours._initialize(X_train.shape[1], K, X_train, None, False)

    bag = nn.EmbeddingBag(X_train.shape[1], H, mode="sum", sparse=True).to(tdt)
    b1 = nn.Parameter(torch.empty(H, dtype=tdt))
    out = nn.Linear(H, K).to(tdt)
    with torch.no_grad():
        if args.init == "torch":  # torch's draw, into ours
            torch.manual_seed(args.seed)
            fan_in = float(np.mean(np.diff(X_train.indptr)))
            bound = (6.0 / (fan_in + H)) ** 0.5
            bag.weight.uniform_(-bound, bound)
            b1.uniform_(-bound, bound)
            bound = (6.0 / (H + K)) ** 0.5
            out.weight.uniform_(-bound, bound)
            out.bias.uniform_(-bound, bound)
            ours.coefs_[0][...] = bag.weight.numpy()
            ours.intercepts_[0][...] = b1.numpy()
            ours.coefs_[1][...] = out.weight.numpy().T
            ours.intercepts_[1][...] = out.bias.numpy()
        else:  # ours, into torch
            bag.weight.copy_(torch.from_numpy(ours.coefs_[0]))
            b1.copy_(torch.from_numpy(ours.intercepts_[0]))
            out.weight.copy_(torch.from_numpy(np.ascontiguousarray(ours.coefs_[1].T)))
            out.bias.copy_(torch.from_numpy(ours.intercepts_[1]))
    opt_sparse = torch.optim.SparseAdam(list(bag.parameters()), lr=1e-3)
    opt_dense = torch.optim.Adam([b1, *out.parameters()], lr=1e-3)

    def forward(A):
        idx = torch.from_numpy(A.indices.astype(np.int64))
        off = torch.from_numpy(A.indptr[:-1].astype(np.int64))
        w = torch.from_numpy(A.data)
        return out(torch.relu(bag(idx, off, per_sample_weights=w) + b1))

    def torch_predict(A):
        with torch.no_grad():
            return np.concatenate([forward(A[s:s + 4096]).numpy()
                                   for s in range(0, A.shape[0], 4096)])

    def report(label):
        p_torch, p_ours = torch_predict(L_test), ours.predict(X_test)
        d_w1 = np.abs(ours.coefs_[0] - bag.weight.detach().numpy()).max()
        d_w2 = np.abs(ours.coefs_[1] - out.weight.detach().numpy().T).max()
        print(f"{label:<12} max|dW1| {d_w1:.2e}  max|dW2| {d_w2:.2e}  "
              f"max|dpred| {np.abs(p_torch - p_ours).max():.2e}  test R^2 ours "
              f"{r2_score(y_test, p_ours):.4f}  torch {r2_score(y_test, p_torch):.4f}",
              flush=True)

    rng = np.random.default_rng(args.seed)
    step, tic = 0, time.perf_counter()
    for epoch in range(args.epochs):
        perm = rng.permutation(X_train.shape[0])
        for s in range(0, perm.shape[0], args.batch_size):
            rows = perm[s:s + args.batch_size]
            ours.partial_fit(X_train[rows], y_train[rows])  # one minibatch step
            opt_sparse.zero_grad()
            opt_dense.zero_grad()
            loss = ((forward(L_train[rows]) - torch.from_numpy(y_train[rows])) ** 2).mean()
            loss.backward()
            opt_sparse.step()
            opt_dense.step()
            step += 1
            if step in args.print_steps:
                report(f"step {step}")
        report(f"epoch {epoch + 1}")
    print(f"[{time.perf_counter() - tic:.0f}s]")


if __name__ == "__main__":
    main()
