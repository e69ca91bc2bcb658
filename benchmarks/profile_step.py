"""Where a training step's time goes, phase by phase.

Drives ``SparseNetwork`` directly on the built-in data and times each phase
of every step of the last of ``--epochs`` epochs, split between the batches
that hold an almost-full row (``heavy``: more than 4,096 stored values) and
the others:

* ``plan``: with ``--separate``, grouping the batch by feature
  (``batch_transpose``) and the lazy penalty's catch-up when they run on
  their own (see ``timed_step``); 0 otherwise;
* ``forward``: the sparse first layer and the dense layers, and the
  grouping, which one thread does meanwhile;
* ``backward``: loss and gradients of the dense layers;
* ``update_dense``: optimizer steps of the dense layers;
* ``update_sparse``: the fused first-layer gradient and optimizer update.

It also prints the mean number of distinct features per batch, from which
the bytes a phase moves follow (one 4*H-byte row per feature and array).

    python benchmarks/profile_step.py [--n-samples 40000] [--solver adam]
        [--threads 1] [--epochs 2] [--alpha 0] [--separate grouping catch-up]
        [--kernels PATH]

``--kernels PATH`` runs the step with another build of the kernels (a copy
of ``_sparse_kernels*.so`` kept from an earlier build), so that two builds
can be profiled in interleaved runs on the same machine state.
"""

import argparse
import importlib.machinery
import importlib.util
import time

import numpy as np

from sksparsenn import _network as N
from sksparsenn.datasets import make_sparse_regression

PHASES = ["plan", "forward", "backward", "update_dense", "update_sparse"]
SEPARABLE = ["grouping", "catch-up"]  # see timed_step


