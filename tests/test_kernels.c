/*
 * test_kernels.c — every kernel against its naive reference, on every
 * instruction set this CPU supports (an unsupported one is reported as a
 * skipped note, never as a pass): conversions bit-exact (f16 exhaustively,
 * against GCC's _Float16 as an outside reference), q8_0 quantisation against
 * a straightforward re-implementation of ggml's rule, matmul on odd shapes
 * for both the dot and the GEMM path with 1-3 threads, row ops, and RoPE
 * against rm_rope_ref and against values dumped from PyTorch (HF formulas).
 */
#include "test.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/kern_internal.h" /* the dot/sgemm switch point */
#include "kernels/hgemm.h"
#include "kernels/qgemm.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void) { return rm_test_rng_u32(&g_rng); }
static float rng_unif(void) { return rm_test_rng_unif(&g_rng); }
static void fill(float *v, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) v[i] = rng_unif() * scale;
}
/* Tests added after the others draw from their own copy of the sequence, so
 * that the data (and the float tolerances) of the tests after them stay the same. */
#define RNG_PRIVATE_BEGIN uint64_t rng_saved_ = g_rng
#define RNG_PRIVATE_END g_rng = rng_saved_
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ||y - r|| / ||mag|| (or ||y - r|| when mag is zero); with mag the size of
 * the outputs before their terms cancel, the error of the quantised paths,
 * whose rounding scales with that size, so a single output that happens to
 * land near zero does not look like a failure. */
static double rel_err_to(const float *y, const float *r, const float *mag, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - r[i];
        num += d * d;
        den += (double)mag[i] * mag[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ||y - r|| / ||r|| (or ||y - r|| when r is zero). */
static double rel_err(const float *y, const float *r, int64_t n) { return rel_err_to(y, r, r, n); }

/* |W| (n_w elements of type wt, widened) and |X| (n_x floats): the inputs of
 * the magnitudes |X| |W|^T that rel_err_to measures against. */
static void abs_inputs(rm_type wt, const void *w, int64_t n_w, float *wa, const float *x, int64_t n_x, float *xa) {
    rm_convert(RM_TYPE_F32, wa, wt, w, n_w);
    for (int64_t i = 0; i < n_w; i++) wa[i] = fabsf(wa[i]);
    for (int64_t i = 0; i < n_x; i++) xa[i] = fabsf(x[i]);
}

/* Log capture: deliberate misuse below logs; keep it off the terminal and check it. */
static int g_log_count;
static char g_log_last[256];
static void log_capture(ramole_log_level level, const char *msg, void *user) {
    (void)level, (void)user;
    g_log_count++;
    snprintf(g_log_last, sizeof g_log_last, "%s", msg);
}
static ramole_log_level log_capture_begin(void) {
    ramole_log_level cur = RAMOLE_LOG_ERROR;
    for (int l = RAMOLE_LOG_DEBUG; l >= RAMOLE_LOG_ERROR; l--)
        if (rm_log_enabled((ramole_log_level)l)) { cur = (ramole_log_level)l; break; }
    g_log_count = 0;
    g_log_last[0] = 0;
    ramole_log_set(cur > RAMOLE_LOG_WARN ? cur : RAMOLE_LOG_WARN, log_capture, NULL);
    return cur;
}
static void log_capture_end(ramole_log_level saved) { ramole_log_set(saved, NULL, NULL); }

/*
 * The ISAs to test: every supported one. Unsupported ones are announced once
 * (a note, not a PASS line) so a run on a smaller CPU says what it skipped.
 */
static int isa_list(rm_isa out[RM_ISA_COUNT]) {
    static bool noted[RM_ISA_COUNT];
    int n = 0;
    for (int i = 0; i < RM_ISA_COUNT; i++) {
        if (rm_isa_supported((rm_isa)i)) out[n++] = (rm_isa)i;
        else if (!noted[i]) {
            printf("NOTE kernels: %s is not supported by this CPU; its variants are not tested\n",
                   rm_isa_name((rm_isa)i));
            noted[i] = true;
        }
    }
    return n;
}

/* ---- types and conversions ----------------------------------------------- */

TEST(kernels_type_table) {
    rm_type t;
    CHECK(strcmp(rm_type_name(RM_TYPE_Q8_0), "q8_0") == 0);
    CHECK(rm_type_from_name("bf16", &t) && t == RM_TYPE_BF16);
    CHECK(rm_type_from_name("q4_k", &t) && t == RM_TYPE_Q4_K);
    CHECK(!rm_type_from_name("q4_K", &t) && !rm_type_from_name("q5_0", &t));
    CHECK(rm_type_block_elems(RM_TYPE_Q8_0) == 32 && rm_type_block_bytes(RM_TYPE_Q8_0) == 34);
    CHECK(rm_type_row_bytes(RM_TYPE_Q8_0, 4096) == 128 * 34);
    CHECK(rm_type_row_bytes(RM_TYPE_F16, 7) == 14 && rm_type_row_bytes(RM_TYPE_F32, 7) == 28);
    CHECK(sizeof(rm_block_q8_0) == 34);
    CHECK(rm_isa_supported(RM_ISA_SCALAR));
    CHECK(rm_isa_supported(rm_isa_best()));
    CHECK_ERR(rm_isa_set((rm_isa)99), RAMOLE_ERR_INVALID);
    for (int i = 0; i < RM_ISA_COUNT; i++) /* an ISA the CPU lacks is refused with a reason */
        if (!rm_isa_supported((rm_isa)i)) {
            CHECK_ERR(rm_isa_set((rm_isa)i), RAMOLE_ERR_UNSUPPORTED);
            CHECK(strstr(ramole_last_error(), rm_isa_name((rm_isa)i)) != NULL);
        }
    CHECK(rm_isa_current() == rm_isa_best() || getenv("RAMOLE_ISA"));
}

/* All 65536 halves: scalar decode vs GCC's _Float16, round trip, bulk == scalar. */
TEST(kernels_f16_exhaustive) {
    enum { N = 65536 };
    uint16_t *h = malloc(N * 2), *h2 = malloc(N * 2);
    float *f = malloc(N * 4), *f2 = malloc(N * 4);
    int bad_dec = 0, bad_rt = 0;
    for (int i = 0; i < N; i++) {
        h[i] = (uint16_t)i;
        f[i] = rm_f16_to_f32(h[i]);
        _Float16 ref;
        memcpy(&ref, &h[i], 2);
        float rf = (float)ref;
        if (isnan(rf) ? !isnan(f[i]) : f32_bits(rf) != f32_bits(f[i])) bad_dec++;
        uint16_t back = rm_f32_to_f16(f[i]);
        if (isnan(f[i]) ? back != (h[i] | 0x200) : back != h[i]) bad_rt++;
    }
    CHECK_MSG(bad_dec == 0, "%d halves decode differently from _Float16", bad_dec);
    CHECK_MSG(bad_rt == 0, "%d halves do not round-trip", bad_rt);
    rm_isa isas[RM_ISA_COUNT], saved = rm_isa_current();
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        rm_convert(RM_TYPE_F32, f2, RM_TYPE_F16, h, N);
        rm_convert(RM_TYPE_F16, h2, RM_TYPE_F32, f, N);
        int bad = 0;
        for (int i = 0; i < N; i++)
            bad += f32_bits(f2[i]) != f32_bits(f[i]) || h2[i] != rm_f32_to_f16(f[i]);
        CHECK_MSG(bad == 0, "%s: %d bulk f16 conversions differ from scalar", rm_isa_name(isas[t]), bad);
    }
    rm_isa_set(saved);
    free(h), free(h2), free(f), free(f2);
}

/* f32 -> f16 on chosen edges and random bit patterns (incl. NaN, subnormal). */
TEST(kernels_f32_to_f16_rounding) {
    static const struct { float f; uint16_t h; } edges[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {65504.0f, 0x7bff}, {65519.99f, 0x7bff},
        {65520.0f, 0x7c00}, {-1e9f, 0xfc00}, {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000},
        {0x1.8p-25f, 0x0001}, {0x1.8p-24f, 0x0002}, {0x1p-14f, 0x0400}, {0x1.ffcp-15f, 0x0400},
        {1.0f + 0x1p-11f, 0x3c00}, {1.0f + 0x1.8p-10f, 0x3c02}, {INFINITY, 0x7c00}, {-INFINITY, 0xfc00},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        CHECK_MSG(rm_f32_to_f16(edges[i].f) == edges[i].h, "f16(%a) = 0x%04x, want 0x%04x", edges[i].f,
                  rm_f32_to_f16(edges[i].f), edges[i].h);
    CHECK((rm_f32_to_f16(NAN) & 0x7fff) > 0x7c00);
    enum { N = 1 << 18 };
    float *f = malloc(N * 4);
    uint16_t *h = malloc(N * 2);
    for (int i = 0; i < N; i++) f[i] = bits_f32(rng_u32() ^ (rng_u32() << 16));
    int bad = 0;
    for (int i = 0; i < N; i++) {
        _Float16 r = (_Float16)f[i];
        uint16_t rb;
        memcpy(&rb, &r, 2);
        if (!isnan(f[i]) && rb != rm_f32_to_f16(f[i])) bad++;
    }
    CHECK_MSG(bad == 0, "%d f32->f16 roundings differ from _Float16", bad);
    rm_isa isas[RM_ISA_COUNT], saved = rm_isa_current();
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        rm_convert(RM_TYPE_F16, h, RM_TYPE_F32, f, N);
        int b2 = 0;
        for (int i = 0; i < N; i++) b2 += h[i] != rm_f32_to_f16(f[i]);
        CHECK_MSG(b2 == 0, "%s: %d bulk f32->f16 differ from scalar", rm_isa_name(isas[t]), b2);
    }
    rm_isa_set(saved);
    free(f), free(h);
}

TEST(kernels_bf16_conversions) {
    static const struct { uint32_t f; uint16_t h; } edges[] = {
        {0x00000000, 0x0000}, {0x80000000, 0x8000}, {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80}, /* tie -> even */
        {0x3f818000, 0x3f82}, {0x3f808001, 0x3f81}, {0x7f800000, 0x7f80}, {0xff800000, 0xff80},
        {0x7f7fffff, 0x7f80}, /* max float rounds to inf */ {0x00000001, 0x0000}, {0x00010000, 0x0001},
        {0x7f800001, 0x7fc0}, /* signalling NaN -> quiet */ {0xffc00000, 0xffc0},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        CHECK_MSG(rm_f32_to_bf16(bits_f32(edges[i].f)) == edges[i].h, "bf16(0x%08x) = 0x%04x, want 0x%04x",
                  edges[i].f, rm_f32_to_bf16(bits_f32(edges[i].f)), edges[i].h);
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        float f = rm_bf16_to_f32((uint16_t)i);
        if (f32_bits(f) != (uint32_t)i << 16) bad++;
        uint16_t back = rm_f32_to_bf16(f);
        if (isnan(f) ? (back & 0x7fff) <= 0x7f80 : back != i) bad++;
    }
    CHECK_MSG(bad == 0, "%d bf16 values do not round-trip", bad);
    enum { N = 1 << 18 };
    float *f = malloc(N * 4), *f2 = malloc(N * 4);
    uint16_t *h = malloc(N * 2);
    for (int i = 0; i < N; i++) f[i] = bits_f32(rng_u32() ^ (rng_u32() << 16));
    f[5] = bits_f32(0x7f800001);
    f[77] = bits_f32(0xff812345);
    rm_isa isas[RM_ISA_COUNT], saved = rm_isa_current();
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        rm_convert(RM_TYPE_BF16, h, RM_TYPE_F32, f, N - 3); /* odd count: tails */
        rm_convert(RM_TYPE_F32, f2, RM_TYPE_BF16, h, N - 3);
        int b2 = 0;
        for (int i = 0; i < N - 3; i++)
            b2 += h[i] != rm_f32_to_bf16(f[i]) || f32_bits(f2[i]) != (uint32_t)h[i] << 16;
        CHECK_MSG(b2 == 0, "%s: %d bulk bf16 conversions differ from scalar", rm_isa_name(isas[t]), b2);
    }
    rm_isa_set(saved);
    free(f), free(f2), free(h);
}

