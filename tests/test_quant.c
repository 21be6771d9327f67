/*
 * test_quant.c — the 4-6 bit GGUF block types (q4_0, q4_1, q4_k, q5_k,
 * q6_k): dequantisation bit for bit against a re-implementation of ggml's
 * formulas written here element by element (random blocks, scales zero,
 * subnormal and largest), the quantisers' error and their fixed points, the
 * q8_K activation quantiser and every ISA's integer dots against exact
 * references, and the model side: llama.cpp's Q4_K_M tensor choice, files
 * that are truncated or hold a type ramole lacks, and requantising merges.
 * (Matmul on every path: test_kernels.c; parity with llama.cpp:
 * tests/cli/llamacpp_parity.sh.)
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "kernels/kern_internal.h"
#include "kernels/hgemm.h"
#include "kernels/qgemm.h"
#include "lora/adapter.h"
#include "model/model.h"
#include "test_util.h"

static const rm_type qtypes[] = {RM_TYPE_Q4_0, RM_TYPE_Q4_1, RM_TYPE_Q4_K, RM_TYPE_Q5_K, RM_TYPE_Q6_K};
#define N_QTYPES 5

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint32_t rng_u32(void) { return rm_test_rng_u32(&g_rng); }
static float rng_unif(void) { return rm_test_rng_unif(&g_rng); }

static char *tmp_path(const char *name) { return rm_path_join(rm_test_tmp_dir(), name); }

/* ---- an independent dequantisation, straight from ggml's formulas ----------- */

static float f16(const uint8_t *p) { return rm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Element e (0..255 or 0..31) of one raw block of type t. Works on bytes at
 * ggml's offsets, not on ramole's structs. */
static float naive_elem(rm_type t, const uint8_t *b, int e) {
    switch (t) {
    case RM_TYPE_Q4_0: { /* d | qs[16] */
        int q = e < 16 ? b[2 + e] & 15 : b[2 + e - 16] >> 4;
        return (q - 8) * f16(b);
    }
    case RM_TYPE_Q4_1: { /* d | m | qs[16] */
        int q = e < 16 ? b[4 + e] & 15 : b[4 + e - 16] >> 4;
        return q * f16(b) + f16(b + 2);
    }
    case RM_TYPE_Q4_K:
    case RM_TYPE_Q5_K: { /* d | dmin | scales[12] | (q5: qh[32]) | qs[128] */
        const uint8_t *sc = b + 4, *qh = b + 16, *qs = b + (t == RM_TYPE_Q5_K ? 48 : 16);
        int j = e / 32, chunk = e / 64, l = e % 32, hi = j % 2;
        int s, m;
        if (j < 4) s = sc[j] & 63, m = sc[j + 4] & 63;
        else s = (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4), m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
        int q = hi ? qs[32 * chunk + l] >> 4 : qs[32 * chunk + l] & 15;
        if (t == RM_TYPE_Q5_K && (qh[l] >> j) & 1) q += 16;
        float d1 = f16(b) * s, m1 = f16(b + 2) * m;
        return d1 * q - m1;
    }
    case RM_TYPE_Q6_K: { /* ql[128] | qh[64] | scales[16] (int8) | d */
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        int half = e / 128, r = e % 128, g = r / 32, l = r % 32;
        int lo = ql[64 * half + l + (g & 1) * 32];
        lo = g < 2 ? lo & 15 : lo >> 4;
        int q = (lo | ((qh[32 * half + l] >> (2 * g)) & 3) << 4) - 32;
        return f16(b + 208) * sc[8 * half + 2 * g + l / 16] * q;
    }
    default: return NAN;
    }
}

/* f16 bit patterns for the scale fields: zero, -0, subnormals, the
 * smallest normal, the largest finite, random normals. */
static uint16_t edge_scale(int i) {
    static const uint16_t edges[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x3c00};
    if (i < 8) return edges[i];
    return (uint16_t)((rng_u32() % 0x7800) | (rng_u32() & 0x8000)); /* finite */
}

/* Random bytes with every f16 scale field set to an edge or random value. */
static void random_block(rm_type t, uint8_t *b, int round) {
    size_t n = rm_type_block_bytes(t);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)rng_u32();
    size_t at[2];
    int k = 0;
    if (t == RM_TYPE_Q6_K) at[k++] = 208;
    else {
        at[k++] = 0;
        if (t != RM_TYPE_Q4_0) at[k++] = 2;
    }
    for (int i = 0; i < k; i++) {
        uint16_t h = edge_scale((round + 3 * i) % 12);
        b[at[i]] = (uint8_t)h, b[at[i] + 1] = (uint8_t)(h >> 8);
    }
}

