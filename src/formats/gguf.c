/*
 * gguf.c — validated GGUF v2/v3 reader and streaming atomic writer.
 *
 * Reading. The file is mapped read-only and parsed by a bounds-checked
 * cursor: every fixed-size field is preceded by a check that it lies inside
 * the file, every count is checked against the bytes that remain before
 * anything is sized from it, and every size product goes through
 * rm_mul_ok/rm_add_ok. Entry arrays grow as entries are actually parsed, so
 * a header that claims 2^62 tensors fails on truncation, not on a huge
 * allocation. Metadata values stay in the map; the reader records for each
 * key where its value starts and how long it is (so rm_gguf_set_from can
 * copy it verbatim), and for string arrays the offset of every element (so
 * the j-th token of a 128k vocabulary is O(1)). Arrays of arrays are
 * accepted and skipped (depth-limited); the getters report them as arrays of
 * element type ARRAY with no data pointer. Keys and tensor names are copied
 * NUL-terminated into one arena; duplicates are rejected, and sorted index
 * arrays make lookups binary searches.
 *
 * Tensors: every standard ggml type has its block size and block bytes in
 * the table below, so files holding any of them open and list correctly;
 * F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K map to an rm_type. Offsets must be multiples of
 * general.alignment (a u32 power of two, default 32), extents must lie in the
 * data section, and tensors must not overlap (llama.cpp is stricter and
 * wants them packed in order; ramole's own writer packs them in order).
 *
 * Writing: metadata in insertion order, tensors in insertion order, each
 * tensor's data padded to the alignment, streamed to a temporary file that
 * is renamed into place (formats/fmt_io.h).
 */
#include "formats/gguf.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "formats/fmt_io.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NEST 8          /* arrays of arrays deeper than this are rejected */
#define GGUF_MAX_NAME 64         /* llama.cpp's GGML_MAX_NAME, including the NUL */

/* ---- ggml types ----------------------------------------------------------- */

typedef struct {
    const char *name;
    uint32_t blck;  /* elements per block */
    uint32_t size;  /* bytes per block */
} ggml_trait;

/* From ggml's type_traits; ids 4, 5 and 31-33, 36-38 were removed from ggml. */
static const ggml_trait ggml_traits[] = {
    [0] = {"f32", 1, 4},        [1] = {"f16", 1, 2},        [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},     [6] = {"q5_0", 32, 22},     [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},     [9] = {"q8_1", 32, 36},     [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},  [12] = {"q4_K", 256, 144},  [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},  [15] = {"q8_K", 256, 292},  [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74}, [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},  [21] = {"iq3_s", 256, 110}, [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},       [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},       [27] = {"i64", 1, 8},       [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},  [30] = {"bf16", 1, 2},      [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},  [39] = {"mxfp4", 32, 17},
};
#define GGML_N_TRAITS (sizeof ggml_traits / sizeof ggml_traits[0])

static const ggml_trait *ggml_trait_of(uint32_t t) {
    return (t < GGML_N_TRAITS && ggml_traits[t].name) ? &ggml_traits[t] : NULL;
}

const char *rm_ggml_type_name(uint32_t ggml_type) {
    const ggml_trait *tr = ggml_trait_of(ggml_type);
    return tr ? tr->name : "unknown";
}

bool rm_ggml_type_size(uint32_t ggml_type, uint32_t *blck, uint32_t *bytes) {
    const ggml_trait *tr = ggml_trait_of(ggml_type);
    if (!tr) return false;
    *blck = tr->blck;
    *bytes = tr->size;
    return true;
}

int rm_type_to_ggml(rm_type t) {
    switch (t) {
    case RM_TYPE_F32: return RM_GGML_F32;
    case RM_TYPE_F16: return RM_GGML_F16;
    case RM_TYPE_BF16: return RM_GGML_BF16;
    case RM_TYPE_Q8_0: return RM_GGML_Q8_0;
    case RM_TYPE_Q4_0: return RM_GGML_Q4_0;
    case RM_TYPE_Q4_1: return RM_GGML_Q4_1;
    case RM_TYPE_Q4_K: return RM_GGML_Q4_K;
    case RM_TYPE_Q5_K: return RM_GGML_Q5_K;
    case RM_TYPE_Q6_K: return RM_GGML_Q6_K;
    default: return -1;
    }
}

int rm_type_from_ggml(uint32_t ggml_type) {
    switch (ggml_type) {
    case RM_GGML_F32: return RM_TYPE_F32;
    case RM_GGML_F16: return RM_TYPE_F16;
    case RM_GGML_BF16: return RM_TYPE_BF16;
    case RM_GGML_Q8_0: return RM_TYPE_Q8_0;
    case RM_GGML_Q4_0: return RM_TYPE_Q4_0;
    case RM_GGML_Q4_1: return RM_TYPE_Q4_1;
    case RM_GGML_Q4_K: return RM_TYPE_Q4_K;
    case RM_GGML_Q5_K: return RM_TYPE_Q5_K;
    case RM_GGML_Q6_K: return RM_TYPE_Q6_K;
    default: return -1;
    }
}

/* Bytes of a tensor of ggml type tr with extents ne; false on overflow or
 * when ne[0] is not a whole number of blocks (the caller reports). */
static bool ggml_nbytes(const ggml_trait *tr, const int64_t ne[RM_GGUF_MAX_DIMS], size_t *out) {
    if (ne[0] % tr->blck != 0) return false;
    size_t n;
    if (!rm_mul_ok((size_t)(ne[0] / tr->blck), tr->size, &n)) return false;
    for (int d = 1; d < RM_GGUF_MAX_DIMS; d++)
        if (!rm_mul_ok(n, (size_t)ne[d], &n)) return false;
    *out = n;
    return true;
}

