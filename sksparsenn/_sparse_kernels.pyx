"""Kernels of the sparse first layer.

Everything here works on a CSR matrix given as its three arrays (``data``,
``indices``, ``indptr``) and on an array of row numbers (``rows``): a
minibatch is never copied out of X. The cost of every call is proportional to
the number of non-zeros in the rows it is given, never to ``n_features``.

* :func:`row_scales`: one scale factor per row (none / mean / sqrt / l2).
* :func:`sparse_forward`: ``Z[i] = scale[i] * sum_k x[rows[i], k] * W[k] + b``,
  reading rows with pending lazy regularisation as if caught up, and
  optionally grouping the batch by feature meanwhile.
* :func:`batch_transpose`: the batch's non-zeros grouped by feature, in
  O(batch nnz), without sorting.
* :func:`catch_up_rows`: apply the pending lazy regularisation to given
  rows (the reference for the kernels' on-the-fly catch-up; training no
  longer calls it).
* :func:`sparse_update`: the row-sparse gradient of ``W`` fused with the
  optimizer step and the rows' pending regularisation, feature by feature.
* :func:`sparse_gradient`: the same gradient, returned instead of applied
  (for tests and for users who want it).
* :func:`catch_up_all`: bring every row of ``W`` up to date.
* :func:`relu_backward`: the ReLU's derivative applied to a batch's delta.
* :func:`sampled_dot`, :func:`sampled_backward`: the autoencoder's decoder
  at sampled (row, column) pairs: the outputs, and the outputs with the
  loss's deltas and the backward product in one read of its rows.
* :func:`row_nonzeros`, :func:`reconstruction_pairs`: the autoencoder's
  sampled (row, column) pairs of a batch, from its rows and the draws.

Determinism: every output element is a sum taken in a fixed order (the order
of the non-zeros in the batch), and each element is written by exactly one
thread, so results do not depend on the number of threads.

Explicit zeros stored in X are skipped, so that a matrix with explicit zeros
trains exactly like its clean equivalent (they would otherwise count as
"touched" features for the lazy optimizers).
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.math cimport sqrt, sqrtf, exp
from libc.stdint cimport int32_t, int64_t

from ._openmp_helpers cimport omp_get_thread_num

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define SKS_PREFETCH_R(p) __builtin_prefetch((const void*)(p), 0, 3)
    #define SKS_PREFETCH_W(p) __builtin_prefetch((const void*)(p), 1, 3)
    #else
    #define SKS_PREFETCH_R(p) ((void)0)
    #define SKS_PREFETCH_W(p) ((void)0)
    #endif
    """
    void _prefetch_r "SKS_PREFETCH_R"(const void* p) noexcept nogil
    void _prefetch_w "SKS_PREFETCH_W"(const void* p) noexcept nogil

# A work queue shared by the threads of a parallel block: each call hands
# out the next item number. The forward passes use it instead of a dynamic
# prange because one thread groups the batch before it takes items: Cython
# makes every variable a prange body assigns both firstprivate and
# lastprivate, and for such a loop GCC puts a barrier before the first
# iteration, so that the other threads would wait for the grouping instead
# of starting on the items.
cdef extern from *:
    """
    static inline int64_t sks_next_item(int64_t* counter) {
        int64_t t;
    #ifdef _OPENMP
        #pragma omp atomic capture
    #endif
        t = (*counter)++;
        return t;
    }
    """
    int64_t _next_item "sks_next_item"(int64_t* counter) noexcept nogil

# This module is built twice from this file (sksparsenn/meson.build): as
# _sparse_kernels for any processor, and on x86-64 as _sparse_kernels_avx2
# with -mavx2. INSTRUCTION_SET says which build this is; cpu_has_avx2()
# whether the processor running it can execute the AVX2 build.
cdef extern from *:
    """
    #if defined(__AVX2__)
    #define SKS_INSTRUCTION_SET "avx2"
    #else
    #define SKS_INSTRUCTION_SET "baseline"
    #endif
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    static int sks_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }
    #else
    static int sks_cpu_has_avx2(void) { return 0; }
    #endif
    """
    const char* _INSTRUCTION_SET "SKS_INSTRUCTION_SET"
    int _cpu_has_avx2 "sks_cpu_has_avx2"() noexcept nogil

INSTRUCTION_SET = _INSTRUCTION_SET.decode("ascii")


def cpu_has_avx2():
    """Whether this processor, and its operating system, run AVX2 code.

    ``__builtin_cpu_supports`` checks the CPUID bit and that the operating
    system saves the 256-bit registers. Always False off x86-64.
    """
    return bool(_cpu_has_avx2())

ctypedef fused index_t:
    int32_t
    int64_t

# Solver codes, shared with sksparsenn/_network.py.
cdef enum:
    SOLVER_SGD = 0
    SOLVER_ADAM = 1
    SOLVER_ADAGRAD = 2
    SOLVER_ROWWISE_ADAGRAD = 3

# Row scaling codes, shared with sksparsenn/_network.py.
cdef enum:
    SCALE_NONE = 0
    SCALE_MEAN = 1
    SCALE_SQRT = 2
    SCALE_L2 = 3