TEST(quant_type_table) {
    static const struct {
        rm_type t;
        const char *name;
        int64_t elems;
        size_t bytes;
        int ggml;
    } want[] = {{RM_TYPE_Q4_0, "q4_0", 32, 18, 2},    {RM_TYPE_Q4_1, "q4_1", 32, 20, 3},
                {RM_TYPE_Q4_K, "q4_k", 256, 144, 12}, {RM_TYPE_Q5_K, "q5_k", 256, 176, 13},
                {RM_TYPE_Q6_K, "q6_k", 256, 210, 14}};
    for (int i = 0; i < N_QTYPES; i++) {
        rm_type t;
        CHECK(rm_type_from_name(want[i].name, &t) && t == want[i].t);
        CHECK(strcmp(rm_type_name(want[i].t), want[i].name) == 0);
        CHECK(rm_type_is_quant(want[i].t));
        CHECK(rm_type_block_elems(want[i].t) == want[i].elems && rm_type_block_bytes(want[i].t) == want[i].bytes);
        CHECK(rm_type_row_bytes(want[i].t, 4096) == (size_t)(4096 / want[i].elems) * want[i].bytes);
        CHECK(rm_type_to_ggml(want[i].t) == want[i].ggml && rm_type_from_ggml((uint32_t)want[i].ggml) == (int)t);
        uint32_t blck, bytes;
        CHECK(rm_ggml_type_size((uint32_t)want[i].ggml, &blck, &bytes) && blck == want[i].elems && bytes == want[i].bytes);
    }
    CHECK(!rm_type_is_quant(RM_TYPE_F16) && rm_type_is_quant(RM_TYPE_Q8_0));
}

TEST(quant_dequantise_bit_exact) {
    enum { ROUNDS = 400 };
    rm_isa saved = rm_isa_current();
    for (int ti = 0; ti < N_QTYPES; ti++) {
        rm_type t = qtypes[ti];
        int64_t be = rm_type_block_elems(t);
        size_t bb = rm_type_block_bytes(t);
        int nb = 8;
        uint8_t *blocks = malloc(bb * (size_t)nb);
        float *got = malloc((size_t)(be * nb) * 4), *want = malloc((size_t)(be * nb) * 4);
        uint16_t *h = malloc((size_t)(be * nb) * 2);
        int bad = 0, bad_f16 = 0, nonfinite = 0;
        for (int r = 0; r < ROUNDS; r++) {
            for (int b = 0; b < nb; b++) random_block(t, blocks + (size_t)b * bb, r * nb + b);
            for (int b = 0; b < nb; b++)
                for (int e = 0; e < be; e++) want[b * be + e] = naive_elem(t, blocks + (size_t)b * bb, e);
            for (int i = 0; i < RM_ISA_COUNT; i++) {
                if (!rm_isa_supported((rm_isa)i)) continue;
                CHECK_OK(rm_isa_set((rm_isa)i));
                memset(got, 0xff, (size_t)(be * nb) * 4);
                rm_convert(RM_TYPE_F32, got, t, blocks, be * nb);
                for (int64_t e = 0; e < be * nb; e++) {
                    uint32_t a, c;
                    memcpy(&a, &got[e], 4), memcpy(&c, &want[e], 4);
                    bad += a != c;
                    nonfinite += !isfinite(got[e]);
                }
                rm_convert(RM_TYPE_F16, h, t, blocks, be * nb); /* through f32 chunks */
                for (int64_t e = 0; e < be * nb; e++) bad_f16 += h[e] != rm_f32_to_f16(want[e]);
            }
        }
        CHECK_MSG(bad == 0, "%s: %d dequantised values differ from the reference", rm_type_name(t), bad);
        CHECK_MSG(bad_f16 == 0, "%s: %d values differ after conversion to f16", rm_type_name(t), bad_f16);
        CHECK_MSG(nonfinite == 0, "%s: %d non-finite values from finite scales", rm_type_name(t), nonfinite);
        free(blocks), free(got), free(want), free(h);
    }
    rm_isa_set(saved);
}

/* A hand-built q4_k block with known values: the layout, not just agreement. */
TEST(quant_dequantise_known_block) {
    rm_block_q4_k b;
    memset(&b, 0, sizeof b);
    b.d = rm_f32_to_f16(0.5f);
    b.dmin = rm_f32_to_f16(0.25f);
    b.scales[0] = 2;             /* sub-block 0: scale 2, min 4 */
    b.scales[4] = 4;
    b.scales[8] = 0x31;          /* sub-block 4: scale 1 (+ high bits), min 3 */
    b.scales[0] |= 1 << 6;       /* sub-block 4's scale += 16 */
    b.qs[0] = 0x93;              /* element 0: 3; element 32: 9 (sub-block 1) */
    b.qs[64] = 0x05;             /* element 128 (sub-block 4): 5 */
    float y[256];
    rm_convert(RM_TYPE_F32, y, RM_TYPE_Q4_K, &b, 256);
    CHECK(y[0] == 0.5f * 2 * 3 - 0.25f * 4);
    CHECK(y[1] == -0.25f * 4);                  /* level 0 */
    CHECK(y[32] == 0.0f);                       /* sub-block 1: scale 0, min 0 */
    CHECK(y[128] == 0.5f * 17 * 5 - 0.25f * 3); /* scale 1 | 16 */
}