/* ---- value types ---------------------------------------------------------- */

static const char *const vtype_names[RM_GGUF_VTYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool",  "string", "array", "uint64", "int64", "float64",
};

static const char *vtype_name(uint32_t t) {
    return t < RM_GGUF_VTYPE_COUNT ? vtype_names[t] : "invalid";
}

/* Size of a fixed-size value type; 0 for string/array/invalid. */
static size_t vtype_size(uint32_t t) {
    switch (t) {
    case RM_GGUF_UINT8: case RM_GGUF_INT8: case RM_GGUF_BOOL: return 1;
    case RM_GGUF_UINT16: case RM_GGUF_INT16: return 2;
    case RM_GGUF_UINT32: case RM_GGUF_INT32: case RM_GGUF_FLOAT32: return 4;
    case RM_GGUF_UINT64: case RM_GGUF_INT64: case RM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* ---- reader state --------------------------------------------------------- */

typedef struct {
    const char *key;     /* arena */
    size_t key_off, key_len;
    uint32_t type;
    size_t val_off, val_len; /* the value bytes after the type field */
    uint32_t elem_type;  /* arrays */
    uint64_t count;      /* arrays */
    size_t arr_off;      /* arrays: first element */
    size_t *str_offs;    /* string arrays: offset of each element's length field */
} gguf_kv;

typedef struct {
    rm_gguf_tensor pub;
    size_t name_off, name_len; /* in the file; copied to the arena at the end */
} gguf_tensor;

struct rm_gguf {
    rm_mapped map;
    bool borrowed;       /* opened from caller memory: do not unmap */
    uint32_t version;
    size_t alignment;
    size_t data_off;
    int64_t n_kv, cap_kv;
    gguf_kv *kv;
    int64_t n_t, cap_t;
    gguf_tensor *t;
    int64_t *kv_sorted, *t_sorted;   /* indices sorted by key / name */
    char *arena;
};

/* A bounds-checked cursor over the map. */
typedef struct {
    const uint8_t *d;
    size_t size, pos;
    const char *path;
} gguf_rd;

static rm_status rd_need(gguf_rd *r, size_t n, const char *what, const char *name) {
    if (n <= r->size - r->pos) return RAMOLE_OK;
    return rm_err(RAMOLE_ERR_FORMAT,
                  "%s: truncated: %s%s%s%s needs %zu bytes at offset %zu, file is %zu bytes", r->path,
                  what, name ? " '" : "", name ? name : "", name ? "'" : "", n, r->pos, r->size);
}

static rm_status rd_u32(gguf_rd *r, uint32_t *v, const char *what, const char *name) {
    RM_TRY(rd_need(r, 4, what, name));
    *v = rm_le32(r->d + r->pos);
    r->pos += 4;
    return RAMOLE_OK;
}

static rm_status rd_u64(gguf_rd *r, uint64_t *v, const char *what, const char *name) {
    RM_TRY(rd_need(r, 8, what, name));
    *v = rm_le64(r->d + r->pos);
    r->pos += 8;
    return RAMOLE_OK;
}

/* A string: u64 length then bytes; *off is the offset of the bytes. */
static rm_status rd_str(gguf_rd *r, size_t *off, size_t *len, const char *what, const char *name) {
    uint64_t n;
    RM_TRY(rd_u64(r, &n, what, name));
    if (n > r->size - r->pos)
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: %s%s%s%s: string length %llu at offset %zu runs past the end of the "
                      "file (%zu bytes)",
                      r->path, what, name ? " '" : "", name ? name : "", name ? "'" : "",
                      (unsigned long long)n, r->pos - 8, r->size);
    *off = r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return RAMOLE_OK;
}

/* Print-safe copy of a (key) string for messages. */
static void name_copy(char *buf, size_t cap, const uint8_t *s, size_t n) {
    size_t k = n < cap - 1 ? n : cap - 1;
    for (size_t i = 0; i < k; i++) buf[i] = (s[i] >= 32 && s[i] < 127) ? (char)s[i] : '?';
    buf[k] = 0;
}

static rm_status rd_value(gguf_rd *r, uint32_t type, int depth, gguf_kv *kv, const char *key);

/* Array body (after the array type tag): element type, count, elements. */
static rm_status rd_array(gguf_rd *r, int depth, gguf_kv *kv, const char *key) {
    uint32_t et;
    uint64_t count;
    RM_TRY(rd_u32(r, &et, "array element type of key", key));
    RM_TRY(rd_u64(r, &count, "array count of key", key));
    if (et >= RM_GGUF_VTYPE_COUNT)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: key '%s': invalid array element type %u", r->path,
                      key, et);
    if (et == RM_GGUF_ARRAY && depth + 1 >= GGUF_MAX_NEST)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: key '%s': arrays nested deeper than %d", r->path,
                      key, GGUF_MAX_NEST);
    size_t left = r->size - r->pos, esize = vtype_size(et);
    /* Every element takes at least esize (fixed), 8 (string) or 12 (array) bytes. */
    size_t min_elem = esize ? esize : (et == RM_GGUF_STRING ? 8 : 12);
    if (count > left / min_elem)
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: key '%s': array of %llu %s elements at offset %zu runs past the end of "
                      "the file (%zu bytes)",
                      r->path, key, (unsigned long long)count, vtype_name(et), r->pos, r->size);
    if (kv) {
        kv->elem_type = et;
        kv->count = count;
        kv->arr_off = r->pos;
    }
    if (esize) {
        r->pos += (size_t)count * esize;
        return RAMOLE_OK;
    }
    if (kv && et == RM_GGUF_STRING) {
        kv->str_offs = rm_malloc((count ? (size_t)count : 1) * sizeof *kv->str_offs);
        if (!kv->str_offs)
            return rm_err(RAMOLE_ERR_NOMEM, "%s: key '%s': out of memory for %llu strings",
                          r->path, key, (unsigned long long)count);
    }
    for (uint64_t j = 0; j < count; j++) {
        if (kv && kv->str_offs) kv->str_offs[j] = r->pos;
        RM_TRY(rd_value(r, et, depth + 1, NULL, key));
    }
    return RAMOLE_OK;
}

