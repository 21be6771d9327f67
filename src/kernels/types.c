/*
 * types.c — element-type table and scalar conversions.
 *
 * The scalar f16/bf16 conversions here are the definition of "correct" for
 * ramole: f32 -> f16 rounds to nearest even with IEEE overflow to inf and
 * gradual underflow, and turns a NaN into a quiet NaN keeping the sign and
 * the top payload bits — exactly what F16C's vcvtps2ph/vcvtph2ps do, so the
 * scalar and SIMD paths agree bit for bit on every input. f32 -> bf16 is
 * ggml's rule (round to nearest even, NaN forced quiet by setting bit 6).
 * rm_convert routes any pair of types through the current ISA's bulk
 * converters (the 4-6 bit blocks through quant.c), via f32 in stack-sized
 * chunks when neither side is f32.
 */
#include "kernels/kern_internal.h"

#include <string.h>

typedef struct {
    const char *name;
    int64_t block_elems;
    size_t block_bytes;
} type_info;

static const type_info g_types[RM_TYPE_COUNT] = {
    [RM_TYPE_F32] = {"f32", 1, 4},
    [RM_TYPE_F16] = {"f16", 1, 2},
    [RM_TYPE_BF16] = {"bf16", 1, 2},
    [RM_TYPE_Q8_0] = {"q8_0", RM_Q8_0_BLOCK, sizeof(rm_block_q8_0)},
    [RM_TYPE_Q4_0] = {"q4_0", 32, sizeof(rm_block_q4_0)},
    [RM_TYPE_Q4_1] = {"q4_1", 32, sizeof(rm_block_q4_1)},
    [RM_TYPE_Q4_K] = {"q4_k", RM_QK_K, sizeof(rm_block_q4_k)},
    [RM_TYPE_Q5_K] = {"q5_k", RM_QK_K, sizeof(rm_block_q5_k)},
    [RM_TYPE_Q6_K] = {"q6_k", RM_QK_K, sizeof(rm_block_q6_k)},
};

_Static_assert(sizeof(rm_block_q8_0) == 34, "q8_0 block must be 34 bytes as in GGUF");

const char *rm_type_name(rm_type t) {
    return (unsigned)t < RM_TYPE_COUNT ? g_types[t].name : "unknown";
}

bool rm_type_from_name(const char *name, rm_type *out) {
    for (int t = 0; name && t < RM_TYPE_COUNT; t++) {
        if (strcmp(name, g_types[t].name) == 0) {
            *out = (rm_type)t;
            return true;
        }
    }
    return false;
}

bool rm_type_is_quant(rm_type t) { return (unsigned)t < RM_TYPE_COUNT && g_types[t].block_elems > 1; }

int64_t rm_type_block_elems(rm_type t) {
    return (unsigned)t < RM_TYPE_COUNT ? g_types[t].block_elems : 0;
}

size_t rm_type_block_bytes(rm_type t) {
    return (unsigned)t < RM_TYPE_COUNT ? g_types[t].block_bytes : 0;
}

size_t rm_type_row_bytes(rm_type t, int64_t n) {
    if ((unsigned)t >= RM_TYPE_COUNT || n < 0) return 0;
    return (size_t)(n / g_types[t].block_elems) * g_types[t].block_bytes;
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float rm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) /* inf, or NaN made quiet (as vcvtph2ps does) */
        return bits_f32(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round v >> s to nearest even (s >= 1). */
static inline uint32_t shift_rne(uint32_t v, int s) {
    uint32_t q = v >> s, rem = v & ((1u << s) - 1), half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

uint16_t rm_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) /* >= 65520 rounds to inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below 2^-14: f16 subnormal or zero */
        int e = (int)(a >> 23);
        int s = 126 - e;
        if (s > 24) return sign;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        return (uint16_t)(sign | shift_rne(m, s));
    }
    uint32_t q = (((a >> 23) - 112) << 10) | ((a & 0x7fffff) >> 13);
    uint32_t rem = a & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++; /* carry may reach the exponent: fine */
    return (uint16_t)(sign | q);
}

float rm_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t rm_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64); /* quiet NaN */
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

/* Convert n elements from src_type to f32 with the current ISA. */
static void convert_to_f32(const rm_kern_ops *ops, float *dst, rm_type st, const void *src, int64_t n) {
    switch (st) {
    case RM_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case RM_TYPE_F16: ops->f16_to_f32(dst, src, n); break;
    case RM_TYPE_BF16: ops->bf16_to_f32(dst, src, n); break;
    case RM_TYPE_Q8_0: ops->q8_0_to_f32(dst, src, n); break;
    default: ops->dequant[st](dst, src, n); break;
    }
}

static void convert_from_f32(const rm_kern_ops *ops, rm_type dt, void *dst, const float *src, int64_t n) {
    switch (dt) {
    case RM_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case RM_TYPE_F16: ops->f32_to_f16(dst, src, n); break;
    case RM_TYPE_BF16: ops->f32_to_bf16(dst, src, n); break;
    case RM_TYPE_Q8_0: ops->f32_to_q8_0(dst, src, n); break;
    default: rm_kern_quantize(dt, dst, src, n); break;
    }
}

void rm_convert(rm_type dst_type, void *dst, rm_type src_type, const void *src, int64_t n) {
    if ((unsigned)dst_type >= RM_TYPE_COUNT || (unsigned)src_type >= RM_TYPE_COUNT || n <= 0) return;
    const rm_kern_ops *ops = rm_kern_ops_get();
    if (dst_type == src_type) {
        memcpy(dst, src, rm_type_row_bytes(src_type, n));
    } else if (src_type == RM_TYPE_F32) {
        convert_from_f32(ops, dst_type, dst, src, n);
    } else if (dst_type == RM_TYPE_F32) {
        convert_to_f32(ops, dst, src_type, src, n);
    } else {
        enum { CHUNK = 1024 }; /* a multiple of every block size (32, 256) */
        float tmp[CHUNK];
        size_t sb = rm_type_row_bytes(src_type, CHUNK), db = rm_type_row_bytes(dst_type, CHUNK);
        for (int64_t i = 0; i < n; i += CHUNK) {
            int64_t c = n - i < CHUNK ? n - i : CHUNK;
            int64_t ci = i / CHUNK;
            convert_to_f32(ops, tmp, src_type, (const uint8_t *)src + (size_t)ci * sb, c);
            convert_from_f32(ops, dst_type, (uint8_t *)dst + (size_t)ci * db, tmp, c);
        }
    }
}