/* ggml's q4_0 rule, written out: d = max / -8, q = min(15, (int8)(x/d + 8.5)). */
static void naive_q4_0(uint8_t *out, const float *x) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    float d = max / -8, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = rm_f32_to_f16(d);
    out[0] = (uint8_t)h, out[1] = (uint8_t)(h >> 8);
    for (int j = 0; j < 16; j++) {
        int a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[j + 16] * id + 8.5f);
        out[2 + j] = (uint8_t)((a > 15 ? 15 : a) | (b > 15 ? 15 : b) << 4);
    }
}

static double rms_rel(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / den);
}

TEST(quant_quantise_error_and_fixed_points) {
    enum { K = 4096 };
    float *x = malloc(K * 4), *y = malloc(K * 4), *z = malloc(K * 4);
    uint8_t *q = malloc(K * 2), *q2 = malloc(K * 2);
    for (int i = 0; i < K; i++) x[i] = rng_unif() * (1.0f + (float)(i % 7)); /* uneven blocks */
    /* relative RMS error on uniform data of mixed amplitudes: about one step / sqrt(12) */
    static const double bound[N_QTYPES] = {0.10, 0.095, 0.085, 0.045, 0.022}; /* measured: 0.084 0.078 0.071 0.036 0.018 */
    double err[N_QTYPES];
    for (int ti = 0; ti < N_QTYPES; ti++) {
        rm_type t = qtypes[ti];
        rm_convert(t, q, RM_TYPE_F32, x, K);
        rm_convert(RM_TYPE_F32, y, t, q, K);
        err[ti] = rms_rel(y, x, K);
        CHECK_MSG(err[ti] < bound[ti], "%s: relative RMS error %.4g >= %.3g", rm_type_name(t), err[ti], bound[ti]);
        /* dequantised values are representable: quantising them again keeps them */
        rm_convert(t, q2, RM_TYPE_F32, y, K);
        rm_convert(RM_TYPE_F32, z, t, q2, K);
        double drift = rms_rel(z, y, K);
        CHECK_MSG(drift < err[ti] / 4, "%s: requantising drifts by %.3g", rm_type_name(t), drift);
        /* zeros stay zeros, and a constant row comes back close */
        float zero[256] = {0}, c[256], back[256];
        int64_t be = rm_type_block_elems(t);
        rm_convert(t, q2, RM_TYPE_F32, zero, be);
        rm_convert(RM_TYPE_F32, back, t, q2, be);
        for (int i = 0; i < be; i++) CHECK(back[i] == 0.0f);
        for (int i = 0; i < be; i++) c[i] = 0.75f;
        rm_convert(t, q2, RM_TYPE_F32, c, be);
        rm_convert(RM_TYPE_F32, back, t, q2, be);
        for (int i = 0; i < be; i++) CHECK_MSG(fabsf(back[i] - 0.75f) < 2e-3f, "%s: %g", rm_type_name(t), back[i]);
    }
    CHECK_MSG(err[2] > err[3] && err[3] > err[4], "k-quant errors %.3g %.3g %.3g not decreasing with bits", err[2],
              err[3], err[4]);
    if (getenv("RM_TEST_VERBOSE"))
        printf("  relative RMS error q4_0 %.4f q4_1 %.4f q4_k %.4f q5_k %.4f q6_k %.4f\n", err[0], err[1], err[2],
               err[3], err[4]);
    /* q4_0 is ggml's rule to the bit */
    rm_convert(RM_TYPE_Q4_0, q, RM_TYPE_F32, x, K);
    int bad = 0;
    for (int b = 0; b < K / 32; b++) {
        uint8_t ref[18];
        naive_q4_0(ref, x + 32 * b);
        bad += memcmp(ref, q + 18 * b, 18) != 0;
    }
    CHECK_MSG(bad == 0, "%d q4_0 blocks differ from ggml's rule", bad);
    free(x), free(y), free(z), free(q), free(q2);
}

