"""Where an epoch's time goes, thread by thread and instruction by instruction.

Fits ``SparseMLPRegressor`` for one epoch (``partial_fit``) on the
training rows of ``bench_peers.py``'s data, then samples a second epoch with
Linux ``perf record`` attached to this process, and prints from the samples:

* per thread, the share of its samples in each part of the step: the
  kernels (forward pass, grouping, update, other), OpenMP's runtime
  (``libgomp``: a thread that waits at a barrier or for the next parallel
  region spins there), and the rest (Python, numpy, BLAS);
* while the OpenMP worker thread waits in the runtime, what the main
  thread is doing (from its nearest sample): the parts of the step that run
  on one thread;
* the instructions of the forward and update kernels that hold the most
  samples (``perf annotate``). A sample lands on the instruction after the
  one that stalls, so a load of a row of W that misses the caches shows
  as the instruction after it.

perf samples the CPU clock (this works without hardware counters, as in
virtual machines). The first epoch maps the solver state's pages and is
not sampled.

    python benchmarks/perf_epoch.py [--solver rowwise_adagrad] [--threads 2]
        [--n-samples 225000] [--frequency 2000] [--output /tmp/perf_epoch.data]

Needs ``perf`` on the PATH and permission to attach to the process
(``/proc/sys/kernel/perf_event_paranoid`` at most 2 for one's own
processes).
"""

import argparse
import bisect
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from threadpoolctl import threadpool_limits

from bench_peers import BATCH, HIDDEN, LEARNING_RATE

# Parts of the step by the symbol a sample lands in (first match wins).
PARTS = [
    ("grouping", "_build_transpose"),
    ("forward", "sparse_forward"),
    ("update", "sparse_update"),
    ("other kernels", "_sparse_kernels"),
    ("OpenMP runtime", "libgomp"),
    ("BLAS", "openblas"),
    ("numpy", "_multiarray_umath"),
    ("Python", "libpython"),
]
KERNELS = {"forward": "sparse_forward._omp_fn", "update": "sparse_update._omp_fn"}


def part_of(symbol):
    for part, key in PARTS:
        if key in symbol:
            return part
    return "other"


