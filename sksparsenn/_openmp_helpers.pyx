"""The one place that knows how many OpenMP threads the kernels may use.

The count is read from the OpenMP runtime at each call (``omp_get_max_threads``),
so it follows ``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits`` and the
limits joblib's loky workers set. It is never cached on an estimator.
"""


def _openmp_enabled():
    """Return True if the kernels were compiled with OpenMP."""
    return bool(SKSPARSENN_OPENMP)


def _openmp_effective_n_threads():
    """Number of threads the next parallel kernel call will use (at least 1)."""
    return max(1, omp_get_max_threads())
