"""
Drop rows, reduce, select, or train on the sparse rows directly?
================================================================

A recurring question: *"My inputs have more than a million features, more
than 99% of them are zero, and a very few rows are almost full. How should I
train a neural network on that?"* The usual answers are to drop rows by their
number of non-zeros, to reduce the dimension first (PCA / truncated SVD), to
keep only the most useful columns, or to learn an embedding. This example puts
numbers on those answers on the built-in data set shaped like that question
(:func:`sksparsenn.datasets.make_sparse_regression`: 2**20 count features,
about 100 non-zeros per ordinary row, one row in 2,000 almost full, 8 targets
from a nonlinear teacher), with one train/test split shared by all
strategies:

a. **Ridge** on the L2-normalised rows: the linear bar that a network has to
   beat to be worth its cost.
b. **Drop rows by non-zero count**, as one answer suggests ("only include
   vectors with more than n nonzero values", n = the median here), then the
   sparse MLP on the rows that remain; scored on the *full* test set, since
   at prediction time no row can be thrown away.
c. **Truncated SVD** (the sparse-input form of PCA) to 64 dense components,
   then scikit-learn's :class:`~sklearn.neural_network.MLPRegressor`.
d. **Univariate feature selection**: the 20,000 columns with the largest
   F-statistics, then :class:`sksparsenn.SparseMLPRegressor`.
e. :class:`sksparsenn.SparseMLPRegressor` on all 2**20 columns, with the
   settings of ``python -m sksparsenn``: its first layer *is* a learned
   embedding (a 128-vector per feature, combined per row with the row's
   values, scaled by the row's L2 norm so that almost-full rows stay on the
   scale of the others).
f. The same network as a feature extractor,
   :class:`sksparsenn.SparseMLPTransformer`, feeding a Ridge: the
   "embeddings, then a simple model" recipe in one Pipeline.

The table and the bar chart report test R^2 (mean over the 8 targets) and the
wall-clock time of ``fit``, preprocessing included.

Run it with ``python plot_sparse_strategies.py [--n-samples 30000]
[--out sparse_strategies.png]``; the defaults take about 3.5 minutes on 2
cores.
"""

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import TruncatedSVD  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.feature_selection import SelectKBest, f_regression  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import Normalizer  # noqa: E402

from sksparsenn import SparseMLPRegressor, SparseMLPTransformer  # noqa: E402
from sksparsenn.datasets import make_sparse_regression  # noqa: E402

# The MLPs are capped at a few epochs on purpose (time budget); the warning
# that they did not converge would only clutter the output.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

# The settings of ``python -m sksparsenn`` (see sksparsenn/__main__.py): plain
# SGD with momentum, because Adam's per-coordinate steps let rare features
# memorise the training rows on this kind of data.
SPARSE_MLP_PARAMS = dict(
    hidden_layer_sizes=(128,),
    solver="sgd",
    learning_rate_init=0.05,
    alpha=1e-4,
    row_scaling="l2",
    early_stopping=True,
    n_iter_no_change=2,
    max_iter=20,
    batch_size=256,
    random_state=0,
)


def f_regression_multi(X, y):
    """Sum of the per-target F-statistics of each column.

    ``f_regression`` takes a single target; summing over the 8 targets keeps
    a column that is strongly related to any of them.
    """
    y = np.asarray(y)
    if y.ndim == 1:
        return f_regression(X, y)[0]
    scores = np.zeros(X.shape[1])
    for j in range(y.shape[1]):
        # Constant columns give NaN F-statistics; they carry no signal.
        scores += np.nan_to_num(f_regression(X, y[:, j])[0])
    return scores


class KeepRowsAboveNnz:
    """Fit ``estimator`` only on the training rows with more than ``n`` non-zeros.

    ``n`` is a quantile of the training rows' non-zero counts. Resampling rows
    is not something a scikit-learn transformer can do inside a Pipeline, so
    this small wrapper does it in ``fit`` and predicts every row.
    """

    def __init__(self, estimator, quantile=0.5):
        self.estimator = estimator
        self.quantile = quantile

    def fit(self, X, y):
        nnz = X.getnnz(axis=1)
        self.threshold_ = float(np.quantile(nnz, self.quantile))
        keep = nnz > self.threshold_
        self.n_rows_kept_ = int(keep.sum())
        self.n_rows_seen_ = X.shape[0]
        self.estimator.fit(X[keep], y[keep])
        return self

    def score(self, X, y):
        return self.estimator.score(X, y)


def build_strategies(n_features):
    """(label, estimator, note) per strategy; notes are filled in after fit."""
    return [
        (
            "a. Ridge on L2-normalised rows",
            make_pipeline(Normalizer(), Ridge(alpha=1.0, solver="sparse_cg")),
            lambda est: "linear bar",
        ),
        (
            "b. drop rows (nnz <= median) + SparseMLP",
            KeepRowsAboveNnz(SparseMLPRegressor(**SPARSE_MLP_PARAMS), quantile=0.5),
            lambda est: (
                f"kept {est.n_rows_kept_:,} of {est.n_rows_seen_:,} train rows "
                f"(nnz > {est.threshold_:.0f}), {est.estimator.n_iter_} epochs"
            ),
        ),
        (
            "c. TruncatedSVD(64) + MLPRegressor",
            make_pipeline(
                Normalizer(),
                TruncatedSVD(n_components=64, random_state=0),
                MLPRegressor(hidden_layer_sizes=(128,), early_stopping=True, random_state=0),
            ),
            lambda est: (
                f"64 components, {est[1].explained_variance_ratio_.sum():.0%} of variance, "
                f"{est[2].n_iter_} epochs"
            ),
        ),
        (
            "d. SelectKBest(20,000) + SparseMLP",
            make_pipeline(
                SelectKBest(f_regression_multi, k=20_000),
                SparseMLPRegressor(**SPARSE_MLP_PARAMS),
            ),
            lambda est: f"20,000 of {n_features:,} columns, {est[1].n_iter_} epochs",
        ),
        (
            "e. SparseMLPRegressor (all columns)",
            SparseMLPRegressor(**SPARSE_MLP_PARAMS),
            lambda est: f"all {n_features:,} columns, {est.n_iter_} epochs",
        ),
        (
            "f. SparseMLPTransformer + Ridge",
            make_pipeline(SparseMLPTransformer(**SPARSE_MLP_PARAMS), Ridge()),
            lambda est: f"128 learned features, {est[0].n_iter_} epochs",
        ),
    ]


