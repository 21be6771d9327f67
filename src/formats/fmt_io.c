/* fmt_io.c — streaming atomic writer shared by the safetensors and GGUF writers. */
#include "formats/fmt_io.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

rm_status rm_fw_open(rm_fw *w, const char *path) {
    memset(w, 0, sizeof *w);
    w->path = rm_strdup(path);
    w->tmp = rm_asprintf("%s.tmp.%d", path, (int)getpid());
    if (!w->path || !w->tmp) {
        rm_fw_abort(w);
        return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    }
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        rm_status st = rm_err(RAMOLE_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        rm_fw_abort(w);
        return st;
    }
    return RAMOLE_OK;
}

void rm_fw_write(rm_fw *w, const void *data, size_t n) {
    if (w->st != RAMOLE_OK || n == 0) return;
    if (fwrite(data, 1, n, w->f) != n) {
        w->st = rm_err(RAMOLE_ERR_IO, "%s: write failed at byte %llu: %s", w->tmp,
                       (unsigned long long)w->pos, strerror(errno));
        return;
    }
    w->pos += n;
}

void rm_fw_pad(rm_fw *w, size_t align, uint8_t byte) {
    static const uint8_t zeros[64];
    uint8_t buf[64];
    const uint8_t *src = zeros;
    if (byte) {
        memset(buf, byte, sizeof buf);
        src = buf;
    }
    size_t rem = (size_t)(w->pos % align);
    size_t need = rem ? align - rem : 0;
    while (need > 0 && w->st == RAMOLE_OK) {
        size_t k = need < sizeof buf ? need : sizeof buf;
        rm_fw_write(w, src, k);
        need -= k;
    }
}

rm_status rm_fw_commit(rm_fw *w) {
    rm_status st = w->st;
    if (st == RAMOLE_OK && fflush(w->f) != 0)
        st = rm_err(RAMOLE_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
    if (st == RAMOLE_OK && fsync(fileno(w->f)) != 0)
        st = rm_err(RAMOLE_ERR_IO, "%s: fsync failed: %s", w->tmp, strerror(errno));
    if (fclose(w->f) != 0 && st == RAMOLE_OK)
        st = rm_err(RAMOLE_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
    w->f = NULL;
    if (st == RAMOLE_OK && rename(w->tmp, w->path) != 0)
        st = rm_err(RAMOLE_ERR_IO, "%s: cannot rename into place: %s", w->path, strerror(errno));
    if (st == RAMOLE_OK) {
        rm_free(w->tmp);
        w->tmp = NULL;
    }
    rm_fw_abort(w);
    return st;
}

void rm_fw_abort(rm_fw *w) {
    if (w->f) fclose(w->f);
    if (w->tmp) unlink(w->tmp);
    rm_free(w->tmp);
    rm_free(w->path);
    memset(w, 0, sizeof *w);
}