# A row with more stored values than this is split into chunks of _CHUNK
# stored values in the forward pass, so that one almost-full row is shared by
# all threads instead of keeping one thread busy while the others idle. Each
# chunk reads whole weight rows (contiguous, H values) and sums them into a
# partial vector; the partials of a row are then added in chunk order.
# Chunk boundaries depend on the data only, never on the thread count.
cdef Py_ssize_t _SPLIT_NNZ = 4096
cdef Py_ssize_t _CHUNK = 2048
# How many non-zeros ahead the forward pass prefetches weight rows.
cdef Py_ssize_t _PREFETCH_AHEAD = 4
# How many stored values ahead the grouping of a batch prefetches slot[].
cdef Py_ssize_t _SLOT_AHEAD = 16
# How many features ahead the update prefetches the rows of W and of the
# solver state, and how many consecutive features a thread takes at a time.
# A prefetch pays only for a feature the same thread updates next: with
# chunks of 16, a prefetch 4 ahead went to the other thread's rows for 4
# features of every 16, and the first rows of each chunk arrived
# unannounced. Chunks of 256 keep the prefetches inside one thread's run of
# features while still sharing uneven work between the threads.
cdef Py_ssize_t _UPDATE_AHEAD = 4
cdef Py_ssize_t _UPDATE_CHUNK = 256


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _dot(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """``sum_h a[h] * b[h]`` in 16 interleaved partial sums.

    A plain running sum is one chain of dependent additions, which the
    compiler may not reorder (no -ffast-math) and so cannot vectorise: for
    H = 256 it costs about 1,000 cycles, more than the memory traffic of the
    row. Sixteen partial sums, added in a fixed tree, vectorise; the order
    depends on ``n`` only, so the result is the same for any thread count.
    """
    cdef floating part[16]
    cdef floating tail = 0
    cdef Py_ssize_t h = 0, k, n16 = n - n % 16
    for k in range(16):
        part[k] = 0
    while h < n16:
        for k in range(16):
            part[k] = part[k] + a[h + k] * b[h + k]
        h = h + 16
    for h in range(n16, n):
        tail = tail + a[h] * b[h]
    for k in range(8):
        part[k] = part[k] + part[k + 8]
    for k in range(4):
        part[k] = part[k] + part[k + 4]
    return ((part[0] + part[2]) + (part[1] + part[3])) + tail


cdef inline double _sum_squares_double(const floating* a, Py_ssize_t n) noexcept nogil:
    """``sum_h a[h]**2`` in double precision, in 8 interleaved partial sums
    (see :func:`_dot`)."""
    cdef double part[8]
    cdef double tail = 0
    cdef Py_ssize_t h = 0, k, n8 = n - n % 8
    for k in range(8):
        part[k] = 0
    while h < n8:
        for k in range(8):
            part[k] = part[k] + <double> a[h + k] * a[h + k]
        h = h + 8
    for h in range(n8, n):
        tail = tail + <double> a[h] * a[h]
    for k in range(4):
        part[k] = part[k] + part[k + 4]
    return ((part[0] + part[2]) + (part[1] + part[3])) + tail


cdef inline floating _shrink(floating w, floating factor, floating thr) noexcept nogil:
    """``factor * soft(w, thr)`` without branches, so that loops vectorise."""
    cdef floating a = (w if w >= 0 else -w) - thr
    a = a if a > 0 else 0
    return factor * (a if w >= 0 else -a)


cdef inline void _prefetch_rows(const floating* w, const floating* s1, const floating* s2,
                                Py_ssize_t H, int n_state, bint rowwise) noexcept nogil:
    """Ask for a feature's row of W and of the solver state ahead of use.

    ``n_state`` full-width state rows follow W's (s1, then s2); ``rowwise``:
    s1 is one accumulator. Rows of features far apart in W are random
    accesses; without this, the update waits on memory latency rather than
    bandwidth.
    """
    cdef Py_ssize_t h = 0, step = 64 // sizeof(floating)
    if rowwise:
        _prefetch_w(s1)
    while h < H:
        _prefetch_w(&w[h])
        if n_state >= 1:
            _prefetch_w(&s1[h])
        if n_state >= 2:
            _prefetch_w(&s2[h])
        h = h + step


def row_scales(
    const floating[::1] data,    # IN  (nnz,)
    const index_t[::1] indptr,   # IN  (n_rows + 1,)
    int mode,
    floating[::1] out,           # OUT (n_rows,)
    int n_threads,
):
    """Per-row scale factors for row scaling ``mode``.

    ``mode`` is 0 (none: 1), 1 (mean: 1 / number of non-zero values),
    2 (sqrt: 1 / sqrt of that number) or 3 (l2: 1 / L2 norm of the row).
    An empty row gets 1. Sums of squares are taken in double precision so
    that values near the float32 limit do not overflow.
    """
    cdef Py_ssize_t n_rows = out.shape[0]
    cdef Py_ssize_t i, k
    cdef double count, sumsq, v

    with nogil:
        for i in prange(n_rows, schedule='static', num_threads=n_threads):
            count = 0
            sumsq = 0
            if mode != SCALE_NONE:
                for k in range(indptr[i], indptr[i + 1]):
                    v = data[k]
                    if v != 0:
                        count = count + 1
                        sumsq = sumsq + v * v
            if mode == SCALE_MEAN and count > 0:
                out[i] = <floating> (1.0 / count)
            elif mode == SCALE_SQRT and count > 0:
                out[i] = <floating> (1.0 / sqrt(count))
            elif mode == SCALE_L2 and sumsq > 0:
                out[i] = <floating> (1.0 / sqrt(sumsq))
            else:
                out[i] = 1


def _forward_items(const index_t[::1] indptr, const int64_t[::1] rows):
    """Work items of the forward pass: (position in batch, first k, end k, partial).

    An ordinary row is one item over all its stored values, written straight
    into Z (partial = -1). A row with more than _SPLIT_NNZ stored values
    becomes one item per chunk of _CHUNK values, each written into its own
    partial vector (partial = 0, 1, ...). Split rows come first, so that the
    dynamic schedule starts the long work early. Also returns, per split row,
    its position in the batch and its first partial (``heavy``, with a last
    entry closing the final row's range).
    """
    cdef Py_ssize_t n_rows = rows.shape[0]
    cdef Py_ssize_t i, r, n_items = 0, n_heavy = 0, n_parts = 0, pos, hpos, k0, k1, kk
    for i in range(n_rows):
        r = rows[i]
        if indptr[r + 1] - indptr[r] > _SPLIT_NNZ:
            n_heavy += 1
            n_parts += (indptr[r + 1] - indptr[r] + _CHUNK - 1) // _CHUNK
    n_items = n_parts + (n_rows - n_heavy)
    items_a = np.empty((n_items, 4), dtype=np.int64)
    heavy_a = np.empty((n_heavy + 1, 2), dtype=np.int64)
    cdef int64_t[:, ::1] it = items_a
    cdef int64_t[:, ::1] heavy = heavy_a
    pos = 0
    hpos = 0
    if n_heavy:
        for i in range(n_rows):
            r = rows[i]
            k0 = indptr[r]
            k1 = indptr[r + 1]
            if k1 - k0 > _SPLIT_NNZ:
                heavy[hpos, 0] = i
                heavy[hpos, 1] = pos
                hpos += 1
                for kk in range(k0, k1, _CHUNK):
                    it[pos, 0] = i
                    it[pos, 1] = kk
                    it[pos, 2] = min(kk + _CHUNK, k1)
                    it[pos, 3] = pos
                    pos += 1
    heavy[hpos, 0] = -1
    heavy[hpos, 1] = pos
    for i in range(n_rows):
        r = rows[i]
        if not (indptr[r + 1] - indptr[r] > _SPLIT_NNZ):
            it[pos, 0] = i
            it[pos, 1] = indptr[r]
            it[pos, 2] = indptr[r + 1]
            it[pos, 3] = -1
            pos += 1
    return items_a, heavy_a, n_parts


cdef inline void _row_sum(
    const floating[::1] data,
    const index_t[::1] indices,
    const floating[:, ::1] W,
    Py_ssize_t k0,
    Py_ssize_t k1,
    floating* z,                 # OUT (H,)
    const double* lazy_logp,     # IN  (n_features,) or NULL: no catch-up
    const double* lazy_acc,      # IN  (n_features,) or NULL: all 0
    double logp_now,
    double acc_now,
) noexcept nogil:
    """``z = sum_{k0 <= k < k1} data[k] * W'[indices[k]]``, in storage order.

    ``W'`` is W with each row's pending lazy regularisation applied on the
    fly (``lazy_logp``/``lazy_acc`` are the rows' marks, as in
    ``catch_up_rows``), with the same arithmetic as ``_catch_up_row``: the
    sum equals the one over caught-up rows bit for bit, and W is not
    written. Without marks (NULL), ``W' = W``.
    """
    cdef Py_ssize_t H = W.shape[1]
    cdef Py_ssize_t k, h, j
    cdef Py_ssize_t line = 64 // sizeof(floating)  # floats per cache line
    cdef floating v, factor = 1, thr = 0
    cdef bint behind
    cdef const floating* wrow
    for h in range(H):
        z[h] = 0
    for k in range(k0, k1):
        if k + _PREFETCH_AHEAD < k1:
            j = indices[k + _PREFETCH_AHEAD]
            wrow = &W[j, 0]
            h = 0
            while h < H:
                _prefetch_r(&wrow[h])
                h = h + line
            if lazy_logp != NULL:
                _prefetch_r(&lazy_logp[j])
                if lazy_acc != NULL:
                    _prefetch_r(&lazy_acc[j])
        v = data[k]
        if v != 0:
            j = indices[k]
            wrow = &W[j, 0]
            behind = lazy_logp != NULL and _catch_up_factors(
                lazy_logp[j], lazy_acc[j] if lazy_acc != NULL else 0.0, logp_now, acc_now,
                &factor, &thr)
            if not behind:
                for h in range(H):
                    z[h] = z[h] + v * wrow[h]
            elif thr == 0:  # L2 only
                for h in range(H):
                    z[h] = z[h] + v * (factor * wrow[h])
            else:
                for h in range(H):
                    z[h] = z[h] + v * _shrink(wrow[h], factor, thr)


cdef bint _grouping(int64_t[::1] slot, Py_ssize_t n_rows) except -1:
    """Whether a kernel is given a slot map to group its batch by feature
    (``batch_transpose``'s), after checking that it has one entry per row
    of W."""
    if slot is None:
        return False
    if slot.shape[0] != n_rows:
        raise ValueError("slot must have one entry per row of W")
    return True


def sparse_forward(
    const floating[::1] data,      # IN  (nnz,)
    const index_t[::1] indices,    # IN  (nnz,)
    const index_t[::1] indptr,     # IN  (n_samples + 1,)
    const int64_t[::1] rows,       # IN  (n_rows,) row numbers of the batch
    const floating[::1] scale,     # IN  (n_rows,) row scale of each batch row
    const floating[:, ::1] W,      # IN  (n_features, H)
    const floating[::1] bias,      # IN  (H,)
    floating[:, ::1] Z,            # OUT (n_rows, H)
    int n_threads,
    const double[::1] lazy_logp=None,  # IN (n_features,) lazy-regularisation marks
    const double[::1] lazy_acc=None,   # IN (n_features,)
    double logp_now=0.0,
    double acc_now=0.0,
    int64_t[::1] slot=None,            # IN/OUT (n_features,) all -1 on entry and exit
):
    """``Z[i] = scale[i] * (X[rows[i]] @ W) + bias``, parallel over rows.

    Rows with very many non-zeros are split into chunks of non-zeros (see
    ``_forward_items``) whose partial sums are added in chunk order. The
    chunks depend on the data only, so the result is the same for any number
    of threads.

    With ``lazy_logp``/``lazy_acc`` (the rows' marks, see ``catch_up_rows``),
    each row of W is read as if its pending lazy regularisation up to
    ``logp_now``/``acc_now`` had been applied, without writing W: the result
    is the one after ``catch_up_rows`` on the batch's features, bit for bit,
    and it saves that pass over the rows. ``sparse_update`` then applies the
    catch-up when it rewrites the rows.

    With ``slot`` (the feature-to-slot map of ``batch_transpose``), also
    groups the batch by feature and returns ``batch_transpose``'s plan. The
    grouping is sequential; one thread does it while the others start on
    the forward pass, and then joins them (the rows are shared out
    dynamically), so the grouping no longer holds up the other threads.
    Returns None without ``slot``.
    """
    cdef Py_ssize_t H = W.shape[1]
    cdef const double* lp
    cdef const double* la
    _mark_pointers(lazy_logp, lazy_acc, W.shape[0], acc_now, &lp, &la)
    cdef bint group = _grouping(slot, W.shape[0])
    if H == 0:
        return batch_transpose(data, indices, indptr, rows, scale, slot) if group else None
    dtype = np.float32 if floating is float else np.float64
    feat_a, off_a, prow_a, pval_a, vslot_a = _plan_arrays(
        _batch_nnz(indptr, rows) if group else 0, dtype)
    cdef int64_t[::1] value_slot = vslot_a
    cdef int64_t[::1] feat = feat_a
    cdef int64_t[::1] offsets = off_a
    cdef int64_t[::1] pair_row = prow_a
    cdef floating[::1] pair_val = pval_a
    n_feat_a = np.zeros(1, dtype=np.int64)
    cdef int64_t[::1] n_feat = n_feat_a
    items_a, heavy_a, n_parts = _forward_items(indptr, rows)
    cdef int64_t[:, ::1] items = items_a
    cdef int64_t[:, ::1] heavy = heavy_a
    cdef Py_ssize_t n_items = items.shape[0], n_heavy = heavy.shape[0] - 1
    partial_a = np.empty((max(<Py_ssize_t> n_parts, 1), H), dtype=dtype)
    cdef floating[:, ::1] partial = partial_a
    cdef Py_ssize_t t, i, h, p
    cdef floating s
    cdef floating* out
    next_a = np.zeros(1, dtype=np.int64)  # the queue of _next_item
    cdef int64_t[::1] next_item = next_a

    with nogil, parallel(num_threads=n_threads):
        if group and omp_get_thread_num() == 0:
            n_feat[0] = _build_transpose(data, indices, indptr, rows, scale, slot,
                                         feat, offsets, pair_row, pair_val, value_slot)
        # The items one at a time to whichever thread is free (see
        # _next_item): the others start while thread 0 groups the batch.
        t = _next_item(&next_item[0])
        while t < n_items:
            if t + _ITEM_AHEAD < n_items:
                _prefetch_values(data, indices, items[t + _ITEM_AHEAD, 1],
                                 items[t + _ITEM_AHEAD, 2])
            i = items[t, 0]
            p = items[t, 3]
            out = &Z[i, 0] if p < 0 else &partial[p, 0]
            _row_sum(data, indices, W, items[t, 1], items[t, 2], out, lp, la, logp_now, acc_now)
            if p < 0:
                s = scale[i]
                for h in range(H):
                    out[h] = out[h] * s + bias[h]
            t = _next_item(&next_item[0])
    with nogil:
        _sum_partials(Z, partial, heavy, scale, bias, n_threads)
    if group:
        return feat_a[:n_feat[0]], off_a[:n_feat[0] + 1], prow_a, pval_a
    return None


cdef void _sum_partials(
    floating[:, ::1] Z,               # OUT (n_rows, H) the split rows' sums
    const floating[:, ::1] partial,   # IN  (n_parts, H)
    const int64_t[:, ::1] heavy,      # IN  from _forward_items
    const floating[::1] scale,        # IN  (n_rows,)
    const floating[::1] bias,         # IN  (H,)
    int n_threads,
) noexcept nogil:
    """Split rows: ``Z[i] = scale[i] * (sum of the row's partials, in chunk
    order) + bias``, O(n_chunks x H)."""
    cdef Py_ssize_t H = Z.shape[1], n_heavy = heavy.shape[0] - 1, q, i, h, p
    cdef floating s
    cdef floating* zrow
    for q in prange(n_heavy, schedule='static', num_threads=n_threads):
        i = heavy[q, 0]
        zrow = &Z[i, 0]
        for h in range(H):
            zrow[h] = partial[heavy[q, 1], h]
        for p in range(heavy[q, 1] + 1, heavy[q + 1, 1]):
            for h in range(H):
                zrow[h] = zrow[h] + partial[p, h]
        s = scale[i]
        for h in range(H):
            zrow[h] = zrow[h] * s + bias[h]


# How many batch rows ahead the grouping asks for a row's stored values:
# the batch's rows lie anywhere in X, and each starts with cache misses.
cdef Py_ssize_t _ROW_AHEAD = 2
# At most this many cache lines of a row's indices (and of its values).
cdef Py_ssize_t _ROW_LINES = 8
# How many work items ahead the forward pass asks for an item's stored
# values (items are handed out one at a time, in order, to whichever thread
# is free).
cdef Py_ssize_t _ITEM_AHEAD = 2


cdef inline void _prefetch_values(const floating[::1] data, const index_t[::1] indices,
                                  Py_ssize_t k0, Py_ssize_t end) noexcept nogil:
    """Ask for the stored values k0 <= k < end (their first _ROW_LINES cache
    lines of indices and of values)."""
    # Each array by its own cache lines: indices and values may differ in size.
    cdef Py_ssize_t k
    cdef Py_ssize_t i_step = 64 // sizeof(index_t), d_step = 64 // sizeof(floating)
    k = k0
    while k < end and k < k0 + _ROW_LINES * i_step:
        _prefetch_r(&indices[k])
        k = k + i_step
    k = k0
    while k < end and k < k0 + _ROW_LINES * d_step:
        _prefetch_r(&data[k])
        k = k + d_step


cdef Py_ssize_t _batch_nnz(const index_t[::1] indptr, const int64_t[::1] rows) noexcept nogil:
    cdef Py_ssize_t i, n = 0
    for i in range(rows.shape[0]):
        n += indptr[rows[i] + 1] - indptr[rows[i]]
    return n


cdef Py_ssize_t _build_transpose(
    const floating[::1] data,
    const index_t[::1] indices,
    const index_t[::1] indptr,
    const int64_t[::1] rows,
    const floating[::1] scale,
    int64_t[::1] slot,          # IN/OUT (n_features,) all -1 on entry and exit
    int64_t[::1] feat,          # OUT (>= n_touched,) feature of each slot
    int64_t[::1] offsets,       # OUT (>= n_touched + 1,)
    int64_t[::1] pair_row,      # OUT (>= batch nnz,) batch position of each pair
    floating[::1] pair_val,     # OUT (>= batch nnz,) scale[row] * value
    int64_t[::1] value_slot,    # scratch (>= batch nnz,)
    int64_t* pair_src=NULL,     # OUT (>= batch nnz,) or NULL: stored value of each pair
) noexcept nogil:
    """Group the batch's non-zeros by feature, in O(batch nnz).

    ``slot`` maps a feature to its place in ``feat`` while the batch is being
    grouped; it is reset to -1 before returning, so it can be reused for the
    next batch without an O(n_features) clear. Features are numbered in order
    of first appearance and pairs keep their storage order: the grouping (and
    every sum taken over it) is deterministic.

    ``slot`` is as long as the feature space, so each access to it is a
    likely cache miss: the first pass notes each value's slot in
    ``value_slot`` (read in order by the second pass), and the second pass
    uses ``offsets`` as the features' write positions, so that ``slot`` is
    read only once per stored value and written once per feature on the
    way out. With ``pair_src``, also notes each pair's place in ``data``.
    """
    cdef Py_ssize_t n_rows = rows.shape[0]
    cdef Py_ssize_t i, k, r, f, end, n_feat = 0, n_kept = 0
    cdef int64_t j, p, sf
    cdef floating s

    # Number the features and count their pairs (in offsets[f + 1] for now).
    for i in range(n_rows):
        if i + _ROW_AHEAD < n_rows:
            r = rows[i + _ROW_AHEAD]
            _prefetch_values(data, indices, indptr[r], indptr[r + 1])
        r = rows[i]
        end = indptr[r + 1]
        for k in range(indptr[r], end):
            if k + _SLOT_AHEAD < end:
                _prefetch_w(&slot[indices[k + _SLOT_AHEAD]])
            if data[k] == 0:
                continue
            j = indices[k]
            sf = slot[j]
            if sf < 0:
                sf = n_feat
                slot[j] = sf
                feat[n_feat] = j
                offsets[n_feat + 1] = 0
                n_feat += 1
            offsets[sf + 1] += 1
            value_slot[n_kept] = sf
            n_kept += 1
    offsets[0] = 0
    for f in range(n_feat):
        offsets[f + 1] += offsets[f]
    # Fill; offsets[f] is feature f's write position meanwhile, so it ends
    # at the start of feature f + 1 and is shifted back afterwards.
    n_kept = 0
    for i in range(n_rows):
        r = rows[i]
        s = scale[i]
        for k in range(indptr[r], indptr[r + 1]):
            if data[k] == 0:
                continue
            sf = value_slot[n_kept]
            n_kept += 1
            p = offsets[sf]
            offsets[sf] = p + 1
            pair_row[p] = i
            pair_val[p] = data[k] * s
            if pair_src != NULL:
                pair_src[p] = k
    for f in range(n_feat, 0, -1):
        offsets[f] = offsets[f - 1]
    offsets[0] = 0
    for f in range(n_feat):
        if f + _SLOT_AHEAD < n_feat:
            _prefetch_w(&slot[feat[f + _SLOT_AHEAD]])
        slot[feat[f]] = -1
    return n_feat


cdef inline void _feature_gradient(
    const int64_t[::1] offsets,
    const int64_t[::1] pair_row,
    const floating[::1] pair_val,
    const floating[:, ::1] D,
    Py_ssize_t f,
    floating* g,                 # OUT (H,)
) noexcept nogil:
    """``g = sum over the pairs (i, v) of feature f of v * D[i]`` (f has at
    least one pair: the plan lists only features with stored values)."""
    cdef Py_ssize_t H = D.shape[1]
    cdef Py_ssize_t p = offsets[f], h
    cdef floating v = pair_val[p]
    cdef const floating* drow = &D[pair_row[p], 0]
    for h in range(H):
        g[h] = v * drow[h]
    for p in range(offsets[f] + 1, offsets[f + 1]):
        v = pair_val[p]
        drow = &D[pair_row[p], 0]
        for h in range(H):
            g[h] = g[h] + v * drow[h]


def _plan_arrays(Py_ssize_t nnz, dtype):
    """Room for the plan of a batch with ``nnz`` stored values: features,
    offsets, pair rows, pair values (see ``batch_transpose``), and the
    grouping's scratch (a slot per stored value)."""
    cdef Py_ssize_t size = max(nnz, 1)
    return (np.empty(size, dtype=np.int64), np.empty(size + 1, dtype=np.int64),
            np.empty(size, dtype=np.int64), np.empty(size, dtype=dtype),
            np.empty(size, dtype=np.int64))


def batch_transpose(
    const floating[::1] data,      # IN  (nnz,)
    const index_t[::1] indices,    # IN  (nnz,)
    const index_t[::1] indptr,     # IN  (n_samples + 1,)
    const int64_t[::1] rows,       # IN  (n_rows,) row numbers of the batch
    const floating[::1] scale,     # IN  (n_rows,) row scale of each batch row
    int64_t[::1] slot,             # IN/OUT (n_features,) all -1 on entry and exit
):
    """Group the batch's non-zeros by feature: the plan of one training step.

    Returns ``(features, offsets, pair_row, pair_val)``: the pairs of feature
    ``features[f]`` are ``pair_row[offsets[f]:offsets[f + 1]]`` (positions in
    the batch) and ``pair_val[...]`` (``scale[row] * value``). O(batch nnz),
    sequential; the per-feature kernels below run in parallel over it.
    """
    dtype = np.float32 if floating is float else np.float64
    feat_a, off_a, prow_a, pval_a, vslot_a = _plan_arrays(_batch_nnz(indptr, rows), dtype)
    cdef int64_t[::1] value_slot = vslot_a
    cdef int64_t[::1] feat = feat_a
    cdef int64_t[::1] offsets = off_a
    cdef int64_t[::1] pair_row = prow_a
    cdef floating[::1] pair_val = pval_a
    cdef Py_ssize_t n_feat
    with nogil:
        n_feat = _build_transpose(data, indices, indptr, rows, scale, slot,
                                  feat, offsets, pair_row, pair_val, value_slot)
    return feat_a[:n_feat], off_a[:n_feat + 1], prow_a, pval_a


def sparse_gradient(
    const int64_t[::1] features,   # IN  (n_feat,)  from batch_transpose
    const int64_t[::1] offsets,    # IN  (n_feat + 1,)
    const int64_t[::1] pair_row,   # IN
    const floating[::1] pair_val,  # IN
    const floating[:, ::1] D,      # IN  (n_rows, H) gradient of the loss w.r.t. Z
    int n_threads,
):
    """Row-sparse gradient of ``W``: ``G[f]`` is the gradient row of ``features[f]``.

    ``G[f] = sum_i scale[i] * X[rows[i], features[f]] * D[i]``; every other
    row of the gradient is zero. Same code path as :func:`sparse_update`;
    for tests and for users who want the gradient itself.
    """
    cdef Py_ssize_t H = D.shape[1]
    cdef Py_ssize_t n_feat = features.shape[0], f
    dtype = np.float32 if floating is float else np.float64
    G_a = np.zeros((n_feat, H), dtype=dtype)
    cdef floating[:, ::1] G = G_a
    if H > 0 and n_feat > 0:
        with nogil:
            for f in prange(n_feat, schedule='dynamic', chunksize=16,
                            num_threads=n_threads):
                _feature_gradient(offsets, pair_row, pair_val, D, f, &G[f, 0])
    return G_a


def catch_up_rows(
    floating[:, ::1] W,            # IN/OUT (n_features, H)
    double[::1] reg_logp,          # IN/OUT (n_features,) lazy-regularisation marks
    double[::1] reg_acc,           # IN/OUT (n_features,)
    const int64_t[::1] features,   # IN  (n_feat,) rows to bring up to date
    double logp_now,
    double acc_now,
    int n_threads,
):
    """Apply the pending lazy regularisation to the listed rows of ``W``.

    Every step s ends with ``w <- soft(c_s * w, a_s)`` on every row (decay
    c_s, L1 threshold a_s). Let P_s = c_1 ... c_s and A_s = sum_{r<=s} a_r / P_r.
    Applying steps L+1 .. T to a row that had no gradient in between equals
    ``w <- (P_T / P_L) * soft(w, P_L * (A_T - A_L))``, because soft-thresholds
    add up and commute with positive scaling. ``reg_logp[j]``/``reg_acc[j]``
    hold log P_L and A_L of the last step L whose regularisation row j has
    received; ``logp_now``/``acc_now`` are those of the step to bring it to.

    ``sparse_forward``, ``sparse_update``, ``sampled_dot`` and
    ``sampled_backward`` given the marks compute the same values on the fly
    (``_catch_up_factors``), so a training step no longer calls this; it is
    their reference.
    """
    cdef Py_ssize_t H = W.shape[1]
    cdef Py_ssize_t n_feat = features.shape[0], f, j
    if H == 0:
        return
    with nogil:
        for f in prange(n_feat, schedule='static', num_threads=n_threads):
            j = features[f]
            _catch_up_row(&W[j, 0], H, &reg_logp[j], &reg_acc[j], logp_now, acc_now)


cdef inline bint _catch_up_factors(double lp, double la, double logp_now, double acc_now,
                                  floating* factor, floating* thr) noexcept nogil:
    """Whether a row with marks (lp, la) is behind (logp_now, acc_now), and
    if so its catch-up ``w <- _shrink(w, factor, thr)`` (``factor * w``
    when ``thr`` is 0). The one place these factors are computed, so that
    the forward pass's on-the-fly catch-up equals the written one."""
    if lp == logp_now and la == acc_now:
        return False
    factor[0] = <floating> exp(logp_now - lp)
    thr[0] = <floating> ((acc_now - la) * exp(lp)) if la != acc_now else 0
    return True


cdef inline void _apply_catch_up(floating* w, Py_ssize_t H, floating factor,
                                 floating thr) noexcept nogil:
    """``w <- _shrink(w, factor, thr)``; ``factor * w`` when ``thr`` is 0."""
    cdef Py_ssize_t h
    if thr == 0:  # L2 only: a plain, vectorised scaling
        for h in range(H):
            w[h] = factor * w[h]
    else:
        for h in range(H):
            w[h] = _shrink(w[h], factor, thr)


cdef inline void _catch_up_row(floating* w, Py_ssize_t H, double* logp, double* acc,
                               double logp_now, double acc_now) noexcept nogil:
    """Bring one row up to date and set its marks; ``acc`` NULL: an L1
    mark of 0, not stored (acc_now is 0 too)."""
    cdef floating factor, thr
    if _catch_up_factors(logp[0], acc[0] if acc != NULL else 0.0, logp_now, acc_now,
                         &factor, &thr):
        _apply_catch_up(w, H, factor, thr)
        logp[0] = logp_now
        if acc != NULL:
            acc[0] = acc_now


cdef int _mark_pointers(const double[::1] lazy_logp, const double[::1] lazy_acc,
                        Py_ssize_t n_rows, double acc_now,
                        const double** lp, const double** la) except -1:
    """Check the lazy-regularisation marks given to a kernel and point ``lp``
    and ``la`` at them (NULL when not given, or when W has no rows).

    ``lazy_acc`` may be left out (None) while ``acc_now`` is 0: with no L1
    penalty since the last flush, every L1 mark is 0, and a kernel then
    neither reads nor writes them (one random access per feature fewer).
    """
    lp[0] = NULL
    la[0] = NULL
    if lazy_logp is None:
        if lazy_acc is not None:
            raise ValueError("lazy_acc is given without lazy_logp")
        return 0
    if lazy_acc is None and acc_now != 0:
        raise ValueError("lazy_acc may be left out only while acc_now is 0")
    if lazy_logp.shape[0] != n_rows or (lazy_acc is not None and lazy_acc.shape[0] != n_rows):
        raise ValueError("lazy_logp and lazy_acc must have one mark per row of W")
    if n_rows > 0:
        lp[0] = &lazy_logp[0]
        if lazy_acc is not None:
            la[0] = &lazy_acc[0]
    return 0


cdef inline void _solver_row(
    floating* w,                 # IN/OUT (H,)
    const floating* g,           # IN  (H,) the row's gradient
    floating* s1,                # IN/OUT (H,) or (1,) for row-wise Adagrad
    floating* s2,                # IN/OUT (H,) Adam's v
    Py_ssize_t H,
    int solver,
    floating cu,                 # pending L2 decay factor (1: none)
    floating f_lr,
    floating f_b1,
    floating f_b2,
    floating f_eps,
    floating f_mom,
    bint nesterov,
) noexcept nogil:
    """The solver's update of one row ``w`` with gradient ``g`` (see
    ``sparse_update``); ``cu * w[h]`` is the row as the step reads it."""
    cdef Py_ssize_t h
    cdef floating gh, vel, acc, row_lr
    cdef floating one = 1
    if solver == SOLVER_ADAM:
        for h in range(H):
            gh = g[h]
            s1[h] = f_b1 * s1[h] + (one - f_b1) * gh
            s2[h] = f_b2 * s2[h] + (one - f_b2) * gh * gh
            w[h] = cu * w[h] - f_lr * s1[h] / (_sqrt(s2[h]) + f_eps)
    elif solver == SOLVER_ADAGRAD:
        for h in range(H):
            gh = g[h]
            s1[h] = s1[h] + gh * gh
            w[h] = cu * w[h] - f_lr * gh / (_sqrt(s1[h]) + f_eps)
    elif solver == SOLVER_ROWWISE_ADAGRAD:
        acc = _dot(g, g, H)
        s1[0] = s1[0] + acc / H
        row_lr = f_lr / (_sqrt(s1[0]) + f_eps)
        for h in range(H):
            w[h] = cu * w[h] - row_lr * g[h]
    elif f_mom > 0:
        for h in range(H):
            gh = g[h]
            vel = f_mom * s1[h] - f_lr * gh
            s1[h] = vel
            if nesterov:
                w[h] = cu * w[h] + f_mom * vel - f_lr * gh
            else:
                w[h] = cu * w[h] + vel
    else:
        for h in range(H):
            w[h] = cu * w[h] - f_lr * g[h]


def sparse_update(
    const int64_t[::1] features,   # IN  (n_feat,)  from batch_transpose
    const int64_t[::1] offsets,    # IN  (n_feat + 1,)
    const int64_t[::1] pair_row,   # IN
    const floating[::1] pair_val,  # IN
    const floating[:, ::1] D,      # IN  (n_rows, H) gradient of the loss w.r.t. Z
    floating[:, ::1] W,            # IN/OUT (n_features, H)
    floating[:, ::1] state1,       # IN/OUT (n_features, H) velocity / Adam m / Adagrad sum;
                                   #        (n_features, 1) row-wise Adagrad sum
    floating[:, ::1] state2,       # IN/OUT (n_features, H) Adam v (unused otherwise)
    int solver,
    double lr,
    double beta_1,
    double beta_2,
    double epsilon,
    double momentum,
    bint nesterov,
    int n_threads,
    double max_norm=0.0,
    double[::1] lazy_logp=None,    # IN/OUT (n_features,) lazy-regularisation marks
    double[::1] lazy_acc=None,     # IN/OUT (n_features,)
    double logp_now=0.0,
    double acc_now=0.0,
    floating[::1] bias=None,        # IN/OUT (n_features,) one bias per row of W
    floating[::1] bias_state1=None, # IN/OUT (n_features,) its solver state
    floating[::1] bias_state2=None, # IN/OUT (n_features,) Adam's v of the bias
):
    """One optimizer step on the rows of ``W`` of the batch's features.

    For each feature of the plan, one thread computes the row's gradient and
    applies the solver's update at once, with the solver state read and
    written for this row only, while the row is in cache. No n_features x H
    gradient buffer, no atomics, and the same result for any number of
    threads. ``lr`` is this step's step size (for Adam, bias-corrected).

    Row-wise Adagrad keeps one accumulator per row (``state1`` of shape
    (n_features, 1)): ``G += mean(g**2)``; ``w -= lr * g / (sqrt(G) + eps)``,
    as the embedding tables of large recommendation models (FBGEMM's
    EXACT_ROWWISE_ADAGRAD). It moves a third of Adam's bytes per row.

    With ``max_norm > 0``, an updated row whose L2 norm exceeds ``max_norm``
    is scaled back to that norm (Srebro and Shraibman, 2005; Srivastava et
    al., 2014), while the row is still in cache.

    With ``lazy_logp``/``lazy_acc`` (the rows' marks, see ``catch_up_rows``),
    each row first receives its pending lazy regularisation up to
    ``logp_now``/``acc_now``, in the same pass: the result equals
    ``catch_up_rows`` on the plan's features followed by this update.

    With ``bias`` (one value per row of W, as the autoencoder's output
    biases), the feature's bias receives its step in the same pass, with
    gradient ``sum of the feature's pair values`` (D's column of ones) and
    the solver state ``bias_state1``/``bias_state2`` (row-wise Adagrad: one
    accumulator per bias). The result equals a second call with ``W =
    bias[:, None]`` and ``D`` a column of ones, bit for bit; the biases take
    neither ``max_norm`` nor the marks. It saves that call's pass over the
    plan, whose every bias is a cache line of its own.
    """
    cdef Py_ssize_t H = W.shape[1]
    cdef Py_ssize_t n_feat = features.shape[0], f, h, j, k, p, q
    cdef int tid
    _check_threads(n_threads)
    dtype = np.float32 if floating is float else np.float64
    scratch_a = np.empty((n_threads, max(H, 1)), dtype=dtype)
    cdef floating[:, ::1] scratch = scratch_a
    cdef floating* g
    cdef floating* w
    cdef floating* s1
    cdef floating* s2
    cdef floating shrink, cu, thr, gb
    cdef double sumsq
    cdef floating f_lr = <floating> lr
    cdef floating f_b1 = <floating> beta_1
    cdef floating f_b2 = <floating> beta_2
    cdef floating f_eps = <floating> epsilon
    cdef floating f_mom = <floating> momentum
    cdef floating one = 1

    cdef bint rowwise = solver == SOLVER_ROWWISE_ADAGRAD
    cdef int n_state = (2 if solver == SOLVER_ADAM else
                        1 if (solver == SOLVER_ADAGRAD or (solver == SOLVER_SGD and momentum > 0))
                        else 0)
    cdef bint uses_s1 = n_state >= 1 or rowwise
    if rowwise and state1.shape[1] != 1:
        raise ValueError("row-wise Adagrad keeps one accumulator per row: state1 "
                         f"must have shape (n_features, 1), got ({state1.shape[0]}, {state1.shape[1]})")
    if not rowwise and (state1.shape[1] != H or state2.shape[1] != H):
        raise ValueError("state1 and state2 must have W's shape")
    if (uses_s1 and state1.shape[0] != W.shape[0]) or (n_state >= 2 and state2.shape[0] != W.shape[0]):
        raise ValueError("the solver's state must have one row per row of W")
    cdef bint with_bias = bias is not None
    cdef floating* bp = NULL
    cdef floating* bs1 = NULL
    cdef floating* bs2 = NULL
    if with_bias:
        if bias.shape[0] != W.shape[0]:
            raise ValueError("bias must have one entry per row of W")
        if uses_s1 and (bias_state1 is None or bias_state1.shape[0] != W.shape[0]):
            raise ValueError("bias_state1 must have one entry per row of W for this solver")
        if n_state >= 2 and (bias_state2 is None or bias_state2.shape[0] != W.shape[0]):
            raise ValueError("bias_state2 must have one entry per row of W for Adam")
        if W.shape[0] > 0:
            bp = &bias[0]
            bs1 = &bias_state1[0] if uses_s1 else NULL
            bs2 = &bias_state2[0] if n_state >= 2 else NULL
    if H == 0 or n_feat == 0:
        return
    # With features to update, W has rows, and so does every state array the
    # solver uses (checked above): an empty one here is an unused placeholder.
    if state1.shape[0] == 0 or state2.shape[0] == 0:
        raise ValueError("a state array the solver does not use must still have one row")
    cdef const double* clp
    cdef const double* cla
    _mark_pointers(lazy_logp, lazy_acc, W.shape[0], acc_now, &clp, &cla)
    # This kernel writes the marks: its arguments are writable views.
    cdef double* lp = <double*> clp
    cdef double* la = <double*> cla
    with nogil, parallel(num_threads=n_threads):
        tid = omp_get_thread_num()
        g = &scratch[tid, 0]
        for f in prange(n_feat, schedule='dynamic', chunksize=_UPDATE_CHUNK):
            # Features in the reverse of the plan's order (first appearance
            # in the batch): the forward pass has just read their rows in
            # about that order, so the last ones read are the likeliest
            # still in the cache; in the plan's order, the oldest would come
            # first and push the newest out. Each row's step depends on that
            # row only: the order changes no result.
            q = n_feat - 1 - f
            j = features[q]
            # A state array the solver does not use may be a (1, H)
            # placeholder: its row 0 stands in, never read or written.
            if q >= _UPDATE_AHEAD:
                k = features[q - _UPDATE_AHEAD]
                _prefetch_rows(&W[k, 0], &state1[k if uses_s1 else 0, 0],
                               &state2[k if n_state >= 2 else 0, 0], H, n_state, rowwise)
                if lp != NULL:
                    _prefetch_w(&lp[k])
                    if la != NULL:
                        _prefetch_w(&la[k])
                if with_bias:
                    _prefetch_w(&bp[k])
                    if uses_s1:
                        _prefetch_w(&bs1[k])
                    if n_state >= 2:
                        _prefetch_w(&bs2[k])
            w = &W[j, 0]
            s1 = &state1[j if uses_s1 else 0, 0]
            s2 = &state2[j if n_state >= 2 else 0, 0]
            # The row's pending L2 decay is the factor cu, applied to w as
            # the step reads it (cu * w[h] is the value catch_up_rows would
            # have stored; cu = 1 when none is pending, which changes
            # nothing). An L1 threshold is applied to the row first. (Both
            # are assigned here so that each thread has its own.)
            cu = 1
            thr = 0
            if lp != NULL and _catch_up_factors(lp[j], la[j] if la != NULL else 0.0,
                                                logp_now, acc_now, &cu, &thr):
                if thr != 0:
                    _apply_catch_up(w, H, cu, thr)
                    cu = 1
                lp[j] = logp_now
                if la != NULL:
                    la[j] = acc_now
            _feature_gradient(offsets, pair_row, pair_val, D, q, g)
            _solver_row(w, g, s1, s2, H, solver, cu, f_lr, f_b1, f_b2, f_eps, f_mom, nesterov)
            if with_bias:
                # The bias's gradient, summed as _feature_gradient sums a
                # column of ones (v * 1 == v), and its step as a row of 1.
                p = offsets[q]
                gb = pair_val[p]
                for p in range(offsets[q] + 1, offsets[q + 1]):
                    gb = gb + pair_val[p]
                _solver_row(&bp[j], &gb, &bs1[j] if uses_s1 else NULL,
                            &bs2[j] if n_state >= 2 else NULL, 1, solver, one,
                            f_lr, f_b1, f_b2, f_eps, f_mom, nesterov)
            if max_norm > 0:
                sumsq = _sum_squares_double(w, H)
                if sumsq > max_norm * max_norm:
                    shrink = <floating> (max_norm / sqrt(sumsq))
                    for h in range(H):
                        w[h] = w[h] * shrink


def catch_up_all(
    floating[:, ::1] W,            # IN/OUT (n_features, H)
    double[::1] reg_logp,          # IN/OUT (n_features,) set to 0 on return
    double[::1] reg_acc,           # IN/OUT (n_features,) set to 0 on return
    double logp_now,
    double acc_now,
    int n_threads,
):
    """Apply the pending lazy regularisation to every row of ``W``.

    Afterwards every row is exact as of the current step and all marks are 0,
    so the caller resets its running ``logp``/``acc`` to 0 too. Costs
    O(n_features x H): called at the end of fit/partial_fit, before the
    weights are copied or read, and when ``logp`` gets so small that the
    marks would lose precision (rarely).
    """
    cdef Py_ssize_t n_features = W.shape[0], H = W.shape[1]
    cdef Py_ssize_t j
    if H == 0:
        return
    with nogil:
        for j in prange(n_features, schedule='static', num_threads=n_threads):
            _catch_up_row(&W[j, 0], H, &reg_logp[j], &reg_acc[j], logp_now, acc_now)
            reg_logp[j] = 0
            reg_acc[j] = 0


def relu_backward(
    const floating[:, ::1] A,      # IN  (n_rows, H) the ReLU's output
    floating[:, ::1] delta,        # IN/OUT (n_rows, H)
):
    """``delta[A <= 0] = 0``, in place: the ReLU's derivative in backprop.

    The same values as numpy's masked assignment (NaN in A keeps delta), in
    one pass that vectorises as a blend, without the boolean mask and the
    masked store numpy makes (about 200 us for a 256 x 256 batch here).
    """
    if A.shape[0] != delta.shape[0] or A.shape[1] != delta.shape[1]:
        raise ValueError(f"A has shape ({A.shape[0]}, {A.shape[1]}) but delta has shape "
                         f"({delta.shape[0]}, {delta.shape[1]})")
    cdef Py_ssize_t n = A.shape[0] * A.shape[1], i
    if n == 0:
        return
    cdef const floating* a = &A[0, 0]
    cdef floating* d = &delta[0, 0]
    with nogil:
        for i in range(n):
            d[i] = 0 if a[i] <= 0 else d[i]


cdef int _check_threads(int n_threads) except -1:
    """A kernel with a scratch row per thread needs the team size it was
    given: OpenMP would read 0 as "as many as it likes"."""
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}")
    return 0


