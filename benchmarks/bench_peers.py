"""SparseMLPRegressor next to its peers, on the same data, in one command.

Peers (each runs in its own child process, so that the child's
``ru_maxrss`` is that peer's peak resident memory, data included):

* ``ours-adam``, ``ours-sgd``, ``ours-adagrad``, ``ours-rowwise_adagrad``:
  ``SparseMLPRegressor``,
  one hidden layer of 256 ReLU units, batch 256, float32, ``alpha=0``.
  Each epoch is one ``partial_fit`` call, timed on its own; the first call
  (which allocates and initialises the n_features x 256 weights and the
  optimizer state) is reported but not counted in the median.
* ``torch``: ``nn.EmbeddingBag(n_features, 256, mode='sum', sparse=True)``
  fed with the CSR's indices / offsets / per_sample_weights of each
  shuffled minibatch (rows gathered with scipy's ``X[rows]``), + bias, ReLU,
  ``Linear(256, K)``; SparseAdam for the bag, Adam for the rest, lr 1e-3,
  MSE loss, ``torch.set_num_threads(threads)``. It starts from the same
  initial weights as ``ours-*`` (SparseMLPRegressor's, random_state=0), so
  that the test R^2 compares the training, not two draws of the
  initialisation. ``--torch-epochs`` epochs, 1 by default: its weights and
  SparseAdam's two moment arrays are made before the first epoch, so that
  epoch times training only and is counted (with more than one, the first
  is not counted, as for ours). The test R^2 is recorded after each epoch,
  and ours-adam's is compared with PyTorch's after the same number of
  epochs. The time of each phase (batch gathering, forward, backward,
  optimizer steps) is reported too.
* ``sklearn-mlp``: scikit-learn's ``MLPRegressor`` (adam) on the same CSR.
  One ``partial_fit`` on 256 rows = one minibatch step; one warm-up step,
  then a few timed steps; the epoch time is EXTRAPOLATED from the median
  step. Its R^2 (after those few steps only) is flagged, not comparable.
* ``ridge``: ``Ridge(alpha=1.0, solver='sparse_cg')`` on L2-normalised rows
  (the linear bar): fit time and test R^2. The targets are solved on
  ``threads`` threads, a share each (sparse_cg solves each target on its
  own: the same coefficients as one fit).

All network peers see the same input rows: ``--row-scaling l2`` (default)
scales each row to unit Euclidean norm (on the fly inside SparseMLPRegressor
via ``row_scaling``; in the ``per_sample_weights`` for PyTorch; once, in a
copy, for scikit-learn's MLP and Ridge). Without it the almost-full rows of
the data set give first-layer outputs thousands of times larger than
ordinary rows.

    python benchmarks/bench_peers.py --quick          # < 3 minutes
    python benchmarks/bench_peers.py                  # default: about 17 minutes on 2 cores
    python benchmarks/bench_peers.py --peers ours-adagrad --epochs 3   # one more variant
    python benchmarks/bench_peers.py --peers ours-adam torch --repeats 2

In each run of one of our solvers, ``bandwidth_probe.py`` measures this
machine's bandwidth for gathering and updating rows of an (n_features, 256)
float32 array right before and right after the counted epochs, and the
suite prints the least time an epoch can take for that solver (the bytes
each batch must move for its distinct features' rows and their optimizer
state, priced at those rates), the mean of the two bounds, and the run's
ratio to it (``--no-bound`` skips this). The bandwidth of a shared machine
drifts from minute to minute; probing on both sides of the timed epochs,
seconds away from them, brackets the conditions the epochs ran under, and
the distance between the two bounds shows how far they moved.

Timings on a shared 2-core machine are noisy: medians are reported, and
``--repeats R`` runs R interleaved rounds of all peers (round 1: every peer,
round 2: every peer, ...) and reports the median over the rounds' medians.
Results go to ``benchmarks/results/peers.json`` and ``peers.md``.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# Order of the runs: the headline pair first, the cheap peers next, variants last,
# so that a long run interrupted early still has the main comparison.
ALL_PEERS = ["ours-adam", "sklearn-mlp", "ridge", "torch", "ours-sgd", "ours-rowwise_adagrad",
             "ours-adagrad"]
# The default run: every peer but the plain-Adagrad variant, 2 epochs of
# ours and 1 of PyTorch (whose epoch alone takes 5 to 7 minutes here), so
# that one command takes under 20 minutes on a 2-core machine (1,008 s
# measured on one with slow memory, where PyTorch's epoch took 435 s).
DEFAULT_PEERS = [p for p in ALL_PEERS if p != "ours-adagrad"]
HIDDEN = 256
BATCH = 256
# learning_rate_init of our solvers in this comparison
LEARNING_RATE = {"adam": 1e-3, "sgd": 0.05, "adagrad": 0.05, "rowwise_adagrad": 0.05}


# --------------------------------------------------------------------------- #
# helpers
def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mib():
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return float("nan")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions():
    out = {"python": platform.python_version()}
    for name in ["numpy", "scipy", "sklearn", "torch", "sksparsenn"]:
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception:
            out[name] = None
    try:  # which build of the kernels ran: baseline or avx2 (README, "Processors")
        from sksparsenn._network import _k
        out["sksparsenn kernels"] = _k.INSTRUCTION_SET
    except Exception:
        out["sksparsenn kernels"] = None
    return out


def load_data(d):
    import scipy.sparse as sp

    def csr(prefix):
        shape = tuple(np.load(os.path.join(d, f"{prefix}_shape.npy")))
        return sp.csr_matrix(
            tuple(np.load(os.path.join(d, f"{prefix}_{k}.npy")) for k in ("data", "indices", "indptr")),
            shape=shape,
            copy=False,
        )

    return (csr("Xtr"), csr("Xte"), np.load(os.path.join(d, "ytr.npy")),
            np.load(os.path.join(d, "yte.npy")))


def save_data(d, X_train, X_test, y_train, y_test):
    for prefix, X in (("Xtr", X_train), ("Xte", X_test)):
        for k in ("data", "indices", "indptr"):
            np.save(os.path.join(d, f"{prefix}_{k}.npy"), getattr(X, k))
        np.save(os.path.join(d, f"{prefix}_shape.npy"), np.array(X.shape))
    np.save(os.path.join(d, "ytr.npy"), y_train)
    np.save(os.path.join(d, "yte.npy"), y_test)


def l2_rows(X):
    """Copy of CSR X with unit-L2-norm rows."""
    import scipy.sparse as sp

    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64)).ravel()
    norms[norms == 0] = 1.0
    return (sp.diags((1.0 / norms).astype(X.dtype)) @ X).tocsr()


# --------------------------------------------------------------------------- #
# peers (run in child processes)
def run_ours(cfg, solver, X_train, X_test, y_train, y_test, probe=None):
    """Our regressor, one ``partial_fit`` per epoch. ``probe`` (optional) is
    called right before the first counted epoch and right after the last."""
    from sksparsenn import SparseMLPRegressor

    lr = LEARNING_RATE[solver]
    model = SparseMLPRegressor(
        hidden_layer_sizes=(HIDDEN,), batch_size=BATCH, solver=solver,
        learning_rate_init=lr, random_state=0, max_iter=cfg["epochs"], tol=0,
        n_iter_no_change=10**6, alpha=0, row_scaling=cfg["row_scaling"], dtype="float32",
    )
    epochs, probes, r2s = [], [], []
    first_counted = 1 if cfg["epochs"] > 1 else 0
    for e in range(cfg["epochs"]):
        if probe is not None and e == first_counted:
            probes.append(probe())
        tic = time.perf_counter()
        model.partial_fit(X_train, y_train)
        epochs.append(time.perf_counter() - tic)
        if e + 1 < cfg["epochs"]:  # after the last epoch: below, once the probe has run
            r2s.append(float(model.score(X_test, y_test)))
        print(f"    [{'ours-' + solver}] epoch {e + 1}: {epochs[-1]:.2f}s  loss {model.loss_:.4f}"
              + (f"  test R^2 {r2s[-1]:.4f}" if len(r2s) == e + 1 else ""), flush=True)
    if probe is not None:
        probes.append(probe())
    tic = time.perf_counter()
    r2s.append(float(model.score(X_test, y_test)))
    res = {"solver": f"{solver} lr={lr:g}", "epoch_seconds_all": epochs,
           "test_r2": r2s[-1], "test_r2_by_epoch": r2s,
           "predict_seconds": time.perf_counter() - tic}
    if probes:
        res["bound_probes"] = probes  # before the counted epochs, after them
    return res


def _our_initial_weights(X_train, n_targets):
    """SparseMLPRegressor's initial weights for ours-* with random_state=0 (not trained)."""
    from sksparsenn import SparseMLPRegressor

    # plain SGD: its optimizer state is never mapped, so only the weights take memory
    init = SparseMLPRegressor(hidden_layer_sizes=(HIDDEN,), solver="sgd", momentum=0.0,
                              random_state=0, dtype="float32")
    init._initialize(X_train.shape[1], n_targets, X_train, None, False)
    return init


