"""Epoch time with and without huge pages for the weights, at 2**16 and 2**20 columns.

Tests whether address translation is part of what makes an epoch slower at
2**20 columns than at 2**16 with the same rows (``bench_scaling.py``'s sweep
1). The same 20,000 rows (generated at 2**16, columns mapped injectively
into 2**20 as in ``bench_n_features.widen``) train four models, sweep 1's
model (``bench_scaling.make_model``: 256 ReLU units, batch 256, Adam,
alpha 0) at each width, with numpy's huge-page hint for
large arrays on (numpy's default on Linux) and off while the model's
arrays are allocated (its first ``partial_fit``). With transparent huge
pages in 'madvise' mode (``/sys/kernel/mm/transparent_hugepage/enabled``),
the hint decides whether the weights and Adam's state sit in 2 MiB or 4 KiB
pages. Then ``--rounds`` interleaved rounds of one timed epoch per model.
Printed per model: median epoch, fastest epoch, and the median of the
epochs whose CPU s / wall s was at least 1.95 (both cores).

    python benchmarks/bench_hugepages.py [--rounds 4]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--n-samples", type=int, default=20000)
    args = p.parse_args(argv)

    from numpy._core.multiarray import _set_madvise_hugepage

    from bench_n_features import widen
    from bench_scaling import make_model, timed
    from sksparsenn.datasets import make_sparse_regression

    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            print("transparent huge pages:", f.read().strip())
    except OSError:
        print("transparent huge pages: unknown (not Linux?)")
    X, y = make_sparse_regression(n_samples=args.n_samples, n_features=2**16, random_state=0)
    data = {"2**16": X, "2**20": widen(X, 2**20)}
    models = {}
    try:
        for huge in (True, False):
            _set_madvise_hugepage(huge)
            for width, Xw in data.items():
                model = make_model()
                model.partial_fit(Xw, y)  # allocates the weights and Adam's state
                models[width, huge] = model
    finally:
        _set_madvise_hugepage(True)
    times = {key: [] for key in models}
    for r in range(args.rounds):
        for (width, huge), model in models.items():
            wall, cpu, _ = timed(lambda: model.partial_fit(data[width], y))
            times[width, huge].append((wall, cpu / wall))
            print(f"  round {r + 1}: {width} huge pages {'on' if huge else 'off'}: "
                  f"{wall:.3f} s, CPU s / wall s {times[width, huge][-1][1]:.2f}", flush=True)
    for (width, huge), v in times.items():
        wall = np.array([a for a, _ in v])
        both = np.array([b for _, b in v]) >= 1.95
        clean = f"{np.median(wall[both]):.3f} s" if both.any() else "none"
        print(f"{width} huge pages {'on ' if huge else 'off'}: median {np.median(wall):.3f} s, "
              f"fastest {wall.min():.3f} s, median with both cores {clean} "
              f"({both.sum()} of {len(wall)} epochs)")


if __name__ == "__main__":
    main()