def load_kernels(path):
    """The kernel module compiled at ``path``, loaded beside the installed one.

    The two builds' initialisation functions are named after their modules
    (``_sparse_kernels`` and ``_sparse_kernels_avx2``); the file tells
    which one it has, so a copy of either build can be loaded under any
    file name.
    """
    with open(path, "rb") as f:
        name = ("_sparse_kernels_avx2" if b"PyInit__sparse_kernels_avx2" in f.read()
                else "_sparse_kernels")
    loader = importlib.machinery.ExtensionFileLoader(f"profiled.{name}", path)
    spec = importlib.util.spec_from_file_location(loader.name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def setup(args):
    """The built-in data, a network, the step's hyper-parameters for ``args``,
    and the random state that drew the network (batch orders continue it)."""
    X, y = make_sparse_regression(n_samples=args.n_samples, n_features=args.n_features,
                                  random_state=0)
    lens = np.diff(X.indptr)
    rng = np.random.RandomState(0)
    net = N.SparseNetwork([X.shape[1], args.hidden, y.shape[1]], "relu", args.solver,
                          np.float32, rng, float(lens.mean()))
    scale = N.compute_row_scales(X, "l2", args.threads)
    hp = dict(lr=1e-3 if args.solver == "adam" else 0.05, alpha=args.alpha, alpha_l1=0.0,
              beta_1=0.9, beta_2=0.999, epsilon=1e-8, momentum=0.9, nesterov=True)
    return X, y, lens, net, scale, hp, rng


def timed_step(net, X, y, rows, scale, hp, threads, separate=()):
    """One training step on ``rows``: seconds of each of PHASES, and the
    batch's number of distinct features.

    As ``SparseNetwork.step`` does it, the batch is grouped by feature on one
    thread while the others start the forward pass (``plan`` is then 0 and
    the grouping is timed in ``forward``), and with ``hp["alpha"] > 0`` the
    rows' pending L2 decay is applied inside the forward and update kernels.
    ``separate`` runs parts of the step the way they ran before, for
    comparison: with "grouping", the grouping comes first, alone (timed in
    ``plan``); with "catch-up", the grouping and then the catch-up
    (``catch_up_rows``, the pending decay in a pass of its own) come before
    the forward pass. The results are the same (tests/test_reference.py).
    """
    penalties = net._penalties(rows, None, hp)
    if penalties is None:
        raise SystemExit(f"alpha={hp['alpha']:g} is too large: one step's decay would zero "
                         "every weight")
    decay, _ = penalties
    sc = scale[rows]
    t0 = time.perf_counter()
    plan = None
    marks = net._lazy_marks()
    if "grouping" in separate or "catch-up" in separate:
        plan = N._k.batch_transpose(X.data, X.indices, X.indptr, rows, sc, net._slot_map())
        if "catch-up" in separate and marks:
            N._k.catch_up_rows(net.coefs[0], net.reg_logp_feat, net.reg_acc_feat, plan[0],
                               net.reg_logp, net.reg_acc, net._plan_threads(plan, threads))
            marks = {}
    t1 = time.perf_counter()
    if plan is None:
        acts, plan = net.forward(X, rows, sc, threads, group=True)
    else:
        acts = net.forward(X, rows, sc, threads, lazy=bool(marks))
    nt = net._plan_threads(plan, threads)
    t2 = time.perf_counter()
    _, D1, grads = net.backward(acts, y[rows], None)
    t3 = time.perf_counter()
    lr = net._next_step_lr(hp)
    net._update_dense_layers(grads, lr, decay, hp)
    t4 = time.perf_counter()
    net._lazy_update(plan, D1, net.coefs[0], [s[0] for s in net.state], lr, hp, nt,
                     marks=marks)
    t5 = time.perf_counter()
    net._advance_regularization(decay, 0.0, nt)
    return (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), plan[0].shape[0]


def interleaved_epochs(n_rows, lens, rng, epochs, step, shape=()):
    """Run ``epochs`` epochs of 256-row batches (a new order from ``rng``
    each), drawing for each batch, from a coin seeded with 1, which of two
    arms A (0) and B (1) runs it: ``step(arm, rows, heavy, last_epoch)``
    returns the batch's seconds (an array of ``shape``, e.g. per phase).

    Returns the last epoch's seconds ``T`` (arm, heavy, *shape) and batch
    counts ``C`` (arm, heavy); heavy batches hold a row with more than
    4,096 stored values. Both arms see the same machine state over the same
    epoch, so the drift of a shared machine cancels out of their ratio.
    """
    coin = np.random.RandomState(1)
    for epoch in range(epochs):
        T = np.zeros((2, 2) + tuple(shape))
        C = np.zeros((2, 2))
        order = rng.permutation(n_rows).astype(np.int64)
        for start in range(0, n_rows, 256):
            rows = order[start:start + 256]
            heavy = int((lens[rows] > 4096).any())
            arm = coin.randint(2)
            T[arm, heavy] += step(arm, rows, heavy, epoch == epochs - 1)
            C[arm, heavy] += 1
    if (C == 0).any():
        raise SystemExit("one arm drew no batch of one kind: use more --n-samples")
    return T, C


def print_epochs(T, C):
    """The epoch time each arm's per-batch means add up to, and their ratio."""
    n = C.sum(axis=0)
    totals = T.reshape(2, 2, -1).sum(axis=2)
    epoch = [sum(totals[i, h] / C[i, h] * n[h] for h in (0, 1)) for i in (0, 1)]
    print(f"epoch from the per-batch means: A {epoch[0]:.2f} s, B {epoch[1]:.2f} s, "
          f"B/A {epoch[1] / epoch[0]:.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-samples", type=int, default=40_000)
    p.add_argument("--n-features", type=int, default=2**20)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--solver", default="adam", choices=sorted(N.SOLVERS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2, help="the last one is reported")
    p.add_argument("--alpha", type=float, default=0.0,
                   help="L2 penalty (the regressor's default is 1.0, the transformer's 1e-4)")
    p.add_argument("--separate", nargs="+", default=[], choices=SEPARABLE,
                   help="parts of the step to run on their own, before the forward pass")
    p.add_argument("--kernels", default=None,
                   help="path of another build's _sparse_kernels extension to profile")
    args = p.parse_args()
    if args.kernels:
        N._k = load_kernels(args.kernels)  # the network calls its kernels through N._k
        print(f"kernels: {args.kernels}")

    X, y, lens, net, scale, hp, rng = setup(args)
    print(f"{X.shape[0]:,} rows x {X.shape[1]:,} features, {X.nnz:,} non-zeros, "
          f"{int((lens > 4096).sum())} rows with > 4,096; H={args.hidden}, "
          f"solver={args.solver}, {args.threads} thread(s)")

    with N.blas_threads_limit(net.layer_units, 256):
        for epoch in range(args.epochs):
            T = {k: [0.0, 0.0] for k in PHASES}
            counts, n_feat = [0, 0], [0, 0]
            order = rng.permutation(X.shape[0]).astype(np.int64)
            for start in range(0, X.shape[0], 256):
                rows = order[start:start + 256]
                heavy = int((lens[rows] > 4096).any())
                counts[heavy] += 1
                times, nf = timed_step(net, X, y, rows, scale, hp, args.threads, args.separate)
                n_feat[heavy] += nf
                for k, dt in zip(PHASES, times):
                    T[k][heavy] += dt

    print(f"epoch {args.epochs}: {counts[0]} ordinary batches, {counts[1]} with an almost-full row")
    print(f"{'phase':15s} {'ordinary s':>11s} {'heavy s':>9s}   ms per batch: ordinary / heavy")
    for k in PHASES:
        a, b = T[k]
        print(f"{k:15s} {a:11.3f} {b:9.3f}   {1e3 * a / max(counts[0], 1):8.3f} / "
              f"{1e3 * b / max(counts[1], 1):8.2f}")
    total = [sum(T[k][h] for k in PHASES) for h in (0, 1)]
    print(f"{'total':15s} {total[0]:11.3f} {total[1]:9.3f}   epoch {sum(total):.2f} s")
    print("distinct features per batch, ordinary / heavy: "
          f"{n_feat[0] / max(counts[0], 1):,.0f} / {n_feat[1] / max(counts[1], 1):,.0f}")


if __name__ == "__main__":
    main()