/* ggml's quantize_row_q8_0_ref, written out independently. */
static void q8_quantize_naive(rm_block_q8_0 *out, const float *x, int64_t k) {
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(x[b * 32 + j]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d ? 1.0f / d : 0.0f;
        out[b].d = rm_f32_to_f16(d);
        for (int j = 0; j < 32; j++) out[b].qs[j] = (int8_t)roundf(x[b * 32 + j] * id);
    }
}

TEST(kernels_q8_0_quantize) {
    enum { NB = 512, K = NB * 32 };
    float *x = malloc(K * 4), *deq = malloc(K * 4);
    rm_block_q8_0 *q = malloc(NB * sizeof *q), *ref = malloc(NB * sizeof *ref);
    for (int b = 0; b < NB; b++) {
        float scale = powf(2.0f, (float)(b % 40) - 20.0f);
        fill(x + b * 32, 32, scale);
    }
    for (int j = 0; j < 32; j++) x[j] = 0.0f;                 /* all-zero block */
    for (int j = 0; j < 32; j++) x[32 + j] = (float)(j - 16); /* exact halves: x*id = k.5 */
    x[64] = 1e-40f;                                           /* subnormal amax */
    for (int j = 0; j < 32; j++) x[96 + j] = 0.5f * (float)(j - 16) * (127.0f / 16.0f);
    q8_quantize_naive(ref, x, K);
    rm_isa isas[RM_ISA_COUNT], saved = rm_isa_current();
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        memset(q, 0x55, NB * sizeof *q);
        rm_convert(RM_TYPE_Q8_0, q, RM_TYPE_F32, x, K);
        int bad = 0;
        for (int b = 0; b < NB; b++) bad += memcmp(&q[b], &ref[b], sizeof *q) != 0;
        CHECK_MSG(bad == 0, "%s: %d q8_0 blocks differ from the reference quantiser", rm_isa_name(isas[t]), bad);
        rm_convert(RM_TYPE_F32, deq, RM_TYPE_Q8_0, ref, K);
        int bad_d = 0;
        for (int i = 0; i < K; i++) bad_d += deq[i] != rm_f16_to_f32(ref[i / 32].d) * ref[i / 32].qs[i % 32];
        CHECK_MSG(bad_d == 0, "%s: %d dequantised values wrong", rm_isa_name(isas[t]), bad_d);
        /* f16 <-> q8_0 goes through f32 chunks */
        uint16_t *h = malloc(K * 2);
        rm_convert(RM_TYPE_F16, h, RM_TYPE_Q8_0, ref, K);
        int bad_h = 0;
        for (int i = 0; i < K; i++) bad_h += h[i] != rm_f32_to_f16(deq[i]);
        CHECK(bad_h == 0);
        free(h);
    }
    rm_isa_set(saved);
    /* the quantisation error is at most half a step per element */
    /* (plus what rounding d to f16 costs: 127 |d - d16|, large once d is f16-subnormal) */
    double worst = 0;
    for (int b = 0; b < NB; b++) {
        double amax = 0;
        for (int l = 0; l < 32; l++) amax = fmax(amax, fabs(x[b * 32 + l]));
        double d = amax / 127.0, d16 = rm_f16_to_f32(ref[b].d);
        double bound = 0.5 * d * (1 + 1e-6) + 127.0 * fabs(d - d16) + 1e-45;
        for (int j = 0; j < 32; j++) {
            double e = fabs((double)x[b * 32 + j] - d16 * ref[b].qs[j]);
            if (e > bound) worst = fmax(worst, e / bound);
        }
    }
    CHECK_MSG(worst == 0, "q8_0 error exceeds half a step (x%.3g)", worst);
    free(x), free(deq), free(q), free(ref);
}

/* ---- matmul --------------------------------------------------------------- */

static const int64_t mm_ms[] = {1, 2, 3, 6, 15, 17, 64}; /* 6, 15: the four-row kernels + leftovers */
static const int64_t mm_ns[] = {1, 7, 33, 130};

/* Quantise-then-dequantise X rows, as the q8_0 dot path sees them. */
static void q8_roundtrip(float *out, const float *x, int64_t m, int64_t k) {
    rm_block_q8_0 *q = malloc((size_t)(k / 32) * sizeof *q);
    for (int64_t i = 0; i < m; i++) {
        q8_quantize_naive(q, x + i * k, k);
        for (int64_t l = 0; l < k; l++) out[i * k + l] = rm_f16_to_f32(q[l / 32].d) * q[l / 32].qs[l % 32];
    }
    free(q);
}

/*
 * ggml's q8_K rule written out independently (max by magnitude with its
 * sign, iscale = -127 / max, levels clamped to 127, x ~ q / iscale), applied
 * and undone: X as the k-quant dot path sees it.
 */
static void q8k_roundtrip(float *out, const float *x, int64_t m, int64_t k) {
    for (int64_t b = 0; b < m * k; b += 256) {
        float max = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(x[b + j]) > fabsf(max)) max = x[b + j];
        float iscale = max != 0.0f ? -127.f / max : 0.0f, d = max != 0.0f ? 1 / iscale : 0.0f;
        for (int j = 0; j < 256; j++) {
            float q = rintf(iscale * x[b + j]);
            out[b + j] = d * (q > 127 ? 127 : q);
        }
    }
}

/*
 * X rounded as the dot path against long f16/bf16 rows sees it (matmul.c): times
 * 2^(15 - q), where max |x| < 2^q, rounded to f16, and scaled back.
 */
static void half_x_roundtrip(float *out, const float *x, int64_t k) {
    float amax = 0;
    for (int64_t i = 0; i < k; i++) amax = fmaxf(amax, fabsf(x[i]));
    int q;
    frexpf(amax, &q);
    for (int64_t i = 0; i < k; i++) out[i] = ldexpf(rm_f16_to_f32(rm_f32_to_f16(ldexpf(x[i], 15 - q))), q - 15);
}

/* X rounded as the integer dot path of weight type wt quantises it. */
static void act_roundtrip(rm_type wt, float *out, const float *x, int64_t m, int64_t k) {
    if (rm_type_block_elems(wt) == 256) q8k_roundtrip(out, x, m, k);
    else q8_roundtrip(out, x, m, k);
}

typedef struct {
    double worst_ref, worst_qref, worst_thread, worst_noscratch;
} mm_stats;

/* One (m, n, k) shape of weight type wt against the references, every ISA, 1-3 threads. */
static void mm_check_shape(rm_type wt, int64_t m, int64_t n, int64_t k, const void *w, rm_pool **pools,
                           mm_stats *st) {
    float *x = malloc((size_t)(m * k) * 4), *ref = malloc((size_t)(m * n) * 4);
    float *y = malloc((size_t)(m * n) * 4), *y2 = malloc((size_t)(m * n) * 4);
    float *qref = NULL;
    fill(x, m * k, 1.0f);
    rm_matmul_ref(ref, x, m, w, wt, n, k);
    float *mag = NULL; /* |X| |W|^T: the size of each output before cancellation */
    bool half_x = (wt == RM_TYPE_F16 || wt == RM_TYPE_BF16) && m == 1 && k > RM_KERN_HALF_X_MIN_K;
    if (rm_type_is_quant(wt) || half_x) {
        float *xa = malloc((size_t)(m * k) * 4), *wa = malloc((size_t)(n * k) * 4);
        mag = malloc((size_t)(m * n) * 4);
        for (int64_t i = 0; i < m * k; i++) xa[i] = fabsf(x[i]);
        rm_convert(RM_TYPE_F32, wa, wt, w, n * k);
        for (int64_t i = 0; i < n * k; i++) wa[i] = fabsf(wa[i]);
        rm_matmul_ref(mag, xa, m, wa, RM_TYPE_F32, n, k);
        free(xa), free(wa);
    }
    bool int8_gemm = (wt == RM_TYPE_Q8_0 || wt == RM_TYPE_Q4_K || wt == RM_TYPE_Q6_K) && m >= rm_kern_matmul_gemm_min_m(wt) &&
                     rm_kern_matmul_int8_gemm();
    if (rm_type_is_quant(wt) && (m < 16 || int8_gemm)) { /* the int8 paths: exact up to float rounding on quantised X */
        float *xq = malloc((size_t)(m * k) * 4);
        qref = malloc((size_t)(m * n) * 4);
        act_roundtrip(wt, xq, x, m, k);
        rm_matmul_ref(qref, xq, m, w, wt, n, k);
        free(xq);
    }
    if (half_x) { /* f16 X: within 2^-12 of |X| |W|^T, and exact on the rounded X */
        float *xh = malloc((size_t)k * 4);
        qref = malloc((size_t)n * 4);
        half_x_roundtrip(xh, x, k);
        rm_matmul_ref(qref, xh, 1, w, wt, n, k);
        free(xh);
    }
    size_t ws = rm_matmul_work_size(wt, m, n, k, 3);
    void *work = ws ? malloc(ws) : NULL;
    rm_isa isas[RM_ISA_COUNT];
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        rm_compute c = {.pool = NULL, .work = work, .work_size = ws};
        rm_matmul(&c, y, x, m, w, wt, n, k);
        st->worst_ref = fmax(st->worst_ref, mag ? rel_err_to(y, ref, mag, m * n) : rel_err(y, ref, m * n));
        const rm_kern_ops *ops = rm_kern_ops_get();
        bool int8_here = m < 16 || (int8_gemm && (wt == RM_TYPE_Q8_0   ? rm_qgemm_q8_0_get(ops) != NULL
                                                  : wt == RM_TYPE_Q4_K ? rm_qgemm_q4_k_get(ops) != NULL
                                                                       : rm_qgemm_q6_k_get(ops) != NULL));
        if (qref && (int8_here || half_x)) st->worst_qref = fmax(st->worst_qref, rel_err_to(y, qref, mag, m * n));
        for (int p = 0; p < 3; p++) {
            c.pool = pools[p];
            memset(y2, 0, (size_t)(m * n) * 4);
            rm_matmul(&c, y2, x, m, w, wt, n, k);
            st->worst_thread = fmax(st->worst_thread, rel_err(y2, y, m * n));
        }
        rm_compute none = {.pool = pools[1]};
        ramole_log_level lv = log_capture_begin(); /* "scratch too small" (once per process) */
        rm_matmul(&none, y2, x, m, w, wt, n, k);   /* no scratch: slower path, same answer */
        log_capture_end(lv);
        st->worst_noscratch = fmax(st->worst_noscratch, mag ? rel_err_to(y2, ref, mag, m * n) : rel_err(y2, ref, m * n));
    }
    free(work), free(x), free(ref), free(y), free(y2), free(qref), free(mag);
}

