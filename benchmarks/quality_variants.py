"""Validation R^2 of variants of SparseMLPRegressor on one quality data set, over seeds.

For looking into a data set before changing a default or the tuned grid of
``bench_quality.py``: each variant (parameters on top of the defaults) is
fitted with every ``--seeds`` value as ``random_state`` on 85% of the
training rows and scored on the other 15% (``bench_quality.py``'s
validation split, by source package for debian-packages); the test rows
are never read. One line per variant: the
mean over seeds, each seed's score, the last fit's epochs and the mean fit
time. ``--threads`` (default 1) so that two runs can share two cores.

    python benchmarks/quality_variants.py movielens \\
        '{"default": {}, "avg": {"average_decay": 0.8}}' --seeds 0 1
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset", help="a data set of quality_datasets.py")
    p.add_argument("variants", help='JSON: {"name": {parameter: value, ...}, ...}')
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--max-rows", type=int, default=None,
                   help="training rows kept (as bench_quality.py's --max-rows)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    import quality_datasets as qd
    from bench_quality import Scaler, fit_ours, r2, split_rows

    variants = json.loads(args.variants)
    Xtr, _, ytr, _, _, groups = qd.load(args.dataset, max_rows=args.max_rows, verbose=False,
                                        groups=True)
    fit_rows, val_rows = split_rows(Xtr.shape[0], 0.15, seed=0, groups=groups)
    Xf, Xv, yf, yv = Xtr[fit_rows], Xtr[val_rows], ytr[fit_rows], ytr[val_rows]
    sc = Scaler(yf)
    print(f"{args.dataset}: {Xf.shape[0]:,} rows fitted, {Xv.shape[0]:,} validation rows, "
          f"seeds {args.seeds}, {args.threads} thread(s)", flush=True)
    with threadpool_limits(args.threads):
        for name, params in variants.items():
            scores, secs = [], []
            for seed in args.seeds:
                model, fit_s = fit_ours(dict(params, random_state=seed), Xf, sc.fwd(yf))
                secs.append(fit_s)
                scores.append(r2(yv, sc.back(model.predict(Xv))))
            print(f"{name:<24} val R^2 mean {np.mean(scores):.4f} "
                  f"({', '.join(f'{s:.4f}' for s in scores)}; spread "
                  f"{max(scores) - min(scores):.4f}) epochs {model.n_iter_} "
                  f"fit {np.mean(secs):.0f} s", flush=True)


if __name__ == "__main__":
    main()
