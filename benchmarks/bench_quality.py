"""Test R^2 of SparseMLPRegressor against tuned linear and dense baselines on real sparse data.

Data sets: those of ``quality_datasets.py`` (three real ones, Debian's
package index, MovieLens ratings, NYC flights 2013, and the built-in
synthetic one), hashed into 2**20 columns, rows at unit L2 norm, fixed
train / test split. For each data set, every method gets the same rows and
the same standardised target (mean 0, sd 1 on the training rows; the
predictions are mapped back, so R^2 is on the original scale; Ridge is
unaffected by this), and nothing looks at the test rows before the final
score. Methods:

``ridge``
    ``Ridge(solver='sparse_cg')`` with alpha chosen by ``GridSearchCV``
    (3-fold CV on the training rows, R^2; folds by source package for
    debian-packages, whose test split is by source package) over 0.03, 0.1,
    0.3, 1, 3, 10, 30, refitted on all training rows. (``RidgeCV``'s efficient leave-one-out
    needs an n_samples x n_samples or n_features x n_features matrix here:
    not feasible at these sizes.)
``sgd``
    ``SGDRegressor()`` with its defaults (squared loss, L2 1e-4,
    'invscaling' from 0.01, up to 1,000 epochs), ``random_state=0``;
    one per target (``MultiOutputRegressor``) for 'synthetic'.
``svd-mlp``
    ``TruncatedSVD(n_components=128)`` then ``MLPRegressor(hidden_layer_sizes=(100,),
    early_stopping=True)``, both ``random_state=0`` (the usual route to
    a network when the input is too wide).
``ours-default``
    ``SparseMLPRegressor()``: every parameter at its default
    (``random_state=0`` is set for reproducibility only).
``ours-tuned``
    ``SparseMLPRegressor`` with the best configuration of a small staged
    grid, chosen on a validation split of the training rows (15%, seeded;
    the configurations are fitted on the other 85%; for debian-packages 15%
    of the source packages, as its test split is by source package), then
    refitted on all training rows. Every configuration has ``row_scaling='l2'``,
    ``early_stopping=True`` (validation_fraction 0.1 of its training rows;
    the best epoch's weights are restored), ``max_iter=200``,
    ``random_state=0``. Stage 1, the solver, with hidden (100,) and the
    weights averaged over epochs (``average_decay=0.8``, which makes the
    comparison less a matter of one lucky epoch): 'rowwise_adagrad' as the
    defaults have it (lr 0.05, alpha 1, initial_accumulator_value 1e-3),
    'sgd' (lr 0.05, Nesterov momentum 0.9, alpha 1e-4), 'adam' (lr 1e-3,
    alpha 1e-4). Stage 2, alpha 10 times smaller and 10 times larger than
    stage 1's best. Stage 3, the best so far without averaging. Stage 4,
    hidden (256,) with the best so far.

``--extra`` adds named configurations of ours (see ``EXTRA``), fitted on all
training rows as they are, for looking into a data set where we lose.

Printed: per data set a Markdown table (method, test R^2, fit seconds,
epochs, chosen parameters) and the tuning trace; at the end a summary table
(rows = data sets, columns = test R^2 of each method and ours-tuned minus
ridge). Written to ``benchmarks/results/quality.md`` and ``quality.json``
(``quality_quick.*`` with ``--quick``), stamped with the date, the machine
and the package versions, rewritten after each data set (PARTIAL until the
run ends).

    python benchmarks/bench_quality.py --quick        # 2,500 training rows per set, ~3 min
    python benchmarks/bench_quality.py --max-rows synthetic=20000   # the full run, > 1 hour
    python benchmarks/bench_quality.py --datasets debian-packages --methods \
        --extra default-es rwada-h256-a1-lr0.02
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
METHODS = ["ridge", "sgd", "svd-mlp", "ours-default", "ours-tuned"]
RIDGE_ALPHAS = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
SOLVERS = {  # stage 1 of the tuned grid: solver -> its learning rate and alpha
    "rowwise_adagrad": dict(learning_rate_init=0.05, alpha=1.0, initial_accumulator_value=1e-3),
    "sgd": dict(learning_rate_init=0.05, alpha=1e-4),
    "adam": dict(learning_rate_init=1e-3, alpha=1e-4),
}
AVERAGE_DECAY = 0.8  # the tuned grid's moving average of the weights over epochs
TUNED_BASE = dict(hidden_layer_sizes=(100,), row_scaling="l2", early_stopping=True,
                  max_iter=200, random_state=0)
# Named extra configurations (--extra), each: parameters of SparseMLPRegressor
# (on top of random_state=0). Fitted on all training rows, scored on test.
EXTRA = {
    # MLPRegressor's defaults (adam, lr 1e-3, alpha 1e-4, no early stopping), sqrt rows
    "sklearn-like": dict(solver="adam", learning_rate_init=1e-3, alpha=1e-4, row_scaling="sqrt",
                         early_stopping=False),
    # the defaults without the initial accumulator (Adagrad's plain first steps)
    "default-g0": dict(initial_accumulator_value=0.0),
    # the defaults with a larger initial accumulator, a wider layer, a linear term
    "default-g1e-2": dict(initial_accumulator_value=1e-2),
    "default-h256": dict(hidden_layer_sizes=(256,)),
    "default-linear": dict(linear_term=True),
    # the defaults with the weights averaged over epochs (moving average, decay 0.8)
    "default-avg": dict(average_decay=0.8),
    # a linear network (identity activation): what SGD-type training reaches without
    # the nonlinearity, next to Ridge's exact solution
    "default-identity": dict(activation="identity"),
}


# --------------------------------------------------------------------------- #
# helpers
class Scaler:
    """Standardise y with the training rows' mean and sd; map predictions back."""

    def __init__(self, y):
        self.mean = y.mean(axis=0)
        self.sd = y.std(axis=0)
        self.sd = np.where(self.sd > 0, self.sd, 1.0)

    def fwd(self, y):
        return (y - self.mean) / self.sd

    def back(self, y):
        y = np.asarray(y, dtype=np.float64)
        if np.ndim(self.mean) == 0:
            return y.ravel() * self.sd + self.mean
        return y.reshape(-1, len(self.mean)) * self.sd + self.mean