static void mm_check_type(rm_type wt, const int64_t *ks, int nk, double tol_ref) {
    rm_pool *pools[3] = {NULL, NULL, NULL};
    for (int p = 0; p < 3; p++) CHECK_OK(rm_pool_new(p + 1, &pools[p]));
    rm_isa saved = rm_isa_current();
    mm_stats st = {0};
    for (int ik = 0; ik < nk; ik++) {
        for (size_t in = 0; in < sizeof mm_ns / sizeof mm_ns[0]; in++) {
            int64_t k = ks[ik], n = mm_ns[in];
            float *wf = malloc((size_t)(n * k) * 4);
            fill(wf, n * k, 0.5f);
            void *w = malloc(rm_type_row_bytes(wt, k) * (size_t)n);
            rm_convert(wt, w, RM_TYPE_F32, wf, n * k);
            for (size_t im = 0; im < sizeof mm_ms / sizeof mm_ms[0]; im++)
                mm_check_shape(wt, mm_ms[im], n, k, w, pools, &st);
            free(wf), free(w);
        }
    }
    rm_isa_set(saved);
    CHECK_MSG(st.worst_ref <= tol_ref, "%s: error vs reference %.3g > %.3g", rm_type_name(wt), st.worst_ref, tol_ref);
    CHECK_MSG(st.worst_qref <= 2e-6, "%s: int8 or f16 X path vs reference on the rounded X %.3g", rm_type_name(wt), st.worst_qref);
    CHECK_MSG(st.worst_thread <= 1e-6, "%s: threaded differs from single %.3g", rm_type_name(wt), st.worst_thread);
    CHECK_MSG(st.worst_noscratch <= tol_ref, "%s: no-scratch path error %.3g", rm_type_name(wt), st.worst_noscratch);
    if (getenv("RM_TEST_VERBOSE"))
        printf("  %s: ref %.3g qref %.3g threads %.3g noscratch %.3g\n", rm_type_name(wt), st.worst_ref,
               st.worst_qref, st.worst_thread, st.worst_noscratch);
    for (int p = 0; p < 3; p++) rm_pool_free(pools[p]);
}

static const int64_t mm_ks_float[] = {1, 7, 8, 16, 24, 32, 33, 64, 72, 4097};
static const int64_t mm_ks_q8[] = {32, 64, 96, 4096};

/*
 * Tolerances: float accumulation over k = 4097 on a 1x1 output whose terms
 * cancel reaches ~1e-5 of |y|; the block types against f32 X carry the
 * quantisation of X (about 1% of |X| |W|^T, the measure used for them) —
 * the int8 path is also checked tightly against the reference run on the
 * quantised X.
 */
TEST(kernels_matmul_f32) { mm_check_type(RM_TYPE_F32, mm_ks_float, 10, 5e-5); }
TEST(kernels_matmul_f16) { mm_check_type(RM_TYPE_F16, mm_ks_float, 10, 5e-5); }
TEST(kernels_matmul_bf16) { mm_check_type(RM_TYPE_BF16, mm_ks_float, 10, 5e-5); }
TEST(kernels_matmul_q8_0) { mm_check_type(RM_TYPE_Q8_0, mm_ks_q8, 4, 5e-3); }

/* The same shapes with the int8 GEMM path off: dequantised panels and sgemm. */
TEST(kernels_matmul_q8_0_sgemm) {
    bool saved = rm_kern_matmul_int8_gemm();
    rm_kern_matmul_set_int8_gemm(false);
    mm_check_type(RM_TYPE_Q8_0, mm_ks_q8, 4, 5e-3);
    rm_kern_matmul_set_int8_gemm(saved);
}

/*
 * The int8 GEMM kernels (qgemm.c) on one tile: the scalar kernel against
 * exact integer block sums computed here from the q8_0 blocks, accumulated
 * in the documented order (so bit for bit), and every SIMD kernel and packer
 * this CPU runs against the scalar ones, bit for bit, for every row count and
 * several column counts, including -127/127 levels.
 */
TEST(kernels_qgemm_q8_0_kernels_match_exact_integer_sums) {
    enum { NB = 5, K = NB * 32, M = RM_QGEMM_ROWS, C = RM_QGEMM_TILE_COLS };
    float *wf = malloc(C * K * 4), *xf = malloc(M * K * 4);
    fill(wf, C * K, 0.5f);
    fill(xf, M * K, 1.0f);
    for (int i = 0; i < C * K; i += 37) wf[i] = i % 2 ? 9.0f : -9.0f; /* extremes: levels +-127 */
    for (int i = 0; i < M * K; i += 29) xf[i] = i % 2 ? 9.0f : -9.0f;
    rm_block_q8_0 w[C * NB], xq[M * NB];
    rm_convert(RM_TYPE_Q8_0, w, RM_TYPE_F32, wf, C * K);
    rm_convert(RM_TYPE_Q8_0, xq, RM_TYPE_F32, xf, M * K);
    uint8_t *tile = aligned_alloc(64, rm_qgemm_tile_bytes(NB)), xu[M * K];
    float xd[M * NB], want[M * C], got[M * C], simd[M * C];
    for (int r = 0; r < M; r++) rm_qgemm_pack_act(xu + r * K, xd + r * NB, xq + r * NB, NB);
    int bad_ref = 0, bad_simd = 0, bad_pack = 0;
    static const int ncs[] = {1, 7, 16, 17, 31, C};
    for (size_t ic = 0; ic < sizeof ncs / sizeof ncs[0]; ic++) {
        int nc = ncs[ic];
        rm_qgemm_pack_tile(tile, w, NB, nc);
        if (rm_isa_supported(RM_ISA_AVX512) && __builtin_cpu_supports("avx512vnni")) {
            uint8_t *t2 = aligned_alloc(64, rm_qgemm_tile_bytes(NB));
            rm_qgemm_pack_tile_vnni(t2, w, NB, nc);
            bad_pack += memcmp(t2, tile, rm_qgemm_tile_bytes(NB)) != 0;
            free(t2);
        }
        for (int r = 0; r < M; r++)
            for (int c = 0; c < C; c++) {
                float acc = 0;
                for (int b = 0; b < NB; b++) {
                    int32_t s = 0;
                    if (c < nc)
                        for (int e = 0; e < 32; e++) s += xq[r * NB + b].qs[e] * w[c * NB + b].qs[e];
                    float dw = c < nc ? rm_f16_to_f32(w[c * NB + b].d) : 0.0f;
                    acc = fmaf((float)s, dw * rm_f16_to_f32(xq[r * NB + b].d), acc);
                }
                want[r * C + c] = acc;
            }
        for (int nr = 1; nr <= M; nr++) {
            memset(got, 0, sizeof got);
            rm_qgemm_q8_0_scalar(xu, xd, K, nr, tile, NB, got, C, nc);
            for (int r = 0; r < nr; r++)
                for (int c = 0; c < nc; c++) bad_ref += memcmp(&got[r * C + c], &want[r * C + c], 4) != 0;
            rm_qgemm_fn fns[2] = {rm_isa_supported(RM_ISA_AVX2) ? rm_qgemm_q8_0_avx2 : NULL, NULL};
            if (rm_isa_supported(RM_ISA_AVX512) && __builtin_cpu_supports("avx512vnni")) fns[1] = rm_qgemm_q8_0_vnni;
            for (int f = 0; f < 2; f++) {
                if (!fns[f]) continue;
                for (int i = 0; i < M * C; i++) simd[i] = got[i];
                fns[f](xu, xd, K, nr, tile, NB, simd, C, nc);
                bad_simd += memcmp(simd, got, sizeof got) != 0;
            }
        }
    }
    CHECK_MSG(bad_ref == 0, "%d outputs of the scalar int8 GEMM kernel differ from exact integer sums", bad_ref);
    CHECK_MSG(bad_simd == 0, "%d SIMD int8 GEMM kernel runs differ from the scalar kernel", bad_simd);
    CHECK_MSG(bad_pack == 0, "%d tiles packed with gathers differ from the scalar packing", bad_pack);
    free(tile), free(wf), free(xf);
}

/*
 * The q4_k int8 GEMM kernels on one tile: the scalar kernel against exact
 * integer sums computed here from the blocks (levels, 6-bit scales and mins,
 * the q8_K sums), accumulated in the documented order, so bit for bit; the
 * VNNI kernel and packer, where this CPU has them, against the scalar ones.
 */
TEST(kernels_qgemm_q4_k_kernels_match_exact_integer_sums) {
    enum { NB = 2, K = NB * 256, M = RM_QGEMM_ROWS, C = RM_QGEMM_TILE_COLS };
    float *wf = malloc(C * K * 4), *xf = malloc(M * K * 4);
    fill(wf, C * K, 0.5f);
    fill(xf, M * K, 1.0f);
    rm_block_q4_k *w = malloc(C * NB * sizeof *w);
    rm_block_q8_k *x = malloc(M * NB * sizeof *x);
    rm_convert(RM_TYPE_Q4_K, w, RM_TYPE_F32, wf, C * K);
    for (int r = 0; r < M; r++) rm_kern_quantize_q8_k(x + r * NB, xf + r * K, K);
    uint8_t *tile = malloc(rm_qgemm_k4_tile_bytes(NB));
    float want[M * C], got[M * C], simd[M * C];
    bool vnni = rm_isa_supported(RM_ISA_AVX512) && __builtin_cpu_supports("avx512vnni");
    int bad_ref = 0, bad_simd = 0;
    static const int ncs[] = {1, 7, 17, C};
    for (size_t ic = 0; ic < sizeof ncs / sizeof ncs[0]; ic++) {
        int nc = ncs[ic];
        rm_qgemm_k4_pack_tile(tile, w, NB, nc);
        for (int r = 0; r < M; r++)
            for (int c = 0; c < nc; c++) {
                float acc = 0;
                for (int b = 0; b < NB; b++) {
                    const rm_block_q4_k *wb = &w[c * NB + b];
                    const rm_block_q8_k *xb = &x[r * NB + b];
                    uint8_t sc[8], mn[8];
                    rm_kern_unpack_k4(wb->scales, sc, mn);
                    int32_t S = 0, Mn = 0;
                    for (int j = 0; j < 8; j++) {
                        int32_t isum = 0, bs = 0;
                        for (int e = 0; e < 32; e++) {
                            int lv = (wb->qs[32 * (j / 2) + e] >> (4 * (j % 2))) & 0xF;
                            isum += lv * xb->qs[32 * j + e];
                            bs += xb->qs[32 * j + e];
                        }
                        S += sc[j] * isum;
                        Mn += mn[j] * bs;
                    }
                    acc = fmaf((float)S, rm_f16_to_f32(wb->d) * xb->d, acc);
                    acc = fmaf(-(float)Mn, rm_f16_to_f32(wb->dmin) * xb->d, acc);
                }
                want[r * C + c] = acc;
            }
        for (int nr = 1; nr <= M; nr++) {
            rm_qgemm_q4_k_scalar(x, nr, tile, NB, got, C, nc);
            for (int r = 0; r < nr; r++)
                for (int c = 0; c < nc; c++) bad_ref += memcmp(&got[r * C + c], &want[r * C + c], 4) != 0;
            if (!vnni) continue;
            memcpy(simd, got, sizeof got);
            rm_qgemm_q4_k_vnni(x, nr, tile, NB, simd, C, nc);
            for (int r = 0; r < nr; r++) bad_simd += memcmp(simd + r * C, got + r * C, (size_t)nc * 4) != 0;
        }
    }
    CHECK_MSG(bad_ref == 0, "%d outputs of the scalar q4_k GEMM kernel differ from exact integer sums", bad_ref);
    CHECK_MSG(bad_simd == 0, "%d rows of the VNNI q4_k GEMM kernel differ from the scalar kernel", bad_simd);
    free(tile), free(w), free(x), free(wf), free(xf);
}

