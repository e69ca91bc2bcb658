"""How many bytes/s this machine moves for the first layer's memory pattern.

A training step of SparseMLPRegressor reads the weight rows of the features
present in the batch (forward pass) and then reads and writes those rows and
their optimizer state once (the fused gradient + update). This probe compiles
``bandwidth_probe.c`` (``cc -O3 -fno-math-errno -fopenmp``, the flags of
the package's own build) and measures, on (n_features, 256) float32 arrays, for
1 and 2 threads:

* ``gather``: ``acc += v * W[j]`` over distinct rows j (bytes = rows read);
* ``rmw1``: one array read and written per row (plain SGD, row-wise Adagrad);
* ``rmw2``: two arrays (SGD with momentum, Adagrad);
* ``rmw3``: three arrays (Adam: W and its two moments);

each over rows in random order (the features of ordinary rows) and in
increasing order (the features of an almost-full row). GB/s = counted bytes
/ seconds, median of the repeats (1 GB = 1e9 bytes).

:func:`epoch_lower_bound` turns these rates into the least time an epoch can
take: every batch must at least gather each of its distinct features' rows
once and read and write them (and their state) once.

    python benchmarks/bandwidth_probe.py [--n-rows 1048576] [--width 256]
        [--n-touch 262144] [--repeats 5]

Results are printed and saved to ``benchmarks/results/bandwidth.json``.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = ("gather", "rmw1", "rmw2", "rmw3")
# Arrays of (n_features, H) that each solver reads and writes per touched row.
SOLVER_ARRAYS = {"sgd": 1, "rowwise_adagrad": 1, "sgd-momentum": 2, "adagrad": 2, "adam": 3}


def run_probe(n_rows=2**20, width=256, n_touch=2**18, repeats=5, threads=(1, 2)):
    """Compile and run the C probe; returns {threads: {pattern: GB/s}}."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("bandwidth_probe needs a C compiler (cc or gcc) with OpenMP")
    out = {}
    with tempfile.TemporaryDirectory(prefix="bandwidth_probe_") as d:
        exe = os.path.join(d, "probe")
        subprocess.run([cc, "-O3", "-fno-math-errno", "-fopenmp",
                        os.path.join(HERE, "bandwidth_probe.c"),
                        "-o", exe, "-lm"], check=True)
        for t in threads:
            proc = subprocess.run([exe, str(n_rows), str(width), str(n_touch), str(repeats),
                                   str(t)], check=True, capture_output=True, text=True)
            r = json.loads(proc.stdout)
            out[t] = {k: v["GB_per_s"] for k, v in r.items() if isinstance(v, dict)}
    return out


def epoch_lower_bound(batch_features, batch_heavy, rates, width=256, itemsize=4):
    """Least seconds of an epoch for each solver, from the probe's rates.

    ``batch_features[b]``: number of distinct features of batch b;
    ``batch_heavy[b]``: whether b holds an almost-full row (its features are
    then mostly in increasing order); ``rates``: one thread count's entry of
    :func:`run_probe`. A batch costs at least its rows' gather plus the
    read-modify-write of the rows and the solver's state.
    """
    bounds = {}
    for solver, n_arrays in SOLVER_ARRAYS.items():
        total = 0.0
        for n_feat, heavy in zip(batch_features, batch_heavy):
            order = "sorted" if heavy else "random"
            row_gb = n_feat * width * itemsize / 1e9
            total += row_gb / rates[f"gather_{order}"]
            total += 2 * n_arrays * row_gb / rates[f"rmw{n_arrays}_{order}"]
        bounds[solver] = total
    return bounds


def main():
    from bench_peers import cpu_model  # same folder: run as a script

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-rows", type=int, default=2**20)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--n-touch", type=int, default=2**18,
                   help="distinct rows touched per measurement")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    gib = 3 * args.n_rows * args.width * 4 / 2**30
    print(f"3 arrays of {args.n_rows:,} x {args.width} float32 ({gib:.1f} GiB); "
          f"{args.n_touch:,} distinct rows per measurement; median of {args.repeats}")
    rates = run_probe(args.n_rows, args.width, args.n_touch, args.repeats)
    print(f"\n{'GB/s':<8}" + "".join(f"{k + ' ' + o:>15}" for o in ("random", "sorted")
                                      for k in KERNELS))
    for t, r in rates.items():
        print(f"{t} thr.  " + "".join(f"{r[f'{k}_{o}']:15.2f}" for o in ("random", "sorted")
                                      for k in KERNELS))
    print("\ngather: bytes read; rmwK: K arrays read and written (2 x K x rows).")

    out = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "cpu_model": cpu_model()},
        "config": vars(args),
        "GB_per_s": {str(t): r for t, r in rates.items()},
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "bandwidth.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"written {path}")


if __name__ == "__main__":
    sys.exit(main())
