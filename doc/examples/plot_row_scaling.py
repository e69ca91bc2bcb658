"""
Almost-full rows and row scaling
================================

Rows of bag-of-words, count or one-hot data differ in their number of
non-zeros by orders of magnitude: most rows of the built-in data set have
about 100 non-zeros out of 2**20 columns, and a very few are almost full
(about 30% of the columns). This example shows how large that imbalance is,
and what each ``row_scaling`` option of :class:`sksparsenn.SparseMLPRegressor`
makes of it.

The first layer computes ``z = s * (x @ W1) + b1`` for a row ``x`` with scale
``s``. With random weights (as at initialisation), the size of ``z`` is
proportional to the Euclidean norm of the scaled row, ``s * ||x||``, so that
norm is what the right panel shows for each option.

Run it with ``python plot_row_scaling.py``; it takes a few seconds.
"""

import matplotlib.pyplot as plt
import numpy as np

from sksparsenn.datasets import make_sparse_regression

X, _ = make_sparse_regression(n_samples=5000, n_features=2**20, random_state=0)
nnz = X.getnnz(axis=1)  # stored non-zeros per row (no explicit zeros here)
norm = np.sqrt(np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64)).ravel()
full = nnz > 0.1 * X.shape[1]
print(f"{X.shape[0]:,} rows x {X.shape[1]:,} columns; median {np.median(nnz):.0f} "
      f"non-zeros per row; {full.sum()} almost-full rows with "
      f"{nnz[full].min():,} to {nnz[full].max():,} non-zeros hold "
      f"{nnz[full].sum() / X.nnz:.0%} of all non-zeros")

# The scale factor of each option (see the row_scaling parameter).
scales = {
    "none": np.ones_like(norm),
    "mean": 1.0 / nnz,
    "sqrt": 1.0 / np.sqrt(nnz),
    "l2": 1.0 / norm,
}

fig, (ax_nnz, ax_norm) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")

bins = np.logspace(0, np.log10(X.shape[1]), 60)
ax_nnz.hist(nnz, bins=bins, color="tab:blue")
ax_nnz.set_xscale("log")
ax_nnz.set_yscale("log")
ax_nnz.set_xlabel("non-zeros in the row")
ax_nnz.set_ylabel("number of rows")
ax_nnz.set_title("Non-zeros per row")
ax_nnz.annotate(f"{full.sum()} almost-full rows", xy=(np.median(nnz[full]), 1),
                xytext=(0, 40), textcoords="offset points", ha="center",
                arrowprops=dict(arrowstyle="->"))

for (name, s), color in zip(scales.items(), ["tab:red", "tab:orange", "tab:green", "tab:blue"]):
    ratio = np.median((s * norm)[full]) / np.median(s * norm)
    ax_norm.scatter(nnz[~full], (s * norm)[~full], s=4, color=color, alpha=0.5,
                    label=f"{name!r}: almost-full / median row = {ratio:.3g}")
    ax_norm.scatter(nnz[full], (s * norm)[full], s=40, color=color, edgecolor="black")
    print(f"row_scaling={name!r:7} norm of the scaled row: median {np.median(s * norm):.3g}, "
          f"almost-full rows {np.median((s * norm)[full]):.3g}")
ax_norm.set_xscale("log")
ax_norm.set_yscale("log")
ax_norm.set_xlabel("non-zeros in the row")
ax_norm.set_ylabel("norm of the scaled row, s * ||x||")
ax_norm.set_title("What the first layer sees, per row_scaling")
ax_norm.legend(loc="upper left", fontsize=8, markerscale=3)
plt.show()