/* The q6_k int8 GEMM kernels: the scalar kernel against exact integer sums
 * (levels - 32 times the int8 scales), the VNNI kernel against it. */
TEST(kernels_qgemm_q6_k_kernels_match_exact_integer_sums) {
    enum { NB = 2, K = NB * 256, M = RM_QGEMM_ROWS, C = RM_QGEMM_TILE_COLS };
    float *wf = malloc(C * K * 4), *xf = malloc(M * K * 4);
    fill(wf, C * K, 0.5f);
    fill(xf, M * K, 1.0f);
    rm_block_q6_k *w = malloc(C * NB * sizeof *w);
    rm_block_q8_k *x = malloc(M * NB * sizeof *x);
    rm_convert(RM_TYPE_Q6_K, w, RM_TYPE_F32, wf, C * K);
    for (int r = 0; r < M; r++) rm_kern_quantize_q8_k(x + r * NB, xf + r * K, K);
    uint8_t *tile = malloc(rm_qgemm_k6_tile_bytes(NB));
    float *lv = malloc(K * 4), want[M * C], got[M * C], simd[M * C];
    bool vnni = rm_isa_supported(RM_ISA_AVX512) && __builtin_cpu_supports("avx512vnni");
    int bad_ref = 0, bad_simd = 0;
    static const int ncs[] = {1, 17, C};
    for (size_t ic = 0; ic < sizeof ncs / sizeof ncs[0]; ic++) {
        int nc = ncs[ic];
        rm_qgemm_k6_pack_tile(tile, w, NB, nc);
        for (int r = 0; r < M; r++)
            for (int c = 0; c < nc; c++) {
                float acc = 0;
                for (int b = 0; b < NB; b++) {
                    rm_block_q6_k one = w[c * NB + b];
                    one.d = rm_f32_to_f16(1.0f); /* levels times scales, exactly, from the dequantiser */
                    rm_kern_dequantize(RM_TYPE_Q6_K, lv, &one, 256);
                    const rm_block_q8_k *xb = &x[r * NB + b];
                    int32_t T = 0;
                    for (int e = 0; e < 256; e++) T += (int32_t)lv[e] * xb->qs[e];
                    acc = fmaf((float)T, rm_f16_to_f32(w[c * NB + b].d) * xb->d, acc);
                }
                want[r * C + c] = acc;
            }
        for (int nr = 1; nr <= M; nr++) {
            rm_qgemm_q6_k_scalar(x, nr, tile, NB, got, C, nc);
            for (int r = 0; r < nr; r++)
                for (int c = 0; c < nc; c++) bad_ref += memcmp(&got[r * C + c], &want[r * C + c], 4) != 0;
            if (!vnni) continue;
            memcpy(simd, got, sizeof got);
            rm_qgemm_q6_k_vnni(x, nr, tile, NB, simd, C, nc);
            for (int r = 0; r < nr; r++) bad_simd += memcmp(simd + r * C, got + r * C, (size_t)nc * 4) != 0;
        }
    }
    CHECK_MSG(bad_ref == 0, "%d outputs of the scalar q6_k GEMM kernel differ from exact integer sums", bad_ref);
    CHECK_MSG(bad_simd == 0, "%d rows of the VNNI q6_k GEMM kernel differ from the scalar kernel", bad_simd);
    free(tile), free(lv), free(w), free(x), free(wf), free(xf);
}

/*
 * Weights packed at load (rm_matmul_pack / rm_matmul_packed), q4_k, q6_k,
 * q8_0, f16 and bf16, every ISA (the scalar tile kernel where the ISA has no
 * VNNI one; rm_matmul on the file's rows where it has no f16 GEMM), 1-3
 * threads, every m from decode to prefill and partial tiles: against the
 * naive reference on the quantised X (the integer sums are exact, so only
 * float rounding remains; f16/bf16 on X itself), bit for bit against the
 * unpacked GEMM path where both run the same kernel, and bit for bit across
 * threads. The packed form is at most 3% larger than the file's blocks for
 * the k-quants, 18% for q8_0 (40 bytes per 32 weights against 34: a level
 * sum and an f32 scale), and as large as the file's for f16/bf16 but for
 * the last tile's zero rows.
 */
TEST(kernels_matmul_packed_matches_reference_and_unpacked) {
    static const rm_type types[] = {RM_TYPE_Q4_K, RM_TYPE_Q6_K, RM_TYPE_Q8_0, RM_TYPE_F16, RM_TYPE_BF16};
    static const int64_t ns[] = {1, 31, 32, 33, 100}, ks[] = {256, 768}, ms[] = {1, 2, 3, 4, 5, 9, 31, 32, 37};
    rm_pool *pools[3] = {NULL, NULL, NULL};
    for (int p = 0; p < 3; p++) CHECK_OK(rm_pool_new(p + 1, &pools[p]));
    rm_isa saved = rm_isa_current(), isas[RM_ISA_COUNT];
    int nisa = isa_list(isas);
    double worst_q = 0, worst_thread = 0;
    int bad_same = 0, same_runs = 0, hgemm_runs = 0, hgemm_avx2_runs = 0;
    for (int ti = 0; ti < 5; ti++)
        for (int ik = 0; ik < 2; ik++)
            for (int in = 0; in < 5; in++) {
                rm_type wt = types[ti];
                /* f16/bf16 take any k: one not a multiple of 4 or of a k-block */
                int64_t n = ns[in], k = ks[ik] + (wt == RM_TYPE_F16 || wt == RM_TYPE_BF16 ? 3 : 0), mmax = 37;
                size_t pb = rm_matmul_pack_bytes(wt, n, k), fb = rm_type_row_bytes(wt, k) * (size_t)n;
                size_t padded = (size_t)(n + 31) / 32 * 32 * (fb / (size_t)n); /* the last tile's zero rows */
                CHECK_MSG(pb > 0 && pb <= padded * (wt == RM_TYPE_Q8_0 ? 40.0 / 34 : 1.03),
                          "%s %lldx%lld: packed %zu bytes for %zu in the file", rm_type_name(wt), (long long)n,
                          (long long)k, pb, fb);
                float *wf = malloc((size_t)(n * k) * 4), *x = malloc((size_t)(mmax * k) * 4);
                float *xq = malloc((size_t)(mmax * k) * 4), *mag = malloc((size_t)(mmax * n) * 4);
                float *xa = malloc((size_t)(mmax * k) * 4), *wa = malloc((size_t)(n * k) * 4);
                float *qref = malloc((size_t)(mmax * n) * 4), *y = malloc((size_t)(mmax * n) * 4);
                float *y2 = malloc((size_t)(mmax * n) * 4);
                void *w = malloc(fb), *packed = aligned_alloc(64, (pb + 63) & ~(size_t)63);
                fill(wf, n * k, 0.5f);
                fill(x, mmax * k, 1.0f);
                rm_convert(wt, w, RM_TYPE_F32, wf, n * k);
                rm_matmul_pack(packed, w, wt, n, k);
                abs_inputs(wt, w, n * k, wa, x, mmax * k, xa);
                bool half = wt == RM_TYPE_F16 || wt == RM_TYPE_BF16; /* X stays f32 */
                if (half) memcpy(xq, x, (size_t)(mmax * k) * 4);
                else act_roundtrip(wt, xq, x, mmax, k);
                size_t ws = rm_matmul_work_size(wt, mmax, n, k, 3);
                void *work = malloc(ws);
                for (int im = 0; im < 9; im++) {
                    int64_t m = ms[im];
                    rm_matmul_ref(qref, xq, m, w, wt, n, k);
                    rm_matmul_ref(mag, xa, m, wa, RM_TYPE_F32, n, k);
                    for (int t = 0; t < nisa; t++) {
                        CHECK_OK(rm_isa_set(isas[t]));
                        rm_compute c = {.pool = NULL, .work = work, .work_size = ws};
                        const rm_kern_ops *ops = rm_kern_ops_get();
                        rm_hgemm_fns hf;
                        /* hgemm_here: the packed tiles are read (AVX-512 and AVX2);
                         * hgemm_per_call: so is a tile packed per call (AVX-512) */
                        bool hgemm_here = half && rm_hgemm_packed_get(ops, wt, &hf);
                        bool hgemm_per_call = half && rm_hgemm_get(ops, wt, &hf);
                        hgemm_runs += hgemm_here;
                        hgemm_avx2_runs += hgemm_here && isas[t] == RM_ISA_AVX2;
                        rm_matmul_packed(&c, y, x, m, w, packed, wt, n, k);
                        worst_q = fmax(worst_q, rel_err_to(y, qref, mag, m * n));
                        for (int p = 0; p < 3; p++) {
                            c.pool = pools[p];
                            rm_matmul_packed(&c, y2, x, m, w, packed, wt, n, k);
                            /* an ISA without the f16 kernels reads w on rm_matmul's paths,
                             * whose sgemm blocks by thread: only the reference holds there */
                            if (half && !hgemm_here) worst_q = fmax(worst_q, rel_err_to(y2, qref, mag, m * n));
                            else worst_thread = fmax(worst_thread, rel_err(y2, y, m * n));
                        }
                        bool gemm_same = half ? hgemm_per_call && m >= rm_kern_matmul_hgemm_min_m()
                                              : m >= rm_kern_matmul_gemm_min_m(wt) && rm_kern_matmul_int8_gemm() &&
                                                    (wt == RM_TYPE_Q4_K   ? rm_qgemm_q4_k_get(ops) != NULL
                                                     : wt == RM_TYPE_Q6_K ? rm_qgemm_q6_k_get(ops) != NULL
                                                                          : rm_qgemm_q8_0_get(ops) != NULL);
                        if (gemm_same) { /* the unpacked call repacks into the same tiles: same bits */
                            rm_matmul(&c, y2, x, m, w, wt, n, k);
                            bad_same += memcmp(y, y2, (size_t)(m * n) * 4) != 0;
                            same_runs++;
                        }
                    }
                }
                free(wf), free(x), free(xq), free(mag), free(xa), free(wa), free(qref), free(y), free(y2);
                free(w), free(packed), free(work);
            }
    rm_isa_set(saved);
    CHECK_MSG(worst_q <= 2e-6, "packed path vs reference on quantised X %.3g", worst_q);
    CHECK_MSG(worst_thread == 0, "packed path differs across thread counts by %.3g", worst_thread);
    CHECK_MSG(bad_same == 0, "%d of %d packed runs differ from the unpacked int8 GEMM", bad_same, same_runs);
    if (rm_qgemm_q4_k_get(rm_kern_ops_get())) CHECK(same_runs > 0);
    if (rm_isa_supported(RM_ISA_AVX512)) CHECK_MSG(hgemm_runs > 0, "the packed f16/bf16 kernels never ran");
    if (rm_isa_supported(RM_ISA_AVX2)) CHECK_MSG(hgemm_avx2_runs > 0, "the packed AVX2 f16/bf16 kernels never ran");
    for (int p = 0; p < 3; p++) rm_pool_free(pools[p]);
}

