/*
 * gguf.h — read (mmap, validated) and write GGUF v3 files as llama.cpp does.
 *
 * Layout (little-endian): magic "GGUF", u32 version (3; 2 is read too),
 * i64 n_tensors, i64 n_kv; n_kv pairs of (string key, u32 value type,
 * value); n_tensors infos (string name, u32 n_dims, i64 ne[n_dims], u32
 * ggml type, u64 offset); padding to general.alignment (default 32); the
 * data section. Strings are u64 length + bytes. Arrays are u32 element
 * type, u64 count, elements. ne[0] is the innermost (contiguous) dimension:
 * a [n][k] weight has ne = {k, n}.
 *
 * The reader checks every length and offset against the file size, tensor
 * data alignment and extents, and names the file, key or tensor on error.
 * Tensors of a ggml type other than F32, F16, BF16, Q8_0, Q4_0, Q4_1,
 * Q4_K, Q5_K and Q6_K are listed (their
 * ggml type and name are known) but have type -1; using them gives
 * "unsupported tensor type NAME in FILE" via rm_gguf_tensor_check.
 */
#ifndef RM_GGUF_H
#define RM_GGUF_H

#include "kernels/kernels.h"

typedef enum {
    RM_GGUF_UINT8 = 0, RM_GGUF_INT8 = 1, RM_GGUF_UINT16 = 2, RM_GGUF_INT16 = 3,
    RM_GGUF_UINT32 = 4, RM_GGUF_INT32 = 5, RM_GGUF_FLOAT32 = 6, RM_GGUF_BOOL = 7,
    RM_GGUF_STRING = 8, RM_GGUF_ARRAY = 9, RM_GGUF_UINT64 = 10, RM_GGUF_INT64 = 11,
    RM_GGUF_FLOAT64 = 12, RM_GGUF_VTYPE_COUNT
} rm_gguf_vtype;

/* ggml tensor type ids used in GGUF files. */
enum {
    RM_GGML_F32 = 0, RM_GGML_F16 = 1, RM_GGML_Q4_0 = 2, RM_GGML_Q4_1 = 3,
    RM_GGML_Q5_0 = 6, RM_GGML_Q5_1 = 7, RM_GGML_Q8_0 = 8, RM_GGML_Q4_K = 12,
    RM_GGML_Q5_K = 13, RM_GGML_Q6_K = 14, RM_GGML_BF16 = 30,
};
const char *rm_ggml_type_name(uint32_t ggml_type);   /* "q4_K", ..., "unknown" */
/* Elements per block and bytes per block of a ggml type (every standard
 * type, quantised ones included); false for an unknown id. */
bool        rm_ggml_type_size(uint32_t ggml_type, uint32_t *blck, uint32_t *bytes);
int         rm_type_to_ggml(rm_type t);
int         rm_type_from_ggml(uint32_t ggml_type);   /* rm_type or -1 */

#define RM_GGUF_MAX_DIMS 4

typedef struct {
    const char *name;
    uint32_t ggml_type;
    int type;           /* rm_type, or -1 when unsupported */
    int n_dims;
    int64_t ne[RM_GGUF_MAX_DIMS]; /* innermost first; unused dims are 1 */
    uint64_t offset;    /* relative to the data section */
    size_t nbytes;
    const void *data;   /* into the map; valid while the file is open */
} rm_gguf_tensor;

typedef struct rm_gguf rm_gguf;

/*
 * Map and validate path. On failure *out is NULL and the message names the
 * file and the key or tensor (ERR_FORMAT for bad content, ERR_UNSUPPORTED
 * for a GGUF version other than 2 or 3, ERR_IO when unreadable). Names,
 * values and tensor data are valid until rm_gguf_free.
 */
rm_status rm_gguf_open(const char *path, rm_gguf **out);
/* Same over caller memory (valid while the handle lives); name is used in
 * messages and as rm_gguf_path. */
rm_status rm_gguf_open_mem(const void *data, size_t size, const char *name, rm_gguf **out);
void      rm_gguf_free(rm_gguf *g); /* NULL is a no-op */
const char *rm_gguf_path(const rm_gguf *g);
uint32_t  rm_gguf_version(const rm_gguf *g);
size_t    rm_gguf_alignment(const rm_gguf *g);

/* Metadata. Keys are looked up by exact name; index -1 means absent. */
int64_t     rm_gguf_kv_count(const rm_gguf *g);
const char *rm_gguf_kv_key(const rm_gguf *g, int64_t i);
int64_t     rm_gguf_kv_find(const rm_gguf *g, const char *key);
rm_gguf_vtype rm_gguf_kv_type(const rm_gguf *g, int64_t i);
/*
 * Typed getters by key. Each returns RAMOLE_ERR_NOT_FOUND when the key is
 * absent and RAMOLE_ERR_FORMAT when its type differs; integer getters accept
 * any integer type whose value fits.
 */
