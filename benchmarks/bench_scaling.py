"""How SparseMLPRegressor's training epoch time scales, in five sweeps.

Every sweep trains ``SparseMLPRegressor(hidden_layer_sizes=(256,),
batch_size=256, solver='adam', dtype='float32', alpha=0, row_scaling='l2',
random_state=0)`` on data from ``sksparsenn.datasets.make_sparse_regression``
(``random_state=0``) and varies one thing:

1. ``n_features`` (default 2**16, 2**18, 2**20, 2**22) with the SAME rows:
   the data are generated once at the smallest width and their column
   numbers are mapped injectively into the wider ranges
   (``bench_n_features.widen``), so every width has the same non-zeros and
   values. Target: epoch time flat, max / min <= 1.2 (and
   ``bench_n_features.py``'s target, 2**22 / 2**16 < 1.5).
2. the mean number of non-zeros per row (default 25, 50, 100, 200, 400; no
   almost-full rows): ``mean_nnz`` (token draws per row; duplicates merge, so
   fewer are stored) is calibrated on a small sample so that the stored mean
   is close to the requested one. Expected: linear; prints the time per
   non-zero and the R^2 of a linear fit of epoch time on non-zeros.
3. the fraction of almost-full rows (``dense_row_fraction``, default 0,
   0.0005, 0.001, 0.002; the ordinary rows are the same in each): prints the
   extra time per extra non-zero relative to the fraction-0 data set, next
   to the ordinary rows' time per non-zero (proportional cost: a constant
   extra time per extra non-zero).
4. threads (default 1 and 2) on the default data: speedup, target >= 1.8.
   After its rounds, ``bandwidth_probe.py`` measures this machine's
   memory rates at each thread count, and the sweep prints Adam's
   memory-traffic bound of the epoch at each (see ``bench_peers.py``), the
   epoch's ratio to it, and the bound's own speedup: the speedup of an
   epoch that moved its bytes at the probe's rates (``--no-bound`` skips
   this).
5. prediction throughput, rows/s of ``model.predict`` on all rows of the
   default data, at each thread count: target >= 30,000 rows/s.

Sweeps 2-5 use ``--n-samples`` rows (default 20,000) and ``--n-features``
columns (default 2**20); sweep 1 uses ``--n-samples`` rows too.

Timing protocol. Each configuration builds a new model, runs one untimed
``partial_fit`` epoch (the warm-up: it allocates and initialises the
n_features x 256 weights and the Adam state), then ``--epochs`` timed
``partial_fit`` epochs (one call = one pass over all rows); its time is
their median. With ``--repeats R``, round 1 runs every configuration of a
sweep, then round 2 runs them all again, ...; the reported time is the
median over the rounds. Prediction (sweep 5): the model is fitted with one
``partial_fit`` on the first 2,048 rows, then one untimed ``predict`` on all
rows, then ``max(3, --epochs)`` timed ones (median).

Threads: each measurement runs inside ``threadpoolctl.threadpool_limits(
limits=n)`` (OpenMP and BLAS), and the script records the thread count the
kernels report under that limit (``_openmp_effective_n_threads``) and the
process CPU time / wall time of each timed call (about 1 on one thread).
Sweeps 1-3 use ``--threads`` (default 2).

Everything runs in this one process, one model at a time (a model is freed
before the next is built), so that all sweeps use the same compiled
kernels. The peak RSS of each configuration is the process's ``VmHWM``
(reset through ``/proc/self/clear_refs`` before the configuration, Linux
only); it includes the sweep's data sets held in memory. The 2**22 model
with Adam holds W + 2 state arrays of 2**22 x 256 float32: about 12 GiB.

    python benchmarks/bench_scaling.py --quick        # < 2 minutes
    python benchmarks/bench_scaling.py                # default: < 12 minutes on 2 idle cores
    python benchmarks/bench_scaling.py --sweeps 4 5 --repeats 3
    python benchmarks/bench_scaling.py --output <repo>/doc/_static/benchmarks

Writes ``scaling.json``, ``scaling.md`` and ``scaling_<sweep>.png`` (or
``scaling_quick*`` with ``--quick``) in ``benchmarks/results/`` or
``--output DIR``; the files are rewritten after each sweep (marked PARTIAL
until the run ends).
"""

import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from bench_peers import cpu_model  # same folder: run as a script

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
HIDDEN = 256
BATCH = 256
PREDICT_FIT_ROWS = 2048
SWEEPS = {
    1: "n_features",
    2: "nnz",
    3: "dense_rows",
    4: "threads",
    5: "predict",
}
TITLES = {
    1: "Epoch time vs n_features (same rows)",
    2: "Epoch time vs non-zeros per row (no almost-full rows)",
    3: "Epoch time vs fraction of almost-full rows",
    4: "Epoch time vs threads",
    5: "Prediction throughput vs threads",
}
TARGET_FLAT = 1.2  # sweep 1: max / min epoch time
TARGET_N_FEATURES_RATIO = 1.5  # bench_n_features.py: 2**22 / 2**16
TARGET_SPEEDUP = 1.8  # sweep 4: 1 -> 2 threads
TARGET_PREDICT = 30_000  # sweep 5: rows/s


