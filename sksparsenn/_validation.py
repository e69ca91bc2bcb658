"""Input conversion and the structural checks that keep the kernels safe.

The kernels run without bounds checks; everything they index is checked
here first, in O(nnz) vectorised numpy, before any kernel runs.
"""

import numpy as np
import scipy.sparse as sp


def check_sparse_structure(X):
    """Check the index arrays of raw sparse input before anything reads them.

    scipy's own conversions (dtype casts, format changes, sorting) run C++
    code on these arrays without checking them, so a malformed matrix must
    be rejected before ``validate_data`` converts it.
    """
    if not sp.issparse(X):
        return
    if X.format == "csr":
        check_csr_structure(X)
    elif X.format == "csc":
        check_csr_structure(X, transposed=True)
    elif X.format == "coo":
        n_samples, n_features = X.shape
        row, col = X.coords if hasattr(X, "coords") else (X.row, X.col)
        if not (row.shape == col.shape == X.data.shape):
            raise ValueError(
                "Malformed COO matrix: row, col and data must have the same length, "
                f"got {row.shape[0]}, {col.shape[0]} and {X.data.shape[0]}."
            )
        for name, idx, bound in (("row", row, n_samples), ("column", col, n_features)):
            if idx.shape[0] and (idx.min() < 0 or idx.max() >= bound):
                raise ValueError(
                    f"Malformed COO matrix: {name} indices must be in [0, {bound}), "
                    f"found values from {idx.min()} to {idx.max()}."
                )


def as_kernel_csr(X, dtype, owned=False):
    """Return X as a CSR matrix whose arrays the kernels can take as they are.

    ``X`` has already been through ``validate_data`` (so it is CSR or a dense
    ndarray of ``dtype``, with finite values). Dense input is converted to CSR
    (one copy). Sparse input is copied only when it must be: when its index
    arrays have different dtypes, or when it has duplicate entries (these are
    summed, as scipy does, so that row scaling sees the same row as the clean
    equivalent). The caller's arrays are never modified: ``owned`` says that
    X is already a private copy (made by the dtype or format conversion), which
    may then be canonicalised in place instead of copied again.
    """
    if not sp.issparse(X):
        X = sp.csr_matrix(np.asarray(X, dtype=dtype))
    if X.format != "csr":
        X = X.tocsr()
    if X.dtype != dtype:
        X = X.astype(dtype)
    check_csr_structure(X)
    # The kernels take int32 or int64 indices, the same type for both arrays.
    kernel_types = (np.dtype(np.int32), np.dtype(np.int64))
    if X.indices.dtype != X.indptr.dtype or X.indices.dtype not in kernel_types:
        index_dtype = np.int32 if (X.indices.dtype == X.indptr.dtype == np.int32) else np.int64
        if max(X.shape) < np.iinfo(np.int32).max and X.nnz < np.iinfo(np.int32).max:
            index_dtype = np.int32
        X = _csr_with(X, X.data, X.indices.astype(index_dtype), X.indptr.astype(index_dtype))
    if not X.has_canonical_format:
        if not owned:
            X = X.copy()
        X.sum_duplicates()
    if not (X.data.flags.c_contiguous and X.indices.flags.c_contiguous
            and X.indptr.flags.c_contiguous):
        X = _csr_with(
            X,
            np.ascontiguousarray(X.data),
            np.ascontiguousarray(X.indices),
            np.ascontiguousarray(X.indptr),
        )
    return X


def _csr_with(X, data, indices, indptr):
    return sp.csr_matrix((data, indices, indptr), shape=X.shape, copy=False)


def check_csr_structure(X, transposed=False):
    """Raise ValueError if X's CSR arrays would make a kernel read out of bounds.

    With ``transposed``, X is CSC and is checked as the CSR of its transpose.
    """
    n_samples, n_features = X.shape[::-1] if transposed else X.shape
    indptr, indices, data = X.indptr, X.indices, X.data
    fmt = "CSC" if transposed else "CSR"
    if indptr.ndim != 1 or indptr.shape[0] != n_samples + 1:
        raise ValueError(
            f"Malformed {fmt} matrix: indptr has length {indptr.shape[0]}, "
            f"expected {n_samples + 1}."
        )
    if not (np.issubdtype(indptr.dtype, np.integer)
            and np.issubdtype(indices.dtype, np.integer)):
        raise TypeError(
            f"Malformed {fmt} matrix: indices and indptr must be integer arrays, "
            f"got {indices.dtype} and {indptr.dtype}."
        )
    if indptr[0] != 0:
        raise ValueError(f"Malformed {fmt} matrix: indptr[0] is {indptr[0]}, expected 0.")
    nnz = indptr[-1]
    if nnz != indices.shape[0] or nnz != data.shape[0]:
        raise ValueError(
            f"Malformed {fmt} matrix: indptr[-1] is {nnz} but indices has "
            f"{indices.shape[0]} and data has {data.shape[0]} entries."
        )
    if n_samples and np.any(indptr[1:] < indptr[:-1]):
        raise ValueError(f"Malformed {fmt} matrix: indptr is not non-decreasing.")
    if nnz:
        lo, hi = indices.min(), indices.max()
        if lo < 0 or hi >= n_features:
            raise ValueError(
                f"Malformed {fmt} matrix: indices must be in [0, {n_features}), "
                f"found values from {lo} to {hi}."
            )
