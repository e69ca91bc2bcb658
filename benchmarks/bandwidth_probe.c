/* Memory bandwidth of the first layer's access patterns on this machine.
 *
 * Built and run by bandwidth_probe.py (cc -O3 -fno-math-errno -fopenmp: the
 * flags of the package's own build). Usage:
 *
 *     bandwidth_probe N_ROWS WIDTH N_TOUCH REPEATS THREADS
 *
 * W, S1, S2 are (N_ROWS, WIDTH) float32 arrays, like the first layer's
 * weights and the two Adam moments. Each measurement touches N_TOUCH
 * distinct rows, in one of two orders:
 *
 *   random   distinct rows in random order: the features of ordinary
 *            minibatch rows (Zipf-distributed, scattered over W);
 *   sorted   the same number of rows in increasing order, spread over the
 *            whole array: the features of an almost-full row.
 *
 * and one of these kernels, split over THREADS OpenMP threads:
 *
 *   gather   acc += v * W[j] (the forward pass);    bytes = rows read
 *   rmw1     W[j] = a * W[j] + b                     bytes = 2 x rows
 *   rmw2     S1[j] += g^2; W[j] -= g / sqrt(S1[j])   bytes = 4 x rows
 *   rmw3     Adam on W[j], S1[j], S2[j]              bytes = 6 x rows
 *
 * Prints one JSON object: GB/s (1e9 bytes/s) of each, median of REPEATS.
 */
#define _GNU_SOURCE
#include <math.h>
#include <sys/mman.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rng_state = 88172645463325252ULL;
static unsigned long long xorshift(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* n distinct rows out of n_rows (partial Fisher-Yates), random order, into
 * idx. perm (n_rows) is a permutation of 0..n_rows-1 on entry and exit:
 * kept from call to call, so that no call allocates and maps its pages. */
static void pick_rows(long *perm, long n_rows, long *idx, long n, int sorted) {
    for (long i = 0; i < n; i++) {
        long j = i + (long)(xorshift() % (unsigned long long)(n_rows - i));
        long t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    memcpy(idx, perm, sizeof(long) * n);
    if (sorted) qsort(idx, n, sizeof(long), cmp_long);
}

static float *sink;

/* Large arrays as numpy allocates them on Linux: 2 MiB aligned and marked
 * for transparent huge pages, so that random rows do not each cost a TLB
 * miss that the package's own arrays do not pay. */
static float *alloc_big(size_t bytes) {
    size_t align = (size_t)2 << 20;
    size_t size = (bytes + align - 1) / align * align;
    void *p = aligned_alloc(align, size);
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

static void run_kernel(int kernel, const long *idx, long n, long H, float *W, float *S1,
                       float *S2, int threads) {
    #pragma omp parallel num_threads(threads)
    {
        float *acc = calloc(H, sizeof(float));
        #pragma omp for schedule(static)
        for (long k = 0; k < n; k++) {
            float *w = W + idx[k] * H;
            float *s1 = S1 + idx[k] * H;
            float *s2 = S2 + idx[k] * H;
            if (k + 4 < n) {
                for (long h = 0; h < H; h += 16) {
                    if (kernel == 0) __builtin_prefetch(W + idx[k + 4] * H + h, 0, 3);
                    else __builtin_prefetch(W + idx[k + 4] * H + h, 1, 3);
                    if (kernel >= 2) __builtin_prefetch(S1 + idx[k + 4] * H + h, 1, 3);
                    if (kernel >= 3) __builtin_prefetch(S2 + idx[k + 4] * H + h, 1, 3);
                }
            }
            if (kernel == 0) {
                for (long h = 0; h < H; h++) acc[h] += 0.5f * w[h];
            } else if (kernel == 1) {
                for (long h = 0; h < H; h++) w[h] = 0.999f * w[h] + 1e-6f;
            } else if (kernel == 2) {
                for (long h = 0; h < H; h++) {
                    s1[h] += 1e-6f;
                    w[h] -= 1e-3f / (sqrtf(s1[h]) + 1e-8f);
                }
            } else {
                for (long h = 0; h < H; h++) {
                    s1[h] = 0.9f * s1[h] + 0.1f * 1e-3f;
                    s2[h] = 0.999f * s2[h] + 0.001f * 1e-6f;
                    w[h] -= 1e-3f * s1[h] / (sqrtf(s2[h]) + 1e-8f);
                }
            }
        }
        #pragma omp critical
        for (long h = 0; h < H; h++) sink[h] += acc[h];
        free(acc);
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s N_ROWS WIDTH N_TOUCH REPEATS THREADS\n", argv[0]);
        return 2;
    }
    long n_rows = atol(argv[1]), H = atol(argv[2]), n = atol(argv[3]);
    int repeats = atoi(argv[4]), threads = atoi(argv[5]);
    if (n > n_rows || n < 1 || H < 16 || repeats < 1 || threads < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    size_t bytes = sizeof(float) * (size_t)n_rows * (size_t)H;
    float *W = alloc_big(bytes), *S1 = alloc_big(bytes), *S2 = alloc_big(bytes);
    sink = calloc(H, sizeof(float));
    if (!W || !S1 || !S2 || !sink) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    /* Map every page now (first touches are not what we measure), on all
     * threads: mapping huge pages costs the kernel more time than the
     * writes (12 of the 15.6 s of a whole run on 1 thread). */
    size_t n_values = (size_t)n_rows * (size_t)H;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n_values; i++) {
        W[i] = 0.01f;
        S1[i] = 0.0f;
        S2[i] = 0.0f;
    }
    long *perm = malloc(sizeof(long) * n_rows), *idx = malloc(sizeof(long) * n);
    if (!perm || !idx) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (long i = 0; i < n_rows; i++) perm[i] = i;
    const char *kernels[] = {"gather", "rmw1", "rmw2", "rmw3"};
    const int bytes_per_row[] = {1, 2, 4, 6};
    double *t = malloc(sizeof(double) * repeats);
    printf("{\"n_rows\": %ld, \"width\": %ld, \"n_touch\": %ld, \"threads\": %d",
           n_rows, H, n, threads);
    for (int sorted = 0; sorted <= 1; sorted++) {
        for (int kernel = 0; kernel < 4; kernel++) {
            for (int r = 0; r < repeats; r++) {
                pick_rows(perm, n_rows, idx, n, sorted); /* new rows: cold caches */
                double t0 = omp_get_wtime();
                run_kernel(kernel, idx, n, H, W, S1, S2, threads);
                t[r] = omp_get_wtime() - t0;
            }
            qsort(t, repeats, sizeof(double), cmp_double);
            double sec = t[repeats / 2];
            double gb = (double)bytes_per_row[kernel] * n * H * sizeof(float) / 1e9;
            printf(", \"%s_%s\": {\"seconds\": %.6f, \"GB_per_s\": %.3f}",
                   kernels[kernel], sorted ? "sorted" : "random", sec, gb / sec);
        }
    }
    printf(", \"checksum\": %g}\n", (double)sink[0]);
    free(t); free(perm); free(idx); free(W); free(S1); free(S2); free(sink);
    return 0;
}