def r2(y_true, y_pred):
    from sklearn.metrics import r2_score

    return float(r2_score(y_true, y_pred))


def split_rows(n, fraction, seed=0, groups=None):
    """(fit rows, validation rows): a seeded random ``fraction`` of the rows,
    or of the groups when ``groups`` (one label per row) is given, so that no
    group has rows on both sides."""
    rng = np.random.RandomState(seed)
    if groups is not None:
        labels = np.unique(groups)
        val_labels = rng.permutation(labels)[: int(round(fraction * len(labels)))]
        is_val = np.isin(groups, val_labels)
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)
    perm = rng.permutation(n)
    n_val = int(round(fraction * n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def fmt_params(p):
    if not p:
        return ""
    return ", ".join(f"{k}={v}" for k, v in p.items())


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------- #
# methods: each returns dict(r2, fit_s, params, n_iter, ...) on the test rows
def run_ridge(Xtr, Xte, ytr, yte, sc, args, groups=None):
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold, KFold

    # Folds by group where the test split is by group (see split_rows).
    cv = (KFold(3, shuffle=True, random_state=0) if groups is None
          else GroupKFold(3, shuffle=True, random_state=0))
    gs = GridSearchCV(Ridge(solver="sparse_cg"), {"alpha": RIDGE_ALPHAS}, scoring="r2",
                      cv=cv, n_jobs=1, refit=True)
    _, secs = timed(lambda: gs.fit(Xtr, sc.fwd(ytr), groups=groups))
    best = gs.best_params_["alpha"]
    edge = best in (RIDGE_ALPHAS[0], RIDGE_ALPHAS[-1])
    cv = {str(a): float(s) for a, s in zip(gs.cv_results_["param_alpha"],
                                            gs.cv_results_["mean_test_score"])}
    return dict(r2=r2(yte, sc.back(gs.predict(Xte))), fit_s=secs,
                params={"alpha": best}, cv_r2=cv,
                note="best alpha at the edge of the grid" if edge else "")


def run_sgd(Xtr, Xte, ytr, yte, sc, args):
    from sklearn.linear_model import SGDRegressor
    from sklearn.multioutput import MultiOutputRegressor

    model = SGDRegressor(random_state=0)
    if ytr.ndim == 2:
        model = MultiOutputRegressor(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, secs = timed(lambda: model.fit(Xtr, sc.fwd(ytr)))
    n_iter = (model.n_iter_ if hasattr(model, "n_iter_")
              else int(np.max([e.n_iter_ for e in model.estimators_])))
    return dict(r2=r2(yte, sc.back(model.predict(Xte))), fit_s=secs, n_iter=int(n_iter),
                params={})


def run_svd_mlp(Xtr, Xte, ytr, yte, sc, args):
    from sklearn.decomposition import TruncatedSVD
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline

    k = min(args.svd_components, Xtr.shape[0] - 1)
    pipe = make_pipeline(TruncatedSVD(n_components=k, random_state=0),
                         MLPRegressor(hidden_layer_sizes=(100,), early_stopping=True,
                                      random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, secs = timed(lambda: pipe.fit(Xtr, sc.fwd(ytr)))
    mlp = pipe[-1]
    return dict(r2=r2(yte, sc.back(pipe.predict(Xte))), fit_s=secs, n_iter=int(mlp.n_iter_),
                params={"n_components": k})


def fit_ours(params, Xtr, ytr_s):
    from sksparsenn import SparseMLPRegressor

    model = SparseMLPRegressor(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        _, secs = timed(lambda: model.fit(Xtr, ytr_s))
    return model, secs


def run_ours_default(Xtr, Xte, ytr, yte, sc, args):
    params = dict(random_state=0)
    if args.quick_max_iter:
        params["max_iter"] = args.quick_max_iter
    model, secs = fit_ours(params, Xtr, sc.fwd(ytr))
    return dict(r2=r2(yte, sc.back(model.predict(Xte))), fit_s=secs, n_iter=int(model.n_iter_),
                params={k: v for k, v in params.items() if k != "random_state"},
                final_loss=float(model.loss_))


def tuned_grid_stages():
    """The staged grid: yields (stage, function(best_so_far) -> list of param dicts)."""
    def stage1(best):
        return [dict(TUNED_BASE, solver=s, average_decay=AVERAGE_DECAY, **kw)
                for s, kw in SOLVERS.items()]

    def stage2(best):
        return [dict(best, alpha=best["alpha"] * f) for f in (0.1, 10.0)]

    def stage3(best):
        return [dict(best, average_decay=0.0)]

    def stage4(best):
        return [dict(best, hidden_layer_sizes=(256,))]

    return [("solver", stage1), ("alpha", stage2), ("average", stage3), ("hidden", stage4)]


def run_ours_tuned(Xtr, Xte, ytr, yte, sc, args, log, groups=None):
    fit_rows, val_rows = split_rows(Xtr.shape[0], 0.15, seed=0, groups=groups)
    Xf, Xv = Xtr[fit_rows], Xtr[val_rows]
    yf, yv = ytr[fit_rows], ytr[val_rows]
    scf = Scaler(yf)
    trace, best, best_score = [], None, -np.inf
    t_grid = time.perf_counter()
    for stage, make in tuned_grid_stages():
        for params in make(best):
            if args.quick_max_iter:
                params = dict(params, max_iter=min(params["max_iter"], args.quick_max_iter))
            model, secs = fit_ours(params, Xf, scf.fwd(yf))
            score = r2(yv, scf.back(model.predict(Xv)))
            row = dict(stage=stage, params=_short(params), val_r2=score, fit_s=secs,
                       n_iter=int(model.n_iter_))
            trace.append(row)
            log(f"    tune {stage:<6} {fmt_params(_short(params)):<60} val R^2 {score:7.4f}"
                f"  {secs:6.1f}s {model.n_iter_:3d} ep")
            if score > best_score:
                best, best_score = params, score
            del model
    grid_s = time.perf_counter() - t_grid
    model, secs = fit_ours(best, Xtr, sc.fwd(ytr))
    return dict(r2=r2(yte, sc.back(model.predict(Xte))), fit_s=secs, n_iter=int(model.n_iter_),
                params=_short(best), val_r2=best_score, grid_s=grid_s, trace=trace)


def _public(params):
    """Parameters worth printing: those that differ from the estimator's defaults."""
    from sksparsenn import SparseMLPRegressor

    defaults = SparseMLPRegressor().get_params()
    out = {}
    for k, v in params.items():
        if k == "random_state":
            continue
        if k == "hidden_layer_sizes":
            v = tuple(v)
            if v == tuple(defaults[k]):
                continue
        elif defaults.get(k) == v:
            continue
        out[k] = v if not isinstance(v, tuple) else list(v)
    return out


def _short(params):
    """A tuned configuration: what the grid varies (the fixed part is TUNED_BASE)."""
    out = {"solver": params["solver"], "lr": params["learning_rate_init"],
           "alpha": params["alpha"], "hidden": list(params["hidden_layer_sizes"])}
    if "initial_accumulator_value" in params:
        out["g0"] = params["initial_accumulator_value"]
    if params.get("average_decay"):
        out["avg"] = params["average_decay"]
    return out


def run_extra(name, Xtr, Xte, ytr, yte, sc, args):
    params = dict(EXTRA[name], random_state=0)
    if args.quick_max_iter:
        params["max_iter"] = min(params.get("max_iter", 200), args.quick_max_iter)
    model, secs = fit_ours(params, Xtr, sc.fwd(ytr))
    out = dict(r2=r2(yte, sc.back(model.predict(Xte))), fit_s=secs, n_iter=int(model.n_iter_),
               params=_public(params))
    if getattr(model, "best_validation_score_", None) is not None:
        out["val_r2_internal"] = float(model.best_validation_score_)
    # train R^2 (on at most 20,000 rows): shows over- or under-fitting
    n = min(Xtr.shape[0], 20000)
    out["train_r2"] = r2(ytr[:n], sc.back(model.predict(Xtr[:n])))
    return out


# --------------------------------------------------------------------------- #
# output
def machine_info():
    from bench_peers import cpu_model, versions  # same folder: run as a script

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(), "loadavg_at_start": load}, versions()


def dataset_table(name, meta, res):
    s = meta["stats"]
    lines = [f"### {name}", "",
             f"{s['n_train']:,} train / {s['n_test']:,} test rows, "
             f"{s['nnz_per_row_mean']:.1f} non-zeros per row (max {s['nnz_per_row_max']:,}), "
             f"{s['columns_used']:,} of 2**20 columns used, target: {meta['build'].get('target')}",
             "", "| method | test R^2 | fit s | epochs | parameters | note |",
             "|---|---:|---:|---:|---|---|"]
    for m, r in res.items():
        if "error" in r:
            lines.append(f"| {m} | error | | | | {r['error']} |")
            continue
        extra = ""
        if "val_r2" in r:
            extra = f"val R^2 {r['val_r2']:.4f}; grid {r['grid_s']:.0f}s"
        if "train_r2" in r:
            extra = f"train R^2 {r['train_r2']:.4f}"
        if r.get("note"):
            extra = (extra + "; " if extra else "") + r["note"]
        lines.append(f"| {m} | {r['r2']:.4f} | {r['fit_s']:.1f} | {r.get('n_iter', '')} "
                     f"| {fmt_params(r.get('params'))} | {extra} |")
    tuned = res.get("ours-tuned", {})
    if tuned.get("trace"):
        lines += ["", "Tuning trace of ours-tuned (fitted on 85% of the training rows, "
                  "scored on the other 15%):", "",
                  "| stage | parameters | val R^2 | fit s | epochs |", "|---|---|---:|---:|---:|"]
        for t in tuned["trace"]:
            lines.append(f"| {t['stage']} | {fmt_params(t['params'])} | {t['val_r2']:.4f} "
                         f"| {t['fit_s']:.1f} | {t['n_iter']} |")
    return "\n".join(lines)


def summary_table(all_res, methods):
    head = "| data set | " + " | ".join(methods) + " | ours-tuned - ridge | ours-default - ridge |"
    lines = [head, "|---|" + "---:|" * (len(methods) + 2)]
    for name, res in all_res.items():
        cells = []
        for m in methods:
            r = res.get(m)
            cells.append("" if r is None or "r2" not in r else f"{r['r2']:.4f}")

        def diff(a):
            if a in res and "r2" in res[a] and "r2" in res.get("ridge", {}):
                return f"{res[a]['r2'] - res['ridge']['r2']:+.4f}"
            return ""

        lines.append(f"| {name} | " + " | ".join(cells) + f" | {diff('ours-tuned')} "
                     f"| {diff('ours-default')} |")
    return "\n".join(lines)


def write(path_stem, header, all_res, metas, methods, machine, vers, args, partial):
    os.makedirs(os.path.dirname(path_stem), exist_ok=True)
    md = [f"# Quality: test R^2 on real sparse data{' (PARTIAL)' if partial else ''}", "",
          header, "", "## Summary", "", summary_table(all_res, methods), ""]
    for name in all_res:
        md += [dataset_table(name, metas[name], all_res[name]), ""]
    with open(path_stem + ".md", "w") as f:
        f.write("\n".join(md))
    with open(path_stem + ".json", "w") as f:
        json.dump({"partial": partial, "date": header.split("\n")[0], "machine": machine,
                   "versions": vers, "args": vars(args),
                   "datasets": {n: {"meta": metas[n], "results": all_res[n]} for n in all_res}},
                  f, indent=1, default=str)


# --------------------------------------------------------------------------- #
def main(argv=None):
    sys.path.insert(0, HERE)
    import quality_datasets as qd

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(qd.DATASETS), choices=list(qd.DATASETS))
    p.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS)
    p.add_argument("--extra", nargs="*", default=[], choices=list(EXTRA),
                   help="extra configurations of ours to fit (see EXTRA)")
    p.add_argument("--quick", action="store_true",
                   help="4,000 training rows (1,000 test) per data set, at most 15 epochs "
                        "per fit of ours, 32 SVD components; < 5 minutes")
    p.add_argument("--max-rows", nargs="+", default=None, metavar="N|NAME=N",
                   help="at most N training rows (and N // 4 test rows, seeded random "
                        "subsets) for every data set, or NAME=N for data set NAME only")
    p.add_argument("--svd-components", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=qd.DEFAULT_CACHE)
    p.add_argument("--output", default=None,
                   help="output path without extension (default benchmarks/results/quality, "
                        "quality_quick with --quick)")
    args = p.parse_args(argv)
    args.quick_max_iter = None
    if args.quick:
        args.max_rows = args.max_rows or ["2500"]
        args.quick_max_iter = 10
        args.svd_components = min(args.svd_components, 32)
    max_rows = {}
    for item in args.max_rows or []:
        name, _, n = item.rpartition("=")
        for d in ([name] if name else args.datasets):
            max_rows[d] = int(n)
    stem = args.output or os.path.join(RESULTS, "quality_quick" if args.quick else "quality")

    from threadpoolctl import threadpool_limits

    machine, vers = machine_info()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    header = (f"{date}\n\nmachine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, "
              f"{args.threads} threads used, load average at start {machine['loadavg_at_start']}"
              f"\n\nversions: {', '.join(f'{k} {v}' for k, v in vers.items() if v)}\n\n"
              f"command: `python benchmarks/bench_quality.py {' '.join(argv or sys.argv[1:])}`"
              "\n\nSame rows (hashed, 2**20 columns, unit L2 norm) and standardised target for "
              "every method; R^2 on the test rows, original scale. Timings are wall-clock on a "
              "possibly shared machine. ours-default: SparseMLPRegressor() (random_state=0 only); "
              "ours-tuned: the grid's best, with row_scaling='l2', early_stopping=True, "
              f"max_iter={args.quick_max_iter or TUNED_BASE['max_iter']}, random_state=0 fixed.")
    print(header)
    methods = list(args.methods) + list(args.extra)
    all_res, metas = {}, {}
    t_all = time.perf_counter()
    with threadpool_limits(args.threads):
        for name in args.datasets:
            print(f"\n== {name}")
            Xtr, Xte, ytr, yte, meta, groups = qd.load(name, args.cache_dir, max_rows.get(name),
                                                       groups=True)
            sc = Scaler(ytr)
            res = {}
            all_res[name], metas[name] = res, meta
            for m in methods:
                print(f"  {m} ...", flush=True)
                try:
                    if m == "ridge":
                        r = run_ridge(Xtr, Xte, ytr, yte, sc, args, groups)
                    elif m == "sgd":
                        r = run_sgd(Xtr, Xte, ytr, yte, sc, args)
                    elif m == "svd-mlp":
                        r = run_svd_mlp(Xtr, Xte, ytr, yte, sc, args)
                    elif m == "ours-default":
                        r = run_ours_default(Xtr, Xte, ytr, yte, sc, args)
                    elif m == "ours-tuned":
                        r = run_ours_tuned(Xtr, Xte, ytr, yte, sc, args,
                                           log=lambda s: print(s, flush=True), groups=groups)
                    else:
                        r = run_extra(m, Xtr, Xte, ytr, yte, sc, args)
                except Exception as e:  # keep the other methods' results
                    r = {"error": f"{type(e).__name__}: {e}"}
                res[m] = r
                if "error" in r:
                    print(f"  {m:<14} ERROR {r['error']}")
                else:
                    print(f"  {m:<14} test R^2 {r['r2']:7.4f}  fit {r['fit_s']:7.1f}s  "
                          f"{fmt_params(r.get('params'))}", flush=True)
            print()
            print(dataset_table(name, meta, res))
            write(stem, header, all_res, metas, methods, machine, vers, args, partial=True)
    print("\n## Summary\n")
    print(summary_table(all_res, methods))
    print(f"\ntotal {time.perf_counter() - t_all:.0f}s")
    write(stem, header, all_res, metas, methods, machine, vers, args, partial=False)
    print(f"written {stem}.md and {stem}.json")


if __name__ == "__main__":
    sys.exit(main())