/* The q8_K activation blocks: levels, scale and sums of 16 as ggml makes them. */
TEST(quant_activation_q8_k) {
    enum { K = 1024 };
    float x[K];
    for (int i = 0; i < K; i++) x[i] = rng_unif() * (i < 256 ? 0.0f : i < 512 ? 1e-3f : 3.0f);
    rm_block_q8_k q[K / 256];
    rm_kern_quantize_q8_k(q, x, K);
    for (int b = 0; b < K / 256; b++) {
        const float *xb = x + 256 * b;
        float max = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(xb[j]) > fabsf(max)) max = xb[j];
        float iscale = max != 0.0f ? -127.f / max : 0.0f;
        CHECK(q[b].d == (max != 0.0f ? 1 / iscale : 0.0f));
        for (int j = 0; j < 256; j++) {
            float l = rintf(iscale * xb[j]);
            CHECK(q[b].qs[j] == (int8_t)(l > 127 ? 127 : l));
        }
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += q[b].qs[16 * s + j];
            CHECK(q[b].bsums[s] == sum);
        }
    }
}

/*
 * Every ISA's q8_K quantiser (the activations of every k-quant product)
 * against the scalar one, byte for byte, on blocks that probe its rules:
 * random magnitudes, all zero, negative zeros, the largest magnitude held by
 * two values of opposite sign (the first one sets the sign of the scale),
 * the largest last, products landing on .5 (ties to even), subnormals,
 * huge values, an infinity and a NaN among finite values.
 */
TEST(quant_activation_q8_k_every_isa) {
    enum { NB = 12, K = NB * 256 };
    static float x[K];
    for (int i = 0; i < K; i++) x[i] = rng_unif() * 2;
    float *b = x;
    for (int j = 0; j < 256; j++) b[256 + j] = 0.0f, b[512 + j] = -0.0f;
    b[768 + 5] = -3.0f, b[768 + 200] = 3.0f;              /* ties of |max|, negative first */
    b[1024 + 17] = 3.0f, b[1024 + 90] = -3.0f;            /* positive first */
    b[1280 + 255] = 7.0f;                                 /* the largest last */
    b[1536] = -127.0f;                                    /* scale exactly 1: levels from .5 ties */
    for (int j = 1; j < 256; j++) b[1536 + j] = (float)(j % 21 - 10) + 0.5f;
    for (int j = 0; j < 256; j++) b[1792 + j] = rng_unif() * 1e-40f; /* subnormals */
    for (int j = 0; j < 256; j++) b[2048 + j] = rng_unif() * 1e30f;
    b[2304 + 77] = INFINITY;
    b[2560 + 3] = NAN;
    rm_block_q8_k want[NB], got[NB];
    rm_kern_quantize_q8_k(want, x, K);
    rm_isa saved = rm_isa_current();
    int bad = 0, isas = 0;
    for (int i = 0; i < RM_ISA_COUNT; i++) {
        if (!rm_isa_supported((rm_isa)i)) continue;
        CHECK_OK(rm_isa_set((rm_isa)i));
        memset(got, 0x5a, sizeof got);
        rm_kern_ops_get()->f32_to_q8_k(got, x, K);
        for (int bl = 0; bl < NB; bl++) {
            bool same = memcmp(&got[bl], &want[bl], sizeof got[bl]) == 0;
            CHECK_MSG(same, "%s: q8_K block %d differs from the scalar quantiser", rm_isa_name((rm_isa)i), bl);
            bad += !same;
        }
        isas++;
    }
    rm_isa_set(saved);
    CHECK(isas >= 1 && bad == 0);
    /* the scalar rules themselves: the first of two equal magnitudes sets the scale */
    CHECK(want[3].d > 0 && want[3].qs[5] == -127 && want[3].qs[200] == 127);
    CHECK(want[4].d < 0 && want[4].qs[17] == -127 && want[4].qs[90] == 127);
    CHECK(want[6].d == 1.0f && want[6].qs[0] == -127);
    CHECK(want[6].qs[1] == -8 && want[6].qs[2] == -8 && want[6].qs[12] == 2); /* -8.5, -7.5, 2.5 to even */
}