/* The 4-6 bit weights: the reference dequantises them exactly, so the error
 * against it is the activations' 8-bit rounding, as for q8_0. */
static const int64_t mm_ks_q4[] = {32, 96, 512};
static const int64_t mm_ks_qk[] = {256, 512, 2048};
TEST(kernels_matmul_q4_0) { mm_check_type(RM_TYPE_Q4_0, mm_ks_q4, 3, 5e-3); }
TEST(kernels_matmul_q4_1) { mm_check_type(RM_TYPE_Q4_1, mm_ks_q4, 3, 5e-3); }
TEST(kernels_matmul_q4_k) { mm_check_type(RM_TYPE_Q4_K, mm_ks_qk, 3, 5e-3); }
TEST(kernels_matmul_q5_k) { mm_check_type(RM_TYPE_Q5_K, mm_ks_qk, 3, 5e-3); }
TEST(kernels_matmul_q6_k) { mm_check_type(RM_TYPE_Q6_K, mm_ks_qk, 3, 5e-3); }

/* The sgemm path on odd m, by lowering the switch point (normally >= 32);
 * q8_0 too, with its int8 GEMM path switched off. */
TEST(kernels_matmul_gemm_path_small_m) {
    bool saved_int8 = rm_kern_matmul_int8_gemm();
    rm_kern_matmul_set_gemm_min_m(2);
    rm_kern_matmul_set_int8_gemm(false);
    rm_pool *pool = NULL;
    CHECK_OK(rm_pool_new(2, &pool));
    static const int64_t ms[] = {2, 3, 17};
    double worst[RM_TYPE_COUNT] = {0};
    for (int t = 0; t < RM_TYPE_COUNT; t++) {
        rm_type wt = (rm_type)t;
        int64_t be = rm_type_block_elems(wt), k = be == 1 ? 33 : 3 * be, n = 130;
        float *wf = malloc((size_t)(n * k) * 4), *x = malloc((size_t)(17 * k) * 4);
        float *y = malloc((size_t)(17 * n) * 4), *ref = malloc((size_t)(17 * n) * 4);
        void *w = malloc(rm_type_row_bytes(wt, k) * (size_t)n);
        fill(wf, n * k, 0.5f), fill(x, 17 * k, 1.0f);
        rm_convert(wt, w, RM_TYPE_F32, wf, n * k);
        for (int im = 0; im < 3; im++) {
            size_t ws = rm_matmul_work_size(wt, ms[im], n, k, 2);
            void *work = ws ? malloc(ws) : NULL;
            rm_compute c = {.pool = pool, .work = work, .work_size = ws};
            rm_matmul(&c, y, x, ms[im], w, wt, n, k);
            rm_matmul_ref(ref, x, ms[im], w, wt, n, k);
            worst[wt] = fmax(worst[wt], rel_err(y, ref, ms[im] * n));
            free(work);
        }
        free(wf), free(x), free(y), free(ref), free(w);
    }
    for (int t = 0; t < RM_TYPE_COUNT; t++)
        CHECK_MSG(worst[t] < 1e-5, "%s: sgemm path error %.3g", rm_type_name((rm_type)t), worst[t]);
    rm_pool_free(pool);
    rm_kern_matmul_set_gemm_min_m(0); /* the measured thresholds */
    rm_kern_matmul_set_int8_gemm(saved_int8);
}

TEST(kernels_matmul_work_size) {
    for (int t = 0; t < RM_TYPE_COUNT; t++) {
        size_t prev = 0;
        for (int64_t m = 1; m <= 600; m += 7) {
            size_t s = rm_matmul_work_size((rm_type)t, m, 5632, 2048, 2);
            CHECK_MSG(s >= prev, "%s: work size shrinks at m=%lld", rm_type_name((rm_type)t), (long long)m);
            prev = s;
        }
    }
    CHECK(rm_matmul_work_size(RM_TYPE_F32, 1, 2048, 2048, 2) == 0);
    CHECK(rm_matmul_work_size(RM_TYPE_Q8_0, 1, 2048, 2048, 2) >= 64 * 34);
    CHECK(rm_matmul_work_size(RM_TYPE_F16, 512, 2048, 2048, 2) > rm_matmul_work_size(RM_TYPE_F16, 512, 2048, 2048, 1));
}

/* ---- the f16/bf16 GEMM that widens W in registers (hgemm.c) ---------------- */

/* The AVX2 and AVX-512 W packers write the bytes of the portable one, for
 * ragged tiles too (nc and kc not multiples of 8 or 32). */
TEST(kernels_hgemm_pack_matches_scalar) {
    RNG_PRIVATE_BEGIN;
    enum { LDW = 300 };
    static const int ncs[] = {1, 7, 8, 17, 31, 32};
    static const int64_t kcs[] = {1, 7, 8, 31, 32, 33, 256, 300};
    static const struct {
        rm_isa isa;
        rm_hgemm_pack_fn pack;
    } packers[] = {{RM_ISA_AVX2, rm_hgemm_pack_avx2}, {RM_ISA_AVX512, rm_hgemm_pack_avx512}};
    uint16_t *w = malloc((32 * LDW + 3) * 2); /* the tiles start 3 elements in */
    uint16_t *a = rm_malloc(32 * 300 * 2), *b = rm_malloc(32 * 300 * 2);
    for (int i = 0; i < 32 * LDW + 3; i++) w[i] = (uint16_t)rng_u32();
    int bad = 0, bad_layout = 0, ran = 0;
    for (int p = 0; p < 2; p++) {
        if (!rm_isa_supported(packers[p].isa)) {
            printf("NOTE kernels: %s is not supported by this CPU; its f16 GEMM packer is not tested\n",
                   packers[p].isa == RM_ISA_AVX2 ? "avx2" : "avx512");
            continue;
        }
        ran++;
        for (int ic = 0; ic < 6; ic++)
            for (int ik = 0; ik < 8; ik++) {
                memset(a, 0xAB, 32 * 300 * 2), memset(b, 0xCD, 32 * 300 * 2);
                rm_hgemm_pack_scalar(a, w + 3, LDW, ncs[ic], kcs[ik]);
                packers[p].pack(b, w + 3, LDW, ncs[ic], kcs[ik]);
                bad += memcmp(a, b, (size_t)kcs[ik] * 32 * 2) != 0;
                for (int64_t kk = 0; kk < kcs[ik]; kk++) /* the layout itself: wp[kk][c] = W[c][kk], zero past nc */
                    for (int c = 0; c < 32; c++) bad_layout += a[kk * 32 + c] != (c < ncs[ic] ? w[3 + c * LDW + kk] : 0);
            }
    }
    CHECK_MSG(bad == 0, "%d packed tiles differ from the portable packer", bad);
    CHECK_MSG(bad_layout == 0, "%d packed elements out of place", bad_layout);
    if (rm_isa_supported(RM_ISA_AVX2)) CHECK(ran > 0);
    rm_free(a), rm_free(b), free(w);
    RNG_PRIVATE_END;
}

/*
 * rm_matmul on f16 and bf16 weights with the GEMM path forced from m = 1,
 * on every ISA (those without the register-widening kernels run the
 * widened panels): against the double-precision reference on odd shapes
 * (m up to 200, n around the 32-row tiles, k around the 256-element blocks
 * and not a multiple of 32), and bit-identical on 1, 2 and 3 threads where
 * the register-widening kernels run. Every
 * product is an exact widening of W times an f32 X value, so only the f32
 * summation order separates it from the reference.
 */
