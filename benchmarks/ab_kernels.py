"""Two builds of the kernels compared batch by batch inside one training run.

Trains ``SparseNetwork`` on the built-in data, as ``profile_step.py`` does,
and before each batch picks one of two builds of the kernels at random
(seeded). Both builds see the same machine state over the same epoch, so the
drift of a shared machine (2x between runs of the same code here) cancels
out of their ratio. Both builds must give bit-identical results (the
baseline and AVX2 builds do, tests/test_dispatch.py), so that the training
trajectory does not depend on the draw; for builds that differ in results,
compare whole runs instead (``profile_step.py --kernels``).

``--a`` and ``--b`` are ``baseline`` or ``avx2`` (the installed builds) or
the path of a ``_sparse_kernels*.so`` kept from another build.
``--alpha`` sets the L2 penalty (0 by default; the regressor's default is
1.0, the transformer's 1e-4). ``--a-separate`` makes A run parts of the step on their own, before
the forward pass, the way they ran before (``--b-separate`` the same for B;
by default each runs the step as ``SparseNetwork.step`` does, and the
results are the same either way): ``grouping``, the
grouping of the batch by feature, which otherwise one thread does during
the forward pass; ``catch-up``, the rows' pending decay, which otherwise
the forward and update kernels apply on the way (see
``profile_step.timed_step``). ``--a-threads``/``--b-threads`` give A and
B their own thread counts (default ``--threads``): the kernels give the
same results for any number of threads, so ``--a avx2 --b avx2
--a-threads 1 --b-threads 2`` measures the speedup from 1 to 2 threads
batch by batch, phase by phase. Prints the
ms per batch of each phase for each build, ordinary batches and batches
with an almost-full row apart, and the epoch time each build's per-batch
means add up to.

    python benchmarks/ab_kernels.py [--a baseline] [--b avx2]
        [--solver rowwise_adagrad] [--n-samples 180000] [--threads 2] [--epochs 2]
        [--alpha 0] [--a-separate grouping catch-up] [--b-separate ...]
        [--a-threads N] [--b-threads N]
"""

import argparse

from profile_step import (PHASES, SEPARABLE, interleaved_epochs, load_kernels, print_epochs,
                          setup, timed_step)
from sksparsenn import _network as N


def kernels(spec):
    """The build named by ``spec``: "baseline", "avx2" or the path of a .so.

    The installed builds come from ``select_kernels``, which never imports the
    AVX2 build on a processor without AVX2 (it warns and gives the baseline;
    the printed instruction set then says so).
    """
    if spec in ("baseline", "avx2"):
        return N.select_kernels(spec)
    return load_kernels(spec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", default="baseline")
    p.add_argument("--b", default="avx2")
    p.add_argument("--solver", default="rowwise_adagrad", choices=sorted(N.SOLVERS))
    p.add_argument("--n-samples", type=int, default=180_000)
    p.add_argument("--n-features", type=int, default=2**20)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--a-threads", type=int, default=None, help="A's threads (default --threads)")
    p.add_argument("--b-threads", type=int, default=None, help="B's threads (default --threads)")
    p.add_argument("--epochs", type=int, default=2,
                   help="the last one is reported (the first maps the solver state's pages)")
    p.add_argument("--alpha", type=float, default=0.0)
    p.add_argument("--a-separate", nargs="+", default=[], choices=SEPARABLE,
                   help="parts of the step A runs on their own (see above)")
    p.add_argument("--b-separate", nargs="+", default=[], choices=SEPARABLE,
                   help="parts of the step B runs on their own")
    args = p.parse_args()
    threads = [args.threads if t is None else t for t in (args.a_threads, args.b_threads)]
    builds = [kernels(args.a), kernels(args.b)]
    for name, k in zip("AB", builds):
        print(f"{name}: {k.__file__} ({k.INSTRUCTION_SET})")

    X, y, lens, net, scale, hp, rng = setup(args)
    print(f"{X.shape[0]:,} rows x {X.shape[1]:,} features; solver={args.solver}, "
          f"threads A {threads[0]}, B {threads[1]}, alpha={args.alpha:g}"
          + "".join(f"; {name} runs on their own: {', '.join(parts)}"
                    for name, parts in (("A", args.a_separate), ("B", args.b_separate)) if parts))

    def step(b, rows, heavy, last):
        N._k = builds[b]
        return timed_step(net, X, y, rows, scale, hp, threads[b],
                          (args.a_separate, args.b_separate)[b])[0]

    with N.blas_threads_limit(net.layer_units, 256):
        T, C = interleaved_epochs(X.shape[0], lens, rng, args.epochs, step, (len(PHASES),))
    for h, kind in ((0, "ordinary"), (1, "with an almost-full row")):
        print(f"batches {kind}: {C[0, h]:.0f} on A, {C[1, h]:.0f} on B; ms per batch A / B (B/A)")
        for k, phase in enumerate(PHASES + ["total"]):
            a = T[0, h].sum() if phase == "total" else T[0, h, k]
            b = T[1, h].sum() if phase == "total" else T[1, h, k]
            a, b = 1e3 * a / C[0, h], 1e3 * b / C[1, h]
            print(f"  {phase:15s} {a:8.3f} / {b:8.3f}  ({b / a:.3f})")
    print_epochs(T, C)


if __name__ == "__main__":
    main()