/* Skip over (and validate) one value of `type`; kv gets array details. */
static rm_status rd_value(gguf_rd *r, uint32_t type, int depth, gguf_kv *kv, const char *key) {
    size_t sz = vtype_size(type);
    if (sz) {
        RM_TRY(rd_need(r, sz, "value of key", key));
        r->pos += sz;
        return RAMOLE_OK;
    }
    if (type == RM_GGUF_STRING) {
        size_t off, len;
        return rd_str(r, &off, &len, "string value of key", key);
    }
    if (type == RM_GGUF_ARRAY) return rd_array(r, depth, kv, key);
    return rm_err(RAMOLE_ERR_FORMAT, "%s: key '%s': invalid value type %u", r->path, key, type);
}

static bool grow(void **arr, int64_t *cap, int64_t n, size_t elem) {
    if (n < *cap) return true;
    int64_t nc = *cap ? *cap * 2 : 16;
    void *p = rm_realloc(*arr, (size_t)nc * elem);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

static rm_status rd_kvs(rm_gguf *g, gguf_rd *r, uint64_t n_kv) {
    for (uint64_t i = 0; i < n_kv; i++) {
        if (!grow((void **)&g->kv, &g->cap_kv, g->n_kv, sizeof *g->kv))
            return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory for metadata", r->path);
        gguf_kv *kv = &g->kv[g->n_kv];
        memset(kv, 0, sizeof *kv);
        char idx[48];
        snprintf(idx, sizeof idx, "#%llu", (unsigned long long)i);
        RM_TRY(rd_str(r, &kv->key_off, &kv->key_len, "key", idx));
        g->n_kv++; /* from here on freed with g */
        char key[128];
        name_copy(key, sizeof key, r->d + kv->key_off, kv->key_len);
        if (memchr(r->d + kv->key_off, 0, kv->key_len))
            return rm_err(RAMOLE_ERR_FORMAT, "%s: key '%s' contains a NUL byte", r->path, key);
        RM_TRY(rd_u32(r, &kv->type, "value type of key", key));
        if (kv->type >= RM_GGUF_VTYPE_COUNT)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: key '%s': invalid value type %u", r->path, key,
                          kv->type);
        kv->val_off = r->pos;
        RM_TRY(rd_value(r, kv->type, 0, kv, key));
        kv->val_len = r->pos - kv->val_off;
    }
    return RAMOLE_OK;
}

static rm_status rd_tensor_info(rm_gguf *g, gguf_rd *r, uint64_t i) {
    gguf_tensor *gt = &g->t[g->n_t];
    rm_gguf_tensor *t = &gt->pub;
    memset(gt, 0, sizeof *gt);
    char idx[48], name[128];
    snprintf(idx, sizeof idx, "#%llu", (unsigned long long)i);
    size_t off, len;
    RM_TRY(rd_str(r, &off, &len, "name of tensor", idx));
    gt->name_off = off;
    gt->name_len = len;
    g->n_t++;
    name_copy(name, sizeof name, r->d + off, len);
    if (memchr(r->d + off, 0, len))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': name contains a NUL byte", r->path, name);
    uint32_t nd, type;
    RM_TRY(rd_u32(r, &nd, "n_dims of tensor", name));
    if (nd > RM_GGUF_MAX_DIMS)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': n_dims %u exceeds %d", r->path, name,
                      nd, RM_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    int64_t total = 1;
    for (int d = 0; d < RM_GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < (int)nd) RM_TRY(rd_u64(r, &v, "shape of tensor", name));
        if (v > INT64_MAX)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': negative ne[%d] = %lld", r->path,
                          name, d, (long long)(int64_t)v);
        t->ne[d] = (int64_t)v;
        if (v && total > INT64_MAX / (int64_t)v)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': element count overflows", r->path,
                          name);
        total *= (int64_t)v;
    }
    RM_TRY(rd_u32(r, &type, "type of tensor", name));
    RM_TRY(rd_u64(r, &t->offset, "offset of tensor", name));
    const ggml_trait *tr = ggml_trait_of(type);
    if (!tr)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': unknown ggml type id %u", r->path, name,
                      type);
    t->ggml_type = type;
    t->type = rm_type_from_ggml(type);
    if (!ggml_nbytes(tr, t->ne, &t->nbytes))
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: tensor '%s': ne[0] = %lld is not a multiple of the %s block size %u, "
                      "or the size overflows",
                      r->path, name, (long long)t->ne[0], tr->name, tr->blck);
    if (t->offset % g->alignment != 0)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the "
                      "alignment %zu", r->path, name, (unsigned long long)t->offset, g->alignment);
    return RAMOLE_OK;
}

static rm_status rd_tensor_infos(rm_gguf *g, gguf_rd *r, uint64_t n_t) {
    for (uint64_t i = 0; i < n_t; i++) {
        if (!grow((void **)&g->t, &g->cap_t, g->n_t, sizeof *g->t))
            return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory for tensor infos", r->path);
        RM_TRY(rd_tensor_info(g, r, i));
    }
    return RAMOLE_OK;
}