cdef int _check_pairs(const int64_t[::1] pair_col, Py_ssize_t n_features) except -1:
    """Every pair's column must be a row of W (O(n_pairs), against the
    kernels' O(n_pairs x H))."""
    cdef Py_ssize_t k
    cdef bint bad = False
    with nogil:
        for k in range(pair_col.shape[0]):
            if pair_col[k] < 0 or pair_col[k] >= n_features:
                bad = True
                break
    if bad:
        raise ValueError("pair_col must hold row numbers of W")
    return 0


cdef inline const floating* _caught_up_row(const floating[:, ::1] W, Py_ssize_t j,
                                           Py_ssize_t j_next, floating* buf, const double* lp,
                                           const double* la, double logp_now,
                                           double acc_now) noexcept nogil:
    """Row j of W as if its pending lazy regularisation had been applied
    (``catch_up_rows``' arithmetic): W's own row when nothing is pending,
    else a caught-up copy in ``buf`` (H values). Asks for row ``j_next``
    (none if negative) ahead of use: the pairs' columns are random rows."""
    cdef Py_ssize_t H = W.shape[1], h
    cdef Py_ssize_t line = 64 // sizeof(floating)  # floats per cache line
    cdef floating factor, thr
    if j_next >= 0:
        h = 0
        while h < H:
            _prefetch_r(&W[j_next, h])
            h = h + line
        if lp != NULL:
            _prefetch_r(&lp[j_next])
    if lp == NULL or not _catch_up_factors(lp[j], la[j] if la != NULL else 0.0,
                                           logp_now, acc_now, &factor, &thr):
        return &W[j, 0]
    for h in range(H):
        buf[h] = W[j, h]
    _apply_catch_up(buf, H, factor, thr)
    return buf


