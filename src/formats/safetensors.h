/*
 * safetensors.h — read (mmap, fully validated) and write safetensors files.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the data section; offsets are relative to its start.
 *
 * Validation on open: header length inside the file, JSON well formed,
 * every dtype known, every shape non-negative, end - begin equal to
 * dtype size x product(shape), data inside the file, no two tensors
 * overlapping. Any failure names the file, the tensor and the problem.
 */
#ifndef RM_SAFETENSORS_H
#define RM_SAFETENSORS_H

#include "kernels/kernels.h"

#define RM_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    const char *dtype;   /* as in the file: "F32", "F16", "BF16", "I64", ... */
    int type;            /* an rm_type for F32/F16/BF16, -1 for other dtypes */
    int n_dims;
    int64_t shape[RM_ST_MAX_DIMS]; /* outermost first, as in the file */
    int64_t n_elems;
    size_t nbytes;
    const void *data;    /* into the map; valid while the file is open. 8-byte
                          * aligned in files whose header length is a multiple
                          * of 8 (ramole's and the Rust writer's); other files
                          * may give unaligned data: copy, do not cast. */
} rm_st_tensor;

typedef struct rm_safetensors rm_safetensors;

/*
 * Map and validate path. On failure *out is NULL and the message names the
 * file, the tensor and the problem (ERR_FORMAT for bad content, ERR_IO when
 * the file cannot be read). Tensors and strings are valid until rm_st_free.
 */
rm_status rm_st_open(const char *path, rm_safetensors **out);
/* Same over caller memory (valid while the handle lives); name is used in
 * messages and as rm_st_path. */
rm_status rm_st_open_mem(const void *data, size_t size, const char *name, rm_safetensors **out);
void      rm_st_free(rm_safetensors *st); /* NULL is a no-op */
const char *rm_st_path(const rm_safetensors *st);
int       rm_st_count(const rm_safetensors *st);
const rm_st_tensor *rm_st_get(const rm_safetensors *st, int i);   /* sorted by name */
const rm_st_tensor *rm_st_find(const rm_safetensors *st, const char *name); /* NULL if absent */
/* __metadata__ value for key, NULL if absent. */
const char *rm_st_meta(const rm_safetensors *st, const char *key);

/*
 * Writer: collect tensors (data is referenced, not copied: it must stay
 * valid until rm_st_writer_write returns), then write atomically.
 * Tensors are written sorted by name (so the file does not depend on the
 * order of adds), packed back to back after a header padded with spaces to
 * a multiple of 8 bytes. Types F32, F16, BF16 only (Q8_0 has no
 * safetensors dtype: ERR_UNSUPPORTED). Setting a metadata key twice
 * replaces its value. Data is streamed to PATH.tmp.PID, fsync'd and renamed
 * over PATH, so PATH is never half-written.
 */
typedef struct rm_st_writer rm_st_writer;
rm_status rm_st_writer_new(rm_st_writer **out);
void      rm_st_writer_free(rm_st_writer *w);
rm_status rm_st_writer_meta(rm_st_writer *w, const char *key, const char *value);
rm_status rm_st_writer_add(rm_st_writer *w, const char *name, rm_type type, int n_dims,
                           const int64_t *shape, const void *data);
rm_status rm_st_writer_write(rm_st_writer *w, const char *path);

#endif