/* general.alignment, if present, must be a u32 power of two. */
static rm_status rd_alignment(rm_gguf *g) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = rm_gguf_kv_find(g, "general.alignment");
    if (i < 0) return RAMOLE_OK;
    if (g->kv[i].type != RM_GGUF_UINT32)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: general.alignment has type %s, expected uint32",
                      g->map.path, vtype_name(g->kv[i].type));
    uint32_t a = rm_le32(g->map.data + g->kv[i].val_off);
    if (a == 0 || (a & (a - 1)) != 0)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: general.alignment %u is not a power of two",
                      g->map.path, a);
    g->alignment = a;
    return RAMOLE_OK;
}

/* Copy keys and names into one NUL-terminated arena. */
static rm_status build_arena(rm_gguf *g) {
    size_t total = 1;
    for (int64_t i = 0; i < g->n_kv; i++) total += g->kv[i].key_len + 1; /* <= file size */
    for (int64_t i = 0; i < g->n_t; i++) total += g->t[i].name_len + 1;
    g->arena = rm_malloc(total);
    if (!g->arena) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory for names", g->map.path);
    char *p = g->arena;
    for (int64_t i = 0; i < g->n_kv; i++) {
        memcpy(p, g->map.data + g->kv[i].key_off, g->kv[i].key_len);
        p[g->kv[i].key_len] = 0;
        g->kv[i].key = p;
        p += g->kv[i].key_len + 1;
    }
    for (int64_t i = 0; i < g->n_t; i++) {
        memcpy(p, g->map.data + g->t[i].name_off, g->t[i].name_len);
        p[g->t[i].name_len] = 0;
        g->t[i].pub.name = p;
        p += g->t[i].name_len + 1;
    }
    return RAMOLE_OK;
}

/* qsort has no context argument; the sort below is a plain merge sort. */
typedef int (*idx_cmp)(const rm_gguf *g, int64_t a, int64_t b);

static void idx_sort(const rm_gguf *g, int64_t *a, int64_t *tmp, int64_t n, idx_cmp cmp) {
    if (n < 2) return;
    int64_t h = n / 2;
    idx_sort(g, a, tmp, h, cmp);
    idx_sort(g, a + h, tmp, n - h, cmp);
    int64_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp(g, a[j], a[i]) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, (size_t)n * sizeof *a);
}

static int cmp_key(const rm_gguf *g, int64_t a, int64_t b) {
    return strcmp(g->kv[a].key, g->kv[b].key);
}
static int cmp_name(const rm_gguf *g, int64_t a, int64_t b) {
    return strcmp(g->t[a].pub.name, g->t[b].pub.name);
}
static int cmp_offset(const rm_gguf *g, int64_t a, int64_t b) {
    const rm_gguf_tensor *x = &g->t[a].pub, *y = &g->t[b].pub;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static rm_status sorted_index(const rm_gguf *g, int64_t n, idx_cmp cmp, int64_t **out) {
    int64_t *a = rm_malloc(((size_t)n + 1) * sizeof *a);
    int64_t *tmp = rm_malloc(((size_t)n + 1) * sizeof *tmp);
    if (!a || !tmp) {
        rm_free(a);
        rm_free(tmp);
        return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", g->map.path);
    }
    for (int64_t i = 0; i < n; i++) a[i] = i;
    idx_sort(g, a, tmp, n, cmp);
    rm_free(tmp);
    *out = a;
    return RAMOLE_OK;
}

static rm_status check_unique(rm_gguf *g) {
    RM_TRY(sorted_index(g, g->n_kv, cmp_key, &g->kv_sorted));
    for (int64_t i = 1; i < g->n_kv; i++)
        if (cmp_key(g, g->kv_sorted[i - 1], g->kv_sorted[i]) == 0)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: duplicate key '%s'", g->map.path,
                          g->kv[g->kv_sorted[i]].key);
    RM_TRY(sorted_index(g, g->n_t, cmp_name, &g->t_sorted));
    for (int64_t i = 1; i < g->n_t; i++)
        if (cmp_name(g, g->t_sorted[i - 1], g->t_sorted[i]) == 0)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: duplicate tensor '%s'", g->map.path,
                          g->t[g->t_sorted[i]].pub.name);
    return RAMOLE_OK;
}

/* Data section bounds, tensor extents and overlaps; sets data pointers. */
static rm_status check_data(rm_gguf *g, size_t header_end) {
    const char *path = g->map.path;
    size_t size = g->map.size, pad = (g->alignment - header_end % g->alignment) % g->alignment;
    g->data_off = header_end + pad;
    if (g->n_t == 0) return RAMOLE_OK;
    if (g->data_off > size)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: truncated: data section would start at %zu, file is "
                      "%zu bytes", path, g->data_off, size);
    size_t data_len = size - g->data_off;
    for (int64_t i = 0; i < g->n_t; i++) {
        rm_gguf_tensor *t = &g->t[i].pub;
        if (t->offset > data_len || t->nbytes > data_len - t->offset)
            return rm_err(RAMOLE_ERR_FORMAT,
                          "%s: tensor '%s': data [%llu, +%zu) runs past the end of the data "
                          "section (%zu bytes; truncated?)",
                          path, t->name, (unsigned long long)t->offset, t->nbytes, data_len);
        t->data = g->map.data + g->data_off + t->offset;
    }
    int64_t *idx;
    RM_TRY(sorted_index(g, g->n_t, cmp_offset, &idx));
    rm_status rc = RAMOLE_OK;
    const rm_gguf_tensor *prev = NULL;
    for (int64_t i = 0; i < g->n_t && rc == RAMOLE_OK; i++) {
        const rm_gguf_tensor *t = &g->t[idx[i]].pub;
        if (t->nbytes == 0) continue;
        if (prev && prev->offset + prev->nbytes > t->offset)
            rc = rm_err(RAMOLE_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section",
                        path, prev->name, t->name);
        prev = t;
    }
    rm_free(idx);
    return rc;
}

