/*
 * safetensors.c — validated reader and streaming atomic writer.
 *
 * Reading: the file is mapped read-only; the JSON header is parsed with
 * jansson and checked entry by entry (see safetensors.h). Names and
 * metadata strings are copied into one arena so the JSON tree is freed
 * before open returns; tensor data pointers point into the map. Tensors are
 * kept sorted by name (byte order) so rm_st_find is a binary search. The
 * overlap check sorts a second index by data offset. Gaps between tensors
 * are tolerated (the Rust reader is stricter); overlaps are not.
 *
 * Writing: the header lists "__metadata__" first, then the tensors sorted by
 * name, laid out back to back in that order; like the Rust implementation
 * the header is padded with spaces to a multiple of 8 bytes so the data
 * section starts 8-byte aligned. Data is streamed to a temporary file and
 * renamed into place, so multi-gigabyte files never sit in one buffer.
 */
#include "formats/safetensors.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "formats/fmt_io.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* ---- dtypes ------------------------------------------------------------- */

typedef struct {
    const char *name;
    size_t size;
    int type; /* rm_type or -1 */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F64", 8, -1},      {"F32", 4, RM_TYPE_F32},  {"F16", 2, RM_TYPE_F16},
    {"BF16", 2, RM_TYPE_BF16}, {"I64", 8, -1},     {"I32", 4, -1},
    {"I16", 2, -1},      {"I8", 1, -1},            {"U8", 1, -1},
    {"U16", 2, -1},      {"U32", 4, -1},           {"U64", 8, -1},
    {"BOOL", 1, -1},     {"F8_E4M3", 1, -1},       {"F8_E5M2", 1, -1},
    {"F8_E8M0", 1, -1},
};

static const st_dtype *st_dtype_find(const char *name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return &st_dtypes[i];
    return NULL;
}

static const st_dtype *st_dtype_of_type(rm_type t) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].type == (int)t) return &st_dtypes[i];
    return NULL;
}

/* ---- reader ------------------------------------------------------------- */

struct rm_safetensors {
    rm_mapped map;
    bool borrowed;         /* opened from caller memory: do not unmap */
    int n;
    rm_st_tensor *tensors; /* sorted by name */
    int n_meta;
    const char **meta;     /* 2 * n_meta: key, value, ... */
    char *arena;           /* names and metadata strings */
};

/* Bump allocation of NUL-terminated copies out of the arena. */
typedef struct {
    char *p;
    size_t left;
} st_arena;

static const char *st_arena_put(st_arena *a, const char *s) {
    size_t n = strlen(s) + 1;
    if (n > a->left) return NULL; /* cannot happen: the arena was sized first */
    char *d = a->p;
    memcpy(d, s, n);
    a->p += n;
    a->left -= n;
    return d;
}

/* A non-negative JSON integer, or false. */
static bool st_json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

static rm_status st_parse_shape(const char *path, const char *name, const json_t *shape,
                                rm_st_tensor *t) {
    if (!json_is_array(shape))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': shape is not an array", path, name);
    size_t nd = json_array_size(shape);
    if (nd > RM_ST_MAX_DIMS)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': %zu dimensions, at most %d supported",
                      path, name, nd, RM_ST_MAX_DIMS);
    t->n_dims = (int)nd;
    size_t n = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t v;
        if (!st_json_u64(json_array_get(shape, d), &v) || v > INT64_MAX)
            return rm_err(RAMOLE_ERR_FORMAT,
                          "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, d);
        t->shape[d] = (int64_t)v;
        if (!rm_mul_ok(n, (size_t)v, &n) || n > INT64_MAX)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': element count overflows", path, name);
    }
    t->n_elems = (int64_t)n;
    return RAMOLE_OK;
}