def plot_results(results, out, n_train, n_test):
    labels = [r["label"] for r in results]
    r2 = np.array([r["r2"] for r in results])
    fit_s = np.array([r["fit_seconds"] for r in results])

    fig, ax = plt.subplots(figsize=(9, 0.6 * len(results) + 1.6), layout="constrained")
    ypos = np.arange(len(results))[::-1]  # first strategy on top
    colors = ["0.6" if lab.startswith("a.") else "tab:blue" for lab in labels]
    ax.barh(ypos, r2, color=colors, height=0.6)
    ax.set_yticks(ypos, labels)
    # The Ridge line makes "better than linear?" readable at a glance.
    ax.axvline(r2[0], color="0.4", linestyle="--", linewidth=1)
    ax.axvline(0, color="black", linewidth=0.8)
    lo = min(0.0, r2.min() - 0.05)
    hi = max(r2.max(), 0.0)
    # Room on the right for the annotations.
    ax.set_xlim(lo, hi + 0.4 * (hi - lo))
    for y, v, s in zip(ypos, r2, fit_s):
        ax.annotate(
            f"R$^2$ {v:.3f}  |  fit {s:.0f} s",
            xy=(max(v, 0.0), y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
            # Keeps the text legible where the dashed Ridge line crosses it.
            bbox=dict(facecolor="white", edgecolor="none", pad=1),
        )
    ax.set_xlabel("test R$^2$ (mean over 8 targets; dashed line: Ridge)")
    ax.set_title(
        f"Strategies for 2**20 sparse features with rare almost-full rows\n"
        f"{n_train:,} train rows, {n_test:,} test rows",
        fontsize=11,
    )
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument(
        "--n-samples",
        type=int,
        # 30,000 keeps the whole script within a few minutes on 2 cores even
        # when the machine is shared; the ranking is the same at 40,000.
        default=30_000,
        help="rows of the generated data set, 80%% train / 20%% test (default: 30000)",
    )
    p.add_argument(
        "--out",
        type=Path,
        # Next to this script, wherever it is run from.
        default=Path(__file__).resolve().with_name("sparse_strategies.png"),
        help="path of the bar chart PNG (default: sparse_strategies.png next to this script)",
    )
    args = p.parse_args(argv)

    tic = time.perf_counter()
    X, y = make_sparse_regression(n_samples=args.n_samples, n_features=2**20, random_state=0)
    nnz = X.getnnz(axis=1)
    n_full = int((nnz > 0.1 * X.shape[1]).sum())
    print(
        f"data: {X.shape[0]:,} rows x {X.shape[1]:,} features, {X.nnz:,} non-zeros "
        f"({X.nnz / (X.shape[0] * X.shape[1]):.4%} dense; median {np.median(nnz):.0f} per row, "
        f"{n_full} almost-full rows hold {nnz[nnz > 0.1 * X.shape[1]].sum() / X.nnz:.0%} "
        f"of them), {y.shape[1]} targets [{time.perf_counter() - tic:.1f}s]"
    )
    # The generator draws rows i.i.d., so a head/tail split is a random split
    # and is identical for every strategy.
    n_train = int(0.8 * X.shape[0])
    X_train, X_test, y_train, y_test = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    print(
        f"train: {n_train:,} rows ({int((nnz[:n_train] > 0.1 * X.shape[1]).sum())} almost full), "
        f"test: {X_test.shape[0]:,} rows "
        f"({int((nnz[n_train:] > 0.1 * X.shape[1]).sum())} almost full)\n"
    )

    results = []
    for label, estimator, note in build_strategies(X.shape[1]):
        print(f"fitting {label} ...", flush=True)
        tic = time.perf_counter()
        estimator.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - tic
        r2 = estimator.score(X_test, y_test)
        results.append(
            dict(label=label, r2=r2, fit_seconds=fit_seconds, note=note(estimator))
        )
        print(f"    test R^2 = {r2:.4f}, fit {fit_seconds:.1f}s", flush=True)

    width = max(len(r["label"]) for r in results)
    header = f"{'strategy':<{width}}  {'test R^2':>8}  {'fit s':>6}  note"
    print(f"\nresults on {X_test.shape[0]:,} test rows\n{header}\n{'-' * (len(header) + 40)}")
    for r in results:
        print(f"{r['label']:<{width}}  {r['r2']:8.4f}  {r['fit_seconds']:6.1f}  {r['note']}")

    plot_results(results, args.out, n_train, X_test.shape[0])
    print(f"\nbar chart saved to {args.out}")


if __name__ == "__main__":
    main()