static rm_status rd_header(rm_gguf *g, gguf_rd *r, uint64_t *n_t, uint64_t *n_kv) {
    const char *path = g->map.path;
    RM_TRY(rd_need(r, 4, "magic", NULL));
    if (memcmp(r->d, "GGUF", 4) != 0)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: bad magic (not a GGUF file)", path);
    r->pos = 4;
    RM_TRY(rd_u32(r, &g->version, "version", NULL));
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: big-endian GGUF files are not supported", path);
    if (g->version != 2 && g->version != 3)
        return rm_err(RAMOLE_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)",
                      path, g->version);
    RM_TRY(rd_u64(r, n_t, "tensor count", NULL));
    RM_TRY(rd_u64(r, n_kv, "metadata count", NULL));
    size_t left = r->size - r->pos;
    /* A key/value pair takes at least 13 bytes, a tensor info at least 24. */
    if (*n_kv > left / 13)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: metadata count %llu is impossible for a %zu-byte "
                      "file (truncated or corrupt)", path, (unsigned long long)*n_kv, r->size);
    if (*n_t > left / 24)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor count %llu is impossible for a %zu-byte "
                      "file (truncated or corrupt)", path, (unsigned long long)*n_t, r->size);
    return RAMOLE_OK;
}

static rm_status gguf_parse(rm_gguf *g) {
    gguf_rd r = {g->map.data, g->map.size, 0, g->map.path};
    uint64_t n_t, n_kv;
    RM_TRY(rd_header(g, &r, &n_t, &n_kv));
    RM_TRY(rd_kvs(g, &r, n_kv));
    RM_TRY(rd_alignment(g)); /* tensor infos check their offsets against it */
    RM_TRY(rd_tensor_infos(g, &r, n_t));
    RM_TRY(build_arena(g));
    RM_TRY(check_unique(g));
    return check_data(g, r.pos);
}

rm_status rm_gguf_open(const char *path, rm_gguf **out) {
    *out = NULL;
    rm_gguf *g = rm_calloc(1, sizeof *g);
    if (!g) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    rm_status rc = rm_file_map(path, &g->map);
    if (rc == RAMOLE_OK) rc = gguf_parse(g);
    if (rc != RAMOLE_OK) {
        rm_gguf_free(g);
        return rc;
    }
    *out = g;
    return RAMOLE_OK;
}

rm_status rm_gguf_open_mem(const void *data, size_t size, const char *name, rm_gguf **out) {
    *out = NULL;
    rm_gguf *g = rm_calloc(1, sizeof *g);
    if (!g) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", name);
    g->borrowed = true;
    g->map.data = data;
    g->map.size = size;
    g->map.path = rm_strdup(name);
    rm_status rc = g->map.path ? gguf_parse(g) : rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", name);
    if (rc != RAMOLE_OK) {
        rm_gguf_free(g);
        return rc;
    }
    *out = g;
    return RAMOLE_OK;
}

void rm_gguf_free(rm_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) rm_free(g->kv[i].str_offs);
    rm_free(g->kv);
    rm_free(g->t);
    rm_free(g->kv_sorted);
    rm_free(g->t_sorted);
    rm_free(g->arena);
    if (g->borrowed)
        rm_free(g->map.path);
    else
        rm_file_unmap(&g->map);
    rm_free(g);
}

const char *rm_gguf_path(const rm_gguf *g) { return g->map.path; }
uint32_t rm_gguf_version(const rm_gguf *g) { return g->version; }
size_t rm_gguf_alignment(const rm_gguf *g) { return g->alignment; }

/* ---- metadata getters ------------------------------------------------------ */

int64_t rm_gguf_kv_count(const rm_gguf *g) { return g->n_kv; }

const char *rm_gguf_kv_key(const rm_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kv[i].key : NULL;
}

int64_t rm_gguf_kv_find(const rm_gguf *g, const char *key) {
    if (!g->kv_sorted) { /* during parsing, before the index exists */
        size_t n = strlen(key);
        for (int64_t i = 0; i < g->n_kv; i++)
            if (g->kv[i].key_len == n && memcmp(g->map.data + g->kv[i].key_off, key, n) == 0)
                return i;
        return -1;
    }
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kv[g->kv_sorted[mid]].key, key);
        if (c == 0) return g->kv_sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

rm_gguf_vtype rm_gguf_kv_type(const rm_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? (rm_gguf_vtype)g->kv[i].type : RM_GGUF_VTYPE_COUNT;
}

static rm_status kv_lookup(const rm_gguf *g, const char *key, const gguf_kv **kv) {
    int64_t i = rm_gguf_kv_find(g, key);
    if (i < 0) return rm_err(RAMOLE_ERR_NOT_FOUND, "%s: key '%s' not found", g->map.path, key);
    *kv = &g->kv[i];
    return RAMOLE_OK;
}

static rm_status kv_wrong_type(const rm_gguf *g, const gguf_kv *kv, const char *want) {
    return rm_err(RAMOLE_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", g->map.path,
                  kv->key, vtype_name(kv->type), want);
}

