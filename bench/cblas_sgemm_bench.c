// Plain C baseline for `paella bench gemm`: times cblas_sgemm on the v1 denoiser shapes and prints one JSON
// object per line in the same format, so the Swift BLAS path can be compared with a direct call.
// Build and run: bench/cblas-baseline.sh (gcc -O2 ... -lopenblas).
// Usage: cblas_sgemm_bench [threads] [repeats]
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);

typedef struct { const char *name; int m, n, k; } shape;

// The v1 denoiser's GEMM shapes, M x N x K (row-major, neither operand transposed), as in GEMMBenchmark.swift.
static const shape shapes[] = {
    {"1024x1280x320", 1024, 1280, 320},
    {"1024x320x1280", 1024, 320, 1280},
    {"256x2560x640", 256, 2560, 640},
    {"64x5120x1280", 64, 5120, 1280},
    {"1024x8192x320", 1024, 8192, 320},
};

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int repeats = argc > 2 ? atoi(argv[2]) : 10;
    if (threads < 1 || repeats < 1) {
        fprintf(stderr, "usage: %s [threads>=1] [repeats>=1]\n", argv[0]);
        return 2;
    }
    openblas_set_num_threads(threads);
    double *times = malloc(sizeof(double) * repeats);
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
        for (int i = 0; i < m * k; i++) a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (int i = 0; i < k * n; i++) b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
        memset(c, 0, sizeof(float) * m * n);
        // Warm-up: first-touch of C and the library's thread start-up are not part of the measurement.
        for (int w = 0; w < 2; w++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        for (int r = 0; r < repeats; r++) {
            double t0 = now_ms();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
            times[r] = now_ms() - t0;
        }
        qsort(times, repeats, sizeof(double), cmp);
        double median = repeats % 2 ? times[repeats / 2] : 0.5 * (times[repeats / 2 - 1] + times[repeats / 2]);
        double gflops = 2.0 * m * n * k / (median * 1e6);
        printf("{\"name\": \"%s\", \"median_ms\": %.4f, \"gflops\": %.2f, \"backend\": \"c-cblas\", \"threads\": %d}\n",
               shapes[s].name, median, gflops, threads);
        free(a); free(b); free(c);
    }
    free(times);
    return 0;
}
