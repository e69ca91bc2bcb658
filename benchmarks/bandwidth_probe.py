"""How many bytes/s this machine moves for the first layer's memory pattern.

A training step of SparseMLPRegressor reads the weight rows of the features
present in the batch (a gather of random rows of an (n_features, H) float32
matrix) and writes them back after the update (a read-modify-write of random
rows). This probe measures both with plain numpy, single-threaded:

* sequential copy  ``np.copyto(dst, src)`` of a large block (reference: the
  streaming bandwidth; bytes = read + write);
* gather           ``np.take(W, idx, axis=0, out=buf)`` of random rows
  (bytes = rows read; the write into the small, cache-resident ``buf`` is not
  counted);
* gather-sum       ``W[idx].sum(axis=0)`` (what a forward pass needs; bytes =
  rows read);
* read-modify-write ``W[idx] += 1`` with unique random idx (bytes = rows
  read + rows written).

GB/s = counted bytes / seconds, median of the repeats (1 GB = 1e9 bytes).

    python benchmarks/bandwidth_probe.py [--n-rows 1048576] [--width 256]
        [--n-idx 65536] [--repeats 7]

Results are printed and saved to ``benchmarks/results/bandwidth.json``.
"""

import argparse
import datetime
import json
import os
import platform
import time

import numpy as np

from bench_peers import cpu_model  # same folder: run as a script

HERE = os.path.dirname(os.path.abspath(__file__))




def median_time(fn, repeats, setup=None):
    times = []
    for r in range(repeats):
        arg = setup(r) if setup else None
        tic = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - tic)
    return float(np.median(times)), times


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-rows", type=int, default=2**20)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--n-idx", type=int, default=65536,
                   help="random rows touched per measurement")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    W = np.ones((args.n_rows, args.width), dtype=np.float32)  # touched: no lazy pages
    row_bytes = args.width * W.itemsize
    print(f"W: {args.n_rows:,} x {args.width} float32 = {W.nbytes / 2**30:.2f} GiB; "
          f"{args.n_idx:,} random rows ({args.n_idx * row_bytes / 2**20:.0f} MiB) per "
          f"measurement; median of {args.repeats}; numpy {np.__version__}, 1 thread")
    idx_sets = [np.sort(rng.choice(args.n_rows, args.n_idx, replace=False))
                for _ in range(args.repeats + 1)]
    for s in idx_sets:
        rng.shuffle(s)  # random order, still unique
    buf = np.empty((args.n_idx, args.width), dtype=np.float32)
    results = {}

    # sequential copy of a 256 MiB block (read + write)
    n_seq = min(args.n_rows, (256 * 2**20) // row_bytes)
    src, dst = W[:n_seq], np.empty((n_seq, args.width), dtype=np.float32)
    np.copyto(dst, src)
    t, ts = median_time(lambda _: np.copyto(dst, src), args.repeats)
    results["sequential_copy"] = {"bytes": 2 * src.nbytes, "seconds": t, "all_seconds": ts}

    np.take(W, idx_sets[-1], axis=0, out=buf)  # warm-up
    t, ts = median_time(lambda i: np.take(W, i, axis=0, out=buf), args.repeats,
                        setup=lambda r: idx_sets[r])
    results["gather_take"] = {"bytes": args.n_idx * row_bytes, "seconds": t, "all_seconds": ts}

    t, ts = median_time(lambda i: W[i].sum(axis=0), args.repeats, setup=lambda r: idx_sets[r])
    results["gather_sum"] = {"bytes": args.n_idx * row_bytes, "seconds": t, "all_seconds": ts}

    def rmw(i):
        W[i] += 1.0

    t, ts = median_time(rmw, args.repeats, setup=lambda r: idx_sets[r])
    results["read_modify_write"] = {"bytes": 2 * args.n_idx * row_bytes, "seconds": t,
                                    "all_seconds": ts}

    print(f"\n{'pattern':<20} {'GB/s':>7}  {'MB moved':>9}  {'median s':>9}")
    for name, r in results.items():
        r["GB_per_s"] = r["bytes"] / r["seconds"] / 1e9
        print(f"{name:<20} {r['GB_per_s']:7.2f}  {r['bytes'] / 1e6:9.0f}  {r['seconds']:9.4f}")
    print("\nsequential_copy, read_modify_write: read + write bytes; gather_*: bytes read.")

    out = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "cpu_model": cpu_model()},
        "numpy": np.__version__,
        "config": vars(args),
        "results": results,
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "bandwidth.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"written {path}")


if __name__ == "__main__":
    main()