/* Integer value as sign + magnitude; false if kv is not an integer type. */
static bool kv_int(const rm_gguf *g, const gguf_kv *kv, bool *neg, uint64_t *mag) {
    const uint8_t *p = g->map.data + kv->val_off;
    int64_t s;
    switch (kv->type) {
    case RM_GGUF_UINT8: *neg = false; *mag = p[0]; return true;
    case RM_GGUF_UINT16: *neg = false; *mag = rm_le16(p); return true;
    case RM_GGUF_UINT32: *neg = false; *mag = rm_le32(p); return true;
    case RM_GGUF_UINT64: *neg = false; *mag = rm_le64(p); return true;
    case RM_GGUF_INT8: s = (int8_t)p[0]; break;
    case RM_GGUF_INT16: s = (int16_t)rm_le16(p); break;
    case RM_GGUF_INT32: s = (int32_t)rm_le32(p); break;
    case RM_GGUF_INT64: s = (int64_t)rm_le64(p); break;
    default: return false;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return true;
}

rm_status rm_gguf_get_u32(const rm_gguf *g, const char *key, uint32_t *out) {
    const gguf_kv *kv = NULL;
    RM_TRY(kv_lookup(g, key, &kv));
    bool neg;
    uint64_t m;
    if (!kv_int(g, kv, &neg, &m)) return kv_wrong_type(g, kv, "an integer");
    if (neg || m > UINT32_MAX)
        return rm_err(RAMOLE_ERR_RANGE, "%s: key '%s': value %s%llu does not fit in uint32",
                      g->map.path, key, neg ? "-" : "", (unsigned long long)m);
    *out = (uint32_t)m;
    return RAMOLE_OK;
}

rm_status rm_gguf_get_i64(const rm_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = NULL;
    RM_TRY(kv_lookup(g, key, &kv));
    bool neg;
    uint64_t m;
    if (!kv_int(g, kv, &neg, &m)) return kv_wrong_type(g, kv, "an integer");
    if (!neg && m > INT64_MAX)
        return rm_err(RAMOLE_ERR_RANGE, "%s: key '%s': value %llu does not fit in int64",
                      g->map.path, key, (unsigned long long)m);
    *out = neg ? (int64_t)(0 - m) : (int64_t)m;
    return RAMOLE_OK;
}

rm_status rm_gguf_get_f32(const rm_gguf *g, const char *key, float *out) {
    const gguf_kv *kv = NULL;
    RM_TRY(kv_lookup(g, key, &kv));
    const uint8_t *p = g->map.data + kv->val_off;
    if (kv->type == RM_GGUF_FLOAT32) {
        uint32_t u = rm_le32(p);
        memcpy(out, &u, 4);
    } else if (kv->type == RM_GGUF_FLOAT64) {
        uint64_t u = rm_le64(p);
        double d;
        memcpy(&d, &u, 8);
        *out = (float)d;
    } else {
        return kv_wrong_type(g, kv, "float32");
    }
    return RAMOLE_OK;
}

rm_status rm_gguf_get_bool(const rm_gguf *g, const char *key, bool *out) {
    const gguf_kv *kv = NULL;
    RM_TRY(kv_lookup(g, key, &kv));
    if (kv->type != RM_GGUF_BOOL) return kv_wrong_type(g, kv, "bool");
    *out = g->map.data[kv->val_off] != 0;
    return RAMOLE_OK;
}

rm_status rm_gguf_get_str(const rm_gguf *g, const char *key, const char **s, size_t *len) {
    const gguf_kv *kv = NULL;
    RM_TRY(kv_lookup(g, key, &kv));
    if (kv->type != RM_GGUF_STRING) return kv_wrong_type(g, kv, "string");
    *len = (size_t)rm_le64(g->map.data + kv->val_off);
    *s = (const char *)g->map.data + kv->val_off + 8;
    return RAMOLE_OK;
}

rm_status rm_gguf_get_arr(const rm_gguf *g, const char *key, rm_gguf_vtype *elem_type,
                          uint64_t *count, const void **data) {
    const gguf_kv *kv = NULL;
    RM_TRY(kv_lookup(g, key, &kv));
    if (kv->type != RM_GGUF_ARRAY) return kv_wrong_type(g, kv, "array");
    *elem_type = (rm_gguf_vtype)kv->elem_type;
    *count = kv->count;
    if (data) *data = vtype_size(kv->elem_type) ? g->map.data + kv->arr_off : NULL;
    return RAMOLE_OK;
}

rm_status rm_gguf_get_arr_str(const rm_gguf *g, const char *key, uint64_t j, const char **s,
                              size_t *len) {
    const gguf_kv *kv = NULL;
    RM_TRY(kv_lookup(g, key, &kv));
    if (kv->type != RM_GGUF_ARRAY || kv->elem_type != RM_GGUF_STRING)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: key '%s' is not an array of strings", g->map.path,
                      key);
    if (j >= kv->count)
        return rm_err(RAMOLE_ERR_RANGE, "%s: key '%s': index %llu out of %llu strings",
                      g->map.path, key, (unsigned long long)j, (unsigned long long)kv->count);
    size_t off = kv->str_offs[j];
    *len = (size_t)rm_le64(g->map.data + off);
    *s = (const char *)g->map.data + off + 8;
    return RAMOLE_OK;
}

/* ---- tensors --------------------------------------------------------------- */

int64_t rm_gguf_tensor_count(const rm_gguf *g) { return g->n_t; }

const rm_gguf_tensor *rm_gguf_tensor_get(const rm_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_t) ? &g->t[i].pub : NULL;
}

const rm_gguf_tensor *rm_gguf_tensor_find(const rm_gguf *g, const char *name) {
    int64_t lo = 0, hi = g->n_t;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const rm_gguf_tensor *t = &g->t[g->t_sorted[mid]].pub;
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

rm_status rm_gguf_tensor_check(const rm_gguf *g, const rm_gguf_tensor *t) {
    if (t->type >= 0) return RAMOLE_OK;
    return rm_err(RAMOLE_ERR_UNSUPPORTED, "unsupported tensor type %s in %s (tensor '%s')",
                  rm_ggml_type_name(t->ggml_type), g->map.path, t->name);
}

/* ---- writer ---------------------------------------------------------------- */

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *val; /* serialized value (after the type field) */
    size_t len;
} gguf_wkv;