def run_torch(cfg, X_train, X_test, y_train, y_test):
    try:
        import torch
        from torch import nn
    except ImportError as exc:
        return {"skipped": f"torch not importable: {exc}"}
    from sklearn.metrics import r2_score

    torch.manual_seed(0)
    torch.set_num_threads(cfg["threads"])
    n_features, K = X_train.shape[1], y_train.shape[1]

    if cfg["row_scaling"] == "l2":
        X_train, X_test = l2_rows(X_train), l2_rows(X_test)
    elif cfg["row_scaling"] != "none":
        raise ValueError("torch peer supports --row-scaling l2 or none")

    # The same initial weights as ours (SparseMLPRegressor's Glorot uniform
    # draw with random_state=0, which does not depend on the solver), so that
    # the two differ only in the batch order and the float32 rounding: test
    # R^2 differs by a few hundredths between random initialisations.
    init = _our_initial_weights(X_train, K)
    bag = nn.EmbeddingBag(n_features, HIDDEN, mode="sum", sparse=True)
    b1 = nn.Parameter(torch.empty(HIDDEN))
    out = nn.Linear(HIDDEN, K)
    with torch.no_grad():
        bag.weight.copy_(torch.from_numpy(init.coefs_[0]))
        b1.copy_(torch.from_numpy(init.intercepts_[0]))
        out.weight.copy_(torch.from_numpy(np.ascontiguousarray(init.coefs_[1].T)))
        out.bias.copy_(torch.from_numpy(init.intercepts_[1]))
    del init
    opt_sparse = torch.optim.SparseAdam(list(bag.parameters()), lr=1e-3)
    opt_dense = torch.optim.Adam([b1, *out.parameters()], lr=1e-3)
    # SparseAdam creates its two n_features x 256 moment arrays in its first
    # step; create them here, as that step would, so that the first epoch
    # times training only (ours allocates its state in a first epoch that is
    # not counted; PyTorch's single default epoch is counted).
    for p in bag.parameters():
        opt_sparse.state[p].update(
            step=0, exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
            exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
    loss_fn = nn.MSELoss()

    def batch_tensors(Xb):
        idx = torch.from_numpy(Xb.indices.astype(np.int64, copy=False))
        off = torch.from_numpy(Xb.indptr[:-1].astype(np.int64, copy=False))
        w = torch.from_numpy(Xb.data.astype(np.float32, copy=False))
        return idx, off, w

    def forward(idx, off, w):
        h = torch.relu(bag(idx, off, per_sample_weights=w) + b1)
        return out(h)

    def test_r2():
        preds = []
        with torch.no_grad():
            for s in range(0, X_test.shape[0], 4096):
                preds.append(forward(*batch_tensors(X_test[s:s + 4096])).numpy())
        return float(r2_score(y_test, np.concatenate(preds)))

    rng = np.random.default_rng(0)
    n = X_train.shape[0]
    yt = torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.float32))
    epochs, phases, r2s = [], [], []
    for e in range(cfg["torch_epochs"]):
        ph = dict(gather=0.0, forward=0.0, backward=0.0, step=0.0)
        perm = rng.permutation(n)
        total_loss = 0.0
        tic = time.perf_counter()
        for s in range(0, n, BATCH):
            t0 = time.perf_counter()
            rows = perm[s:s + BATCH]
            idx, off, w = batch_tensors(X_train[rows])
            yb = yt[torch.from_numpy(rows)]
            t1 = time.perf_counter()
            opt_sparse.zero_grad(set_to_none=True)
            opt_dense.zero_grad(set_to_none=True)
            loss = loss_fn(forward(idx, off, w), yb)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            opt_sparse.step()
            opt_dense.step()
            t4 = time.perf_counter()
            ph["gather"] += t1 - t0
            ph["forward"] += t2 - t1
            ph["backward"] += t3 - t2
            ph["step"] += t4 - t3
            total_loss += float(loss.detach()) * len(rows)
        epochs.append(time.perf_counter() - tic)
        phases.append(ph)
        tic = time.perf_counter()
        r2s.append(test_r2())
        print(f"    [torch] epoch {e + 1}: {epochs[-1]:.2f}s  mse {total_loss / n:.4f}  "
              + "  ".join(f"{k} {v:.1f}s" for k, v in ph.items())
              + f"  test R^2 {r2s[-1]:.4f}", flush=True)

    # Phase shares over the counted epochs (all epochs if only one).
    counted = phases[1:] or phases
    share = {k: float(np.median([p[k] for p in counted])) for k in counted[0]}
    return {"solver": "SparseAdam+Adam lr=0.001", "epoch_seconds_all": epochs,
            "test_r2": r2s[-1], "test_r2_by_epoch": r2s,
            "predict_seconds": time.perf_counter() - tic, "phase_seconds_median": share}


