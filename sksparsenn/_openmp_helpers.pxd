# OpenMP entry points with no-op fallbacks, for every kernel module that
# cimports this file: a build without OpenMP still compiles and runs, on one
# thread.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define SKSPARSENN_OPENMP 1
    #else
    #define SKSPARSENN_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    #endif
    """
    bint SKSPARSENN_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