def sampled_dot(
    const floating[:, ::1] A,      # IN  (n_rows, H) code of each batch row
    const floating[:, ::1] W,      # IN  (n_features, H) decoder rows
    const floating[::1] bias,      # IN  (n_features,)
    const int64_t[::1] pair_row,   # IN  (n_pairs,) batch position of each pair
    const int64_t[::1] pair_col,   # IN  (n_pairs,) output column of each pair
    floating[::1] out,             # OUT (n_pairs,)
    int n_threads,
    const double[::1] lazy_logp=None,  # IN (n_features,) lazy-regularisation marks
    const double[::1] lazy_acc=None,   # IN (n_features,)
    double logp_now=0.0,
    double acc_now=0.0,
):
    """``out[k] = A[pair_row[k]] . W[pair_col[k]] + bias[pair_col[k]]``.

    The outputs of a sparse output layer at the sampled (row, column) pairs
    only (a sampled dense-dense product): O(n_pairs x H), never
    O(n_rows x n_features).

    With ``lazy_logp``/``lazy_acc`` (the rows' marks, see ``catch_up_rows``),
    each row of W is read as if its pending lazy regularisation had been
    applied, without writing W: the caught-up row is formed in a per-thread
    buffer with ``catch_up_rows``' arithmetic, so the result equals the one
    after ``catch_up_rows`` on the pairs' columns, bit for bit.
    """
    cdef Py_ssize_t n_pairs = pair_row.shape[0], H = A.shape[1], k, j
    _check_threads(n_threads)
    if W.shape[1] != H:
        raise ValueError("A and W must have the same number of columns")
    if pair_col.shape[0] != n_pairs or out.shape[0] != n_pairs:
        raise ValueError("pair_row, pair_col and out must have one entry per pair")
    if bias.shape[0] != W.shape[0]:
        raise ValueError("bias must have one entry per row of W")
    _check_pairs(pair_col, W.shape[0])
    if n_pairs and (np.min(pair_row) < 0 or np.max(pair_row) >= A.shape[0]):
        raise ValueError("pair_row must hold row numbers of A")
    cdef const double* lp
    cdef const double* la
    _mark_pointers(lazy_logp, lazy_acc, W.shape[0], acc_now, &lp, &la)
    dtype = np.float32 if floating is float else np.float64
    buf_a = np.empty((n_threads, max(H, 1) if lp != NULL else 1), dtype=dtype)
    cdef floating[:, ::1] buf = buf_a
    cdef const floating* w
    cdef floating* row
    with nogil, parallel(num_threads=n_threads):
        row = &buf[omp_get_thread_num(), 0]
        for k in prange(n_pairs, schedule='static'):
            j = pair_col[k]
            w = _caught_up_row(W, j, pair_col[k + _PREFETCH_AHEAD]
                               if k + _PREFETCH_AHEAD < n_pairs else -1,
                               row, lp, la, logp_now, acc_now)
            out[k] = _dot(&A[pair_row[k], 0], w, H) + bias[j]


