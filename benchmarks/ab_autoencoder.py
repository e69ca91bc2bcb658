"""The autoencoder's step in two arrangements, compared batch by batch.

Trains ``SparseAutoencoderNetwork`` (the transformer's unsupervised mode) on
the built-in data and, before each batch, draws at random (seeded) whether
the step runs as ``SparseAutoencoderNetwork.step`` does (B) or in an earlier
arrangement of its decoder (A). Both see the same machine state over the
same epoch, so the drift of a shared machine cancels out of their ratio.

``--a`` picks A's arrangement:

* ``separate-backward``: the pairs' outputs (``sampled_dot``) and the
  backward product through the decoder (``sparse_forward`` over the deltas,
  which groups the pairs meanwhile) read the decoder's rows once each,
  instead of once for both (``sampled_backward``).
* ``separate-catch-up``: as above, and before them the decoder's rows of
  the step's pairs catch up with their pending decay in a pass of their own
  (``catch_up_rows``), and the pairs are grouped on one thread after the
  backward product (``batch_transpose``).
* ``separate-bias``: B's step, except that the decoder's output biases are
  updated by a ``sparse_update`` call of their own after the decoder's
  weights, instead of in the same pass.

``--a-kernels PATH`` makes A run the step as B does, with another build of
the kernels: a copy of ``_sparse_kernels*.so`` kept from an earlier build,
as ``ab_kernels.py --a PATH`` takes (``--a`` is then ignored).

The arrangements give the same results, except that in the first two a
decoder row whose pairs all have a zero delta is not updated, and in B it
is (with a zero gradient): the trajectories differ by that only. Prints the ms per
step, ordinary batches and batches with an almost-full row apart, and the
epoch time each arrangement's per-batch means add up to. With ``--phases``,
also the ms per ordinary step that B spends in each kernel (and in
``sample_pairs``), timed call by call.

    python benchmarks/ab_autoencoder.py [--a separate-catch-up]
        [--solver adam] [--hidden 100] [--n-samples 120000] [--alpha 1e-4]
        [--zero-sampling 1.0] [--threads 2] [--epochs 2] [--phases]
        [--a-kernels PATH]

The defaults are the transformer's (Adam, ``alpha=1e-4``, one hidden layer
of 100, ``row_scaling='sqrt'``, ``zero_sampling=1.0``).
"""

import argparse
import collections
import time
import types

import numpy as np

from profile_step import interleaved_epochs, load_kernels, print_epochs
from sksparsenn import _network as N
from sksparsenn.datasets import make_sparse_regression

ARRANGEMENTS = ["separate-backward", "separate-catch-up", "separate-bias"]


def _lazy_update_bias_apart(net, plan, D, W, states, step_lr, hp, n_threads, max_norm=0.0,
                            marks=None, bias=None, bias_states=None):
    """``_lazy_update`` with the biases updated by a call of their own."""
    lazy_update = type(net)._lazy_update
    lazy_update(net, plan, D, W, states, step_lr, hp, n_threads, max_norm, marks)
    if bias is not None:
        lazy_update(net, plan, np.ones((D.shape[0], 1), net.dtype), bias, bias_states,
                    step_lr, hp, n_threads)


def step_a(net, X, rows, scale, hp, n_threads, arrangement):
    """One step with the decoder in an earlier arrangement (see above)."""
    if arrangement == "separate-bias":
        net._lazy_update = types.MethodType(_lazy_update_bias_apart, net)
        try:
            return net.step(X, rows, scale, None, None, hp, n_threads)
        finally:
            del net._lazy_update
    K = N._k
    penalties = net._penalties(rows, None, hp)
    activations, plan, n_threads = net._forward_and_plan(X, rows, scale, n_threads)
    n_rows = rows.shape[0]
    pair_row, pair_col, target, weight, indptr = net.sample_pairs(X, rows, scale)
    batch = np.arange(n_rows, dtype=np.int64)
    unit = np.ones(n_rows, dtype=net.dtype)
    Wd, bd = net.decoder_coef, net.decoder_intercept
    eager = arrangement == "separate-catch-up"
    marks = {} if eager else net._decoder_marks(pair_col, indptr, n_threads)
    if eager and net.reg_logp != 0.0:
        touched = K.batch_transpose(np.ones(pair_col.shape[0], net.dtype), pair_col, indptr,
                                    batch, unit, net._slot_map())[0]
        K.catch_up_rows(Wd, net.dec_logp_feat, net.dec_acc_feat, touched, net.reg_logp, 0.0,
                        n_threads)
    code = activations[-1]
    out = np.empty(pair_col.shape[0], dtype=net.dtype)
    K.sampled_dot(code, Wd, bd[:, 0], pair_row, pair_col, out, n_threads, **marks)
    coef = (np.full(n_rows, 1.0 / n_rows)[pair_row] * weight).astype(net.dtype)
    diff = out - target
    loss = 0.5 * float(np.dot(coef * diff, diff)) / net.layer_units[0]
    delta = coef * diff
    dA = np.empty_like(code)
    zeros = np.zeros(code.shape[1], net.dtype)
    if eager:
        K.sparse_forward(delta, pair_col, indptr, batch, unit, Wd, zeros, dA, n_threads)
        dec_plan = K.batch_transpose(delta, pair_col, indptr, batch, unit, net._slot_map())
    else:
        dec_plan = K.sparse_forward(delta, pair_col, indptr, batch, unit, Wd, zeros, dA,
                                    n_threads, slot=net._slot_map(), **marks)
    net._backprop_and_update(activations, dA, plan, dec_plan, marks, penalties, hp, n_threads)
    return loss