/* Validate one header entry and fill t (name is set by the caller). */
static rm_status st_parse_entry(const rm_safetensors *st, const char *name, const json_t *v,
                                size_t data_len, rm_st_tensor *t) {
    const char *path = st->map.path;
    if (!json_is_object(v))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, name);
    const json_t *dt = json_object_get(v, "dtype");
    const json_t *shape = json_object_get(v, "shape");
    const json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': missing or non-string dtype", path, name);
    const st_dtype *d = st_dtype_find(json_string_value(dt));
    if (!d)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                      json_string_value(dt));
    t->dtype = d->name;
    t->type = d->type;
    if (!shape) return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': missing shape", path, name);
    RM_TRY(st_parse_shape(path, name, shape, t));
    size_t nbytes;
    if (!rm_mul_ok((size_t)t->n_elems, d->size, &nbytes))
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': byte size overflows", path, name);
    uint64_t b, e;
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !st_json_u64(json_array_get(offs, 0), &b) || !st_json_u64(json_array_get(offs, 1), &e))
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets must be [begin, end] non-negative integers",
                      path, name);
    if (e < b)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s': data_offsets end %llu before begin %llu",
                      path, name, (unsigned long long)e, (unsigned long long)b);
    if (e > data_len)
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets [%llu, %llu] past the data section (%zu bytes)",
                      path, name, (unsigned long long)b, (unsigned long long)e, data_len);
    if (e - b != nbytes)
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets span %llu bytes but %s x shape needs %zu",
                      path, name, (unsigned long long)(e - b), d->name, nbytes);
    t->nbytes = nbytes;
    t->data = st->map.data + 8 + (st->map.size - 8 - data_len) + b;
    return RAMOLE_OK;
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const rm_st_tensor *)a)->name, ((const rm_st_tensor *)b)->name);
}

static int st_cmp_data(const void *a, const void *b) {
    const rm_st_tensor *x = *(const rm_st_tensor *const *)a, *y = *(const rm_st_tensor *const *)b;
    const uint8_t *px = x->data, *py = y->data;
    if (px != py) return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* No two non-empty tensors may share a byte. */
static rm_status st_check_overlap(rm_safetensors *st) {
    if (st->n < 2) return RAMOLE_OK;
    const rm_st_tensor **idx = rm_malloc((size_t)st->n * sizeof *idx);
    if (!idx) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", st->map.path);
    for (int i = 0; i < st->n; i++) idx[i] = &st->tensors[i];
    qsort(idx, (size_t)st->n, sizeof *idx, st_cmp_data);
    rm_status rc = RAMOLE_OK;
    const rm_st_tensor *prev = NULL;
    for (int i = 0; i < st->n; i++) {
        const rm_st_tensor *t = idx[i];
        if (t->nbytes == 0) continue;
        if (prev && (const uint8_t *)prev->data + prev->nbytes > (const uint8_t *)t->data) {
            rc = rm_err(RAMOLE_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section",
                        st->map.path, prev->name, t->name);
            break;
        }
        prev = t;
    }
    rm_free(idx);
    return rc;
}

/* Count entries and the arena bytes their names and metadata need. */
static rm_status st_measure(rm_safetensors *st, json_t *root, size_t *n_tensors,
                            size_t *arena_bytes) {
    const char *key;
    json_t *v;
    *n_tensors = 0;
    *arena_bytes = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v))
                return rm_err(RAMOLE_ERR_FORMAT, "%s: __metadata__ is not an object", st->map.path);
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv))
                    return rm_err(RAMOLE_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string",
                                  st->map.path, mk);
                *arena_bytes += strlen(mk) + strlen(json_string_value(mv)) + 2;
                st->n_meta++;
            }
            continue;
        }
        (*n_tensors)++;
        *arena_bytes += strlen(key) + 1;
    }
    if (*n_tensors > INT_MAX / 2)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: too many tensors (%zu)", st->map.path, *n_tensors);
    return RAMOLE_OK;
}