def run_sklearn_mlp(cfg, X_train, X_test, y_train, y_test):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    if cfg["row_scaling"] == "l2":
        X_train, X_test = l2_rows(X_train), l2_rows(X_test)
    model = MLPRegressor(hidden_layer_sizes=(HIDDEN,), batch_size=BATCH, solver="adam",
                         alpha=0.0, random_state=0)
    rng = np.random.default_rng(0)
    n_steps = cfg["sk_steps"]
    steps = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for s in range(n_steps + 1):
            rows = np.sort(rng.choice(X_train.shape[0], BATCH, replace=False))
            Xb, yb = X_train[rows], y_train[rows]
            tic = time.perf_counter()
            model.partial_fit(Xb, yb)
            steps.append(time.perf_counter() - tic)
            print(f"    [sklearn-mlp] step {s + 1}{' (warm-up)' if s == 0 else ''}: "
                  f"{steps[-1]:.2f}s", flush=True)
    step = float(np.median(steps[1:]))
    n_batches = -(-X_train.shape[0] // BATCH)
    r2 = model.score(X_test, y_test)
    return {"solver": "adam lr=0.001", "step_seconds_all": steps,
            "epoch_seconds_all": None, "extrapolated": True,
            "epoch_seconds": step * n_batches, "first_epoch_seconds": None,
            "test_r2": float(r2), "test_r2_note": f"after only {n_steps + 1} steps"}


def run_ridge(cfg, X_train, X_test, y_train, y_test):
    """Ridge's fit time and test R^2. sparse_cg solves each target on its
    own, and scipy's products release the GIL: the targets are shared out
    between ``threads`` threads, with the coefficients of one fit on all
    targets, to the last bit."""
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    tic = time.perf_counter()
    A, B = l2_rows(X_train), l2_rows(X_test)
    parts = np.array_split(np.arange(y_train.shape[1]), max(1, min(cfg["threads"],
                                                                 y_train.shape[1])))
    with ThreadPoolExecutor(len(parts)) as pool:
        fits = list(pool.map(lambda cols: Ridge(alpha=1.0, solver="sparse_cg").fit(
            A, y_train[:, cols]), parts))
    fit = time.perf_counter() - tic
    pred = np.hstack([f.predict(B) for f in fits])
    return {"solver": "sparse_cg alpha=1", "fit_seconds": fit,
            "test_r2": float(r2_score(y_test, pred))}


def child_main(args):
    from threadpoolctl import threadpool_limits

    with open(os.path.join(args.data_dir, "config.json")) as f:
        cfg = json.load(f)
    X_train, X_test, y_train, y_test = load_data(args.data_dir)
    rss_data = current_rss_mib()
    tic = time.perf_counter()
    probe = None
    batches_path = os.path.join(args.data_dir, "batches.json")
    if args.peer in BOUND_OF_PEER and os.path.exists(batches_path):
        with open(batches_path) as f:
            batches = json.load(f)
        probe = lambda: probe_bound(batches, cfg["threads"])  # noqa: E731
    with threadpool_limits(cfg["threads"]):
        if args.peer.startswith("ours-"):
            res = run_ours(cfg, args.peer[5:], X_train, X_test, y_train, y_test, probe)
        elif args.peer == "torch":
            res = run_torch(cfg, X_train, X_test, y_train, y_test)
        elif args.peer == "sklearn-mlp":
            res = run_sklearn_mlp(cfg, X_train, X_test, y_train, y_test)
        elif args.peer == "ridge":
            res = run_ridge(cfg, X_train, X_test, y_train, y_test)
        else:
            raise ValueError(args.peer)
    res["peer"] = args.peer
    res["wall_seconds"] = time.perf_counter() - tic
    res["rss_after_loading_data_mib"] = rss_data
    res["peak_rss_mib"] = peak_rss_mib()
    ep = res.get("epoch_seconds_all")
    if ep:
        res["first_epoch_seconds"] = ep[0]
        counted = ep[1:] or ep
        res["epoch_seconds"] = float(np.median(counted))
        res["epochs_counted"] = len(counted)
    if res.get("epoch_seconds"):
        res["samples_per_second"] = X_train.shape[0] / res["epoch_seconds"]
    if res.get("bound_probes") and res.get("epoch_seconds"):
        name = BOUND_OF_PEER[args.peer]
        before, after = (p["seconds"][name] for p in (res["bound_probes"][0],
                                                      res["bound_probes"][-1]))
        res["bound_seconds_before_after"] = [before, after]
        res["bound_seconds"] = 0.5 * (before + after)
        res["to_bound"] = res["epoch_seconds"] / res["bound_seconds"]
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


# --------------------------------------------------------------------------- #
# parent
# A row with more stored values than this counts as almost full (its
# features are then read in increasing order).
HEAVY_NNZ = 4096
# The memory traffic bound each of our peers is compared with.
BOUND_OF_PEER = {"ours-adam": "adam", "ours-sgd": "sgd-momentum", "ours-adagrad": "adagrad",
                 "ours-rowwise_adagrad": "rowwise_adagrad"}


def epoch_batches(X_train):
    """Each batch's distinct features (the rows of W it must gather and then
    read and write with the solver's state) and whether it holds an
    almost-full row, for one shuffled epoch of batches of BATCH rows."""
    order = np.random.default_rng(0).permutation(X_train.shape[0])
    lens = np.diff(X_train.indptr)
    n_feat, heavy = [], []
    for start in range(0, order.shape[0], BATCH):
        rows = order[start:start + BATCH]
        cols = np.concatenate([X_train.indices[X_train.indptr[r]:X_train.indptr[r + 1]]
                               for r in rows])
        n_feat.append(np.unique(cols).shape[0])
        heavy.append(bool((lens[rows] > HEAVY_NNZ).any()))
    return {"n_features": n_feat, "heavy": heavy, "n_columns": int(X_train.shape[1]),
            "batches": len(heavy), "heavy_batches": int(sum(heavy)),
            "mean_features_per_batch": float(np.mean(n_feat))}


def probe_bound(batches, threads):
    """Least epoch seconds per solver: ``batches`` (see epoch_batches) priced
    at the rates bandwidth_probe measures now at ``threads`` threads."""
    from bandwidth_probe import epoch_lower_bound, run_probe

    tic = time.perf_counter()
    n_cols = batches["n_columns"]
    rates = run_probe(n_rows=n_cols, width=HIDDEN, n_touch=min(2**18, n_cols // 4),
                      threads=(threads,))[threads]
    bound = epoch_lower_bound(batches["n_features"], batches["heavy"], rates, width=HIDDEN)
    print(f"  memory bound from bandwidth_probe ({threads} threads): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in bound.items())
          + f" [{time.perf_counter() - tic:.0f}s]", flush=True)
    return {"seconds": bound, "GB_per_s": rates}


def merge(runs):
    """Median over repeats of the per-run numbers; max of the peak RSS."""
    if len(runs) == 1 or "skipped" in runs[0]:
        return dict(runs[0], repeats=len(runs))
    m = dict(runs[-1])
    for k in ("epoch_seconds", "samples_per_second", "fit_seconds", "first_epoch_seconds",
              "test_r2"):
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            m[k] = float(np.median(vals))
    by_epoch = [r["test_r2_by_epoch"] for r in runs if r.get("test_r2_by_epoch")]
    if by_epoch:
        m["test_r2_by_epoch"] = [float(v) for v in np.median(by_epoch, axis=0)]
    ratios = [r["to_bound"] for r in runs if r.get("to_bound") is not None]
    if ratios:
        m["to_bound"] = float(np.median(ratios))
        m["bound_seconds"] = float(np.median([r["bound_seconds"] for r in runs
                                              if r.get("bound_seconds") is not None]))
    m["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    m["repeats"] = len(runs)
    m["runs"] = runs
    return m


def secs(v):
    """Seconds with two decimals below 10 s, one above."""
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def markdown(report):
    c, res = report["config"], report["results"]
    ref = next((r.get("epoch_seconds") for r in res if r["peer"] == "ours-adam"), None)
    lines = [
        f"# Peers benchmark{' (quick)' if c['quick'] else ''}",
        "",
        f"Date {report['date']}; {report['machine']['cpu_model']}, "
        f"{report['machine']['cpu_count']} CPUs, {report['machine']['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        f"Data: `make_sparse_regression(n_samples={c['n_samples']:,}, "
        f"n_features=2**{int(np.log2(c['n_features']))}, random_state=0)`: "
        f"{c['n_train']:,} training rows, {c['n_test']:,} test rows, "
        f"{c['nnz_train']:,} training non-zeros, K={c['n_targets']} targets. "
        f"Network 1 x {HIDDEN} ReLU, batch {BATCH}, float32, {c['threads']} threads, "
        f"row scaling {c['row_scaling']}. {c['epochs']} epochs of ours, "
        f"{c['torch_epochs']} of torch; epoch s = median over "
        f"epochs 2..E (first epoch, with initialisation, not counted; "
        f"with 1 epoch it is counted: torch's initialisation, SparseAdam's state "
        f"included, comes before it); {c['repeats']} interleaved round(s). "
        f"Timings on a shared machine are noisy.",
        "",
        "| peer | solver | epoch s | samples/s | test R^2 (after epoch 1, 2, ...) | peak RSS MiB "
        "| epoch time / ours-adam "
        "| epoch / memory bound |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    batches = c.get("bound_batches")
    probes = [(r["peer"], k, run["bound_probes"], run["bound_seconds_before_after"])
              for r in res for k, run in enumerate(r.get("runs", [r]))
              if run.get("bound_seconds_before_after")]
    for r in res:
        if "skipped" in r:
            lines.append(f"| {r['peer']} | skipped: {r['skipped']} | | | | | | |")
            continue
        ep = r.get("epoch_seconds")
        ep_s = fmt(ep, ".2f")
        if r.get("extrapolated"):
            ep_s += " (extrapolated)"
        if r["peer"] == "ridge":
            ep_s = f"fit {r['fit_seconds']:.1f} s (not an epoch)"
        r2 = (", ".join(f"{v:.4f}" for v in r["test_r2_by_epoch"]) if r.get("test_r2_by_epoch")
              else fmt(r.get("test_r2"), ".4f"))
        if r.get("test_r2_note"):
            r2 += f" ({r['test_r2_note']})"
        ratio = f"{ep / ref:.2f}" if (ep and ref) else "—"
        to_bound = (f"{r['to_bound']:.2f} (bound {secs(r['bound_seconds'])} s)"
                    if r.get("to_bound") is not None else "—")
        if r.get("to_bound") is not None and len(r.get("runs", [r])) > 1:
            to_bound += " median of " + ", ".join(f"{run['to_bound']:.2f}" for run in r["runs"]
                                                  if run.get("to_bound") is not None)
        lines.append(f"| {r['peer']} | {r['solver']} | {ep_s} | {fmt(r.get('samples_per_second'), ',.0f')} "
                     f"| {r2} | {r['peak_rss_mib']:,.0f} | {ratio} | {to_bound} |")
    lines += ["", "Peak RSS includes the training and test data loaded in each child "
              f"(~{np.median([r['rss_after_loading_data_mib'] for r in res if 'rss_after_loading_data_mib' in r]):,.0f} MiB RSS after loading)."]
    by = {r["peer"]: r for r in res if "skipped" not in r}
    ours = by.get("ours-adam", {})
    targets = []
    if ours.get("epoch_seconds") and by.get("torch", {}).get("epoch_seconds"):
        targets.append(f"ours-adam / torch epoch time {ours['epoch_seconds'] / by['torch']['epoch_seconds']:.3f} "
                       "(target <= 0.1)")
        r2_ours, r2_torch = ours.get("test_r2_by_epoch"), by["torch"].get("test_r2_by_epoch")
        if r2_ours and r2_torch:
            k = min(len(r2_ours), len(r2_torch))
            targets.append(f"test R^2 after {k} epoch{'s' if k > 1 else ''}: ours-adam "
                           f"{r2_ours[k - 1]:.4f} vs torch {r2_torch[k - 1]:.4f} "
                           "(target: at least torch's)")
    if ours.get("epoch_seconds") and by.get("sklearn-mlp", {}).get("epoch_seconds"):
        targets.append(f"ours-adam / sklearn-mlp (extrapolated) "
                       f"{ours['epoch_seconds'] / by['sklearn-mlp']['epoch_seconds']:.4f} (target <= 0.01)")
    if ours.get("to_bound") is not None:
        targets.append(f"ours-adam / memory bound {ours['to_bound']:.2f} (target <= 1.5)")
    if targets:
        lines += ["", "Targets: " + "; ".join(targets) + "."]
    if batches and probes:
        lines += ["", f"Memory bound: {batches['batches']} batches per epoch, {batches['heavy_batches']} "
                  f"with an almost-full row, {batches['mean_features_per_batch']:,.0f} distinct features "
                  "per batch on average; each batch must gather its features' weight rows once and "
                  "read and write them and the solver's state once, at the rates "
                  f"`benchmarks/bandwidth_probe.py` measured with {c['threads']} threads in each "
                  "run of ours, right before its counted epochs and right after them; the bound "
                  "is the mean of the two. Bounds before / after, and the probe's GB/s "
                  "(before / after): "
                  + "; ".join(f"{peer} round {k + 1}: {secs(ba[0])} / {secs(ba[1])} s ("
                              + ", ".join(f"{n} {v:.1f} / {pr[-1]['GB_per_s'][n]:.1f}"
                                          for n, v in pr[0]["GB_per_s"].items()) + ")"
                              for peer, k, pr, ba in probes) + "."]
    tr = next((r for r in res if r["peer"] == "torch" and "phase_seconds_median" in r), None)
    if tr:
        ph = tr["phase_seconds_median"]
        tot = sum(ph.values())
        lines += ["", "PyTorch time per epoch by phase (median): " + ", ".join(
            f"{k} {v:.2f} s ({v / tot:.0%})" for k, v in ph.items())
            + " — gather = scipy `X[rows]` + tensor conversion."]
    first = [f"{r['peer']} {r['first_epoch_seconds']:.2f} s" for r in res
             if r.get("first_epoch_seconds") is not None and len(r["epoch_seconds_all"]) > 1]
    if first:
        lines += ["", "First epoch (incl. initialisation, not counted): " + ", ".join(first)]
    sk = next((r for r in res if r["peer"] == "sklearn-mlp" and "step_seconds_all" in r), None)
    if sk:
        lines += ["", "sklearn-mlp: epoch time extrapolated from the median of "
                  f"{len(sk['step_seconds_all']) - 1} timed minibatch steps "
                  f"(steps: {', '.join(f'{s:.2f}' for s in sk['step_seconds_all'])} s, "
                  "the first is the warm-up)."]
    lines += ["", f"Command: `{report['command']}`; wall time {report['wall_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def parent_main(args):
    t_start = time.perf_counter()
    epochs = args.epochs or 2
    torch_epochs = args.torch_epochs or 1
    if args.quick:
        n_samples = args.n_samples or 20_000
        n_features = args.n_features or 2**18
        sk_steps = args.sk_steps or 3
    else:
        n_samples = args.n_samples or 225_000
        n_features = args.n_features or 2**20
        sk_steps = args.sk_steps or 4
    from sksparsenn.datasets import make_sparse_regression

    tic = time.perf_counter()
    X, y = make_sparse_regression(n_samples=n_samples, n_features=n_features, random_state=0)
    n_train = int(round(n_samples * (1 - args.test_fraction)))
    X_train, X_test, y_train, y_test = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    print(f"data: {X.shape[0]:,} x {X.shape[1]:,}, {X.nnz:,} non-zeros, "
          f"{n_train:,} train / {X.shape[0] - n_train:,} test rows "
          f"[{time.perf_counter() - tic:.1f}s]", flush=True)
    cfg = dict(quick=args.quick, n_samples=n_samples, n_features=n_features,
               n_train=n_train, n_test=X.shape[0] - n_train, nnz_train=int(X_train.nnz),
               n_targets=int(y.shape[1]), epochs=epochs, torch_epochs=torch_epochs, sk_steps=sk_steps,
               threads=args.threads, row_scaling=args.row_scaling, repeats=args.repeats,
               hidden=HIDDEN, batch_size=BATCH)
    batches = None
    if not args.no_bound:
        batches = epoch_batches(X_train)
        cfg["bound_batches"] = {k: batches[k] for k in
                              ("batches", "heavy_batches", "mean_features_per_batch")}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    runs = {p: [] for p in args.peers}
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as d:
        save_data(d, X_train, X_test, y_train, y_test)
        del X, y, X_train, X_test, y_train, y_test
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        if batches is not None:
            with open(os.path.join(d, "batches.json"), "w") as f:
                json.dump(batches, f)
        for rep in range(args.repeats):  # interleaved rounds
            for peer in args.peers:
                out = os.path.join(d, f"{peer}-{rep}.json")
                print(f"[round {rep + 1}/{args.repeats}] {peer} ...", flush=True)
                tic = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--peer", peer,
                     "--data-dir", d, "--out", out], env=env, check=False)
                if proc.returncode != 0 or not os.path.exists(out):
                    print(f"  {peer} FAILED (exit code {proc.returncode})", flush=True)
                    runs[peer].append({"peer": peer, "skipped": f"failed, exit {proc.returncode}"})
                    continue
                with open(out) as f:
                    r = json.load(f)
                if "skipped" in r:
                    print(f"  {peer} skipped: {r['skipped']}", flush=True)
                else:
                    print(f"  {peer}: epoch {fmt(r.get('epoch_seconds'), '.2f')} s"
                          + (f" ({r['to_bound']:.2f} x its memory bound, "
                             + " and ".join(secs(b) for b in r["bound_seconds_before_after"])
                             + " s before and after)" if "to_bound" in r else "")
                          + f", R^2 {fmt(r.get('test_r2'), '.4f')}, peak RSS "
                          f"{r['peak_rss_mib']:,.0f} MiB [{time.perf_counter() - tic:.0f}s]",
                          flush=True)
                runs[peer].append(r)
                write_report(args, cfg, runs, t_start, final=False)
    write_report(args, cfg, runs, t_start, final=True)


def write_report(args, cfg, runs, t_start, final):
    """Write the JSON and Markdown results (also after each peer, marked partial)."""
    results = [merge(runs[p]) for p in args.peers if runs[p]]
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "cpu_model": cpu_model()},
        "versions": versions(),
        "config": cfg,
        "command": "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:]),
        "complete": final,
        "results": results,
        "wall_seconds": time.perf_counter() - t_start,
    }
    os.makedirs(RESULTS, exist_ok=True)
    stem = args.output or ("peers_quick" if args.quick else "peers")
    with open(os.path.join(RESULTS, stem + ".json"), "w") as f:
        json.dump(report, f, indent=1)
    md = markdown(report)
    if not final:
        md = "**PARTIAL: run still in progress or interrupted.**\n\n" + md
    with open(os.path.join(RESULTS, stem + ".md"), "w") as f:
        f.write(md)
    if final:
        print("\n" + md)
        print(f"written {os.path.join(RESULTS, stem + '.json')} and .md")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="20,000 rows, 2**18 features, 2 epochs (< 3 minutes)")
    p.add_argument("--n-samples", type=int, default=None,
                   help="rows generated (default 225,000: 180,000 train + 45,000 test)")
    p.add_argument("--n-features", type=int, default=None, help="default 2**20")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs E of each of ours (default 2; the first, which allocates "
                        "the weights and the solver's state, is not counted in the epoch "
                        "time when E > 1)")
    p.add_argument("--torch-epochs", type=int, default=None,
                   help="epochs of torch (default 1, counted: its initialisation, "
                        "SparseAdam's state included, comes before it; the first is not "
                        "counted when more than 1). Test R^2 is compared after the same "
                        "number of epochs")
    p.add_argument("--sk-steps", type=int, default=None,
                   help="timed minibatch steps of sklearn's MLPRegressor after 1 warm-up")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--row-scaling", default="l2", choices=["l2", "none"])
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds of all peers")
    p.add_argument("--peers", nargs="+", default=DEFAULT_PEERS, choices=ALL_PEERS,
                   help="default: all but ours-adagrad")
    p.add_argument("--no-bound", action="store_true",
                   help="skip the memory-bandwidth lower bound (bandwidth_probe.py before each of our runs)")
    p.add_argument("--output", default=None,
                   help="stem of the result files in benchmarks/results/ "
                        "(default peers, or peers_quick with --quick)")
    # internal: child process
    p.add_argument("--peer", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peer:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