typedef struct {
    char *name;
    uint32_t ggml_type;
    int n_dims;
    int64_t ne[RM_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} gguf_wtensor;

struct rm_gguf_writer {
    gguf_wkv *kv;
    int64_t n_kv, cap_kv;
    gguf_wtensor *t;
    int64_t n_t, cap_t;
};

/* A growable byte buffer; after a failed allocation `fail` is set and puts are no-ops. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool fail;
} gbuf;

static void gbuf_put(gbuf *b, const void *data, size_t n) {
    if (b->fail || n == 0) return;
    if (n > b->cap - b->n) {
        size_t need, nc = b->cap ? b->cap : 256;
        if (!rm_add_ok(b->n, n, &need)) {
            b->fail = true;
            return;
        }
        while (nc < need) {
            if (!rm_mul_ok(nc, 2, &nc)) {
                b->fail = true;
                return;
            }
        }
        uint8_t *p = rm_realloc(b->p, nc);
        if (!p) {
            b->fail = true;
            return;
        }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void gbuf_u32(gbuf *b, uint32_t v) {
    uint8_t x[4];
    rm_put_le32(x, v);
    gbuf_put(b, x, 4);
}

static void gbuf_u64(gbuf *b, uint64_t v) {
    uint8_t x[8];
    rm_put_le64(x, v);
    gbuf_put(b, x, 8);
}

static void gbuf_str(gbuf *b, const char *s, size_t n) {
    gbuf_u64(b, n);
    gbuf_put(b, s, n);
}

rm_status rm_gguf_writer_new(rm_gguf_writer **out) {
    *out = rm_calloc(1, sizeof **out);
    return *out ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "gguf writer: out of memory");
}

void rm_gguf_writer_free(rm_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        rm_free(w->kv[i].key);
        rm_free(w->kv[i].val);
    }
    for (int64_t i = 0; i < w->n_t; i++) rm_free(w->t[i].name);
    rm_free(w->kv);
    rm_free(w->t);
    rm_free(w);
}

/* Set key to (type, serialized value); takes ownership of val (also on failure). */
static rm_status wr_set(rm_gguf_writer *w, const char *key, uint32_t type, gbuf *val) {
    if (val->fail) {
        rm_free(val->p);
        return rm_err(RAMOLE_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
    }
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            rm_free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val->p;
            w->kv[i].len = val->n;
            return RAMOLE_OK;
        }
    }
    char *k = rm_strdup(key);
    if (!k || !grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv)) {
        rm_free(k);
        rm_free(val->p);
        return rm_err(RAMOLE_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
    }
    w->kv[w->n_kv++] = (gguf_wkv){k, type, val->p, val->n};
    return RAMOLE_OK;
}

/* A fixed-size scalar, given as its little-endian bytes. */
static rm_status wr_scalar(rm_gguf_writer *w, const char *key, uint32_t type, uint64_t bits) {
    uint8_t x[8];
    rm_put_le64(x, bits);
    gbuf b = {0};
    gbuf_put(&b, x, vtype_size(type));
    return wr_set(w, key, type, &b);
}

rm_status rm_gguf_set_u32(rm_gguf_writer *w, const char *key, uint32_t v) {
    return wr_scalar(w, key, RM_GGUF_UINT32, v);
}
rm_status rm_gguf_set_i32(rm_gguf_writer *w, const char *key, int32_t v) {
    return wr_scalar(w, key, RM_GGUF_INT32, (uint32_t)v);
}
rm_status rm_gguf_set_u64(rm_gguf_writer *w, const char *key, uint64_t v) {
    return wr_scalar(w, key, RM_GGUF_UINT64, v);
}
rm_status rm_gguf_set_f32(rm_gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return wr_scalar(w, key, RM_GGUF_FLOAT32, u);
}
rm_status rm_gguf_set_bool(rm_gguf_writer *w, const char *key, bool v) {
    return wr_scalar(w, key, RM_GGUF_BOOL, v ? 1 : 0);
}

rm_status rm_gguf_set_val(rm_gguf_writer *w, const char *key, rm_gguf_vtype type,
                          const void *value) {
    size_t n = vtype_size(type);
    if (!n)
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: key '%s': %s is not a fixed-size type",
                      key, vtype_name(type));
    gbuf b = {0};
    gbuf_put(&b, value, n); /* host is little-endian */
    return wr_set(w, key, type, &b);
}

rm_status rm_gguf_set_str(rm_gguf_writer *w, const char *key, const char *v) {
    gbuf b = {0};
    gbuf_str(&b, v, strlen(v));
    return wr_set(w, key, RM_GGUF_STRING, &b);
}

rm_status rm_gguf_set_arr(rm_gguf_writer *w, const char *key, rm_gguf_vtype elem_type,
                          const void *data, uint64_t count) {
    size_t es = vtype_size(elem_type), n;
    if (!es)
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: key '%s': %s is not a numeric element "
                      "type", key, vtype_name(elem_type));
    if (count > SIZE_MAX || !rm_mul_ok((size_t)count, es, &n))
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: key '%s': array too large", key);
    gbuf b = {0};
    gbuf_u32(&b, elem_type);
    gbuf_u64(&b, count);
    gbuf_put(&b, data, n); /* host is little-endian (x86-64, aarch64) */
    return wr_set(w, key, RM_GGUF_ARRAY, &b);
}