TEST(kernels_hgemm_matches_reference) {
    RNG_PRIVATE_BEGIN;
    static const int64_t ms[] = {1, 3, 12, 13, 40, 200};
    static const int64_t ns[] = {1, 33, 97};
    static const int64_t ks[] = {1, 7, 255, 257, 600};
    static const rm_type types[] = {RM_TYPE_F16, RM_TYPE_BF16};
    int saved_hmin = rm_kern_matmul_hgemm_min_m();
    rm_isa saved = rm_isa_current(), isas[RM_ISA_COUNT];
    rm_kern_matmul_set_gemm_min_m(1);
    rm_kern_matmul_set_hgemm_min_m(1);
    rm_pool *pools[3];
    for (int p = 0; p < 3; p++) CHECK_OK(rm_pool_new(p + 1, &pools[p]));
    double worst[2] = {0, 0};
    int differ = 0, ran = 0;
    for (int it = 0; it < 2; it++) {
        rm_type wt = types[it];
        for (int ik = 0; ik < 5; ik++)
            for (int in = 0; in < 3; in++) {
                int64_t n = ns[in], k = ks[ik], mmax = 200;
                float *wf = malloc((size_t)(n * k) * 4), *wa = malloc((size_t)(n * k) * 4);
                float *x = malloc((size_t)(mmax * k) * 4), *xa = malloc((size_t)(mmax * k) * 4);
                float *ref = malloc((size_t)(mmax * n) * 4), *mag = malloc((size_t)(mmax * n) * 4);
                float *y = malloc((size_t)(mmax * n) * 4), *y2 = malloc((size_t)(mmax * n) * 4);
                uint16_t *w = malloc((size_t)(n * k) * 2);
                fill(wf, n * k, 0.5f), fill(x, mmax * k, 1.0f);
                rm_convert(wt, w, RM_TYPE_F32, wf, n * k);
                abs_inputs(wt, w, n * k, wa, x, mmax * k, xa);
                size_t ws = rm_matmul_work_size(wt, mmax, n, k, 3);
                void *work = malloc(ws);
                for (int im = 0; im < 6; im++) {
                    int64_t m = ms[im];
                    rm_matmul_ref(ref, x, m, w, wt, n, k);
                    rm_matmul_ref(mag, xa, m, wa, RM_TYPE_F32, n, k);
                    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
                        CHECK_OK(rm_isa_set(isas[t]));
                        rm_hgemm_fns f;
                        bool here = rm_hgemm_get(rm_kern_ops_get(), wt, &f);
                        ran += here;
                        rm_compute c = {.pool = pools[0], .work = work, .work_size = ws};
                        rm_matmul(&c, y, x, m, w, wt, n, k);
                        worst[it] = fmax(worst[it], rel_err_to(y, ref, mag, m * n));
                        for (int p = 1; p < 3; p++) {
                            c.pool = pools[p];
                            memset(y2, 0, (size_t)(m * n) * 4);
                            rm_matmul(&c, y2, x, m, w, wt, n, k);
                            /* the widened panels' sgemm blocks by panel, so only the new kernels promise bits */
                            if (here) differ += memcmp(y, y2, (size_t)(m * n) * 4) != 0;
                            else worst[it] = fmax(worst[it], rel_err_to(y2, ref, mag, m * n));
                        }
                    }
                }
                free(wf), free(wa), free(x), free(xa), free(ref), free(mag), free(y), free(y2), free(w), free(work);
            }
    }
    rm_isa_set(saved);
    rm_kern_matmul_set_gemm_min_m(0); /* the measured thresholds */
    rm_kern_matmul_set_hgemm_min_m(saved_hmin);
    for (int p = 0; p < 3; p++) rm_pool_free(pools[p]);
    if (rm_isa_supported(RM_ISA_AVX512)) CHECK_MSG(ran > 0, "the AVX-512 f16 GEMM kernels never ran");
    else printf("NOTE kernels: avx512 is not supported by this CPU; the f16 GEMM kernels are not tested\n");
    for (int it = 0; it < 2; it++)
        CHECK_MSG(worst[it] <= 1e-6, "%s GEMM: error vs reference %.3g", rm_type_name(types[it]), worst[it]);
    CHECK_MSG(differ == 0, "%d GEMM results change with the thread count", differ);
    if (getenv("RM_TEST_VERBOSE")) printf("  hgemm: f16 %.3g bf16 %.3g (x |X||W|)\n", worst[0], worst[1]);
    RNG_PRIVATE_END;
}

/*
 * The AVX2 micro-kernels, called directly (rm_matmul does not choose them,
 * hgemm.c says why): against the reference, and bit-identical to the
 * AVX-512 ones where both run, since both do the same FMAs in the same order.
 */
TEST(kernels_hgemm_avx2_kernels) {
    RNG_PRIVATE_BEGIN;
    if (!rm_isa_supported(RM_ISA_AVX2)) {
        printf("NOTE kernels: avx2 is not supported by this CPU; its f16 GEMM kernels are not tested\n");
        return;
    }
    static const int64_t ms[] = {1, 5, 12, 30};
    static const int64_t ns[] = {7, 32, 45};
    static const int64_t ks[] = {3, 256, 301};
    double worst = 0;
    int differ = 0;
    for (int bf = 0; bf < 2; bf++) {
        rm_type wt = bf ? RM_TYPE_BF16 : RM_TYPE_F16;
        rm_hgemm_fns f2 = {bf ? rm_hgemm_tile_bf16_avx2 : rm_hgemm_tile_f16_avx2, rm_hgemm_pack_scalar};
        rm_hgemm_fns f5 = {bf ? rm_hgemm_tile_bf16_avx512 : rm_hgemm_tile_f16_avx512, rm_hgemm_pack_avx512};
        for (int im = 0; im < 4; im++)
            for (int in = 0; in < 3; in++)
                for (int ik = 0; ik < 3; ik++) {
                    int64_t m = ms[im], n = ns[in], k = ks[ik];
                    float *wf = malloc((size_t)(n * k) * 4), *wa = malloc((size_t)(n * k) * 4);
                    float *x = malloc((size_t)(m * k) * 4), *xa = malloc((size_t)(m * k) * 4);
                    float *ref = malloc((size_t)(m * n) * 4), *mag = malloc((size_t)(m * n) * 4);
                    float *y = malloc((size_t)(m * n) * 4), *y5 = malloc((size_t)(m * n) * 4);
                    uint16_t *w = malloc((size_t)(n * k) * 2);
                    float *xp = rm_malloc(rm_hgemm_x_bytes(m, k));
                    uint16_t *wp = rm_malloc(rm_hgemm_w_bytes(k));
                    fill(wf, n * k, 0.5f), fill(x, m * k, 1.0f);
                    rm_convert(wt, w, RM_TYPE_F32, wf, n * k);
                    abs_inputs(wt, w, n * k, wa, x, m * k, xa);
                    rm_matmul_ref(ref, x, m, w, wt, n, k);
                    rm_matmul_ref(mag, xa, m, wa, RM_TYPE_F32, n, k);
                    rm_hgemm_pack_x(xp, x, m, k, 0, rm_hgemm_panels(m));
                    rm_hgemm_cols(&f2, y, n, xp, m, k, w, NULL, 0, n, wp);
                    worst = fmax(worst, rel_err_to(y, ref, mag, m * n));
                    if (rm_isa_supported(RM_ISA_AVX512)) {
                        rm_hgemm_cols(&f5, y5, n, xp, m, k, w, NULL, 0, n, wp);
                        differ += memcmp(y, y5, (size_t)(m * n) * 4) != 0;
                    }
                    free(wf), free(wa), free(x), free(xa), free(ref), free(mag), free(y), free(y5), free(w);
                    rm_free(xp), rm_free(wp);
                }
    }
    CHECK_MSG(worst <= 1e-6, "AVX2 f16/bf16 GEMM kernels: error vs reference %.3g", worst);
    CHECK_MSG(differ == 0, "%d AVX2 results differ from the AVX-512 ones", differ);
    RNG_PRIVATE_END;
}

/*
 * One X row against long f16 or bf16 rows (X rounded to f16 times a power
 * of two): magnitudes far outside f16's range still give the reference
 * answer, and a NaN or an infinity in X, or an all-zero X, gives what the
 * f32 path gives.
 */
static void mm_check_long_rows_range(rm_type wt) {
    enum { N = 9, K = RM_KERN_HALF_X_MIN_K + 1536 + 3 };
    float *wf = malloc(N * K * 4), *x = malloc(K * 4), *xa = malloc(K * 4), *wa = malloc(N * K * 4);
    float ref[N], mag[N], y[N];
    uint16_t *wh = malloc(N * K * 2);
    fill(wf, N * K, 0.5f);
    rm_convert(wt, wh, RM_TYPE_F32, wf, N * K);
    rm_convert(RM_TYPE_F32, wa, wt, wh, N * K);
    for (int i = 0; i < N * K; i++) wa[i] = fabsf(wa[i]);
    size_t ws = rm_matmul_work_size(wt, 1, N, K, 2);
    CHECK(ws >= (size_t)K * 2);
    void *work = malloc(ws);
    rm_compute c = {.work = work, .work_size = ws};
    rm_isa isas[RM_ISA_COUNT], saved = rm_isa_current();
    static const float scales[] = {1e-30f, 1e-6f, 1.0f, 3e5f, 1e25f};
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
            fill(x, K, scales[s]);
            for (int i = 0; i < K; i++) xa[i] = fabsf(x[i]);
            rm_matmul_ref(ref, x, 1, wh, wt, N, K);
            rm_matmul_ref(mag, xa, 1, wa, RM_TYPE_F32, N, K);
            rm_matmul(&c, y, x, 1, wh, wt, N, K);
            double e = rel_err_to(y, ref, mag, N);
            CHECK_MSG(e <= 2.5e-4, "%s %s: |x| ~ %g: error %.3g of |x| |w|", rm_type_name(wt), rm_isa_name(isas[t]), scales[s], e);
        }
        memset(x, 0, K * 4);
        rm_matmul(&c, y, x, 1, wh, wt, N, K);
        for (int r = 0; r < N; r++) CHECK(y[r] == 0.0f);
        fill(x, K, 1.0f);
        x[K - 2] = NAN;
        rm_matmul(&c, y, x, 1, wh, wt, N, K);
        for (int r = 0; r < N; r++) CHECK(isnan(y[r]));
        x[K - 2] = INFINITY;
        rm_matmul(&c, y, x, 1, wh, wt, N, K);
        rm_matmul_ref(ref, x, 1, wh, wt, N, K);
        for (int r = 0; r < N; r++) CHECK(isinf(y[r]) || isnan(y[r]) ? (isinf(ref[r]) || isnan(ref[r])) : 0);
    }
    rm_isa_set(saved);
    free(wf), free(x), free(xa), free(wa), free(wh), free(work);
}

TEST(kernels_matmul_f16_long_rows_range) { mm_check_long_rows_range(RM_TYPE_F16); }
TEST(kernels_matmul_bf16_long_rows_range) { mm_check_long_rows_range(RM_TYPE_BF16); }

/* A known product, independent of rm_matmul_ref. */
TEST(kernels_matmul_known_values) {
    float x[2 * 32], wf[3 * 32], y[6];
    for (int l = 0; l < 32; l++) {
        x[l] = 1.0f;
        x[32 + l] = (float)(l % 4) - 1.5f;
        wf[l] = 0.5f;
        wf[32 + l] = (float)l;
        wf[64 + l] = l % 2 ? -2.0f : 2.0f;
    }
    static const float want[6] = {16.0f, 496.0f, 0.0f, 0.0f, 40.0f, -32.0f};
    uint16_t wh[96];
    rm_convert(RM_TYPE_F16, wh, RM_TYPE_F32, wf, 96);
    rm_isa isas[RM_ISA_COUNT], saved = rm_isa_current();
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        rm_matmul(NULL, y, x, 2, wh, RM_TYPE_F16, 3, 32);
        for (int i = 0; i < 6; i++) CHECK_NEAR(y[i], want[i], 1e-4);
    }
    rm_isa_set(saved);
    /* a caller bug (k not whole q8_0 blocks) gives NaN, never a plausible answer */
    rm_block_q8_0 wq[3];
    rm_convert(RM_TYPE_Q8_0, wq, RM_TYPE_F32, wf, 96);
    ramole_log_level lv = log_capture_begin();
    rm_matmul(NULL, y, x, 1, wq, RM_TYPE_Q8_0, 3, 31);
    log_capture_end(lv);
    CHECK(isnan(y[0]) && isnan(y[2]));
    CHECK_MSG(g_log_count == 1 && strstr(g_log_last, "k = 31"), "logged: %s", g_log_last);
}

/* ---- row ops ---------------------------------------------------------------- */

static const int64_t row_ns[] = {1, 7, 8, 15, 16, 17, 33, 100, 4097};

