"""Synthetic data shaped like very wide, very sparse regression problems.

:func:`make_sparse_regression` makes count rows with a Zipf-like feature
distribution, a few almost-full rows and targets from a nonlinear teacher
network: the kind of data the estimators are made for.
:func:`make_sparse_regression_chunks` makes such a data set one chunk of rows
at a time, for data sets larger than memory.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params


# The data set's parameters, shared by both generators.
_DATA_CONSTRAINTS = {
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
}


@validate_params(
    {"n_samples": [Interval(Integral, 1, None, closed="left")], **_DATA_CONSTRAINTS},
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
    cdf = _zipf_cdf(n_features, zipf_exponent)
    ranks, indptr = _ordinary_rows(gen, n_samples, cdf, mean_nnz, nnz_sigma)
    rank_to_col = gen.permutation(n_features)
    X = _count_rows(gen, rank_to_col[ranks], indptr, n_features, dense_row_fraction,
                    dense_row_density, dtype)

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
    U = _unit_rows(X, present, n_features)
    V = gen.standard_normal((k, n_targets))
    parts = _teacher_parts(U, W_present, L_present, V)
    stats = _teacher_stats(parts, linear_share)
    y = _teacher_targets(parts, stats, linear_share)
    y += noise * gen.standard_normal(y.shape)
    X = X.astype(dtype, copy=False)
    return X, y.astype(dtype)


@validate_params(
    {
        "n_chunks": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        **_DATA_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def make_sparse_regression_chunks(
    n_chunks,
    chunk_size,
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
    """Generate a large sparse regression data set one chunk of rows at a time.

    The rows and targets follow :func:`make_sparse_regression`, but one
    feature order and one teacher network are drawn first and shared by all
    chunks, so that the chunks form one data set while only one chunk is in
    memory at a time: the memory is that of ``make_sparse_regression`` with
    ``n_samples=chunk_size``, whatever ``n_chunks``. Use it to write data
    sets larger than memory, for example as shards for
    :func:`sksparsenn.stream.fit_stream`.

    Two things differ from ``make_sparse_regression``: the teacher's weights
    are drawn for the features that carry signal only (all features if
    ``n_informative`` is None), and the targets are standardised with the
    means and standard deviations of the first chunk, so they are close to
    mean 0 and standard deviation 1 over all chunks rather than exactly.
    The same ``random_state`` therefore gives other data than
    ``make_sparse_regression``.

    Parameters
    ----------
    n_chunks : int
        Number of chunks to generate.

    chunk_size : int
        Rows per chunk.

    n_features : int, default=2**20
        Number of columns.

    n_targets : int, default=8
        Number of regression targets K.

    mean_nnz : float, default=140.0
        Mean number of token draws per ordinary row (see
        :func:`make_sparse_regression`).

    nnz_sigma : float, default=0.5
        Sigma of the lognormal distribution of draws per row.

    zipf_exponent : float, default=1.0
        Exponent of the Zipf-like feature distribution.

    dense_row_fraction : float, default=0.0005
        Fraction of each chunk's rows that are almost full (at least one per
        chunk when > 0).

    dense_row_density : float, default=0.3
        Fraction of all features present in an almost-full row.

    n_teacher_units : int, default=8
        Hidden units of the teacher network.

    n_informative : int or None, default=1000
        Only the ``n_informative`` most frequent features have non-zero
        teacher weights. None: all features (the teacher then holds
        ``n_features * (n_teacher_units + n_targets)`` float64 weights).

    linear_share : float, default=0.3
        Share of the targets' signal variance that is linear in the unit rows.

    noise : float, default=0.1
        Standard deviation of the Gaussian noise added to the standardised
        targets.

    dtype : numpy float type, default=np.float32
        dtype of X and y.

    random_state : int, RandomState instance or None, default=None
        Seed. Chunk ``i`` depends only on the seed and ``i``: the first
        chunks are the same whatever ``n_chunks``.

    Yields
    ------
    X : scipy.sparse.csr_matrix of shape (chunk_size, n_features)
        Counts, with sorted indices and no duplicates.

    y : ndarray of shape (chunk_size, n_targets)
        Targets.

    See Also
    --------
    make_sparse_regression : The same kind of data, all rows at once.
    sksparsenn.stream.save_npz_shards : Write (X, y) as shards on disk.
    sksparsenn.stream.fit_stream : Train through shards.

    Examples
    --------
    >>> from sksparsenn.datasets import make_sparse_regression_chunks
    >>> chunks = make_sparse_regression_chunks(3, 500, n_features=2**16,
    ...                                        random_state=0)
    >>> [(X.shape, y.shape) for X, y in chunks]
    [((500, 65536), (500, 8)), ((500, 65536), (500, 8)), ((500, 65536), (500, 8))]

    Chunk ``i`` does not depend on how many chunks are drawn:

    >>> X_a, _ = next(make_sparse_regression_chunks(3, 500, n_features=2**16,
    ...                                             random_state=0))
    >>> X_b, _ = next(make_sparse_regression_chunks(1, 500, n_features=2**16,
    ...                                             random_state=0))
    >>> (X_a != X_b).nnz
    0
    """
    rng = check_random_state(random_state)
    seed = int(rng.randint(np.iinfo(np.int32).max))
    base = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    cdf = _zipf_cdf(n_features, zipf_exponent)
    rank_to_col = base.permutation(n_features)
    if n_informative is not None and n_informative < n_features:
        columns = np.sort(rank_to_col[:n_informative])
    else:
        columns = np.arange(n_features)
    W = base.standard_normal((columns.shape[0], n_teacher_units))
    L = base.standard_normal((columns.shape[0], n_targets))
    V = base.standard_normal((n_teacher_units, n_targets))
    stats = None
    for i in range(n_chunks):
        # spawn_key (i + 1,): chunk i's own stream, independent of n_chunks
        gen = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i + 1,)))
        ranks, indptr = _ordinary_rows(gen, chunk_size, cdf, mean_nnz, nnz_sigma)
        X = _count_rows(gen, rank_to_col[ranks], indptr, n_features, dense_row_fraction,
                        dense_row_density, dtype)
        del ranks
        parts = _teacher_parts(_unit_rows(X, columns, n_features), W, L, V)
        if stats is None:
            stats = _teacher_stats(parts, linear_share)
        y = _teacher_targets(parts, stats, linear_share)
        y += noise * gen.standard_normal(y.shape)
        yield X.astype(dtype, copy=False), y.astype(dtype)


def _zipf_cdf(n_features, zipf_exponent):
    weights = (np.arange(1, n_features + 1, dtype=np.float64)) ** -float(zipf_exponent)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf


def _ordinary_rows(gen, n_samples, cdf, mean_nnz, nnz_sigma):
    """Frequency ranks of the ordinary rows' token draws, and their indptr."""
    mu = np.log(mean_nnz) - nnz_sigma**2 / 2
    draws = np.maximum(1, np.rint(gen.lognormal(mu, nnz_sigma, n_samples))).astype(np.int64)
    # Sorted queries make the binary searches cache-friendly; the draws are
    # i.i.d., so shuffling the result restores their independence from rows.
    u = gen.random(int(draws.sum()))
    u.sort()
    ranks = np.searchsorted(cdf, u, side="right")
    del u
    np.minimum(ranks, cdf.shape[0] - 1, out=ranks)
    gen.shuffle(ranks)
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(draws, out=indptr[1:])
    return ranks, indptr