static rm_status st_fill(rm_safetensors *st, json_t *root, size_t data_len, st_arena *a) {
    const char *key;
    json_t *v;
    int i = 0, m = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                st->meta[2 * m] = st_arena_put(a, mk);
                st->meta[2 * m + 1] = st_arena_put(a, json_string_value(mv));
                m++;
            }
            continue;
        }
        rm_st_tensor *t = &st->tensors[i++];
        t->name = st_arena_put(a, key);
        RM_TRY(st_parse_entry(st, t->name, v, data_len, t));
    }
    st->n = i;
    return RAMOLE_OK;
}

/* Parse and validate the header; fills st->tensors, meta and arena. */
static rm_status st_parse_header(rm_safetensors *st, const char *hdr, size_t hlen,
                                 size_t data_len) {
    const char *path = st->map.path;
    size_t i = 0;
    while (i < hlen && (hdr[i] == ' ' || hdr[i] == '\n' || hdr[i] == '\r' || hdr[i] == '\t')) i++;
    if (i == hlen || hdr[i] != '{')
        return rm_err(RAMOLE_ERR_FORMAT, "%s: header is not a JSON object", path);
    json_error_t jerr;
    json_t *root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)",
                      path, jerr.text, jerr.line, jerr.column);
    rm_status rc = RAMOLE_OK;
    size_t n_tensors, arena_bytes;
    if (!json_is_object(root)) {
        rc = rm_err(RAMOLE_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    if ((rc = st_measure(st, root, &n_tensors, &arena_bytes)) != RAMOLE_OK) goto done;
    st->tensors = rm_calloc(n_tensors ? n_tensors : 1, sizeof *st->tensors);
    st->meta = rm_calloc(st->n_meta ? 2 * (size_t)st->n_meta : 1, sizeof *st->meta);
    st->arena = rm_malloc(arena_bytes ? arena_bytes : 1);
    if (!st->tensors || !st->meta || !st->arena) {
        rc = rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory for %zu tensors", path, n_tensors);
        goto done;
    }
    st_arena a = {st->arena, arena_bytes};
    if ((rc = st_fill(st, root, data_len, &a)) != RAMOLE_OK) goto done;
    qsort(st->tensors, (size_t)st->n, sizeof *st->tensors, st_cmp_name);
    rc = st_check_overlap(st);
done:
    json_decref(root);
    return rc;
}

/* Validate st->map (already set) as a safetensors file. */
static rm_status st_parse(rm_safetensors *st) {
    const char *path = st->map.path;
    size_t size = st->map.size;
    if (size < 8)
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: %zu bytes, too short for a safetensors file (truncated?)", path, size);
    uint64_t hlen = rm_le64(st->map.data);
    if (hlen > ST_MAX_HEADER)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: header length %llu is larger than the 100 MB limit",
                      path, (unsigned long long)hlen);
    if (hlen > size - 8)
        return rm_err(RAMOLE_ERR_FORMAT,
                      "%s: header length %llu (+ 8) exceeds the file size %zu (truncated?)", path,
                      (unsigned long long)hlen, size);
    return st_parse_header(st, (const char *)st->map.data + 8, (size_t)hlen,
                           size - 8 - (size_t)hlen);
}

rm_status rm_st_open(const char *path, rm_safetensors **out) {
    *out = NULL;
    rm_safetensors *st = rm_calloc(1, sizeof *st);
    if (!st) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    rm_status rc = rm_file_map(path, &st->map);
    if (rc == RAMOLE_OK) rc = st_parse(st);
    if (rc != RAMOLE_OK) {
        rm_st_free(st);
        return rc;
    }
    *out = st;
    return RAMOLE_OK;
}

rm_status rm_st_open_mem(const void *data, size_t size, const char *name, rm_safetensors **out) {
    *out = NULL;
    rm_safetensors *st = rm_calloc(1, sizeof *st);
    if (!st) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", name);
    st->borrowed = true;
    st->map.data = data;
    st->map.size = size;
    st->map.path = rm_strdup(name);
    rm_status rc = st->map.path ? st_parse(st) : rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", name);
    if (rc != RAMOLE_OK) {
        rm_st_free(st);
        return rc;
    }
    *out = st;
    return RAMOLE_OK;
}