/* Every ISA's integer dot against the exact dot of the dequantised operands. */
TEST(quant_dots_every_isa) {
    enum { K = 2048 };
    float x[K], w[K], wd[K], xd[K];
    for (int i = 0; i < K; i++) x[i] = rng_unif() * 2, w[i] = rng_unif() * 0.3f;
    for (int ti = 0; ti < N_QTYPES; ti++) {
        rm_type t = qtypes[ti];
        static uint8_t wq[K * 2], xq[K * 2];
        rm_convert(t, wq, RM_TYPE_F32, w, K);
        rm_convert(RM_TYPE_F32, wd, t, wq, K);
        rm_kern_act_quantize(&rm_kern_ops_scalar, t, xq, x, K);
        if (rm_type_block_elems(t) == 256) { /* q8_K back to floats */
            const rm_block_q8_k *a = (const rm_block_q8_k *)xq;
            for (int i = 0; i < K; i++) xd[i] = a[i / 256].d * a[i / 256].qs[i % 256];
        } else {
            rm_convert(RM_TYPE_F32, xd, RM_TYPE_Q8_0, xq, K);
        }
        int64_t be = rm_type_block_elems(t), nbs[3] = {K / be, 1, 3}; /* odd counts: the 2-block passes' tails */
        for (int ib = 0; ib < 3; ib++) {
            int64_t nb = nbs[ib];
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < nb * be; i++) exact += (double)xd[i] * wd[i], mag += fabs((double)xd[i] * wd[i]);
            for (int i = 0; i < RM_ISA_COUNT; i++) {
                if (!rm_isa_supported((rm_isa)i)) continue;
                CHECK_OK(rm_isa_set((rm_isa)i));
                const rm_kern_ops *ops = rm_kern_ops_get();
                CHECK(ops->dot_quant[t] != NULL);
                if (!ops->dot_quant[t]) continue;
                double got = ops->dot_quant[t](xq, wq, nb);
                CHECK_MSG(fabs(got - exact) <= 1e-6 * mag, "%s %s (%lld blocks): dot %.9g, exact %.9g",
                          rm_isa_name((rm_isa)i), rm_type_name(t), (long long)nb, got, exact);
            }
        }
    }
    rm_isa_set(rm_isa_best());
}

/* ---- the model side ------------------------------------------------------------ */

static rm_model_config k_config(int n_layers, bool tied) {
    rm_model_config c;
    rm_model_config_defaults(&c, RM_ARCH_LLAMA);
    c.vocab_size = 300;
    c.hidden = 256;
    c.ffn = 512;
    c.n_layers = n_layers;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 64;
    c.rope.n_rot = 64;
    c.max_pos = 64;
    c.tied_embeddings = tied;
    return c;
}

static rm_type file_type(const rm_gguf *g, const char *name) {
    const rm_gguf_tensor *t = rm_gguf_tensor_find(g, name);
    return t ? (rm_type)t->type : RM_TYPE_COUNT;
}

TEST(quant_q4_k_m_follows_llama_cpp) {
    rm_model_config c = k_config(8, false);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 3, 0.05f, &m));
    if (!m) return;
    char *path = tmp_path("q4km.gguf");
    CHECK_OK(rm_model_save(m, RM_SOURCE_GGUF, RM_MODEL_PLAN_Q4_K_M, path));
    rm_gguf *g = NULL;
    CHECK_OK(rm_gguf_open(path, &g));
    if (g) {
        /* n = 8: use_more_bits is true for layers 0, 3, 6, 7 */
        static const bool more[8] = {true, false, false, true, false, false, true, true};
        char name[64];
        for (int l = 0; l < 8; l++) {
            rm_type big = more[l] ? RM_TYPE_Q6_K : RM_TYPE_Q4_K;
            snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
            CHECK_MSG(file_type(g, name) == big, "%s is %s", name, rm_type_name(file_type(g, name)));
            snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
            CHECK_MSG(file_type(g, name) == big, "%s is %s", name, rm_type_name(file_type(g, name)));
            snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
            CHECK(file_type(g, name) == RM_TYPE_Q4_K);
            snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", l);
            CHECK(file_type(g, name) == RM_TYPE_Q4_K);
            snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
            CHECK(file_type(g, name) == RM_TYPE_F32);
        }
        CHECK(file_type(g, "output.weight") == RM_TYPE_Q6_K);
        CHECK(file_type(g, "token_embd.weight") == RM_TYPE_Q4_K);
        uint32_t ft = 0;
        CHECK_OK(rm_gguf_get_u32(g, "general.file_type", &ft));
        CHECK(ft == 15); /* LLAMA_FTYPE_MOSTLY_Q4_K_M */
    }
    rm_gguf_free(g);
    /* the file runs, close to the f32 model it came from */
    rm_model *q = NULL;
    CHECK_OK(rm_model_open(path, &q));
    if (q) {
        CHECK(rm_model_plan_of(q) == RM_MODEL_PLAN_Q4_K_M);
        static const int32_t toks[6] = {1, 40, 7, 250, 3, 99};
        float *a = rm_test_logits_all(m, toks, 6, 2), *b = rm_test_logits_all(q, toks, 6, 2);
        CHECK(a && b);
        if (a && b) {
            double d = rm_test_max_rel_diff(a, b, (size_t)6 * (size_t)c.vocab_size);
            /* 8 random layers amplify 4-bit rounding: q8_0 is 0.03 here, pure q4_k 0.26 */
            CHECK_MSG(d < 0.35, "q4_k_m logits differ from f32 by %.3g", d);
            CHECK_MSG(d > 1e-4, "q4_k_m logits equal the f32 ones (%.3g): nothing was quantised?", d);
        }
        free(a), free(b);
    }
    rm_model_free(q);
    /* tied embeddings take the output's q6_k; rows that are not whole
     * 256-blocks fall back to q8_0 */
    rm_model_config ct = k_config(2, true);
    ct.ffn = 352;
    rm_model *t = NULL;
    CHECK_OK(rm_model_random(&ct, 4, 0.05f, &t));
    if (t) {
        CHECK_OK(rm_model_save(t, RM_SOURCE_GGUF, RM_MODEL_PLAN_Q4_K_M, path));
        CHECK_OK(rm_gguf_open(path, &g));
        if (g) {
            CHECK(file_type(g, "token_embd.weight") == RM_TYPE_Q6_K);
            CHECK(file_type(g, "blk.1.ffn_down.weight") == RM_TYPE_Q8_0);
            CHECK(file_type(g, "blk.1.ffn_up.weight") == RM_TYPE_Q4_K);
        }
        rm_gguf_free(g);
        char *hf = tmp_path("q4km_hf");
        CHECK_ERR(rm_model_save(t, RM_SOURCE_HF, RM_MODEL_PLAN_Q4_K_M, hf), RAMOLE_ERR_UNSUPPORTED);
        CHECK(strstr(ramole_last_error(), "q4_k_m") != NULL);
        rm_free(hf);
    }
    rm_model_free(t);
    rm_model_free(m);
    rm_free(path);
}

