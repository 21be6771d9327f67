/*
 * bench_expand.c — the LoRA expand of one decode step, two ways, on one
 * thread of the current ISA.
 *
 *   build/bench/bench_expand [--dout N] [--reps N] [--isa scalar|avx2|avx512]
 *
 * 256 tokens each add the products of 3 of 64 rank-16 f16 adapters to
 * their output rows (Y: 256 x dout f32, this thread's half of the
 * columns, as a step of two threads splits them). The groups are the
 * adapters' rows, about 12 each, tokens scattered:
 *   rows+add  rm_matmul_rows of a group into scratch, then rm_vec_add of
 *             each row into Y (the expand before rm_matmul_rows_add);
 *   rows_add  rm_matmul_rows_add straight into Y's rows.
 * Before each timed pass Y is touched once, as the base's product leaves
 * it. Best of --reps (default 15); one JSON line with ms and GFLOP/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

enum { TOKENS = 256, POOL = 64, TOP = 3, RANK = 16 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int64_t dout = 5632;
    int reps = 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dout") && i + 1 < argc) dout = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *want = argv[++i];
            int isa = 0;
            while (isa < RM_ISA_COUNT && strcmp(rm_isa_name((rm_isa)isa), want)) isa++;
            if (isa == RM_ISA_COUNT || rm_isa_set((rm_isa)isa) != RAMOLE_OK) {
                fprintf(stderr, "bench_expand: ISA %s is not available here\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_expand [--dout N] [--reps N] [--isa scalar|avx2|avx512]\n");
            return 2;
        }
    }
    if (dout < 2 || reps < 1) {
        fprintf(stderr, "bench_expand: --dout must be at least 2 and --reps at least 1\n");
        return 2;
    }
    int64_t half = dout / 2;
    float *y = malloc(sizeof(float) * (size_t)(TOKENS * dout));
    float *U = malloc(sizeof(float) * TOKENS * TOP * RANK), *scratch = malloc(sizeof(float) * (size_t)(TOKENS * half));
    uint16_t *B[POOL];
    int (*tok)[TOKENS * TOP] = malloc(sizeof(int[POOL][TOKENS * TOP]));
    int nrows[POOL] = {0};
    if (!y || !U || !scratch || !tok) return 1;
    for (int64_t i = 0; i < TOKENS * dout; i++) y[i] = 0.001f * (float)(i % 97);
    for (int i = 0; i < TOKENS * TOP * RANK; i++) U[i] = 0.01f * (float)(i % 13 - 6);
    for (int g = 0; g < POOL; g++) {
        if (!(B[g] = malloc(2 * (size_t)(dout * RANK)))) return 1;
        for (int64_t i = 0; i < dout * RANK; i++) B[g][i] = rm_f32_to_f16(0.02f * (float)((i * 7 + g) % 11 - 5));
    }
    for (int t = 0; t < TOKENS; t++) /* three distinct adapters per token, scattered */
        for (int j = 0; j < TOP; j++) {
            int g = (t * 7 + j * 13 + t / 5) % POOL;
            tok[g][nrows[g]++] = t;
        }
    float **yp = malloc(sizeof *yp * TOKENS * TOP);
    const float **zp = malloc(sizeof *zp * TOKENS * TOP);
    double best[2] = {1e30, 1e30};
    for (int rep = 0; rep < reps; rep++)
        for (int way = 0; way < 2; way++) {
            for (int64_t i = 0; i < TOKENS * dout; i += 16) y[i] += 1.0f;
            double t0 = now();
            for (int g = 0, first = 0; g < POOL; first += nrows[g], g++) {
                int n = nrows[g];
                for (int q = 0; q < n; q++) {
                    zp[q] = U + (size_t)(first + q) * RANK;
                    yp[q] = y + (size_t)tok[g][q] * (size_t)dout;
                }
                if (way == 0) {
                    rm_matmul_rows(scratch, half, zp, n, B[g], RM_TYPE_F16, half, RANK);
                    for (int q = 0; q < n; q++) rm_vec_add(yp[q], scratch + (size_t)q * (size_t)half, half);
                } else {
                    rm_matmul_rows_add(yp, zp, n, B[g], RM_TYPE_F16, half, RANK);
                }
            }
            double dt = now() - t0;
            if (dt < best[way]) best[way] = dt;
        }
    double flop = 2.0 * TOKENS * TOP * (double)half * RANK;
    printf("{\"bench\":\"expand\",\"isa\":\"%s\",\"dout\":%lld,\"rows_then_add_ms\":%.3f,\"rows_add_ms\":%.3f,"
           "\"rows_then_add_gflops\":%.1f,\"rows_add_gflops\":%.1f,\"speedup\":%.2f}\n",
           rm_isa_name(rm_isa_current()), (long long)dout, best[0] * 1e3, best[1] * 1e3, flop / best[0] * 1e-9,
           flop / best[1] * 1e-9, best[0] / best[1]);
    for (int g = 0; g < POOL; g++) free(B[g]);
    free(y), free(U), free(scratch), free(tok), free(yp), free(zp);
    return 0;
}