def _count_rows(gen, indices, indptr, n_features, dense_row_fraction, dense_row_density, dtype):
    """CSR count rows from the ordinary draws, plus the almost-full rows."""
    n_samples = indptr.shape[0] - 1
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
    return X


def _unit_rows(X, columns, n_features):
    """The rows of X at unit L2 norm, restricted to ``columns`` (float64)."""
    col_pos = np.full(n_features, -1, dtype=np.int64)
    col_pos[columns] = np.arange(columns.shape[0])
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64)).ravel()
    norms[norms == 0] = 1.0
    pos = col_pos[X.indices]
    if (pos < 0).any():  # drop the entries outside ``columns``
        keep = np.concatenate(([0], np.cumsum(pos >= 0)))
        U = sp.csr_matrix(
            (X.data[pos >= 0].astype(np.float64), pos[pos >= 0], keep[X.indptr]),
            shape=(X.shape[0], columns.shape[0]),
        )
    else:
        U = sp.csr_matrix(
            (X.data.astype(np.float64), pos, X.indptr), shape=(X.shape[0], columns.shape[0])
        )
    return sp.diags(1.0 / norms) @ U


def _teacher_parts(U, W, L, V):
    """The teacher's pre-activations and linear part for the unit rows U."""
    return {"Z": U @ W, "V": V, "linear": U @ L}


def _mean_std(A):
    std = A.std(axis=0)
    std[std == 0] = 1.0
    return A.mean(axis=0), std


def _nonlinear(parts, stats):
    # Centred, so that |z| has no linear trend a linear model could pick up.
    Z = (parts["Z"] - stats["Z"][0]) / stats["Z"][1]
    return np.abs(Z) @ parts["V"]


def _teacher_stats(parts, linear_share):
    """Means and standard deviations that standardise the teacher's parts."""
    Z = parts["Z"]
    stats = {"Z": (Z.mean(axis=0), np.maximum(Z.std(axis=0), 1e-12))}
    stats["nonlinear"] = _mean_std(_nonlinear(parts, stats))
    stats["linear"] = _mean_std(parts["linear"])
    stats["y"] = _mean_std(_mix(parts, stats, linear_share))
    return stats


def _mix(parts, stats, linear_share):
    (m_n, s_n), (m_l, s_l) = stats["nonlinear"], stats["linear"]
    return (np.sqrt(linear_share) * ((parts["linear"] - m_l) / s_l)
            + np.sqrt(1 - linear_share) * ((_nonlinear(parts, stats) - m_n) / s_n))


def _teacher_targets(parts, stats, linear_share):
    m, s = stats["y"]
    return (_mix(parts, stats, linear_share) - m) / s