def read_samples(data_file):
    """[(thread id, time, symbol of the sampled instruction)] from ``perf script``."""
    out = subprocess.run(["perf", "script", "-i", data_file, "-F", "tid,time,ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    samples, head = [], None
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+([\d.]+):", line)
        if m:
            head = (int(m.group(1)), float(m.group(2)))
        elif head is not None and line.strip():
            samples.append(head + (line.strip(),))  # the innermost frame
            head = None
    return samples


def hottest_instructions(data_file, symbol_part, n):
    """The ``n`` instructions of the symbol containing ``symbol_part`` with
    the most samples: [(percent of the symbol's samples, address, text,
    text of the instruction before it)]."""
    report = subprocess.run(["perf", "report", "-i", data_file, "--no-children", "-g", "none",
                             "--sort", "sym", "--stdio"], capture_output=True, text=True).stdout
    names = re.findall(r"\[\.\]\s+(\S*" + re.escape(symbol_part) + r"\S*)", report)
    if not names:
        return []
    ann = subprocess.run(["perf", "annotate", "-i", data_file, "--stdio", "-s", names[0]],
                         capture_output=True, text=True).stdout
    code = []  # (percent, address, text), in address order
    for line in ann.splitlines():
        m = re.match(r"\s*([\d.]+)\s*:\s*([0-9a-f]+):\s*(.*)", line)
        if m:
            code.append((float(m.group(1)), m.group(2), re.sub(r"\s+", " ", m.group(3))[:60]))
    # The instruction before the sampled one is the likely stall.
    rows = [(pct, addr, text, code[i - 1][2] if i else "")
            for i, (pct, addr, text) in enumerate(code) if pct > 0]
    return sorted(rows, reverse=True)[:n]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--solver", default="rowwise_adagrad", choices=sorted(LEARNING_RATE))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-samples", type=int, default=225_000,
                   help="rows generated; the first 80%% are trained on, as in bench_peers.py")
    p.add_argument("--frequency", type=int, default=2000, help="samples per second and thread")
    p.add_argument("--output", default="/tmp/perf_epoch.data", help="perf's data file")
    args = p.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf is not on the PATH")

    from sksparsenn import SparseMLPRegressor
    from sksparsenn.datasets import make_sparse_regression

    X, y = make_sparse_regression(n_samples=args.n_samples, random_state=0)
    n_train = int(round(args.n_samples * 0.8))
    X, y = X[:n_train], y[:n_train]
    model = SparseMLPRegressor(hidden_layer_sizes=(HIDDEN,), batch_size=BATCH,
                               solver=args.solver, learning_rate_init=LEARNING_RATE[args.solver],
                               alpha=0, row_scaling="l2", dtype="float32", random_state=0)
    print(f"{X.shape[0]:,} rows x {X.shape[1]:,} features, {X.nnz:,} stored values; "
          f"solver={args.solver}, {args.threads} thread(s)", flush=True)
    with threadpool_limits(limits=args.threads, user_api="openmp"):
        tic = time.perf_counter()
        model.partial_fit(X, y)
        print(f"epoch 1 (not sampled): {time.perf_counter() - tic:.2f} s", flush=True)
        perf = subprocess.Popen(["perf", "record", "-q", "-F", str(args.frequency), "-g",
                                 "-p", str(os.getpid()), "-o", args.output],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # perf attaches
        tic = time.perf_counter()
        model.partial_fit(X, y)
        seconds = time.perf_counter() - tic
        perf.send_signal(signal.SIGINT)
        perf.wait()
    print(f"epoch 2 (sampled): {seconds:.2f} s", flush=True)
    # perf record ends on SIGINT by raising it again once its data is written.
    if perf.returncode not in (0, -signal.SIGINT) or not os.path.exists(args.output):
        sys.exit(f"perf record failed (exit code {perf.returncode}): is attaching to one's "
                 "own process allowed (/proc/sys/kernel/perf_event_paranoid <= 2)?")

    samples = read_samples(args.output)
    by_thread = collections.defaultdict(collections.Counter)
    for tid, _, sym in samples:
        by_thread[tid][part_of(sym)] += 1
    main_tid = os.getpid()
    threads = [main_tid] + sorted(t for t in by_thread if t != main_tid)
    parts = [name for name, _ in PARTS] + ["other"]
    print("\nShare of each thread's samples, % (the main thread first):")
    print(f"  {'part':16s}" + "".join(f"{'main' if t == main_tid else 'worker':>10s}"
                                       for t in threads))
    for part in parts:
        row = [100 * by_thread[t][part] / max(sum(by_thread[t].values()), 1) for t in threads]
        if max(row) >= 0.05:
            print(f"  {part:16s}" + "".join(f"{v:10.1f}" for v in row))
    print(f"  {'samples':16s}" + "".join(f"{sum(by_thread[t].values()):10d}" for t in threads))

    main_samples = sorted((s for s in samples if s[0] == main_tid), key=lambda s: s[1])
    main_times = [s[1] for s in main_samples]
    period = 1.0 / args.frequency
    for worker in threads[1:]:
        waits = collections.Counter()
        total = sum(by_thread[worker].values())
        for tid, t, sym in samples:
            if tid != worker or part_of(sym) != "OpenMP runtime":
                continue
            i = bisect.bisect_left(main_times, t)
            near = [main_samples[j] for j in (i - 1, i) if 0 <= j < len(main_samples)]
            best = min(near, key=lambda s: abs(s[1] - t)) if near else None
            waits[part_of(best[2]) if best and abs(best[1] - t) < 2 * period
                  else "no main-thread sample"] += 1
        print(f"\nWhile the worker waits in OpenMP's runtime ({100 * sum(waits.values()) / total:.1f}% "
              "of its samples), the main thread is in, % of the worker's samples:")
        for part, n in waits.most_common():
            print(f"  {part:22s} {100 * n / total:5.1f}")

    for name, symbol in KERNELS.items():
        rows = hottest_instructions(args.output, symbol, 4)
        if rows:
            print(f"\nHottest instructions of the {name} kernel, % of its samples "
                  "(sampled instruction <- the one before it):")
            for pct, addr, text, prev in rows:
                print(f"  {pct:5.1f}  {addr}: {text:38s} <- {prev}")
    print(f"\nperf data: {args.output} (perf report -i {args.output})")


if __name__ == "__main__":
    main()
