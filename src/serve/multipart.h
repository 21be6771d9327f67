/*
 * multipart.h — a streaming reader of multipart/form-data bodies (RFC 7578),
 * the format of adapter uploads (POST /v1/adapters).
 *
 * The body arrives in pieces of any size; the reader hands each part's name
 * and file name to a callback when its headers end, then its bytes in
 * pieces, and keeps nothing but a fixed window: memory does not grow with
 * the body, the parts, or any size a part's headers declare (they are not
 * read). A part's headers are bounded (SRV_MP_HEADERS_MAX), its name and
 * file name too; only Content-Disposition is interpreted.
 *
 * Lifetime: a reader is made for one body and freed after it.
 */
#ifndef RM_SERVE_MULTIPART_H
#define RM_SERVE_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "core/core.h"

#define SRV_MP_BOUNDARY_MAX 70     /* bytes of a boundary (RFC 2046) */
#define SRV_MP_HEADERS_MAX  8192   /* bytes of one part's header lines */
#define SRV_MP_NAME_MAX     255    /* bytes of a part's name or file name */

typedef struct {
    /* A part begins: its name; filename is NULL for a plain field. */
    void (*part)(void *user, const char *name, const char *filename);
    /* n more bytes of the current part (n > 0). */
    void (*data)(void *user, const char *bytes, size_t n);
    void *user;
} srv_mp_sink;

typedef struct srv_mp srv_mp;

/*
 * The boundary of a Content-Type value "multipart/form-data; boundary=B"
 * (B plain or quoted, 1..70 bytes) into out; ERR_INVALID saying what is
 * wrong otherwise (another type, no boundary, one too long or with control
 * bytes). content_type may be NULL (the header is missing).
 */
rm_status srv_mp_boundary(const char *content_type, char out[SRV_MP_BOUNDARY_MAX + 1]);
/* A reader of a body of this Content-Type (srv_mp_boundary's errors; ERR_NOMEM). */
rm_status srv_mp_new(const char *content_type, const srv_mp_sink *sink, srv_mp **out);
/*
 * Read n more bytes of the body, calling the sink. ERR_FORMAT naming the
 * problem (a part without a name, headers over SRV_MP_HEADERS_MAX, a line
 * after a boundary that is neither a line end nor "--", ...); after an
 * error the reader ignores the rest and returns the same status.
 */
rm_status srv_mp_feed(srv_mp *p, const char *data, size_t n);
/* The body is complete: ERR_FORMAT unless the closing boundary was read. */
rm_status srv_mp_finish(srv_mp *p);
void      srv_mp_free(srv_mp *p); /* NULL is a no-op */

#endif
