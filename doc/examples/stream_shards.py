"""Train on shards that are never in memory together.

The data set is stored as shards on disk: each shard is a CSR matrix saved
with ``scipy.sparse.save_npz`` and its targets saved with ``numpy.save``.
``sksparsenn.stream.fit_stream`` runs the epochs: it loads one shard, calls
``partial_fit`` on it, frees it and loads the next, in a new order at every
epoch, scores a held-out shard after each epoch and keeps the weights of the
best one. The memory of the training process is therefore bounded by one
shard, the held-out shard and the model, whatever the number of shards.

This script

1. builds ``--n-shards`` training shards of ``--rows-per-shard`` rows of the
   built-in data set (2**20 count features, about 100 non-zeros per row and a
   few almost-full rows with about 300,000 each), plus a validation shard and
   a test shard of half that size, in a new directory inside ``--out-dir``
   (default: the system's temporary directory), removed at the end unless
   ``--keep``;
2. trains SparseMLPRegressor through the training shards with ``fit_stream``;
3. prints the peak resident memory (RSS) of the training process next to the
   size of one shard, of the model's arrays and of all shards together, and
   the R^2 on the test shard.

Each call of the built-in generator draws its own feature order and teacher
network and standardises the targets over all its rows, so the shards of one
data set cannot be generated one at a time: step 1 runs in a separate
process, which holds the whole data set and exits before training starts (its
peak memory is printed apart). In real use, shards come from the pipeline that
collects the data and never need to be in memory together.

Sizes: the rows have about 240 non-zeros on average (the almost-full rows
included), so a shard of 25,000 rows takes about 46 MiB, and the defaults
(20 shards of 25,000 rows) make about 0.9 GiB of training shards. The model
(128 hidden units) takes 512 MiB of weights, as much again for SGD's momentum
and for the copy of the best epoch's weights. The generating process needs
about 14 KiB per row (extrapolated: about 7.5 GiB at the default size). Training runs at
3,000 to 7,000 rows per second on 2 cores, so an epoch of the default size
takes 1 to 3 minutes and the run (at most 10 epochs) 10 to 30 minutes. A
small run, to try it::

    python doc/examples/stream_shards.py --n-shards 4 --rows-per-shard 5000

Run it from outside the repository root, like the package's other scripts.
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from sklearn.exceptions import ConvergenceWarning

from sksparsenn import SparseMLPRegressor
from sksparsenn.datasets import make_sparse_regression
from sksparsenn.stream import NpzShards, fit_stream, save_npz_shards

MiB = 2**20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-shards", type=int, default=20, help="training shards")
    p.add_argument("--rows-per-shard", type=int, default=25_000)
    p.add_argument("--n-features", type=int, default=2**20)
    p.add_argument("--hidden", type=int, nargs="+", default=[128],
                   help="hidden_layer_sizes")
    p.add_argument("--n-epochs", type=int, default=10, help="maximum epochs")
    p.add_argument("--n-iter-no-change", type=int, default=2,
                   help="epochs without a better validation score before stopping")
    p.add_argument("--out-dir", default=None,
                   help="where to create the shards' directory (default: the "
                   "system's temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the shards' files")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--build-only", metavar="DIR", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def peak_rss_mib(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def build_shards(args, directory):
    """Generate the data set and write it as shards (in a child process)."""
    n_train = args.n_shards * args.rows_per_shard
    n_heldout = args.rows_per_shard  # half validation, half test
    X, y = make_sparse_regression(n_samples=n_train + n_heldout,
                                  n_features=args.n_features,
                                  random_state=args.random_state)
    save_npz_shards(X[:n_train], y[:n_train], directory, args.n_shards, prefix="train")
    save_npz_shards(X[n_train:], y[n_train:], directory, 2, prefix="heldout")
    info = {"nnz": int(X[:n_train].nnz), "peak_rss_mib": peak_rss_mib()}
    (Path(directory) / "info.json").write_text(json.dumps(info))


def _size_mib(paths):
    return sum(Path(p).stat().st_size for p in paths) / MiB


def main(argv=None):
    args = parse_args(argv)
    if args.build_only is not None:
        build_shards(args, args.build_only)
        return None

    directory = Path(tempfile.mkdtemp(prefix="sksparsenn-shards-", dir=args.out_dir))
    try:
        print(f"building {args.n_shards} shards of {args.rows_per_shard:,} rows in {directory}",
              flush=True)
        tic = time.perf_counter()
        child_argv = [
            "--n-shards", str(args.n_shards), "--rows-per-shard", str(args.rows_per_shard),
            "--n-features", str(args.n_features), "--random-state", str(args.random_state),
            "--build-only", str(directory),
        ]
        subprocess.run([sys.executable, str(Path(__file__).resolve()), *child_argv], check=True)
        info = json.loads((directory / "info.json").read_text())
        print(f"  done in {time.perf_counter() - tic:.0f}s; the generating process peaked "
              f"at {info['peak_rss_mib']:,.0f} MiB (it held the whole data set)", flush=True)

        train = NpzShards(sorted(directory.glob("train-*.X.npz")),
                          sorted(directory.glob("train-*.y.npy")))
        heldout = NpzShards(sorted(directory.glob("heldout-*.X.npz")),
                            sorted(directory.glob("heldout-*.y.npy")))
        # Uncompressed .npz/.npy files: their size is the size of the arrays.
        shard_mib = [_size_mib([x, yp]) for x, yp in zip(train.X_paths, train.y_paths)]
        all_mib = sum(shard_mib)
        n_rows = args.n_shards * args.rows_per_shard
        print(f"training data: {n_rows:,} rows, {info['nnz']:,} non-zeros, "
              f"{all_mib:,.0f} MiB in {args.n_shards} shards "
              f"(largest {max(shard_mib):,.0f} MiB)", flush=True)

        X_val, y_val = heldout[0]  # in memory during training, for early stopping
        rss_before = peak_rss_mib()
        # batch_size divides the default shard sizes, so that every minibatch
        # has the same size, as in an in-memory fit (see fit_stream's Notes).
        model = SparseMLPRegressor(hidden_layer_sizes=tuple(args.hidden), solver="sgd",
                                   learning_rate_init=0.05, row_scaling="l2",
                                   batch_size=250, random_state=args.random_state)
        tic = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit_stream(model, train, validation=(X_val, y_val), n_epochs=args.n_epochs,
                       n_iter_no_change=args.n_iter_no_change, verbose=1)
        seconds = time.perf_counter() - tic
        rss_train = peak_rss_mib()
        del X_val, y_val

        X_test, y_test = heldout[1]
        r2 = model.score(X_test, y_test)
        del X_test, y_test

        weights_mib = sum(a.nbytes for a in model.coefs_ + model.intercepts_) / MiB
        # SGD keeps one velocity array per weight array; early stopping keeps
        # one copy of the best weights.
        model_mib = 3 * weights_mib
        val_mib = _size_mib([heldout.X_paths[0], heldout.y_paths[0]])
        bound = rss_before + max(shard_mib) + model_mib
        print()
        n_test = args.rows_per_shard - args.rows_per_shard // 2
        print(f"training: {seconds:.0f}s; test R^2 = {r2:.4f} on {n_test:,} rows")
        print(f"peak RSS of the training process: {rss_train:,.0f} MiB")
        print(f"  before training (libraries + validation shard {val_mib:,.0f} MiB): "
              f"{rss_before:,.0f} MiB")
        print(f"  + one shard (largest) {max(shard_mib):,.0f} MiB"
              f" + model arrays {model_mib:,.0f} MiB (weights {weights_mib:,.0f} MiB, SGD "
              f"velocity and best-epoch copy as much each) = {bound:,.0f} MiB")
        print(f"  all training shards together would add {all_mib:,.0f} MiB instead of "
              f"{max(shard_mib):,.0f} MiB")
        return {"r2": r2, "peak_rss_mib": rss_train, "bound_mib": bound,
                "all_shards_mib": all_mib, "shard_mib": max(shard_mib)}
    finally:
        if args.keep:
            print(f"shards kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