TEST(kernels_row_ops) {
    enum { NMAX = 4097 };
    float *x = malloc(NMAX * 4), *w = malloc(NMAX * 4), *u = malloc(NMAX * 4);
    float *y = malloc(NMAX * 4), *r = malloc(NMAX * 4);
    rm_isa isas[RM_ISA_COUNT], saved = rm_isa_current();
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        const char *nm = rm_isa_name(isas[t]);
        for (size_t in = 0; in < sizeof row_ns / sizeof row_ns[0]; in++) {
            int64_t n = row_ns[in];
            fill(x, n, 3.0f), fill(w, n, 1.0f), fill(u, n, 2.0f);
            rm_rmsnorm(y, x, w, n, 1e-5f);
            rm_rmsnorm_ref(r, x, w, n, 1e-5f);
            CHECK_MSG(rel_err(y, r, n) < 1e-6, "%s rmsnorm n=%lld: %g", nm, (long long)n, rel_err(y, r, n));
            memcpy(y, x, (size_t)n * 4);
            rm_rmsnorm(y, y, w, n, 1e-5f); /* in place */
            CHECK(rel_err(y, r, n) < 1e-6);

            for (int64_t i = 0; i < n; i++) x[i] *= 10.0f; /* logits spread over +-30 */
            if (n > 3) x[n / 2] = -INFINITY;               /* a masked position */
            memcpy(y, x, (size_t)n * 4), memcpy(r, x, (size_t)n * 4);
            rm_softmax(y, n);
            rm_softmax_ref(r, n);
            CHECK_MSG(rel_err(y, r, n) < 2e-6, "%s softmax n=%lld: %g", nm, (long long)n, rel_err(y, r, n));
            if (n > 3) CHECK(y[n / 2] == 0.0f);

            fill(x, n, 10.0f);
            for (int64_t i = 0; i < n; i += 13) x[i] = i % 2 ? 120.0f : -120.0f; /* saturated gates */
            rm_swiglu(y, x, u, n);
            rm_swiglu_ref(r, x, u, n);
            CHECK_MSG(rel_err(y, r, n) < 2e-6, "%s swiglu n=%lld: %g", nm, (long long)n, rel_err(y, r, n));

            fill(x, n, 1.0f), fill(w, n, 1.0f);
            double dot = 0;
            for (int64_t i = 0; i < n; i++) dot += (double)x[i] * w[i];
            CHECK_NEAR(rm_vec_dot(x, w, n), dot, 1e-5 * sqrt((double)n));
            memcpy(y, w, (size_t)n * 4);
            rm_vec_axpy(y, 0.75f, x, n);
            for (int64_t i = 0; i < n; i++) r[i] = (float)(w[i] + 0.75 * x[i]);
            CHECK(rel_err(y, r, n) < 1e-6);
            rm_vec_scale(y, -2.0f, n);
            for (int64_t i = 0; i < n; i++) r[i] *= -2.0f;
            CHECK(rel_err(y, r, n) < 1e-6);
            rm_vec_add(y, x, n);
            for (int64_t i = 0; i < n; i++) r[i] += x[i];
            CHECK(rel_err(y, r, n) < 1e-6);
        }
    }
    rm_isa_set(saved);
    free(x), free(w), free(u), free(y), free(r);
}

/* ---- RoPE ----------------------------------------------------------------- */

static double rope_err(const rm_rope_params *p, int n_heads, int head_dim, int64_t pos) {
    float x[8 * 256], r[8 * 256], inv[256];
    fill(x, n_heads * head_dim, 1.0f);
    memcpy(r, x, sizeof(float) * (size_t)(n_heads * head_dim));
    rm_rope_inv_freq(p, inv);
    rm_rope(x, n_heads, head_dim, pos, p, inv);
    rm_rope_ref(r, n_heads, head_dim, pos, p);
    return rel_err(x, r, n_heads * head_dim);
}

TEST(kernels_rope_vs_ref) {
    static const int64_t poss[] = {0, 1, 7, 100, 1000, 8191, 50000};
    static const rm_rope_scaling scs[] = {RM_ROPE_SCALING_NONE, RM_ROPE_SCALING_LINEAR, RM_ROPE_SCALING_LLAMA3};
    for (int style = 0; style < 2; style++) {
        for (int s = 0; s < 3; s++) {
            for (int hd = 64; hd <= 128; hd += 64) {
                rm_rope_params p = {.style = (rm_rope_style)style, .n_rot = hd, .theta = hd == 64 ? 10000.0f : 500000.0f,
                                    .scaling = scs[s], .factor = s == 1 ? 4.0f : 8.0f, .low_freq_factor = 1.0f,
                                    .high_freq_factor = 4.0f, .original_max_pos = 8192};
                for (size_t ip = 0; ip < sizeof poss / sizeof poss[0]; ip++) {
                    int64_t pos = poss[ip];
                    /* the angle is a float product, as in HF: its rounding grows with pos */
                    double tol = 1e-6 + 2e-7 * (double)pos;
                    double e = rope_err(&p, 3, hd, pos);
                    CHECK_MSG(e <= tol, "rope style %d scaling %d head_dim %d pos %lld: err %.3g > %.3g", style, s,
                              hd, (long long)pos, e, tol);
                }
            }
        }
    }
    /* partial rotation: dims past n_rot pass through */
    rm_rope_params p = {.style = RM_ROPE_NEOX, .n_rot = 32, .theta = 10000.0f};
    float x[64], x0[64], inv[16];
    fill(x, 64, 1.0f);
    memcpy(x0, x, sizeof x);
    rm_rope_inv_freq(&p, inv);
    rm_rope(x, 1, 64, 123, &p, inv);
    CHECK(memcmp(x + 32, x0 + 32, 32 * 4) == 0);
    rm_rope_ref(x0, 1, 64, 123, &p);
    CHECK(rel_err(x, x0, 64) < 1e-4);
    /* position 0 is the identity; normal style rotates adjacent pairs */
    rm_rope_params pn = {.style = RM_ROPE_NORMAL, .n_rot = 4, .theta = 10000.0f};
    float v[4] = {1, 0, 1, 0}, inv2[2];
    rm_rope_inv_freq(&pn, inv2);
    rm_rope(v, 1, 4, 1, &pn, inv2);
    CHECK_NEAR(v[0], cos(1.0), 1e-6);
    CHECK_NEAR(v[1], sin(1.0), 1e-6);
    CHECK_NEAR(v[2], cos(0.01), 1e-6);
    CHECK_NEAR(v[3], sin(0.01), 1e-6);
}

/*
 * Values dumped from PyTorch 2 with HF transformers' formulas (float32):
 * inv_freq = 1/(base ** (arange(0, dim, 2).float() / dim)); llama3 scaling by
 * _compute_llama3_parameters (factor 8, low 1, high 4, original 8192,
 * theta 500000, dim 128); cos/sin of (inv_freq @ position 12345).
 */
static const uint32_t gold_inv_std64[32] = {
    0x3f800000, 0x3f3ff911, 0x3f0ff59a, 0x3ed7e89b, 0x3ea1e89b, 0x3e72d423,
    0x3e361887, 0x3e088d77, 0x3dcccccd, 0x3d99940d, 0x3d6655c2, 0x3d2cba15,
    0x3d0186e3, 0x3cc2434f, 0x3c91ad39, 0x3c5a7bf2, 0x3c23d70a, 0x3bf5b9b0,
    0x3bb8449c, 0x3b8a2e77, 0x3b4f3e38, 0x3b1b690d, 0x3ae91528, 0x3aaec98e,
    0x3a83126f, 0x3a44948c, 0x3a136a16, 0x39dd1725, 0x39a5cb60, 0x3978a815,
    0x393a7753, 0x390bd472,
};
static const uint32_t gold_inv_llama3_128[64] = {
    0x3f800000, 0x3f508ac1, 0x3f29e1c6, 0x3f0a6384, 0x3ee177bc, 0x3eb7ab7d,
    0x3e959ee3, 0x3e73c461, 0x3e4693b0, 0x3e21c3a0, 0x3e03c6a0, 0x3dd6b19c,
    0x3daee4ad, 0x3d8e7898, 0x3d681e67, 0x3d3d1684, 0x3d1a08c8, 0x3cfaf53f,
    0x3ccc6f49, 0x3ca68939, 0x3c87a9c3, 0x3c5d06ec, 0x3c340d6d, 0x3c12ac7f,
    0x3beef74f, 0x3bc2aa76, 0x3b9e9402, 0x3b812e35, 0x3b527720, 0x3b0dfd06,
    0x3ab3d11d, 0x3a60979e, 0x3a0995d2, 0x39a3f108, 0x393b2dd2, 0x38c86886,
    0x38a3418d, 0x3884fdbf, 0x3858ac81, 0x38308199, 0x380fc8f8, 0x37ea426f,
    0x37bed4f4, 0x379b7475, 0x377d45c3, 0x374e51f5, 0x3728126b, 0x3708ea0f,
    0x36df10c4, 0x36b5b687, 0x369406cb, 0x36712b80, 0x36447610, 0x36200a69,
    0x36025f34, 0x35d46808, 0x35ad07a7, 0x358cf400, 0x3565a54d, 0x353b12c7,
    0x351864a7, 0x34f848c2, 0x34ca41b0, 0x34a4c2ff,
};
static const uint32_t gold_cos_llama3_12345[64] = {
    0x3de43872, 0xbf7a50b1, 0x3ee12b75, 0x3f3edf32, 0x3e4b5a2d, 0x3ede80e9,
    0x3f096008, 0xbe3ce0c1, 0x3f7f1e9b, 0xbf3a7c83, 0x3f0a4a0a, 0x3f7afe1d,
    0x3e624d47, 0xbed740c4, 0xbf0cbc2b, 0xbe9931fa, 0x3f4243e9, 0x3ebd50e3,
    0x3f7af9d4, 0x3f6f2bc7, 0xbf78f4d7, 0xbf7fd847, 0xbf5684bb, 0xbf58e948,
    0xbef21e23, 0xbef08ede, 0xbf7fa60f, 0xbcdf874e, 0xbebbb815, 0xbd2f29ba,
    0xbeac1041, 0xbed04b87, 0x3f7b18b6, 0xbf40b258, 0xbf176aa9, 0x3ec32b2f,
    0x3f129ba8, 0x3f357a6d, 0x3f4daecf, 0x3f5e3973, 0x3f696a66, 0x3f70eff7,
    0x3f75f893, 0x3f79547b, 0x3f7b9139, 0x3f7d0e3a, 0x3f7e0b79, 0x3f7eb3b5,
    0x3f7f236d, 0x3f7f6d99, 0x3f7f9ed6, 0x3f7fbf84, 0x3f7fd535, 0x3f7fe39a,
    0x3f7fed27, 0x3f7ff37f, 0x3f7ff7b4, 0x3f7ffa7e, 0x3f7ffc59, 0x3f7ffd93,
    0x3f7ffe64, 0x3f7ffeef, 0x3f7fff4b, 0x3f7fff88,
};
static const uint32_t gold_sin_llama3_12345[64] = {
    0xbf7e67d1, 0xbe569960, 0xbf65ea18, 0x3f2a9947, 0x3f7ae6bf, 0xbf668ffd,
    0x3f5804c9, 0xbf7b9b83, 0x3da9b54d, 0x3f2f61c8, 0xbf576f46, 0xbe498ac1,
    0xbf79ab93, 0xbf6846e0, 0x3f55d84d, 0xbf7445a2, 0xbf26b96e, 0x3f6ddb59,
    0x3e49e01d, 0xbeb692b3, 0xbe6e8d7a, 0xbd0e97bb, 0xbf0bb4ca, 0xbf07f61f,
    0x3f619150, 0xbf61fc02, 0xbd56845b, 0xbf7fe799, 0x3f6e2c4b, 0x3f7fc40c,
    0xbf711c6e, 0xbf69db80, 0x3e4775e3, 0xbf2888ed, 0x3f4e6b63, 0x3f6cabd9,
    0x3f51dcb0, 0x3f348f2d, 0x3f186a70, 0x3efe2ef8, 0x3ed24497, 0x3ead08b4,
    0x3e8de7ba, 0x3e6839d5, 0x3e3dbb97, 0x3e1adc87, 0x3dfca1da, 0x3dcdf9aa,
    0x3da7e2f6, 0x3d88d0a1, 0x3d5ef5a4, 0x3d35a829, 0x3d13ff45, 0x3cf123c5,
    0x3cc47236, 0x3ca00898, 0x3c825e6f, 0x3c54678d, 0x3c2d07ae, 0x3c0cf440,
    0x3be5a5f3, 0x3bbb136f, 0x3b986543, 0x3b7849d3,
};