def sampled_backward(
    const floating[:, ::1] A,      # IN  (n_rows, H) code of each batch row
    const floating[:, ::1] W,      # IN  (n_features, H) decoder rows
    const floating[::1] bias,      # IN  (n_features,)
    const int64_t[::1] indptr,     # IN  (n_rows + 1,) row b's pairs: indptr[b]:indptr[b + 1]
    const int64_t[::1] pair_col,   # IN  (n_pairs,) output column of each pair
    const floating[::1] target,    # IN  (n_pairs,)
    const floating[::1] coef,      # IN  (n_pairs,) weight of each pair in the loss
    floating[::1] diff,            # OUT (n_pairs,) output - target
    floating[::1] delta,           # OUT (n_pairs,) coef * diff
    floating[:, ::1] dA,           # OUT (n_rows, H) gradient w.r.t. A
    int n_threads,
    int64_t[::1] slot=None,        # IN/OUT (n_features,) all -1 on entry and exit
    const double[::1] lazy_logp=None,  # IN (n_features,) lazy-regularisation marks
    const double[::1] lazy_acc=None,   # IN (n_features,)
    double logp_now=0.0,
    double acc_now=0.0,
):
    """The sampled output layer's loss terms and backward pass, in one read of W.

    For each pair k of row b (column j): ``diff[k] = A[b] . W[j] + bias[j] -
    target[k]``, ``delta[k] = coef[k] * diff[k]`` and ``dA[b] = sum_k
    delta[k] * W[j]``: :func:`sampled_dot` followed by :func:`sparse_forward`
    over the deltas, but each pair's row of W is read once for both. Rows
    of pairs are split into chunks and the threads share them out as in
    :func:`sparse_forward`, so the results are those of the two calls, bit
    for bit, for any number of threads. With the marks, W's rows are read
    as if caught up (as in both).

    With ``slot``, one thread also groups the pairs by column while the
    others compute, and the plan of the decoder's update is returned: that
    of ``batch_transpose`` on values ``coef`` (pairs with a zero coef are
    left out), with ``pair_val`` the deltas. Returns None without ``slot``.
    """
    cdef Py_ssize_t n_rows = A.shape[0], H = A.shape[1], n_pairs = pair_col.shape[0]
    _check_threads(n_threads)
    if H == 0:
        raise ValueError("A must have at least one column")
    if W.shape[1] != H or dA.shape[0] != n_rows or dA.shape[1] != H:
        raise ValueError("A, W and dA must have the same number of columns, A and dA the same rows")
    if (indptr.shape[0] != n_rows + 1 or indptr[0] != 0 or indptr[n_rows] != n_pairs
            or (n_rows > 0 and np.any(np.diff(indptr) < 0))):
        raise ValueError("indptr must delimit the pairs of each row of A")
    if (target.shape[0] != n_pairs or coef.shape[0] != n_pairs or diff.shape[0] != n_pairs
            or delta.shape[0] != n_pairs):
        raise ValueError("target, coef, diff and delta must have one entry per pair")
    if bias.shape[0] != W.shape[0]:
        raise ValueError("bias must have one entry per row of W")
    _check_pairs(pair_col, W.shape[0])
    cdef const double* lp
    cdef const double* la
    _mark_pointers(lazy_logp, lazy_acc, W.shape[0], acc_now, &lp, &la)
    cdef bint group = _grouping(slot, W.shape[0])
    dtype = np.float32 if floating is float else np.float64
    rows_a = np.arange(n_rows, dtype=np.int64)
    ones_a = np.ones(n_rows, dtype=dtype)
    zeros_a = np.zeros(H, dtype=dtype)
    cdef const int64_t[::1] rows = rows_a
    cdef const floating[::1] ones = ones_a
    cdef const floating[::1] zeros = zeros_a
    feat_a, off_a, prow_a, pval_a, vslot_a = _plan_arrays(n_pairs if group else 0, dtype)
    src_a = np.empty(max(n_pairs, 1) if group else 1, dtype=np.int64)
    cdef int64_t[::1] value_slot = vslot_a
    cdef int64_t[::1] feat = feat_a
    cdef int64_t[::1] offsets = off_a
    cdef int64_t[::1] pair_row = prow_a
    cdef floating[::1] pair_val = pval_a
    cdef int64_t[::1] pair_src = src_a
    n_feat_a = np.zeros(1, dtype=np.int64)  # set inside the parallel block
    cdef int64_t[::1] n_feat = n_feat_a
    items_a, heavy_a, n_parts = _forward_items(indptr, rows_a)
    cdef int64_t[:, ::1] items = items_a
    cdef int64_t[:, ::1] heavy = heavy_a
    cdef Py_ssize_t n_items = items.shape[0]
    partial_a = np.empty((max(<Py_ssize_t> n_parts, 1), max(H, 1)), dtype=dtype)
    cdef floating[:, ::1] partial = partial_a
    buf_a = np.empty((n_threads, max(H, 1)), dtype=dtype)
    cdef floating[:, ::1] buf = buf_a
    cdef Py_ssize_t t, i, h, p, k, k1, j
    cdef floating d
    cdef floating* out
    cdef floating* row
    cdef const floating* a
    cdef const floating* w
    next_a = np.zeros(1, dtype=np.int64)  # the queue of _next_item
    cdef int64_t[::1] next_item = next_a

    with nogil, parallel(num_threads=n_threads):
        row = &buf[omp_get_thread_num(), 0]
        if group and omp_get_thread_num() == 0:
            n_feat[0] = _build_transpose(coef, pair_col, indptr, rows, ones, slot, feat,
                                         offsets, pair_row, pair_val, value_slot,
                                         &pair_src[0])
        # As in sparse_forward: the others start while thread 0 groups.
        t = _next_item(&next_item[0])
        while t < n_items:
            i = items[t, 0]
            p = items[t, 3]
            out = &dA[i, 0] if p < 0 else &partial[p, 0]
            a = &A[i, 0]
            for h in range(H):
                out[h] = 0
            k1 = items[t, 2]
            for k in range(items[t, 1], k1):
                j = pair_col[k]
                w = _caught_up_row(W, j, pair_col[k + _PREFETCH_AHEAD]
                                   if k + _PREFETCH_AHEAD < k1 else -1,
                                   row, lp, la, logp_now, acc_now)
                d = _dot(a, w, H) + bias[j] - target[k]
                diff[k] = d
                d = coef[k] * d
                delta[k] = d
                if d != 0:
                    for h in range(H):
                        out[h] = out[h] + d * w[h]
            if p < 0:  # as sparse_forward with a scale of 1 and a bias of 0
                for h in range(H):
                    out[h] = out[h] * ones[i] + zeros[h]
            t = _next_item(&next_item[0])
    with nogil:
        _sum_partials(dA, partial, heavy, ones, zeros, n_threads)
        if group:
            for p in range(offsets[n_feat[0]]):  # offsets[0] is 0
                pair_val[p] = delta[pair_src[p]]
    if group:
        return feat_a[:n_feat[0]], off_a[:n_feat[0] + 1], prow_a, pval_a
    return None