/*
 * A model file saved with `plan` (as `ramole convert --type` writes it),
 * opened with its matrices of the packed types packed at load (forced where
 * the CPU lacks the kernels, so the scalar tile kernels run or the file's
 * rows are read), against the same model unpacked again: the logits of a
 * prefill (40 rows: the GEMM paths), of a short batch (5 rows: the dot
 * path unpacked) and of one token (1 row: the packed f16 tiles' row
 * kernel) agree, bit for bit on
 * the prefill where the unpacked path runs the same kernel (`same_kernel`);
 * the packed form is at most `growth` above the file's rows; the file's
 * layout stays readable through data after its pages were released.
 */
static void check_packed_at_load(int plan, const char *file, double growth, bool same_kernel) {
    rm_model_config c = k_config(3, false);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 7, 0.05f, &m));
    if (!m) return;
    char *path = tmp_path(file);
    CHECK_OK(rm_model_save(m, RM_SOURCE_GGUF, plan, path));
    rm_model_free(m);
    rm_kern_matmul_set_pack_always(true);
    rm_model *q = NULL;
    CHECK_OK(rm_model_open(path, &q));
    rm_kern_matmul_set_pack_always(false);
    rm_gguf *g = NULL;
    CHECK_OK(rm_gguf_open(path, &g));
    if (!q || !g) {
        rm_model_free(q), rm_gguf_free(g), rm_free(path);
        return;
    }
    size_t file_bytes = 0;
    int packed = 0, want = 0;
    const rm_weight *ws[1 + 3 * RM_TARGET_COUNT];
    ws[0] = &q->output;
    for (int l = 0; l < 3; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) ws[1 + l * RM_TARGET_COUNT + t] = rm_layer_weight(&q->layers[l], t);
    for (int i = 0; i < 1 + 3 * RM_TARGET_COUNT; i++) {
        rm_type wt = ws[i]->type;
        bool k = wt == RM_TYPE_Q4_K || wt == RM_TYPE_Q6_K || wt == RM_TYPE_F16;
        want += k;
        packed += k && ws[i]->packed != NULL;
        if (k) file_bytes += rm_type_row_bytes(wt, ws[i]->cols) * (size_t)ws[i]->rows;
    }
    CHECK_MSG(want == 1 + 3 * RM_TARGET_COUNT && packed == want, "%s: %d of %d matrices packed", file, packed, want);
    CHECK_MSG(q->packed_bytes > 0 && q->packed_bytes <= file_bytes * growth, "%s: packed %zu bytes for %zu in the file",
              file, q->packed_bytes, file_bytes);
    /* the file's blocks, read through data after the release */
    const rm_gguf_tensor *tq = rm_gguf_tensor_find(g, "blk.1.attn_q.weight"), *to = rm_gguf_tensor_find(g, "output.weight");
    CHECK(tq && to && !memcmp(tq->data, q->layers[1].wq.data, tq->nbytes) && !memcmp(to->data, q->output.data, to->nbytes));
    int32_t toks[40];
    for (int i = 0; i < 40; i++) toks[i] = (int32_t)((i * 37 + 11) % c.vocab_size);
    float *pa = rm_test_logits_all(q, toks, 40, 2), *pb = rm_test_logits_all(q, toks, 5, 1);
    float *pc = rm_test_logits_all(q, toks, 1, 2);
    rm_model_unpack(q);
    CHECK(q->packed_bytes == 0 && q->owned_packed == NULL && q->layers[2].w_down.packed == NULL && !q->output.packed);
    float *ua = rm_test_logits_all(q, toks, 40, 2), *ub = rm_test_logits_all(q, toks, 5, 1);
    float *uc = rm_test_logits_all(q, toks, 1, 2);
    CHECK(pa && pb && pc && ua && ub && uc);
    if (pa && pb && pc && ua && ub && uc) {
        double da = rm_test_max_rel_diff(pa, ua, (size_t)40 * (size_t)c.vocab_size);
        double db = rm_test_max_rel_diff(pb, ub, (size_t)5 * (size_t)c.vocab_size);
        double dc = rm_test_max_rel_diff(pc, uc, (size_t)c.vocab_size);
        CHECK_MSG(da <= 1e-4 && db <= 1e-4 && dc <= 1e-4,
                  "%s: packed vs unpacked logits: prefill %.3g, short batch %.3g, one token %.3g", file, da, db, dc);
        if (same_kernel)
            CHECK_MSG(!memcmp(pa, ua, (size_t)40 * (size_t)c.vocab_size * 4), "%s: prefill logits not bit for bit (%.3g)",
                      file, da);
    }
    free(pa), free(pb), free(pc), free(ua), free(ub), free(uc);
    rm_gguf_free(g);
    rm_model_free(q);
    rm_free(path);
}