static int ulp_diff(float a, float b) {
    int32_t ia = (int32_t)f32_bits(a), ib = (int32_t)f32_bits(b);
    if (ia < 0) ia = (int32_t)0x80000000 - ia;
    if (ib < 0) ib = (int32_t)0x80000000 - ib;
    return abs(ia - ib);
}

TEST(kernels_rope_matches_torch) {
    float inv[64];
    rm_rope_params std = {.style = RM_ROPE_NEOX, .n_rot = 64, .theta = 10000.0f};
    rm_rope_inv_freq(&std, inv);
    int worst = 0;
    for (int i = 0; i < 32; i++) worst = ulp_diff(inv[i], bits_f32(gold_inv_std64[i])) > worst ? ulp_diff(inv[i], bits_f32(gold_inv_std64[i])) : worst;
    CHECK_MSG(worst <= 2, "inv_freq (theta 1e4) differs from torch by %d ulp", worst);
    rm_rope_params l3 = {.style = RM_ROPE_NEOX, .n_rot = 128, .theta = 500000.0f, .scaling = RM_ROPE_SCALING_LLAMA3,
                         .factor = 8.0f, .low_freq_factor = 1.0f, .high_freq_factor = 4.0f, .original_max_pos = 8192};
    rm_rope_inv_freq(&l3, inv);
    worst = 0;
    for (int i = 0; i < 64; i++) {
        int d = ulp_diff(inv[i], bits_f32(gold_inv_llama3_128[i]));
        worst = d > worst ? d : worst;
    }
    CHECK_MSG(worst <= 4, "llama3 inv_freq differs from torch by %d ulp", worst);
    /* rotate unit vectors (1 in the first half, 0 in the second): gives (cos, sin) */
    float x[128];
    for (int i = 0; i < 128; i++) x[i] = i < 64 ? 1.0f : 0.0f;
    rm_rope(x, 1, 128, 12345, &l3, inv);
    double werr = 0;
    for (int i = 0; i < 64; i++) {
        werr = fmax(werr, fabs(x[i] - bits_f32(gold_cos_llama3_12345[i])));
        werr = fmax(werr, fabs(x[64 + i] - bits_f32(gold_sin_llama3_12345[i])));
    }
    CHECK_MSG(werr <= 2e-6, "cos/sin at pos 12345 differ from torch by %.3g", werr);
}

/* rm_matmul_rows (the LoRA groups' product on rows read in place) against
 * rm_matmul_ref on the same rows gathered, for every float type, short rows
 * (the expand's rank) and long ones; and a row's result is bitwise the
 * same whatever the number of rows beside it. */
TEST(kernels_matmul_rows_in_place) {
    static const rm_type types[] = {RM_TYPE_F32, RM_TYPE_F16, RM_TYPE_BF16};
    static const int64_t ks[] = {4, 12, 16, 64, 72, 2048};
    enum { M = 13, N = 19, STRIDE = 3 };
    for (size_t it = 0; it < 3; it++)
        for (size_t ik = 0; ik < sizeof ks / sizeof *ks; ik++) {
            rm_type wt = types[it];
            int64_t k = ks[ik];
            float *wf = malloc((size_t)(N * k) * 4), *wa = malloc((size_t)(N * k) * 4);
            float *xbuf = malloc((size_t)(M * STRIDE * k) * 4), *xc = malloc((size_t)(M * k) * 4);
            float *xa = malloc((size_t)(M * k) * 4), *y = malloc(M * N * 4), *y1 = malloc(N * 4);
            float *ref = malloc(M * N * 4), *mag = malloc(M * N * 4);
            void *w = malloc(rm_type_row_bytes(wt, k) * N);
            fill(wf, N * k, 0.5f);
            fill(xbuf, M * STRIDE * k, 1.0f);
            rm_convert(wt, w, RM_TYPE_F32, wf, N * k);
            const float *rows[M];
            for (int i = 0; i < M; i++) { /* scattered, and gathered for the reference */
                rows[i] = xbuf + (size_t)((i * 7) % (M * STRIDE)) * k;
                memcpy(xc + (size_t)i * k, rows[i], (size_t)k * 4);
            }
            rm_matmul_rows(y, N, rows, M, w, wt, N, k);
            rm_matmul_ref(ref, xc, M, w, wt, N, k);
            abs_inputs(wt, w, N * k, wa, xc, M * k, xa);
            rm_matmul_ref(mag, xa, M, wa, RM_TYPE_F32, N, k);
            double err = rel_err_to(y, ref, mag, M * N);
            CHECK_MSG(err < 1e-6, "%s k=%lld: rm_matmul_rows off the reference by %.3g", rm_type_name(wt),
                      (long long)k, err);
            for (int m = 1; m <= 5; m++) { /* row 0 alone and among m rows: the same bits */
                rm_matmul_rows(y1, N, rows, 1, w, wt, N, k);
                float ym[5 * N];
                rm_matmul_rows(ym, N, rows, m, w, wt, N, k);
                CHECK_MSG(!memcmp(y1, ym, N * 4), "%s k=%lld: row 0 differs alone and among %d rows",
                          rm_type_name(wt), (long long)k, m);
            }
            free(wf), free(wa), free(xbuf), free(xc), free(xa), free(y), free(y1), free(ref), free(mag), free(w);
        }
}

/* rm_matmul_rows_add (the LoRA expand: each row's products added where the
 * row lies) against rm_matmul_ref plus the rows' old values, on every ISA,
 * for every float type, ranks the short kernel takes and ones it leaves to
 * the dot path, and output counts that end in partial blocks of eight and sixteen;
 * and a row's result is bitwise the same alone and among 1 to 6 rows. */
TEST(kernels_matmul_rows_add) {
    static const rm_type types[] = {RM_TYPE_F32, RM_TYPE_F16, RM_TYPE_BF16};
    static const int64_t ks[] = {8, 16, 24, 64, 12, 72};
    static const int64_t ns[] = {8, 19, 27, 64}; /* 27: a last block of 11, past one half of sixteen */
    enum { M = 11 };
    rm_isa isas[RM_ISA_COUNT], saved = rm_isa_current();
    for (int t = 0, nt = isa_list(isas); t < nt; t++) {
        CHECK_OK(rm_isa_set(isas[t]));
        for (size_t it = 0; it < 3; it++)
            for (size_t ik = 0; ik < sizeof ks / sizeof *ks; ik++)
                for (size_t in = 0; in < sizeof ns / sizeof *ns; in++) {
                    rm_type wt = types[it];
                    int64_t k = ks[ik], n = ns[in];
                    float *wf = malloc((size_t)(n * k) * 4), *wa = malloc((size_t)(n * k) * 4);
                    float *z = malloc((size_t)(M * k) * 4), *za = malloc((size_t)(M * k) * 4);
                    float *y0 = malloc((size_t)(M * n) * 4), *y = malloc((size_t)(2 * M * n) * 4);
                    float *ref = malloc((size_t)(M * n) * 4), *mag = malloc((size_t)(M * n) * 4);
                    void *w = malloc(rm_type_row_bytes(wt, k) * (size_t)n);
                    fill(wf, n * k, 0.5f);
                    fill(z, M * k, 1.0f);
                    fill(y0, M * n, 2.0f);
                    rm_convert(wt, w, RM_TYPE_F32, wf, n * k);
                    float *yrows[M];
                    const float *zrows[M];
                    for (int i = 0; i < M; i++) { /* Y rows scattered in reverse order */
                        yrows[i] = y + (size_t)(2 * (M - 1 - i)) * n;
                        memcpy(yrows[i], y0 + (size_t)i * n, (size_t)n * 4);
                        zrows[i] = z + (size_t)i * k;
                    }
                    rm_matmul_rows_add(yrows, zrows, M, w, wt, n, k);
                    rm_matmul_ref(ref, z, M, w, wt, n, k);
                    abs_inputs(wt, w, n * k, wa, z, M * k, za);
                    rm_matmul_ref(mag, za, M, wa, RM_TYPE_F32, n, k);
                    double err = 0;
                    for (int i = 0; i < M; i++)
                        for (int64_t r = 0; r < n; r++) {
                            double want = (double)y0[i * n + r] + ref[i * n + r];
                            double scale = fabs(y0[i * n + r]) + mag[i * n + r] + 1e-30;
                            err = fmax(err, fabs(yrows[i][r] - want) / scale);
                        }
                    CHECK_MSG(err < 1e-6, "%s %s k=%lld n=%lld: rm_matmul_rows_add off the reference by %.3g",
                              rm_isa_name(isas[t]), rm_type_name(wt), (long long)k, (long long)n, err);
                    float alone[64];
                    memcpy(alone, y0, (size_t)n * 4);
                    float *a1 = alone;
                    rm_matmul_rows_add(&a1, zrows, 1, w, wt, n, k);
                    for (int m = 1; m <= 6; m++) { /* row 0 alone and among m rows: the same bits */
                        for (int i = 0; i < m; i++) memcpy(yrows[i], y0 + (size_t)i * n, (size_t)n * 4);
                        rm_matmul_rows_add(yrows, zrows, m, w, wt, n, k);
                        CHECK_MSG(!memcmp(alone, yrows[0], (size_t)n * 4),
                                  "%s %s k=%lld n=%lld: row 0 differs alone and among %d rows",
                                  rm_isa_name(isas[t]), rm_type_name(wt), (long long)k, (long long)n, m);
                    }
                    free(wf), free(wa), free(z), free(za), free(y0), free(y), free(ref), free(mag), free(w);
                }
    }
    rm_isa_set(saved);
}
