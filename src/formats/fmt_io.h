/*
 * fmt_io.h — private helpers of the formats module (not a public contract).
 *
 * rm_fw: a streaming atomic file writer. Bytes go through stdio to
 * "PATH.tmp.PID"; commit flushes, fsyncs and renames over PATH; abort (or a
 * failed commit) removes the temporary, so PATH is never left half-written.
 * Writers of multi-gigabyte files stream tensor data through it instead of
 * building one buffer. After the first failed write later writes are no-ops
 * and commit reports the first error.
 */
#ifndef RM_FORMATS_FMT_IO_H
#define RM_FORMATS_FMT_IO_H

#include <stdio.h>

#include "core/core.h"

typedef struct {
    FILE *f;
    char *path;     /* final path */
    char *tmp;      /* temporary path */
    uint64_t pos;   /* bytes written so far */
    rm_status st;   /* first failure */
} rm_fw;

/* Create the temporary file for `path`. On failure nothing is left behind. */
rm_status rm_fw_open(rm_fw *w, const char *path);
/* Append n bytes (no-op after a failure; the failure is kept in w->st). */
void      rm_fw_write(rm_fw *w, const void *data, size_t n);
/* Append zero bytes until pos is a multiple of `align` (a power of two or any n > 0). */
void      rm_fw_pad(rm_fw *w, size_t align, uint8_t byte);
/* Flush, fsync, close and rename into place; on failure remove the temporary.
 * Frees w's resources in every case. */
rm_status rm_fw_commit(rm_fw *w);
/* Discard: close and remove the temporary. Safe on a zeroed or committed rm_fw. */
void      rm_fw_abort(rm_fw *w);

/* Little-endian loads from possibly unaligned bytes. */
static inline uint16_t rm_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rm_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t rm_le64(const uint8_t *p) {
    return (uint64_t)rm_le32(p) | ((uint64_t)rm_le32(p + 4) << 32);
}
static inline void rm_put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void rm_put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

#endif