TEST(quant_q4_k_m_packed_at_load_matches_unpacked) {
    const rm_kern_ops *ops = rm_kern_ops_get();
    check_packed_at_load(RM_MODEL_PLAN_Q4_K_M, "q4km_pack.gguf", 1.10, rm_qgemm_q4_k_get(ops) && rm_qgemm_q6_k_get(ops));
}

/* f16: the tiles are the file's 16-bit values transposed, as large as the
 * file's rows but for the zero rows that fill a last tile (the head's 300
 * rows take 320). */
TEST(quant_f16_packed_at_load_matches_unpacked) {
    rm_hgemm_fns f;
    check_packed_at_load(RM_TYPE_F16, "f16_pack.gguf", 1.01,
                         rm_hgemm_get(rm_kern_ops_get(), RM_TYPE_F16, &f) && rm_kern_matmul_hgemm_min_m() <= 40);
}

/* The same on a CPU with AVX2 alone (the ISA lowered): the tiles are read
 * by the AVX2 kernels, while the unpacked path has the dot kernels and
 * sgemm, so the two agree to rounding only. */
TEST(quant_f16_packed_at_load_avx2_matches_unpacked) {
    if (!rm_isa_supported(RM_ISA_AVX2)) return;
    rm_isa saved = rm_isa_current();
    CHECK_OK(rm_isa_set(RM_ISA_AVX2));
    rm_hgemm_fns f;
    CHECK(rm_hgemm_packed_get(rm_kern_ops_get(), RM_TYPE_F16, &f));
    check_packed_at_load(RM_TYPE_F16, "f16_pack_avx2.gguf", 1.01, false);
    rm_isa_set(saved);
}

/* Offset of the u32 type of tensor `name` in a GGUF file's bytes (its info:
 * name, u32 n_dims, n_dims i64 extents, u32 type). */
static size_t type_offset(const char *data, size_t n, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 8; i + len + 4 < n; i++) {
        uint64_t sl;
        memcpy(&sl, data + i - 8, 8);
        if (sl == len && memcmp(data + i, name, len) == 0) {
            uint32_t nd;
            memcpy(&nd, data + i + len, 4);
            return i + len + 4 + 8 * nd;
        }
    }
    return 0;
}

TEST(quant_bad_files_are_refused_clearly) {
    rm_model_config c = k_config(2, false);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 5, 0.05f, &m));
    if (!m) return;
    char *path = tmp_path("q4k.gguf"), *bad = tmp_path("q4k_bad.gguf");
    CHECK_OK(rm_model_save(m, RM_SOURCE_GGUF, RM_TYPE_Q4_K, path));
    rm_model_free(m);
    char *data = NULL;
    size_t n = 0;
    CHECK_OK(rm_file_read(path, &data, &n));
    if (!data) return;
    rm_model *x = NULL;
    /* block data cut short, inside the last tensor */
    rm_file_write_atomic(bad, data, n - 100);
    CHECK_ERR(rm_model_open(bad, &x), RAMOLE_ERR_FORMAT);
    CHECK_MSG(strstr(ramole_last_error(), "q4k_bad.gguf") && strstr(ramole_last_error(), "past the end"), "%s",
              ramole_last_error());
    /* a type id ggml does not have, and one that ramole does not compute with */
    size_t at = type_offset(data, n, "blk.0.attn_q.weight");
    CHECK(at > 0);
    if (at) {
        uint32_t id = 99;
        memcpy(data + at, &id, 4);
        rm_file_write_atomic(bad, data, n);
        CHECK_ERR(rm_model_open(bad, &x), RAMOLE_ERR_FORMAT);
        CHECK_MSG(strstr(ramole_last_error(), "unknown ggml type id 99"), "%s", ramole_last_error());
        id = 20; /* iq4_nl: 18 bytes per 32 as q4_k's 144 per 256, so the extents still hold */
        memcpy(data + at, &id, 4);
        rm_file_write_atomic(bad, data, n);
        CHECK_ERR(rm_model_open(bad, &x), RAMOLE_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(ramole_last_error(), "unsupported tensor type iq4_nl") &&
                      strstr(ramole_last_error(), "blk.0.attn_q.weight"),
                  "%s", ramole_last_error());
    }
    rm_model_free(x);
    rm_free(data), rm_free(path), rm_free(bad);
}