void rm_st_free(rm_safetensors *st) {
    if (!st) return;
    if (st->borrowed)
        rm_free(st->map.path);
    else
        rm_file_unmap(&st->map);
    rm_free(st->tensors);
    rm_free(st->meta);
    rm_free(st->arena);
    rm_free(st);
}

const char *rm_st_path(const rm_safetensors *st) { return st->map.path; }

int rm_st_count(const rm_safetensors *st) { return st->n; }

const rm_st_tensor *rm_st_get(const rm_safetensors *st, int i) {
    return (i >= 0 && i < st->n) ? &st->tensors[i] : NULL;
}

const rm_st_tensor *rm_st_find(const rm_safetensors *st, const char *name) {
    int lo = 0, hi = st->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *rm_st_meta(const rm_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

/* ---- writer ------------------------------------------------------------- */

typedef struct {
    char *name;
    const st_dtype *dtype;
    int n_dims;
    int64_t shape[RM_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} st_wtensor;

struct rm_st_writer {
    st_wtensor *t;
    int n, cap;
    char **meta; /* key, value pairs */
    int n_meta, cap_meta;
};

rm_status rm_st_writer_new(rm_st_writer **out) {
    *out = rm_calloc(1, sizeof **out);
    return *out ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "safetensors writer: out of memory");
}

void rm_st_writer_free(rm_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) rm_free(w->t[i].name);
    for (int i = 0; i < 2 * w->n_meta; i++) rm_free(w->meta[i]);
    rm_free(w->t);
    rm_free(w->meta);
    rm_free(w);
}

/* Grow *arr (of *cap elements of size elem) to hold n + 1. */
static bool st_grow(void **arr, int *cap, int n, size_t elem) {
    if (n < *cap) return true;
    int nc = *cap ? *cap * 2 : 16;
    void *p = rm_realloc(*arr, (size_t)nc * elem);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

rm_status rm_st_writer_meta(rm_st_writer *w, const char *key, const char *value) {
    char *v = rm_strdup(value);
    if (!v) return rm_err(RAMOLE_ERR_NOMEM, "safetensors writer: out of memory");
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[2 * i], key) == 0) {
            rm_free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return RAMOLE_OK;
        }
    }
    char *k = rm_strdup(key);
    if (!k || !st_grow((void **)&w->meta, &w->cap_meta, 2 * w->n_meta + 1, sizeof *w->meta)) {
        rm_free(k);
        rm_free(v);
        return rm_err(RAMOLE_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return RAMOLE_OK;
}

rm_status rm_st_writer_add(rm_st_writer *w, const char *name, rm_type type, int n_dims,
                           const int64_t *shape, const void *data) {
    const st_dtype *d = st_dtype_of_type(type);
    if (!name || !name[0] || strcmp(name, "__metadata__") == 0)
        return rm_err(RAMOLE_ERR_INVALID, "safetensors writer: invalid tensor name '%s'",
                      name ? name : "(null)");
    if (!d)
        return rm_err(RAMOLE_ERR_UNSUPPORTED,
                      "safetensors writer: tensor '%s': type %d cannot be stored in safetensors",
                      name, (int)type);
    if (n_dims < 0 || n_dims > RM_ST_MAX_DIMS)
        return rm_err(RAMOLE_ERR_INVALID, "safetensors writer: tensor '%s': %d dimensions", name,
                      n_dims);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return rm_err(RAMOLE_ERR_INVALID, "safetensors writer: duplicate tensor '%s'", name);
    st_wtensor t = {.dtype = d, .n_dims = n_dims, .data = data};
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || !rm_mul_ok(n, (size_t)shape[i], &n))
            return rm_err(RAMOLE_ERR_INVALID, "safetensors writer: tensor '%s': bad shape[%d]",
                          name, i);
        t.shape[i] = shape[i];
    }
    if (n > INT64_MAX || !rm_mul_ok(n, d->size, &t.nbytes))
        return rm_err(RAMOLE_ERR_INVALID, "safetensors writer: tensor '%s': size overflows", name);
    if (t.nbytes && !data)
        return rm_err(RAMOLE_ERR_INVALID, "safetensors writer: tensor '%s': no data", name);
    t.name = rm_strdup(name);
    if (!t.name || !st_grow((void **)&w->t, &w->cap, w->n, sizeof *w->t)) {
        rm_free(t.name);
        return rm_err(RAMOLE_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->t[w->n++] = t;
    return RAMOLE_OK;
}

static int st_wcmp(const void *a, const void *b) {
    return strcmp((*(const st_wtensor *const *)a)->name, (*(const st_wtensor *const *)b)->name);
}

/* Build the header JSON for the tensors in `order`; returns a jansson string. */
static rm_status st_header_json(const rm_st_writer *w, st_wtensor **order, const char *path,
                                char **out) {
    *out = NULL;
    json_t *root = json_object();
    bool ok = root != NULL;
    if (ok && w->n_meta) {
        json_t *m = json_object();
        ok = m && json_object_set_new(root, "__metadata__", m) == 0;
        for (int i = 0; ok && i < w->n_meta; i++)
            ok = json_object_set_new(m, w->meta[2 * i], json_string(w->meta[2 * i + 1])) == 0;
    }
    uint64_t off = 0;
    for (int i = 0; ok && i < w->n; i++) {
        const st_wtensor *t = order[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        if (!e) {
            json_decref(shape);
            json_decref(offs);
            ok = false;
            break;
        }
        /* set_new takes the reference even when it fails, so nothing leaks. */
        int bad = json_object_set_new(e, "dtype", json_string(t->dtype->name));
        bad |= json_object_set_new(e, "shape", shape);
        bad |= json_object_set_new(e, "data_offsets", offs);
        for (int d = 0; !bad && d < t->n_dims; d++)
            bad |= json_array_append_new(shape, json_integer(t->shape[d]));
        if (!bad) bad |= json_array_append_new(offs, json_integer((json_int_t)off));
        if (!bad) bad |= json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes)));
        if (bad) {
            json_decref(e);
            ok = false;
            break;
        }
        ok = json_object_set_new(root, t->name, e) == 0;
        off += t->nbytes;
    }
    if (ok) *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!*out)
        return rm_err(RAMOLE_ERR_INVALID,
                      "%s: cannot encode the header (invalid UTF-8 in a name, or out of memory)",
                      path);
    return RAMOLE_OK;
}

rm_status rm_st_writer_write(rm_st_writer *w, const char *path) {
    rm_fw fw = {0};
    char *json = NULL;
    st_wtensor **order = rm_malloc(((size_t)w->n + 1) * sizeof *order);
    if (!order) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < w->n; i++) order[i] = &w->t[i];
    qsort(order, (size_t)w->n, sizeof *order, st_wcmp);
    rm_status rc = st_header_json(w, order, path, &json);
    if (rc != RAMOLE_OK) goto done;
    size_t hlen = strlen(json), padded = (hlen + 7) / 8 * 8;
    if ((rc = rm_fw_open(&fw, path)) != RAMOLE_OK) goto done;
    uint8_t len8[8];
    rm_put_le64(len8, padded);
    rm_fw_write(&fw, len8, 8);
    rm_fw_write(&fw, json, hlen);
    rm_fw_pad(&fw, 8, ' ');
    for (int i = 0; i < w->n; i++) rm_fw_write(&fw, order[i]->data, order[i]->nbytes);
    rc = rm_fw_commit(&fw);
done:
    rm_fw_abort(&fw);
    free(json); /* allocated by jansson */
    rm_free(order);
    return rc;
}