rm_status rm_gguf_set_arr_str(rm_gguf_writer *w, const char *key, const char *const *v,
                              uint64_t count) {
    gbuf b = {0};
    gbuf_u32(&b, RM_GGUF_STRING);
    gbuf_u64(&b, count);
    for (uint64_t j = 0; j < count && !b.fail; j++) gbuf_str(&b, v[j], strlen(v[j]));
    return wr_set(w, key, RM_GGUF_ARRAY, &b);
}

rm_status rm_gguf_set_from(rm_gguf_writer *w, const rm_gguf *src, int64_t kv_index) {
    if (kv_index < 0 || kv_index >= src->n_kv)
        return rm_err(RAMOLE_ERR_INVALID, "%s: no key at index %lld", src->map.path,
                      (long long)kv_index);
    const gguf_kv *kv = &src->kv[kv_index];
    gbuf b = {0};
    gbuf_put(&b, src->map.data + kv->val_off, kv->val_len);
    return wr_set(w, kv->key, kv->type, &b);
}

rm_status rm_gguf_writer_add_raw(rm_gguf_writer *w, const char *name, uint32_t ggml_type,
                                 int n_dims, const int64_t *ne, const void *data) {
    const ggml_trait *tr = ggml_trait_of(ggml_type);
    size_t nl = name ? strlen(name) : 0;
    if (nl == 0 || nl >= GGUF_MAX_NAME)
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: tensor name '%s' must have 1 to %d bytes",
                      name ? name : "(null)", GGUF_MAX_NAME - 1);
    if (!tr)
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: tensor '%s': unknown ggml type id %u",
                      name, ggml_type);
    if (n_dims < 1 || n_dims > RM_GGUF_MAX_DIMS)
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: tensor '%s': %d dimensions (1 to %d)",
                      name, n_dims, RM_GGUF_MAX_DIMS);
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return rm_err(RAMOLE_ERR_INVALID, "gguf writer: duplicate tensor '%s'", name);
    gguf_wtensor t = {.ggml_type = ggml_type, .n_dims = n_dims, .data = data};
    for (int d = 0; d < RM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0)
            return rm_err(RAMOLE_ERR_INVALID, "gguf writer: tensor '%s': negative ne[%d]", name, d);
    }
    if (!ggml_nbytes(tr, t.ne, &t.nbytes))
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: tensor '%s': ne[0] = %lld is not a "
                      "multiple of the %s block size %u, or the size overflows",
                      name, (long long)t.ne[0], tr->name, tr->blck);
    if (t.nbytes && !data)
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: tensor '%s': no data", name);
    t.name = rm_strdup(name);
    if (!t.name || !grow((void **)&w->t, &w->cap_t, w->n_t, sizeof *w->t)) {
        rm_free(t.name);
        return rm_err(RAMOLE_ERR_NOMEM, "gguf writer: out of memory");
    }
    w->t[w->n_t++] = t;
    return RAMOLE_OK;
}

rm_status rm_gguf_writer_add(rm_gguf_writer *w, const char *name, rm_type type, int n_dims,
                             const int64_t *ne, const void *data) {
    int gt = rm_type_to_ggml(type);
    if (gt < 0)
        return rm_err(RAMOLE_ERR_INVALID, "gguf writer: tensor '%s': invalid type %d",
                      name ? name : "(null)", (int)type);
    return rm_gguf_writer_add_raw(w, name, (uint32_t)gt, n_dims, ne, data);
}

/* The alignment the file will use: general.alignment if set as u32, else 32. */
static rm_status wr_alignment(const rm_gguf_writer *w, const char *path, size_t *out) {
    *out = GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0) continue;
        uint32_t a = w->kv[i].type == RM_GGUF_UINT32 ? rm_le32(w->kv[i].val) : 0;
        if (a == 0 || (a & (a - 1)) != 0)
            return rm_err(RAMOLE_ERR_INVALID,
                          "%s: general.alignment must be a uint32 power of two", path);
        *out = a;
    }
    return RAMOLE_OK;
}

/* Everything before the data section (without the final padding). */
static rm_status wr_header(const rm_gguf_writer *w, size_t align, const char *path, gbuf *b) {
    gbuf_put(b, "GGUF", 4);
    gbuf_u32(b, 3);
    gbuf_u64(b, (uint64_t)w->n_t);
    gbuf_u64(b, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        gbuf_str(b, w->kv[i].key, strlen(w->kv[i].key));
        gbuf_u32(b, w->kv[i].type);
        gbuf_put(b, w->kv[i].val, w->kv[i].len);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        const gguf_wtensor *t = &w->t[i];
        gbuf_str(b, t->name, strlen(t->name));
        gbuf_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) gbuf_u64(b, (uint64_t)t->ne[d]);
        gbuf_u32(b, t->ggml_type);
        gbuf_u64(b, off);
        off += (t->nbytes + align - 1) / align * align;
    }
    if (b->fail) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory for the header", path);
    return RAMOLE_OK;
}

rm_status rm_gguf_writer_write(rm_gguf_writer *w, const char *path) {
    gbuf b = {0};
    rm_fw fw = {0};
    size_t align;
    rm_status rc = wr_alignment(w, path, &align);
    if (rc == RAMOLE_OK) rc = wr_header(w, align, path, &b);
    if (rc == RAMOLE_OK) rc = rm_fw_open(&fw, path);
    if (rc != RAMOLE_OK) goto done;
    rm_fw_write(&fw, b.p, b.n);
    rm_fw_pad(&fw, align, 0);
    for (int64_t i = 0; i < w->n_t; i++) {
        rm_fw_write(&fw, w->t[i].data, w->t[i].nbytes);
        rm_fw_pad(&fw, align, 0);
    }
    rc = rm_fw_commit(&fw);
done:
    rm_fw_abort(&fw);
    rm_free(b.p);
    return rc;
}
