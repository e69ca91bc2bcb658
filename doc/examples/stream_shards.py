"""Train on shards that are never in memory together, and compare with an in-memory fit.

The data set is stored as shards on disk: each shard is a CSR matrix saved
with ``scipy.sparse.save_npz`` and its targets saved with ``numpy.save``.
``sksparsenn.stream.fit_stream`` runs the epochs: it loads one shard, calls
``partial_fit`` on it, frees it and loads the next, in a new order at every
epoch, and scores a held-out shard after each epoch. The memory of the
training process is therefore bounded by one shard, the held-out shard and
the model, whatever the number of shards.

This script

1. writes ``--n-shards`` training shards of ``--rows-per-shard`` rows of the
   built-in data set (2**20 count features, about 100 non-zeros per ordinary
   row and a few almost-full rows with about 300,000 each), plus a
   validation shard and a test shard of half that size each, into a new
   directory inside ``--out-dir`` (default: the system's temporary
   directory), removed at the end unless ``--keep``. The rows come from
   ``make_sparse_regression_chunks``, one chunk per shard, so the
   generating process holds one shard at a time too;
2. trains SparseMLPRegressor through the training shards with ``fit_stream``
   for ``--n-epochs`` epochs, in this process;
3. trains the same model in memory: a child process loads all training
   shards into one CSR matrix and calls ``fit`` for the same number of
   epochs (``--no-in-memory`` skips this step);
4. prints, for both, the test R^2 and the peak resident memory (RSS), next
   to the size of one shard, of the model's arrays and of all shards
   together.

Both fits have the same parameters and seed, and neither stops early, so
they differ only in how the rows are visited: the in-memory fit shuffles all
rows each epoch, the streamed fit shuffles the shard order and the rows
within each shard.

Sizes: the rows have about 270 non-zeros on average (the almost-full rows
included), about 2 KiB per row in CSR with 32-bit indices. The defaults (20
shards of 100,000 rows) make about 4 GiB of training shards; the model (128
hidden units) takes about 540 MiB (the first layer's 2**20 x 128 float32
weights, the row-wise Adagrad accumulators and per-feature bookkeeping). On
2 cores an epoch over 2,000,000 rows takes a few minutes. A small run, to
try it::

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

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from sksparsenn import SparseMLPRegressor
from sksparsenn.datasets import make_sparse_regression_chunks
from sksparsenn.stream import NpzShards, fit_stream

MiB = 2**20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-shards", type=int, default=20, help="training shards")
    p.add_argument("--rows-per-shard", type=int, default=100_000)
    p.add_argument("--n-features", type=int, default=2**20)
    p.add_argument("--hidden", type=int, nargs="+", default=[128],
                   help="hidden_layer_sizes")
    p.add_argument("--n-epochs", type=int, default=3, help="epochs of both fits")
    p.add_argument("--no-in-memory", action="store_true",
                   help="skip the in-memory fit (it needs all shards in memory)")
    p.add_argument("--out-dir", default=None,
                   help="where to create the shards' directory (default: the "
                   "system's temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the shards' files")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--build-only", metavar="DIR", default=None, help=argparse.SUPPRESS)
    p.add_argument("--in-memory-only", metavar="DIR", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_model(args):
    # The defaults otherwise. batch_size 200 divides the shard sizes, so that
    # every minibatch of both fits has the same size; no early stopping, so
    # that both fits run the same number of epochs.
    return SparseMLPRegressor(hidden_layer_sizes=tuple(args.hidden), batch_size=200,
                              max_iter=args.n_epochs, early_stopping=False,
                              random_state=args.random_state)


def _save(directory, name, X, y):
    sp.save_npz(directory / f"{name}.X.npz", X, compressed=False)
    np.save(directory / f"{name}.y.npy", y)


def build_shards(args, directory):
    """Write the shards, one generated chunk at a time (in a child process)."""
    directory = Path(directory)
    chunks = make_sparse_regression_chunks(
        args.n_shards + 1, args.rows_per_shard, n_features=args.n_features,
        random_state=args.random_state)
    nnz = 0
    for i, (X, y) in enumerate(chunks):
        if i < args.n_shards:
            _save(directory, f"train-{i:03d}", X, y)
            nnz += X.nnz
        else:  # the last chunk: validation and test halves
            half = X.shape[0] // 2
            _save(directory, "heldout-0", X[:half], y[:half])
            _save(directory, "heldout-1", X[half:], y[half:])
        del X, y
    info = {"nnz": int(nnz), "peak_rss_mib": peak_rss_mib()}
    (directory / "info.json").write_text(json.dumps(info))


def shards_in(directory, prefix):
    return NpzShards(sorted(directory.glob(f"{prefix}-*.X.npz")),
                     sorted(directory.glob(f"{prefix}-*.y.npy")))


def model_mib(model):
    """Bytes of every array the fitted model holds (weights, optimizer state, bookkeeping)."""
    seen, total = set(), 0

    def add(obj):
        nonlocal total
        if isinstance(obj, np.ndarray):
            if id(obj) not in seen:
                seen.add(id(obj))
                total += obj.nbytes
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                add(o)

    for value in vars(model._network).values():
        add(value)
    return total / MiB


def fit_in_memory(args, directory):
    """Load every training shard, fit in memory, score (in a child process)."""
    directory = Path(directory)
    train, heldout = shards_in(directory, "train"), shards_in(directory, "heldout")
    # Shard by shard into arrays of the final size (sp.vstack would hold
    # every shard and the result at once).
    nnz = json.loads((directory / "info.json").read_text())["nnz"]
    n_rows = args.n_shards * args.rows_per_shard
    index = np.int32 if nnz < np.iinfo(np.int32).max else np.int64  # as scipy would pick
    data, indices = np.empty(nnz, dtype=np.float32), np.empty(nnz, dtype=index)
    indptr = np.zeros(n_rows + 1, dtype=index)
    y = None
    row = pos = 0
    for i in range(len(train)):
        Xi, yi = train[i]
        data[pos:pos + Xi.nnz], indices[pos:pos + Xi.nnz] = Xi.data, Xi.indices
        indptr[row + 1:row + Xi.shape[0] + 1] = Xi.indptr[1:] + pos
        if y is None:
            y = np.empty((n_rows, yi.shape[1]), dtype=yi.dtype)
        y[row:row + Xi.shape[0]] = yi
        row, pos = row + Xi.shape[0], pos + Xi.nnz
        del Xi, yi
    X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, args.n_features))
    del data, indices, indptr
    data_mib = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + y.nbytes) / MiB
    model = make_model(args)
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    seconds = time.perf_counter() - tic
    del X, y
    X_test, y_test = heldout[1]
    out = {"r2": model.score(X_test, y_test), "seconds": seconds, "data_mib": data_mib,
           "peak_rss_mib": peak_rss_mib()}
    (Path(directory) / "in_memory.json").write_text(json.dumps(out))


def _size_mib(paths):
    return sum(Path(p).stat().st_size for p in paths) / MiB


def _child(args, flag, directory):
    argv = ["--n-shards", str(args.n_shards), "--rows-per-shard", str(args.rows_per_shard),
            "--n-features", str(args.n_features), "--random-state", str(args.random_state),
            "--n-epochs", str(args.n_epochs), "--hidden", *map(str, args.hidden),
            flag, str(directory)]
    subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], check=True)


def main(argv=None):
    args = parse_args(argv)
    if args.build_only is not None:
        return build_shards(args, args.build_only)
    if args.in_memory_only is not None:
        return fit_in_memory(args, args.in_memory_only)

    directory = Path(tempfile.mkdtemp(prefix="sksparsenn-shards-", dir=args.out_dir))
    try:
        print(f"writing {args.n_shards} shards of {args.rows_per_shard:,} rows to {directory}",
              flush=True)
        tic = time.perf_counter()
        _child(args, "--build-only", directory)
        info = json.loads((directory / "info.json").read_text())
        print(f"  done in {time.perf_counter() - tic:.0f}s; the generating process peaked "
              f"at {info['peak_rss_mib']:,.0f} MiB (one chunk at a time)", flush=True)

        train, heldout = shards_in(directory, "train"), shards_in(directory, "heldout")
        # Uncompressed .npz/.npy files: their size is the size of the arrays.
        shard_mib = [_size_mib([x, yp]) for x, yp in zip(train.X_paths, train.y_paths)]
        all_mib = sum(shard_mib)
        n_rows = args.n_shards * args.rows_per_shard
        print(f"training data: {n_rows:,} rows, {info['nnz']:,} non-zeros, "
              f"{all_mib:,.0f} MiB in {args.n_shards} shards "
              f"(largest {max(shard_mib):,.0f} MiB)", flush=True)

        X_val, y_val = heldout[0]  # in memory during training, scored each epoch
        rss_before = peak_rss_mib()
        model = make_model(args)
        print(f"\nstreamed fit, {args.n_epochs} epochs:", flush=True)
        tic = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit_stream(model, train, validation=(X_val, y_val), n_epochs=args.n_epochs,
                       early_stopping=False, verbose=1)
        seconds = time.perf_counter() - tic
        rss_train = peak_rss_mib()
        del X_val, y_val
        X_test, y_test = heldout[1]
        r2 = model.score(X_test, y_test)
        del X_test, y_test
        m_mib = model_mib(model)
        del model

        mem = None
        if not args.no_in_memory:
            print(f"\nin-memory fit, {args.n_epochs} epochs (child process) ...", flush=True)
            _child(args, "--in-memory-only", directory)
            mem = json.loads((directory / "in_memory.json").read_text())

        one = max(shard_mib)
        print()
        n_test = args.rows_per_shard - args.rows_per_shard // 2
        print(f"test R^2 on {n_test:,} rows after {args.n_epochs} epochs:")
        print(f"  streamed through {args.n_shards} shards: {r2:.4f}  ({seconds:.0f}s)")
        if mem:
            print(f"  in memory (fit):                {mem['r2']:.4f}  ({mem['seconds']:.0f}s)"
                  f"   difference {r2 - mem['r2']:+.4f}")
        print("peak RSS:")
        print(f"  streamed: {rss_train:,.0f} MiB = {rss_train / (one + m_mib):.2f} x "
              f"(one shard {one:,.0f} MiB + model {m_mib:,.0f} MiB); before training "
              f"(libraries + validation shard): {rss_before:,.0f} MiB")
        if mem:
            print(f"  in memory: {mem['peak_rss_mib']:,.0f} MiB (its data: "
                  f"{mem['data_mib']:,.0f} MiB of CSR arrays and targets)")
        return {"r2": r2, "peak_rss_mib": rss_train, "model_mib": m_mib, "shard_mib": one,
                "all_shards_mib": all_mib, "in_memory": mem}
    finally:
        if args.keep:
            print(f"shards kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
