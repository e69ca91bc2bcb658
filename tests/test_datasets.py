"""The data set generators: the chunked one forms one data set across chunks."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import normalize

from sksparsenn.datasets import make_sparse_regression, make_sparse_regression_chunks

KW = dict(n_features=2**14, n_informative=300, random_state=0)


def _chunks(n_chunks, size=2000, **kw):
    return list(make_sparse_regression_chunks(n_chunks, size, **dict(KW, **kw)))


def test_chunks_have_the_shape_and_structure_of_the_generator():
    chunks = _chunks(3)
    X_ref, _ = make_sparse_regression(n_samples=2000, **KW)
    for X, y in chunks:
        assert X.format == "csr" and X.shape == (2000, 2**14) and y.shape == (2000, 8)
        assert X.dtype == np.float32 and y.dtype == np.float32
        assert X.has_sorted_indices
        nnz = X.getnnz(axis=1)
        assert int((nnz > 0.1 * X.shape[1]).sum()) == 1  # one almost-full row per chunk
        # same row distribution as make_sparse_regression (mean non-zeros per ordinary row)
        ordinary = nnz[nnz < 0.1 * X.shape[1]].mean()
        ref = X_ref.getnnz(axis=1)
        assert abs(ordinary - ref[ref < 0.1 * X.shape[1]].mean()) < 0.05 * ordinary


def test_chunk_i_depends_only_on_the_seed_and_i():
    a, b = _chunks(3), _chunks(2)
    for (Xa, ya), (Xb, yb) in zip(a, b):
        assert (Xa != Xb).nnz == 0
        np.testing.assert_array_equal(ya, yb)
    assert (a[0][0] != a[1][0]).nnz > 0  # chunks differ from each other
    other = _chunks(1, random_state=1)
    assert (other[0][0] != a[0][0]).nnz > 0


def test_targets_are_standardised_over_all_chunks():
    y = np.vstack([y for _, y in _chunks(4)])
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=0.1)
    np.testing.assert_allclose(y.std(axis=0), 1, atol=0.1)


def test_one_teacher_for_all_chunks():
    # A linear model fitted on one chunk predicts another: the targets of all
    # chunks come from the same teacher (independent teachers would give R^2 <= 0).
    (X0, y0), (X1, y1) = _chunks(2, size=4000, n_informative=100)
    ridge = Ridge(alpha=1.0).fit(normalize(X0), y0)
    assert ridge.score(normalize(X1), y1) > 0.15


def test_chunks_validate_their_parameters():
    with pytest.raises(ValueError, match="n_chunks"):
        next(make_sparse_regression_chunks(0, 100))
    with pytest.raises(ValueError, match="chunk_size"):
        next(make_sparse_regression_chunks(2, -1))