# --------------------------------------------------------------------------- #
# helpers
def versions_in_child():
    """bench_peers.versions(), computed in a child process.

    It imports torch to report its version; doing that here would load
    torch's own OpenMP and BLAS runtimes into the process being measured.
    """
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from bench_peers import versions; print(json.dumps(versions()))")
    try:
        out = subprocess.run([sys.executable, "-c", code, HERE], capture_output=True,
                             text=True, cwd=tempfile.gettempdir(), timeout=300, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as exc:  # pragma: no cover
        print(f"(versions: child failed: {exc}; importing here)", flush=True)
        from bench_peers import versions

        return versions()


def git_revision():
    """Commit of the repository holding this script, '+dirty' with local changes."""
    try:
        out = subprocess.run(["git", "-C", HERE, "describe", "--always", "--dirty=+dirty"],
                             capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip() or None
    except Exception:
        return None


def _status_mib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return float("nan")


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def log2_label(n):
    k = int(round(np.log2(n)))
    return f"2**{k}" if 2**k == n else f"{n:,}"


def make_model():
    from sksparsenn import SparseMLPRegressor

    return SparseMLPRegressor(hidden_layer_sizes=(HIDDEN,), batch_size=BATCH, solver="adam",
                              dtype="float32", alpha=0, row_scaling="l2", random_state=0)


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def timed_repeats(fn, n):
    """Wall and CPU seconds of n calls of fn: two lists."""
    walls, cpus = [], []
    for _ in range(n):
        w, c, _ = timed(fn)
        walls.append(w)
        cpus.append(c)
    return walls, cpus


def measure_fit(X, y, threads, epochs):
    """One configuration, one round: warm-up epoch, then `epochs` timed epochs."""
    from threadpoolctl import threadpool_limits

    from sksparsenn._openmp_helpers import _openmp_effective_n_threads

    gc.collect()
    hwm_ok = reset_peak_rss()
    with threadpool_limits(limits=threads):
        reported = _openmp_effective_n_threads()
        model = make_model()
        first, _, _ = timed(lambda: model.partial_fit(X, y))
        walls, cpus = timed_repeats(lambda: model.partial_fit(X, y), epochs)
    loss = float(model.loss_)
    del model
    gc.collect()
    return {
        "first_epoch_s": first,
        "epoch_s_all": walls,
        "cpu_s_all": cpus,
        "epoch_s": float(np.median(walls)),
        "cpu_per_wall": float(np.median(np.array(cpus) / np.array(walls))),
        "threads_requested": threads,
        "threads_reported": int(reported),
        "peak_rss_mib": _status_mib("VmHWM:") if hwm_ok else float("nan"),
        "loss": loss,
    }


def measure_predict(X, y, threads, repeats):
    """Fit on the first rows (allocation), one untimed predict, then timed ones."""
    from threadpoolctl import threadpool_limits

    from sksparsenn._openmp_helpers import _openmp_effective_n_threads

    gc.collect()
    hwm_ok = reset_peak_rss()
    with threadpool_limits(limits=threads):
        reported = _openmp_effective_n_threads()
        model = make_model()
        fit_s, _, _ = timed(lambda: model.partial_fit(X[:PREDICT_FIT_ROWS], y[:PREDICT_FIT_ROWS]))
        warm, _, pred = timed(lambda: model.predict(X))
        walls, cpus = timed_repeats(lambda: model.predict(X), repeats)
    finite = bool(np.isfinite(pred).all())
    del model, pred
    gc.collect()
    med = float(np.median(walls))
    return {
        "fit_s": fit_s,
        "first_predict_s": warm,
        "predict_s_all": walls,
        "cpu_s_all": cpus,
        "predict_s": med,
        "rows": int(X.shape[0]),
        "fit_rows": int(min(PREDICT_FIT_ROWS, X.shape[0])),
        "rows_per_s": X.shape[0] / med,
        "cpu_per_wall": float(np.median(np.array(cpus) / np.array(walls))),
        "threads_requested": threads,
        "threads_reported": int(reported),
        "peak_rss_mib": _status_mib("VmHWM:") if hwm_ok else float("nan"),
        "predictions_finite": finite,
    }


def merge_rounds(rounds):
    """Median over the rounds of each timing; max of the peak RSS."""
    m = {"rounds": rounds, "n_rounds": len(rounds)}
    for k in ("rows", "fit_rows", "threads_requested"):  # the same in every round
        if k in rounds[0]:
            m[k] = rounds[0][k]
    for k in ("epoch_s", "first_epoch_s", "cpu_per_wall", "predict_s", "rows_per_s",
              "first_predict_s", "fit_s", "loss"):
        vals = [r[k] for r in rounds if k in r]
        if vals:
            m[k] = float(np.median(vals))
    m["peak_rss_mib"] = float(np.nanmax([r["peak_rss_mib"] for r in rounds])) \
        if not all(np.isnan(r["peak_rss_mib"]) for r in rounds) else float("nan")
    m["threads_reported"] = sorted({r["threads_reported"] for r in rounds})
    return m


def check_thread_limits():
    """Do the kernels see threadpool_limits? Returns {limit: reported}."""
    from threadpoolctl import threadpool_limits

    from sksparsenn._openmp_helpers import _openmp_effective_n_threads, _openmp_enabled

    out = {"openmp_enabled": bool(_openmp_enabled()), "unlimited": _openmp_effective_n_threads()}
    for n in (1, 2):
        with threadpool_limits(limits=n):
            out[f"limit_{n}"] = _openmp_effective_n_threads()
    out["after"] = _openmp_effective_n_threads()
    return out


# --------------------------------------------------------------------------- #
# data
def gen(n_samples, n_features, **kw):
    from sksparsenn.datasets import make_sparse_regression

    return make_sparse_regression(n_samples=n_samples, n_features=n_features,
                                  random_state=0, **kw)


def describe(X):
    nnz_row = np.diff(X.indptr)
    return {"n_rows": int(X.shape[0]), "n_features": int(X.shape[1]), "nnz": int(X.nnz),
            "mean_nnz_per_row": float(nnz_row.mean()),
            "max_nnz_per_row": int(nnz_row.max())}


def calibrate_draws(target, n_features, n_rows=1000, iters=3):
    """mean_nnz (draws per row) giving about `target` stored non-zeros per row.

    Duplicate draws of frequent features merge, so a row stores fewer
    non-zeros than draws; the ratio depends on the draws per row and on
    n_features, not on the number of rows, so a small sample suffices.
    """
    draws = target / 0.7
    for _ in range(iters):
        X, _ = gen(n_rows, n_features, mean_nnz=draws, dense_row_fraction=0.0)
        draws = max(1.0, draws * target / (X.nnz / X.shape[0]))
    return draws


def sweep_data(sweep, cfg):
    """[(config dict, X, y)] for one sweep."""
    from bench_n_features import widen  # same approach: same rows, wider range

    n, F = cfg["n_samples"], cfg["n_features"]
    out = []
    if sweep == 1:
        widths = sorted(2**k for k in cfg["log2_features"])
        X0, y0 = gen(n, widths[0])
        for w in widths:
            X = X0 if w == widths[0] else widen(X0, w)
            out.append(({"n_features": w, "label": log2_label(w)}, X, y0))
    elif sweep == 2:
        for t in cfg["nnz"]:
            draws = calibrate_draws(t, F)
            X, y = gen(n, F, mean_nnz=draws, dense_row_fraction=0.0)
            out.append(({"target_nnz_per_row": t, "mean_nnz_draws": draws, "label": f"{t}"}, X, y))
    elif sweep == 3:
        for frac in cfg["fractions"]:
            X, y = gen(n, F, dense_row_fraction=frac)
            out.append(({"dense_row_fraction": frac, "label": f"{frac:g}"}, X, y))
    else:  # 4, 5: the default data
        X, y = gen(n, F)
        for t in cfg["thread_counts"]:
            out.append(({"threads": t, "label": f"{t} thread{'s' if t > 1 else ''}"}, X, y))
    for c, X, _ in out:
        c.update(describe(X))
        if sweep == 3:  # an almost-full row holds ~dense_row_density (0.3) of the features
            full = np.diff(X.indptr) >= 0.1 * X.shape[1]
            c["n_dense_rows"] = int(full.sum())
            c["nnz_in_dense_rows"] = int(np.diff(X.indptr)[full].sum())
    return out


# --------------------------------------------------------------------------- #
# summaries
def linfit(x, t):
    x, t = np.asarray(x, float), np.asarray(t, float)
    b, a = np.polyfit(x, t, 1)
    resid = t - (a + b * x)
    ss_tot = float(((t - t.mean()) ** 2).sum())
    r2 = 1 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return float(a), float(b), r2


def threads_bound(X, thread_counts):
    """Adam's memory-traffic bound of an epoch on X at each thread count,
    priced at the rates ``bandwidth_probe.py`` measures now
    (``bench_peers.probe_bound`` at each count)."""
    from bench_peers import epoch_batches, probe_bound

    batches = epoch_batches(X)
    probes = {str(t): probe_bound(batches, t) for t in thread_counts}
    return {"seconds": {t: p["seconds"]["adam"] for t, p in probes.items()},
            "GB_per_s": {t: p["GB_per_s"] for t, p in probes.items()}}


def add_bound(sw, bound):
    """Sweep 4's summary with the bound at each thread count, the epoch's
    ratio to it and the bound's own 1 -> 2 thread speedup."""
    s = sw["summary"]
    ep = {str(r["config"]["threads"]): r["result"]["epoch_s"] for r in sw["results"]}
    s["bound_s"] = bound["seconds"]
    s["bound_GB_per_s"] = bound["GB_per_s"]
    s["epoch_over_bound"] = {t: ep[t] / b for t, b in bound["seconds"].items() if t in ep}
    if "1" in bound["seconds"] and "2" in bound["seconds"]:
        s["bound_speedup_1_to_2"] = bound["seconds"]["1"] / bound["seconds"]["2"]


def summarize(sweep, res):
    c = [r["config"] for r in res]
    m = [r["result"] for r in res]
    s = {}
    if sweep == 1:
        ep = np.array([r["epoch_s"] for r in m])
        s["max_over_min"] = float(ep.max() / ep.min())
        s["target_max_over_min"] = TARGET_FLAT
        s["pass"] = bool(s["max_over_min"] <= TARGET_FLAT)
        w = [x["n_features"] for x in c]
        if 2**16 in w and 2**22 in w:
            s["ratio_2**22_over_2**16"] = float(ep[w.index(2**22)] / ep[w.index(2**16)])
        s["ratio_widest_over_narrowest"] = float(ep[-1] / ep[0])
        s["target_widest_over_narrowest_bench_n_features"] = TARGET_N_FEATURES_RATIO
    elif sweep == 2:
        nnz = np.array([x["nnz"] for x in c], float)
        ep = np.array([r["epoch_s"] for r in m])
        a, b, r2 = linfit(nnz, ep)
        s.update(intercept_s=a, slope_ns_per_nnz=b * 1e9, r2=r2,
                 ns_per_nnz=[float(v) for v in ep / nnz * 1e9])
    elif sweep == 3:
        nnz = np.array([x["nnz"] for x in c], float)
        ep = np.array([r["epoch_s"] for r in m])
        base = [i for i, x in enumerate(c) if x["dense_row_fraction"] == 0]
        if base:
            i0 = base[0]
            s["ordinary_ns_per_nnz"] = float(ep[i0] / nnz[i0] * 1e9)
            extra = []
            for i in range(len(c)):
                dn = nnz[i] - nnz[i0]
                extra.append(float((ep[i] - ep[i0]) / dn * 1e9) if dn > 0 else None)
            s["extra_ns_per_extra_nnz"] = extra
            vals = [v for v in extra if v is not None]
            if vals:
                s["extra_over_ordinary"] = [None if v is None else v / s["ordinary_ns_per_nnz"]
                                            for v in extra]
                if len(vals) > 1 and min(vals) > 0:
                    s["extra_max_over_min"] = float(max(vals) / min(vals))
    elif sweep == 4:
        ep = {x["threads"]: r["epoch_s"] for x, r in zip(c, m)}
        lo = min(ep)
        s["speedup"] = {str(t): float(ep[lo] / ep[t]) for t in ep}
        if 1 in ep and 2 in ep:
            s["speedup_1_to_2"] = float(ep[1] / ep[2])
            s["target_speedup_1_to_2"] = TARGET_SPEEDUP
            s["pass"] = bool(s["speedup_1_to_2"] >= TARGET_SPEEDUP)
    elif sweep == 5:
        s["rows_per_s"] = {str(x["threads"]): r["rows_per_s"] for x, r in zip(c, m)}
        s["target_rows_per_s"] = TARGET_PREDICT
        s["pass"] = {k: bool(v >= TARGET_PREDICT) for k, v in s["rows_per_s"].items()}
    return s


def verdict(ok):
    return "meets the target" if ok else "MISSES the target"


def threads_note(m):
    rep = m["threads_reported"]
    return ",".join(str(t) for t in rep)


def markdown_sweep(sweep, sw, cfg):
    res, s = sw["results"], sw["summary"]
    c = [r["config"] for r in res]
    m = [r["result"] for r in res]
    L = [f"## {sweep}. {TITLES[sweep]}", ""]
    if sweep == 1:
        L += [f"The same {c[0]['n_rows']:,} rows ({c[0]['nnz']:,} non-zeros, generated at "
              f"n_features={c[0]['label']}) laid out over each width; {cfg['threads']} threads.", "",
              "| n_features | non-zeros | first epoch s (incl. allocation, not counted) "
              "| epoch s | / fastest | samples/s | CPU s / wall s | peak RSS MiB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lo = min(r["epoch_s"] for r in m)
        for x, r in zip(c, m):
            L.append(f"| {x['label']} | {x['nnz']:,} | {r['first_epoch_s']:.2f} | "
                     f"{r['epoch_s']:.3f} | {r['epoch_s'] / lo:.2f} | "
                     f"{x['n_rows'] / r['epoch_s']:,.0f} | {r['cpu_per_wall']:.2f} | "
                     f"{r['peak_rss_mib']:,.0f} |")
        L += ["", f"max / min epoch time = **{s['max_over_min']:.2f}** (target <= "
              f"{TARGET_FLAT}: {verdict(s['pass'])}); widest / narrowest = "
              f"{s['ratio_widest_over_narrowest']:.2f}"
              + (f" (bench_n_features.py's 2**22 / 2**16, target < {TARGET_N_FEATURES_RATIO})"
                 if "ratio_2**22_over_2**16" in s else "") + "."]
    elif sweep == 2:
        L += [f"{c[0]['n_rows']:,} rows x {log2_label(c[0]['n_features'])} features, "
              f"dense_row_fraction=0, mean_nnz (token draws per row) calibrated for the "
              f"requested stored non-zeros; {cfg['threads']} threads.", "",
              "| non-zeros/row requested | mean_nnz (draws) | non-zeros/row | max/row "
              "| non-zeros | epoch s | ns per non-zero | samples/s | CPU s / wall s |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x, r, ns in zip(c, m, s["ns_per_nnz"]):
            L.append(f"| {x['target_nnz_per_row']} | {x['mean_nnz_draws']:.1f} | "
                     f"{x['mean_nnz_per_row']:.1f} | {x['max_nnz_per_row']:,} | {x['nnz']:,} | "
                     f"{r['epoch_s']:.3f} | {ns:.1f} | {x['n_rows'] / r['epoch_s']:,.0f} | "
                     f"{r['cpu_per_wall']:.2f} |")
        L += ["", f"Linear fit epoch s = a + b x non-zeros: a = {s['intercept_s']:.3f} s, "
              f"b = {s['slope_ns_per_nnz']:.1f} ns per non-zero, **R^2 = {s['r2']:.4f}**."]
    elif sweep == 3:
        L += [f"{c[0]['n_rows']:,} rows x {log2_label(c[0]['n_features'])} features, default "
              f"generator otherwise (the ordinary rows are the same in every data set; an "
              f"almost-full row holds about 30% of the features); {cfg['threads']} threads.", "",
              "| almost-full fraction | almost-full rows | non-zeros | of which in almost-full "
              "rows | epoch s | extra s vs 0 | extra ns per extra non-zero | / ordinary ns "
              "per non-zero | CPU s / wall s |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        i0 = next((i for i, x in enumerate(c) if x["dense_row_fraction"] == 0), None)
        for i, (x, r) in enumerate(zip(c, m)):
            ex = s.get("extra_ns_per_extra_nnz", [None] * len(c))[i]
            rel = s.get("extra_over_ordinary", [None] * len(c))[i]
            dt = "—" if i0 is None else f"{r['epoch_s'] - m[i0]['epoch_s']:+.3f}"
            L.append(f"| {x['dense_row_fraction']:g} | {x['n_dense_rows']} | {x['nnz']:,} | "
                     f"{x['nnz_in_dense_rows']:,} | {r['epoch_s']:.3f} | {dt} | "
                     f"{'—' if ex is None else f'{ex:.1f}'} | "
                     f"{'—' if rel is None else f'{rel:.2f}'} | {r['cpu_per_wall']:.2f} |")
        if "ordinary_ns_per_nnz" in s:
            L += ["", f"Ordinary rows (fraction 0): {s['ordinary_ns_per_nnz']:.1f} ns per "
                  "non-zero. Cost proportional to the almost-full rows' non-zeros = the same "
                  "extra ns per extra non-zero at every fraction"
                  + (f" (here max / min = {s['extra_max_over_min']:.2f})"
                     if "extra_max_over_min" in s else "") + "."]
    elif sweep == 4:
        L += [f"Default data: {c[0]['n_rows']:,} rows x {log2_label(c[0]['n_features'])} "
              f"features, {c[0]['nnz']:,} non-zeros. Threads set with "
              "`threadpool_limits(limits=n)`.", "",
              "| threads | kernels report | epoch s | CPU s / wall s | samples/s | speedup |",
              "|---:|---:|---:|---:|---:|---:|"]
        for x, r in zip(c, m):
            L.append(f"| {x['threads']} | {threads_note(r)} | {r['epoch_s']:.3f} | "
                     f"{r['cpu_per_wall']:.2f} | {x['n_rows'] / r['epoch_s']:,.0f} | "
                     f"{s['speedup'][str(x['threads'])]:.2f} |")
        if "speedup_1_to_2" in s:
            L += ["", f"Speedup 1 -> 2 threads = **{s['speedup_1_to_2']:.2f}x** (target >= "
                  f"{TARGET_SPEEDUP}: {verdict(s['pass'])})."]
        if "bound_s" in s:
            L += ["", "Memory-traffic bound of an Adam epoch on these data, at the rates "
                  "`bandwidth_probe.py` measured after the rounds: "
                  + ", ".join(f"{t} thread(s) {b:.2f} s (epoch / bound "
                              f"{s['epoch_over_bound'][t]:.2f})"
                              for t, b in s["bound_s"].items() if t in s["epoch_over_bound"])
                  + "."]
            if "bound_speedup_1_to_2" in s:
                L[-1] += (f" The bound's own speedup 1 -> 2 threads: "
                          f"**{s['bound_speedup_1_to_2']:.2f}x**, what an epoch moving its "
                          "bytes at the probe's rates would gain.")
    elif sweep == 5:
        L += [f"`model.predict` on all {m[0]['rows']:,} rows of the default data "
              f"({log2_label(c[0]['n_features'])} features, {c[0]['nnz']:,} non-zeros, "
              f"{c[0]['max_nnz_per_row']:,} in the fullest row); model fitted with one `partial_fit` "
              f"on the first {m[0]['fit_rows']:,} rows; median of {cfg['predict_repeats']} timed calls after "
              "one untimed call.", "",
              "| threads | kernels report | predict s | rows/s | CPU s / wall s | target |",
              "|---:|---:|---:|---:|---:|---|"]
        for x, r in zip(c, m):
            ok = s["pass"][str(x["threads"])]
            L.append(f"| {x['threads']} | {threads_note(r)} | {r['predict_s']:.3f} | "
                     f"{r['rows_per_s']:,.0f} | {r['cpu_per_wall']:.2f} | "
                     f">= {TARGET_PREDICT:,}: {'yes' if ok else 'NO'} |")
    if sw.get("png"):
        L += ["", f"![{TITLES[sweep]}]({os.path.basename(sw['png'])})"]
    mism = [f"{x['label']} (limit {r['threads_requested']}, kernels report "
            f"{threads_note(r)})" for x, r in zip(c, m)
            if any(t != r["threads_requested"] for t in r["threads_reported"])]
    if mism:
        L += ["", "Note: the kernels did not report the requested thread count for "
              + "; ".join(mism) + "."]
    starved = [x["label"] for x, r in zip(c, m) if r["cpu_per_wall"] < 0.9]
    if starved:
        L += ["", "Note: CPU s / wall s < 0.9 for " + ", ".join(starved) + ": the process "
              "did not get even one full core (a busy machine); these times measure the "
              "contention more than the kernels."]
    over = [x["label"] for x, r in zip(c, m) if r["cpu_per_wall"] > r["threads_requested"] + 0.15]
    if over:
        L += ["", "Note: CPU s / wall s above the thread limit for " + ", ".join(over)
              + ": some threads escape the limit."]
    return L


def markdown(report):
    cfg, mach = report["config"], report["machine"]
    L = [f"# Scaling benchmark{' (quick)' if cfg['quick'] else ''}", ""]
    if not report["complete"]:
        L = ["**PARTIAL: run still in progress or interrupted.**", ""] + L
    L += [f"Date {report['date']}; {mach['cpu_model']}, {mach['cpu_count']} CPUs, "
          f"{mach['platform']}; " + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
          + (f"; source {report['git']}" if report.get("git") else ""),
          "",
          f"`SparseMLPRegressor(hidden_layer_sizes=({HIDDEN},), batch_size={BATCH}, "
          "solver='adam', dtype='float32', alpha=0, row_scaling='l2', random_state=0)` on "
          "`make_sparse_regression(..., random_state=0)`. Each configuration: a new model, "
          f"one untimed `partial_fit` epoch (allocation), then {cfg['epochs']} timed epochs "
          f"(median); {cfg['repeats']} interleaved round(s), median over the rounds. "
          "Wall-clock times; compare only runs on the same, otherwise idle, machine.", ""]
    for k in cfg["sweeps"]:
        sw = report["sweeps"].get(str(k))
        if sw:
            L += markdown_sweep(k, sw, cfg) + [""]
    L += [f"Command: `{report['command']}`; wall time {report['wall_seconds']:.0f} s."]
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- #
# plots
def stamp(fig, report):
    v = report["versions"]
    txt = (f"{report['date'][:16].replace('T', ' ')} | {report['machine']['cpu_model']}, "
           f"{report['machine']['cpu_count']} CPUs | sksparsenn {v.get('sksparsenn')}"
           + (f" ({report['git']})" if report.get("git") else "")
           + f", numpy {v.get('numpy')}, scipy {v.get('scipy')}, python {v.get('python')}"
           + (" | --quick" if report["config"]["quick"] else ""))
    fig.text(0.005, 0.005, txt, fontsize=6.5, color="0.4", ha="left", va="bottom")


def plot_sweep(sweep, sw, report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    cfg = report["config"]
    res, s = sw["results"], sw["summary"]
    c = [r["config"] for r in res]
    m = [r["result"] for r in res]
    d0 = c[0]
    pow2 = FuncFormatter(lambda v, _: f"$2^{{{int(round(np.log2(v)))}}}$" if v > 0 else "0")
    setup = (f"{d0['n_rows']:,} rows, 1 x {HIDDEN} ReLU, batch {BATCH}, adam, float32, "
             f"l2 row scaling")

    if sweep in (2, 3):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    else:
        fig, axes = plt.subplots(figsize=(7, 4.6))
        axes = [axes]
    ax = axes[0]

    if sweep == 1:
        w = np.array([x["n_features"] for x in c], float)
        ep = np.array([r["epoch_s"] for r in m])
        first = np.array([r["first_epoch_s"] for r in m])
        for x, r in zip(w, m):
            pts = [rr["epoch_s"] for rr in r["rounds"]]
            ax.plot([x] * len(pts), pts, "o", color="C0", alpha=0.3, ms=4, mec="none")
        ax.plot(w, ep, "o-", color="C0", label="epoch (median)")
        ax.plot(w, first, "s--", color="0.55", ms=4,
                label="first epoch, incl. allocation (not counted)")
        ax.axhline(TARGET_FLAT * ep.min(), color="C3", ls=":", lw=1.3,
                   label=f"target: every epoch <= {TARGET_FLAT} x the fastest")
        ax.set_xscale("log", base=2)
        ax.set_xticks(w)
        ax.xaxis.set_major_formatter(pow2)
        ax.minorticks_off()
        ax.set_xlabel("n_features (columns of X; same rows and non-zeros)")
        ax.set_ylabel("time (s), log scale")
        # Log scale: the first epoch (allocation of the widest W) is tens of
        # times the others, which a linear axis would flatten to the floor.
        ax.set_yscale("log")
        lows = [rr["epoch_s"] for r in m for rr in r["rounds"]]
        ax.set_ylim(min(lows) * 0.7, max(first.max(), ep.max() * TARGET_FLAT) * 1.6)
        ax.set_title(f"{TITLES[1]}\nmax / min = {s['max_over_min']:.2f} (target <= {TARGET_FLAT}); "
                     f"{d0['nnz']:,} non-zeros, {cfg['threads']} threads", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    elif sweep == 2:
        nnz_row = np.array([x["mean_nnz_per_row"] for x in c])
        nnz = np.array([x["nnz"] for x in c], float)
        ep = np.array([r["epoch_s"] for r in m])
        scale = d0["n_rows"]  # epoch non-zeros = rows x mean non-zeros per row
        for x, r in zip(nnz_row, m):
            pts = [rr["epoch_s"] for rr in r["rounds"]]
            ax.plot([x] * len(pts), pts, "o", color="C0", alpha=0.3, ms=4, mec="none")
        ax.plot(nnz_row, ep, "o", color="C0", label="epoch (median)")
        xx = np.linspace(0, nnz_row.max() * 1.05, 50)
        ax.plot(xx, s["intercept_s"] + s["slope_ns_per_nnz"] * 1e-9 * xx * scale, "-", color="C1",
                label=f"linear fit: {s['intercept_s']:.2f} s + {s['slope_ns_per_nnz']:.0f} ns x "
                      f"non-zeros\nR$^2$ = {s['r2']:.4f}")
        ax.set_xlim(0, None)
        ax.set_ylim(0, None)
        ax.set_xlabel("mean non-zeros per row (stored)")
        ax.set_ylabel("epoch time (s)")
        ax.set_title("epoch time (linear axes)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
        ax2 = axes[1]
        ax2.plot(nnz_row, ep / nnz * 1e9, "o-", color="C0", label="epoch time / non-zeros")
        ax2.axhline(s["slope_ns_per_nnz"], color="C1", ls="--", lw=1,
                    label=f"fit slope {s['slope_ns_per_nnz']:.0f} ns")
        ax2.set_xscale("log", base=2)
        ax2.set_xticks(nnz_row)
        ax2.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
        ax2.minorticks_off()
        ax2.set_ylim(0, (ep / nnz * 1e9).max() * 1.25)
        ax2.set_xlabel("mean non-zeros per row (stored; log2 axis)")
        ax2.set_ylabel("time per non-zero (ns)")
        ax2.set_title("time per non-zero (flat = proportional)", fontsize=10)
        ax2.legend(fontsize=8, loc="upper right")
        fig.suptitle(f"{TITLES[2]}\n{setup}, {log2_label(d0['n_features'])} features, "
                     f"{cfg['threads']} threads", fontsize=10)
    elif sweep == 3:
        frac = np.array([x["dense_row_fraction"] for x in c]) * 100
        nnz = np.array([x["nnz"] for x in c], float)
        ep = np.array([r["epoch_s"] for r in m])
        for x, r in zip(frac, m):
            pts = [rr["epoch_s"] for rr in r["rounds"]]
            ax.plot([x] * len(pts), pts, "o", color="C0", alpha=0.3, ms=4, mec="none")
        ax.plot(frac, ep, "o-", color="C0", label="epoch (median)")
        if "ordinary_ns_per_nnz" in s:
            i0 = [x["dense_row_fraction"] for x in c].index(0)
            ax.plot(frac, ep[i0] * nnz / nnz[i0], "--", color="0.5",
                    label="if every non-zero cost as much\nas in the ordinary rows")
        for x, t, xc in zip(frac, ep, c):
            ax.annotate(f"{xc['n_dense_rows']} rows\n{xc['nnz'] / 1e6:.1f}M nnz", (x, t),
                        xytext=(4, -22), textcoords="offset points", fontsize=7, color="0.3")
        ax.set_ylim(0, None)
        ax.set_xlim(frac.min() - 0.05 * np.ptp(frac), frac.max() + 0.2 * np.ptp(frac))
        ax.set_xlabel("almost-full rows (% of rows)")
        ax.set_ylabel("epoch time (s)")
        ax.set_title("epoch time", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
        ax2 = axes[1]
        ex = s.get("extra_ns_per_extra_nnz", [])
        xs = [f"{x['dense_row_fraction']:g}" for x, e in zip(c, ex) if e is not None]
        ys = [e for e in ex if e is not None]
        if ys:
            ax2.bar(xs, ys, color="C0", width=0.5, label="extra time / extra non-zeros\n(vs fraction 0)")
            ax2.axhline(s["ordinary_ns_per_nnz"], color="0.3", ls="--", lw=1,
                        label=f"ordinary rows: {s['ordinary_ns_per_nnz']:.0f} ns per non-zero")
            for i, y in enumerate(ys):
                ax2.annotate(f"{y:.0f}", (i, y), xytext=(0, 2 if y >= 0 else -10),
                             textcoords="offset points", ha="center", fontsize=8)
            ax2.axhline(0, color="k", lw=0.8)
            ax2.set_ylim(min(0, min(ys)) * 1.3, max(max(ys), s["ordinary_ns_per_nnz"]) * 1.35)
        ax2.set_xlabel("fraction of almost-full rows")
        ax2.set_ylabel("time per non-zero (ns)")
        ax2.set_title("cost of the almost-full rows' non-zeros\n(equal bars = proportional)",
                      fontsize=10)
        ax2.legend(fontsize=8, loc="upper right")
        fig.suptitle(f"{TITLES[3]}\n{setup}, {log2_label(d0['n_features'])} features, "
                     f"{cfg['threads']} threads", fontsize=10)
    elif sweep == 4:
        th = [x["threads"] for x in c]
        ep = np.array([r["epoch_s"] for r in m])
        xs = np.arange(len(th))
        ax.bar(xs, ep, color="C0", width=0.55)
        for i, r in enumerate(m):
            pts = [rr["epoch_s"] for rr in r["rounds"]]
            ax.plot([i] * len(pts), pts, "o", color="k", alpha=0.35, ms=4, mec="none")
            ax.annotate(f"{ep[i]:.2f} s\nspeedup {s['speedup'][str(th[i])]:.2f}x",
                        (i, max(ep[i], max(pts))),
                        xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
        if "bound_s" in s:
            bx = [i for i, t in enumerate(th) if str(t) in s["bound_s"]]
            ax.plot(bx, [s["bound_s"][str(th[i])] for i in bx], "D--", color="C2", ms=5,
                    label="memory-traffic bound (bandwidth_probe)"
                          + (f", its speedup {s['bound_speedup_1_to_2']:.2f}x"
                             if "bound_speedup_1_to_2" in s else ""))
        if 1 in th and 2 in th:
            tgt = ep[th.index(1)] / TARGET_SPEEDUP
            ax.axhline(tgt, color="C3", ls=":", lw=1.3,
                       label=f"target at 2 threads: 1-thread time / {TARGET_SPEEDUP} "
                             f"(speedup >= {TARGET_SPEEDUP}x)")
        if "bound_s" in s or (1 in th and 2 in th):
            ax.legend(fontsize=8, loc="upper left")
        ax.set_xticks(xs, [str(t) for t in th])
        ax.set_xlabel("threads (threadpool_limits)")
        ax.set_ylabel("epoch time (s)")
        top = max(max(rr["epoch_s"] for rr in r["rounds"]) for r in m)
        top = max([top] + list(s.get("bound_s", {}).values()))
        ax.set_ylim(0, top * 1.35)
        ax.set_title(f"{TITLES[4]}\n{setup}\n{log2_label(d0['n_features'])} features, "
                     f"{d0['nnz']:,} non-zeros (default data)", fontsize=10)
    elif sweep == 5:
        th = [x["threads"] for x in c]
        rps = np.array([r["rows_per_s"] for r in m])
        xs = np.arange(len(th))
        ax.bar(xs, rps, color="C0", width=0.55)
        for i, r in enumerate(m):
            pts = [rr["rows_per_s"] for rr in r["rounds"]]
            ax.plot([i] * len(pts), pts, "o", color="k", alpha=0.35, ms=4, mec="none")
            ax.annotate(f"{rps[i]:,.0f}", (i, max(rps[i], max(pts))), xytext=(0, 3),
                        textcoords="offset points",
                        ha="center", fontsize=8)
        ax.axhline(TARGET_PREDICT, color="C3", ls=":", lw=1.3,
                   label=f"target >= {TARGET_PREDICT:,} rows/s")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_xticks(xs, [str(t) for t in th])
        ax.set_xlabel("threads (threadpool_limits)")
        ax.set_ylabel("prediction throughput (rows/s)")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        top = max(max(rr["rows_per_s"] for rr in r["rounds"]) for r in m)
        ax.set_ylim(0, max(top, TARGET_PREDICT) * 1.3)
        ax.set_title(f"{TITLES[5]}\nmodel.predict on {m[0]['rows']:,} rows, "
                     f"{log2_label(d0['n_features'])} features, {d0['nnz']:,} non-zeros\n"
                     f"1 x {HIDDEN} ReLU, float32, l2 row scaling", fontsize=10)
    for a in axes:
        a.grid(True, alpha=0.3)
    stamp(fig, report)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- #
def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="4,000 rows, 2**18 features (sweep 1: 2**14..2**20): < 2 minutes")
    p.add_argument("--sweeps", nargs="+", type=int, default=sorted(SWEEPS), choices=sorted(SWEEPS),
                   help="which sweeps: 1 n_features, 2 non-zeros per row, 3 almost-full rows, "
                        "4 threads, 5 predict (default: all)")
    p.add_argument("--n-samples", type=int, default=None, help="rows (default 20,000; quick 4,000)")
    p.add_argument("--n-features", type=int, default=None,
                   help="columns for sweeps 2-5 (default 2**20; quick 2**18)")
    p.add_argument("--log2-features", type=int, nargs="+", default=None,
                   help="sweep 1 widths as powers of 2 (default 16 18 20 22; quick 14 16 18 20)")
    p.add_argument("--nnz", type=int, nargs="+", default=[25, 50, 100, 200, 400],
                   help="sweep 2: mean stored non-zeros per row")
    p.add_argument("--fractions", type=float, nargs="+", default=[0, 0.0005, 0.001, 0.002],
                   help="sweep 3: fractions of almost-full rows")
    p.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2],
                   help="sweeps 4 and 5")
    p.add_argument("--threads", type=int, default=2, help="threads for sweeps 1-3")
    p.add_argument("--no-bound", action="store_true",
                   help="sweep 4: skip the memory-traffic bound at each thread count")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per configuration")
    p.add_argument("--repeats", type=int, default=1,
                   help="interleaved rounds over the configurations of each sweep")
    p.add_argument("--output", default=None,
                   help="directory of the result files (default benchmarks/results); a relative "
                        "path is taken from the current directory, e.g. "
                        "<repo>/doc/_static/benchmarks for the documentation")
    args = p.parse_args()

    t_start = time.perf_counter()
    q = args.quick
    cfg = {
        "quick": q,
        "sweeps": sorted(set(args.sweeps)),
        "n_samples": args.n_samples or (4_000 if q else 20_000),
        "n_features": args.n_features or (2**18 if q else 2**20),
        "log2_features": args.log2_features or ([14, 16, 18, 20] if q else [16, 18, 20, 22]),
        "nnz": args.nnz,
        "fractions": sorted(args.fractions),
        "thread_counts": sorted(set(args.thread_counts)),
        "threads": args.threads,
        "bound": not args.no_bound,
        "epochs": args.epochs,
        "predict_repeats": max(3, args.epochs),
        "repeats": args.repeats,
        "hidden": HIDDEN,
        "batch_size": BATCH,
        "stem": "scaling_quick" if q else "scaling",
    }
    out_dir = os.path.abspath(args.output or RESULTS)
    os.makedirs(out_dir, exist_ok=True)

    print("versions ...", flush=True)
    vers = versions_in_child()
    import sksparsenn  # noqa: F401  (may rebuild an editable install)

    thr = check_thread_limits()
    print(f"threads: OpenMP {'on' if thr['openmp_enabled'] else 'OFF'}; kernels report "
          f"{thr['unlimited']} unlimited, {thr['limit_1']} under threadpool_limits(1), "
          f"{thr['limit_2']} under threadpool_limits(2)", flush=True)
    if thr["limit_1"] != 1:
        print("WARNING: the kernels do not obey threadpool_limits", flush=True)
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "cpu_model": cpu_model()},
        "versions": vers,
        "git": git_revision(),
        "thread_limit_check": thr,
        "config": {k: v for k, v in cfg.items()},
        "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:]),
        "complete": False,
        "sweeps": {},
    }
    paths = {"json": os.path.join(out_dir, cfg["stem"] + ".json"),
             "md": os.path.join(out_dir, cfg["stem"] + ".md")}
    written = []

    def write(final):
        report["complete"] = final
        report["wall_seconds"] = time.perf_counter() - t_start
        with open(paths["json"], "w") as f:
            json.dump(report, f, indent=1)
        with open(paths["md"], "w") as f:
            f.write(markdown(report))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. batch_size clipped in tiny runs
        for sweep in cfg["sweeps"]:
            print(f"\nsweep {sweep}: {TITLES[sweep]}", flush=True)
            tic = time.perf_counter()
            data = sweep_data(sweep, cfg)
            print(f"  data [{time.perf_counter() - tic:.1f}s]: "
                  + "; ".join(f"{x['label']}: {x['nnz']:,} nnz ({x['mean_nnz_per_row']:.1f}/row)"
                              for x, _, _ in data), flush=True)
            rounds = [[] for _ in data]
            for rep in range(cfg["repeats"]):  # interleaved rounds
                for i, (x, X, y) in enumerate(data):
                    tic = time.perf_counter()
                    if sweep == 5:
                        r = measure_predict(X, y, x["threads"], cfg["predict_repeats"])
                        msg = (f"predict {r['predict_s']:.3f}s = {r['rows_per_s']:,.0f} rows/s "
                               f"(first call {r['first_predict_s']:.2f}s)")
                    else:
                        threads = x["threads"] if sweep == 4 else cfg["threads"]
                        r = measure_fit(X, y, threads, cfg["epochs"])
                        msg = (f"epoch {r['epoch_s']:.3f}s ("
                               + ", ".join(f"{e:.2f}" for e in r["epoch_s_all"])
                               + f"; first {r['first_epoch_s']:.2f}s not counted), "
                               f"cpu/wall {r['cpu_per_wall']:.2f}")
                    rounds[i].append(r)
                    print(f"  [round {rep + 1}/{cfg['repeats']}] {SWEEPS[sweep]}={x['label']}: "
                          f"{msg}; kernels report {r['threads_reported']} thread(s), peak RSS "
                          f"{r['peak_rss_mib']:,.0f} MiB [{time.perf_counter() - tic:.0f}s]",
                          flush=True)
            configs = [x for x, _, _ in data]
            bound = (threads_bound(data[0][1], cfg["thread_counts"])
                     if sweep == 4 and cfg["bound"] else None)
            del data
            X = y = None
            gc.collect()
            sw = {"results": [{"config": x, "result": merge_rounds(rr)}
                              for x, rr in zip(configs, rounds)]}
            sw["summary"] = summarize(sweep, sw["results"])
            if bound is not None:
                add_bound(sw, bound)
            png = os.path.join(out_dir, f"{cfg['stem']}_{SWEEPS[sweep]}.png")
            try:
                plot_sweep(sweep, sw, report, png)
                sw["png"] = png
                written.append(png)
            except Exception as exc:  # a plotting bug must not lose the numbers
                print(f"  plot failed: {exc!r}", flush=True)
            report["sweeps"][str(sweep)] = sw
            write(final=False)
            print("\n" + "\n".join(markdown_sweep(sweep, sw, cfg)), flush=True)

    write(final=True)
    print(f"\ntotal wall time {report['wall_seconds']:.0f} s")
    print("written:\n  " + "\n  ".join([paths["json"], paths["md"]] + written))


if __name__ == "__main__":
    main()