/* A GGUF file holding a type ggml knows and ramole does not: named with the file. */
TEST(quant_unsupported_type_is_named) {
    rm_gguf_writer *w = NULL;
    CHECK_OK(rm_gguf_writer_new(&w));
    uint8_t q5[22 * 8] = {0};
    CHECK_OK(rm_gguf_writer_add_raw(w, "t.q5_0", RM_GGML_Q5_0, 2, (int64_t[]){64, 4}, q5));
    char *path = tmp_path("q5_0.gguf");
    CHECK_OK(rm_gguf_writer_write(w, path));
    rm_gguf_writer_free(w);
    rm_gguf *g = NULL;
    CHECK_OK(rm_gguf_open(path, &g));
    const rm_gguf_tensor *t = g ? rm_gguf_tensor_find(g, "t.q5_0") : NULL;
    CHECK(t && t->type == -1);
    if (t) {
        CHECK_ERR(rm_gguf_tensor_check(g, t), RAMOLE_ERR_UNSUPPORTED);
        CHECK(strstr(ramole_last_error(), "unsupported tensor type q5_0") && strstr(ramole_last_error(), path) &&
              strstr(ramole_last_error(), "t.q5_0"));
    }
    rm_gguf_free(g);
    rm_free(path);
}

/* Merging into a quantised base keeps the base's plan; the adapter itself
 * stays f32 over the quantised weights (composition is unchanged). */
TEST(quant_merge_requantises_to_the_base_plan) {
    rm_model_config c = k_config(2, false);
    rm_model *m = NULL, *q = NULL, *merged = NULL, *back = NULL;
    CHECK_OK(rm_model_random(&c, 6, 0.05f, &m));
    char *path = tmp_path("mq.gguf"), *out = tmp_path("mq_merged.gguf"), *ad = tmp_path("mq_lora.gguf");
    if (m) CHECK_OK(rm_model_save(m, RM_SOURCE_GGUF, RM_MODEL_PLAN_Q4_K_M, path));
    rm_model_free(m);
    CHECK_OK(rm_model_open(path, &q));
    rm_adapter *a = NULL;
    if (q) CHECK_OK(rm_adapter_random(q, 8, 16.0f, 0x7f, 7, 0.05f, &a));
    if (q && a) {
        CHECK(a->type == RM_TYPE_F32);
        CHECK_OK(rm_model_merge(q, &a, NULL, 1, &merged));
        int plan = rm_model_plan_of(q);
        CHECK(plan == RM_MODEL_PLAN_Q4_K_M);
        if (merged) CHECK_OK(rm_model_save(merged, RM_SOURCE_GGUF, plan, out));
        CHECK_OK(rm_model_open(out, &back));
        if (back) {
            CHECK(rm_model_plan_of(back) == RM_MODEL_PLAN_Q4_K_M);
            /* the merged, requantised model is closer to base + adapter than the base is */
            static const int32_t toks[5] = {1, 9, 77, 200, 5};
            float *base = rm_test_logits_all(q, toks, 5, 1), *mer = rm_test_logits_all(merged, toks, 5, 1);
            float *req = rm_test_logits_all(back, toks, 5, 1);
            if (base && mer && req) {
                size_t nv = (size_t)5 * (size_t)c.vocab_size;
                double moved = rm_test_max_rel_diff(mer, base, nv), kept = rm_test_max_rel_diff(mer, req, nv);
                CHECK_MSG(kept < moved, "requantised merge %.3g from the f32 merge, base %.3g", kept, moved);
            }
            free(base), free(mer), free(req);
        }
    }
    rm_adapter_free(a);
    rm_model_free(back), rm_model_free(merged), rm_model_free(q);
    rm_free(path), rm_free(out), rm_free(ad);
}