rm_status rm_gguf_get_u32(const rm_gguf *g, const char *key, uint32_t *out);
rm_status rm_gguf_get_i64(const rm_gguf *g, const char *key, int64_t *out);
rm_status rm_gguf_get_f32(const rm_gguf *g, const char *key, float *out);
rm_status rm_gguf_get_bool(const rm_gguf *g, const char *key, bool *out);
/* String value: pointer into the map (not NUL-terminated) and length. */
rm_status rm_gguf_get_str(const rm_gguf *g, const char *key, const char **s, size_t *len);
/* Array: element type and count; for numeric arrays *data points at the
 * packed little-endian elements in the map (not necessarily aligned: copy
 * with memcpy); for arrays of strings or of arrays *data is NULL (data may
 * be NULL if not wanted). Arrays of arrays are accepted on open but have no
 * further getters. */
rm_status rm_gguf_get_arr(const rm_gguf *g, const char *key, rm_gguf_vtype *elem_type,
                          uint64_t *count, const void **data);
/* j-th string of a string array. */
rm_status rm_gguf_get_arr_str(const rm_gguf *g, const char *key, uint64_t j,
                              const char **s, size_t *len);

/* Tensors, in file order. */
int64_t rm_gguf_tensor_count(const rm_gguf *g);
const rm_gguf_tensor *rm_gguf_tensor_get(const rm_gguf *g, int64_t i);
const rm_gguf_tensor *rm_gguf_tensor_find(const rm_gguf *g, const char *name);
/* OK if t has a supported type; else "unsupported tensor type NAME in FILE". */
rm_status rm_gguf_tensor_check(const rm_gguf *g, const rm_gguf_tensor *t);

/*
 * Writer. Set metadata in the order it should appear, add tensors (data is
 * referenced until write returns), then write atomically. Setting a key
 * twice replaces its value.
 */
typedef struct rm_gguf_writer rm_gguf_writer;
rm_status rm_gguf_writer_new(rm_gguf_writer **out);
void      rm_gguf_writer_free(rm_gguf_writer *w);
rm_status rm_gguf_set_u32(rm_gguf_writer *w, const char *key, uint32_t v);
rm_status rm_gguf_set_i32(rm_gguf_writer *w, const char *key, int32_t v);
rm_status rm_gguf_set_u64(rm_gguf_writer *w, const char *key, uint64_t v);
rm_status rm_gguf_set_f32(rm_gguf_writer *w, const char *key, float v);
rm_status rm_gguf_set_bool(rm_gguf_writer *w, const char *key, bool v);
/* Any fixed-size scalar type (uint8 ... float64, bool); value points at one
 * element of that type. */
rm_status rm_gguf_set_val(rm_gguf_writer *w, const char *key, rm_gguf_vtype type,
                          const void *value);
rm_status rm_gguf_set_str(rm_gguf_writer *w, const char *key, const char *v);
/* Numeric array of count elements of elem_type (copied). */
rm_status rm_gguf_set_arr(rm_gguf_writer *w, const char *key, rm_gguf_vtype elem_type,
                          const void *data, uint64_t count);
/* String array (copied). */
rm_status rm_gguf_set_arr_str(rm_gguf_writer *w, const char *key, const char *const *v,
                              uint64_t count);
/* Copy a key with its value from an open file. */
rm_status rm_gguf_set_from(rm_gguf_writer *w, const rm_gguf *src, int64_t kv_index);
rm_status rm_gguf_writer_add(rm_gguf_writer *w, const char *name, rm_type type, int n_dims,
                             const int64_t *ne, const void *data);
/* Like rm_gguf_writer_add for any standard ggml type id (for copying
 * tensors ramole cannot compute with, and for tests); ne[0] must be a whole
 * number of blocks; names are at most 63 bytes, as llama.cpp requires. */
rm_status rm_gguf_writer_add_raw(rm_gguf_writer *w, const char *name, uint32_t ggml_type,
                                 int n_dims, const int64_t *ne, const void *data);
/* Write to path via a temporary file + fsync + rename; tensor data is streamed,
 * each tensor at an offset that is a multiple of general.alignment (u32 key,
 * default 32). The writer stays usable (write may be called again). */
rm_status rm_gguf_writer_write(rm_gguf_writer *w, const char *path);

#endif