class _Timed:
    """The kernel module, with each call's time added to ``seconds[name]``
    (the sparse updates apart by the width of the array they update)."""

    def __init__(self, module):
        self.module = module
        self.seconds = collections.defaultdict(float)
        self.on = False

    def __getattr__(self, name):
        f = getattr(self.module, name)
        if not callable(f):
            return f

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = f(*args, **kwargs)
            if self.on:
                key = f"{name} (width {args[5].shape[1]})" if name == "sparse_update" else name
                self.seconds[key] += time.perf_counter() - t0
            return out
        return timed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", default="separate-catch-up", choices=ARRANGEMENTS)
    p.add_argument("--solver", default="adam", choices=sorted(N.SOLVERS))
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--n-samples", type=int, default=120_000)
    p.add_argument("--n-features", type=int, default=2**20)
    p.add_argument("--alpha", type=float, default=1e-4)
    p.add_argument("--zero-sampling", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2,
                   help="the last one is reported (the first maps the solver state's pages)")
    p.add_argument("--phases", action="store_true",
                   help="also time B's kernel calls and sample_pairs, ordinary steps")
    p.add_argument("--a-kernels", metavar="PATH", default=None,
                   help="A: B's step with the kernels of this build (--a is ignored)")
    args = p.parse_args()
    a_kernels = load_kernels(args.a_kernels) if args.a_kernels else None
    timed = None
    if args.phases:
        timed = N._k = _Timed(N._k)  # the network calls its kernels through N._k
        pairs = N.SparseAutoencoderNetwork.sample_pairs

        def sample_pairs(self, *a):
            t0 = time.perf_counter()
            out = pairs(self, *a)
            if timed.on:
                timed.seconds["sample_pairs"] += time.perf_counter() - t0
            return out
        N.SparseAutoencoderNetwork.sample_pairs = sample_pairs

    X, _ = make_sparse_regression(n_samples=args.n_samples, n_features=args.n_features,
                                  random_state=0)
    X.sort_indices()  # sample_pairs needs sorted indices, as the estimators ensure
    lens = np.diff(X.indptr)
    rng = np.random.RandomState(0)
    net = N.SparseAutoencoderNetwork([X.shape[1], args.hidden], "relu", args.solver,
                                     np.float32, rng, float(lens.mean()),
                                     zero_sampling=args.zero_sampling)
    scale = N.compute_row_scales(X, "sqrt", args.threads)
    hp = dict(lr=1e-3 if args.solver == "adam" else 0.05, alpha=args.alpha, alpha_l1=0.0,
              beta_1=0.9, beta_2=0.999, epsilon=1e-8, momentum=0.9, nesterov=True)
    print(f"{X.shape[0]:,} rows x {X.shape[1]:,} features; autoencoder, code {args.hidden}, "
          f"solver={args.solver}, alpha={args.alpha:g}, zero_sampling={args.zero_sampling:g}, "
          f"{args.threads} thread(s); A: "
          f"{f'the step with {args.a_kernels}' if a_kernels else args.a}, "
          "B: the step as it is")
    builds = [a_kernels or N._k, N._k]

    def step(b, rows, heavy, last):
        if timed is not None:
            timed.on = bool(b and not heavy and last)
        N._k = builds[b]
        t0 = time.perf_counter()
        if b or a_kernels:
            net.step(X, rows, scale[rows], None, None, hp, args.threads)
        else:
            step_a(net, X, rows, scale[rows], hp, args.threads, args.a)
        return time.perf_counter() - t0

    with N.blas_threads_limit(net.layer_units, 256):
        T, C = interleaved_epochs(X.shape[0], lens, rng, args.epochs, step)
    for h, kind in ((0, "ordinary"), (1, "with an almost-full row")):
        a, b = 1e3 * T[:, h] / C[:, h]
        print(f"batches {kind}: {C[0, h]:.0f} on A, {C[1, h]:.0f} on B; "
              f"ms per step A / B: {a:.2f} / {b:.2f} ({b / a:.3f})")
    print_epochs(T, C)
    if timed is not None:
        print(f"B, ms per ordinary step ({1e3 * T[1, 0] / C[1, 0]:.2f} in all):")
        for name, sec in sorted(timed.seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {name:32s} {1e3 * sec / C[1, 0]:8.3f}")


if __name__ == "__main__":
    main()
