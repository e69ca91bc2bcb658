"""Synthetic data shaped like very wide, very sparse regression problems.

The one generator here, :func:`make_sparse_regression`, makes count rows with
a Zipf-like feature distribution, a few almost-full rows and targets from a
nonlinear teacher network: the kind of data the estimators are made for.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_targets": [Interval(Integral, 1, None, closed="left")],
        "mean_nnz": [Interval(Real, 1, None, closed="left")],
        "nnz_sigma": [Interval(Real, 0, None, closed="left")],
        "zipf_exponent": [Interval(Real, 0, None, closed="left")],
        "dense_row_fraction": [Interval(Real, 0, 1, closed="both")],
        "dense_row_density": [Interval(Real, 0, 1, closed="both")],
        "n_teacher_units": [Interval(Integral, 1, None, closed="left")],
        "n_informative": [Interval(Integral, 1, None, closed="left"), None],
        "linear_share": [Interval(Real, 0, 1, closed="both")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "dtype": "no_validation",
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_sparse_regression(
    n_samples=20000,
    n_features=2**20,
    n_targets=8,
    *,
    mean_nnz=140.0,
    nnz_sigma=0.5,
    zipf_exponent=1.0,
    dense_row_fraction=0.0005,
    dense_row_density=0.3,
    n_teacher_units=8,
    n_informative=1000,
    linear_share=0.3,
    noise=0.1,
    dtype=np.float32,
    random_state=None,
):
    """Generate a sparse regression problem like bag-of-words or hashed counts.

    Rows are count vectors: each ordinary row draws a lognormal number of
    tokens (``mean_nnz`` draws on average) from a Zipf-like distribution over the
    features, so a few features are in most rows and most features are rare.
    A fraction ``dense_row_fraction`` of the rows are almost full: about
    ``dense_row_density`` of all features are non-zero in them. With the
    defaults and n_features = 2**20, these few rows hold more non-zeros than
    all the ordinary rows together.

    The targets come from a random teacher network applied to the
    L2-normalised rows ``u = x / ||x||``: ``z = u @ W`` with W standard
    normal, centred and scaled to unit variance over the rows, and
    ``y = sqrt(linear_share) * (u @ L) + sqrt(1 - linear_share) * |z| @ V``,
    each part standardised per target, plus Gaussian noise. The ``|z|`` part
    is even in ``z``, so a linear model cannot fit it: a network can beat
    Ridge by up to about ``1 - linear_share`` of R^2. The targets of almost-full
    rows are on the same scale as the others.

    Parameters
    ----------
    n_samples : int, default=20000
        Number of rows.

    n_features : int, default=2**20
        Number of columns; memory and time grow with the number of
        non-zeros, not with n_features.

    n_targets : int, default=8
        Number of regression targets K.

    mean_nnz : float, default=140.0
        Mean number of token draws per ordinary row. Frequent features are
        drawn several times in a row and their counts summed, so the stored
        non-zeros are fewer: about 100 per row with the defaults.

    nnz_sigma : float, default=0.5
        Sigma of the lognormal distribution of draws per row.

    zipf_exponent : float, default=1.0
        Feature ``r`` (by frequency rank) is drawn with probability
        proportional to ``(r + 1) ** -zipf_exponent``; ranks are mapped to
        column numbers by a random permutation.

    dense_row_fraction : float, default=0.0005
        Fraction of rows that are almost full (at least one when > 0).

    dense_row_density : float, default=0.3
        Fraction of all features present in an almost-full row.

    n_teacher_units : int, default=8
        Hidden units of the teacher network.

    n_informative : int or None, default=1000
        Only the ``n_informative`` most frequent features have non-zero
        teacher weights; the others are noise that still counts in the row's
        norm (like the many irrelevant words of a text). None: all features.

    linear_share : float, default=0.3
        Share of the targets' signal variance that is linear in ``u``.

    noise : float, default=0.1
        Standard deviation of the Gaussian noise added to the standardised
        targets.

    dtype : numpy float type, default=np.float32
        dtype of X and y.

    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same data.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features)
        Counts, with sorted indices and no duplicates.

    y : ndarray of shape (n_samples, n_targets)
        Targets.

    See Also
    --------
    sklearn.datasets.make_regression : Dense linear regression problems.
    sksparsenn.SparseMLPRegressor : The network these data sets are made for.

    Examples
    --------
    >>> from sksparsenn.datasets import make_sparse_regression
    >>> X, y = make_sparse_regression(n_samples=1000, n_features=2**18,
    ...                               random_state=0)
    >>> X.shape, y.shape
    ((1000, 262144), (1000, 8))
    >>> bool(X.getnnz(axis=1).max() > 50 * X.getnnz(axis=1).mean())
    True

    The rows are count vectors with sorted indices; their number of
    non-zeros spans orders of magnitude:

    >>> X.has_sorted_indices, X.dtype
    (True, dtype('float32'))
    >>> int((X.getnnz(axis=1) > 0.1 * X.shape[1]).sum())  # almost-full rows
    1
    """
    rng = check_random_state(random_state)
    gen = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))

    # Ordinary rows: lognormal number of draws from a Zipf-like distribution.
    mu = np.log(mean_nnz) - nnz_sigma**2 / 2
    draws = np.maximum(1, np.rint(gen.lognormal(mu, nnz_sigma, n_samples))).astype(np.int64)
    weights = (np.arange(1, n_features + 1, dtype=np.float64)) ** -float(zipf_exponent)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    # Sorted queries make the binary searches cache-friendly; the draws are
    # i.i.d., so shuffling the result restores their independence from rows.
    u = gen.random(int(draws.sum()))
    u.sort()
    ranks = np.searchsorted(cdf, u, side="right")
    del u
    np.minimum(ranks, n_features - 1, out=ranks)
    gen.shuffle(ranks)
    rank_to_col = gen.permutation(n_features)
    indices = rank_to_col[ranks]
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(draws, out=indptr[1:])
    X = sp.csr_matrix(
        (np.ones(indices.shape[0], dtype=dtype), indices, indptr),
        shape=(n_samples, n_features),
    )
    X.sum_duplicates()

    # Almost-full rows: a density-sized random subset of all features each.
    n_dense = 0
    if dense_row_fraction > 0 and dense_row_density > 0:
        n_dense = max(1, int(round(dense_row_fraction * n_samples)))
    if n_dense:
        dense_rows = np.sort(gen.choice(n_samples, size=n_dense, replace=False))
        cols, lens = [], []
        for _ in range(n_dense):
            c = np.flatnonzero(gen.random(n_features) < dense_row_density)
            cols.append(c)
            lens.append(c.shape[0])
        counts = np.zeros(n_samples, dtype=np.int64)
        counts[dense_rows] = lens
        d_indptr = np.zeros(n_samples + 1, dtype=np.int64)
        np.cumsum(counts, out=d_indptr[1:])
        d_indices = np.concatenate(cols) if cols else np.empty(0, np.int64)
        d_data = (1 + gen.poisson(0.5, d_indices.shape[0])).astype(dtype)
        D = sp.csr_matrix((d_data, d_indices, d_indptr), shape=(n_samples, n_features))
        X = (X + D).tocsr()
        X.sum_duplicates()

    # Teacher network on the L2-normalised rows. Weights are drawn only for
    # the columns present in X, in column order, so memory is O(nnz); only
    # the n_informative most frequent features carry signal.
    present = np.flatnonzero(np.bincount(X.indices, minlength=n_features))
    k = n_teacher_units
    W_present = gen.standard_normal((present.shape[0], k))
    L_present = gen.standard_normal((present.shape[0], n_targets))
    if n_informative is not None and n_informative < n_features:
        col_rank = np.empty(n_features, dtype=np.int64)
        col_rank[rank_to_col] = np.arange(n_features)
        noise_cols = col_rank[present] >= n_informative
        W_present[noise_cols] = 0.0
        L_present[noise_cols] = 0.0
    col_pos = np.full(n_features, -1, dtype=np.int64)
    col_pos[present] = np.arange(present.shape[0])
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64)).ravel()
    norms[norms == 0] = 1.0
    U = sp.csr_matrix(
        (X.data.astype(np.float64), col_pos[X.indices], X.indptr),
        shape=(n_samples, present.shape[0]),
    )
    U = sp.diags(1.0 / norms) @ U
    Z = U @ W_present
    # Centred, so that |z| has no linear trend a linear model could pick up.
    Z -= Z.mean(axis=0)
    Z /= np.maximum(Z.std(axis=0), 1e-12)
    nonlinear = np.abs(Z) @ gen.standard_normal((k, n_targets))
    linear = U @ L_present

    def _standardize(A):
        A = A - A.mean(axis=0)
        std = A.std(axis=0)
        std[std == 0] = 1.0
        return A / std

    y = np.sqrt(linear_share) * _standardize(linear) + np.sqrt(1 - linear_share) * _standardize(
        nonlinear
    )
    y = _standardize(y) + noise * gen.standard_normal(y.shape)
    X = X.astype(dtype, copy=False)
    return X, y.astype(dtype)