def row_nonzeros(
    const floating[::1] data,      # IN  (nnz,)
    const index_t[::1] indptr,     # IN  (n_samples + 1,)
    const int64_t[::1] rows,       # IN  (n_rows,) row numbers of the batch
    int64_t[::1] nnz,              # OUT (n_rows,) stored values that are not 0
):
    """The number of non-zero stored values of each of the batch's rows."""
    cdef Py_ssize_t i, k, c
    if nnz.shape[0] != rows.shape[0]:
        raise ValueError("nnz must have one entry per row of the batch")
    with nogil:
        for i in range(rows.shape[0]):
            c = 0
            for k in range(indptr[rows[i]], indptr[rows[i] + 1]):
                if data[k] != 0:
                    c = c + 1
            nnz[i] = c


def reconstruction_pairs(
    const floating[::1] data,      # IN  (nnz,)
    const index_t[::1] indices,    # IN  (nnz,) sorted within each row, no duplicates
    const index_t[::1] indptr,     # IN  (n_samples + 1,)
    const int64_t[::1] rows,       # IN  (n_rows,) row numbers of the batch
    const double[::1] scale,       # IN  (n_rows,) row scale of each batch row
    bint single,                   # round the targets to float32 (see below)
    const int64_t[::1] nnz,        # IN  (n_rows,) from row_nonzeros
    const int64_t[::1] n_draw,     # IN  (n_rows,) draws of each row
    const int64_t[::1] draws,      # IN  (sum(n_draw),) drawn columns, row after row
    Py_ssize_t n_features,
    int64_t[::1] pair_row,         # OUT (>= the rows' stored values + sum(n_draw),)
    int64_t[::1] pair_col,         # OUT
    double[::1] target,            # OUT
    double[::1] weight,            # OUT
    int64_t[::1] pair_indptr,      # OUT (n_rows + 1,)
):
    """The autoencoder's (row, column) pairs of one step, row after row.

    Row i's pairs are its non-zero stored values (target ``scale[i] *
    value``, weight 1) in column order, then its draws that do not hit a
    non-zero of the row (found by binary search among the row's sorted
    columns), target 0, each weighted ``(n_features - nnz[i]) / accepted``.
    Returns the number of pairs; ``pair_indptr`` delimits each row's.

    The targets are products taken in double; with ``single`` (values and
    scales both float32) they are rounded to float32, which is numpy's
    float32 product: the product of two float32 numbers is exact in double.
    """
    cdef Py_ssize_t n_rows = rows.shape[0], i, k, k0, k1, lo, hi, mid, d, d0 = 0
    cdef Py_ssize_t pos = 0, first, acc
    cdef int64_t c
    cdef double w
    cdef Py_ssize_t room = 0
    if (nnz.shape[0] != n_rows or n_draw.shape[0] != n_rows or scale.shape[0] != n_rows
            or pair_indptr.shape[0] != n_rows + 1):
        raise ValueError("nnz, n_draw and scale must have one entry per row of the batch, "
                         "pair_indptr one more")
    for i in range(n_rows):  # room for every stored value, whatever nnz says
        room += indptr[rows[i] + 1] - indptr[rows[i]] + n_draw[i]
        d0 += n_draw[i]
    if draws.shape[0] != d0:
        raise ValueError("draws must hold sum(n_draw) columns")
    if (pair_row.shape[0] < room or pair_col.shape[0] < room or target.shape[0] < room
            or weight.shape[0] < room):
        raise ValueError("the pair arrays must have room for every non-zero and draw")
    d0 = 0
    with nogil:
        pair_indptr[0] = 0
        for i in range(n_rows):
            k0 = indptr[rows[i]]
            k1 = indptr[rows[i] + 1]
            for k in range(k0, k1):
                if data[k] != 0:
                    pair_row[pos] = i
                    pair_col[pos] = indices[k]
                    target[pos] = <double> data[k] * scale[i]
                    if single:
                        target[pos] = <double> (<float> target[pos])
                    weight[pos] = 1.0
                    pos = pos + 1
            first = pos
            for d in range(d0, d0 + n_draw[i]):
                c = draws[d]
                if k1 > k0:
                    # The last stored column <= c, by a binary search without
                    # branches (the draws are random: a branch per step
                    # would be mispredicted half the time).
                    lo = k0
                    hi = k1 - k0
                    while hi > 1:
                        mid = hi // 2
                        lo = lo + mid if indices[lo + mid] <= c else lo
                        hi = hi - mid
                    if indices[lo] == c and data[lo] != 0:
                        continue  # a non-zero of the row: rejected
                pair_row[pos] = i
                pair_col[pos] = c
                target[pos] = 0
                pos = pos + 1
            d0 = d0 + n_draw[i]
            acc = pos - first
            w = (<double> (n_features - nnz[i]) / <double> acc) if acc > 0 else 0.0
            for k in range(first, pos):
                weight[k] = w
            pair_indptr[i + 1] = pos
    return pos
