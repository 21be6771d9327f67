/* file.c — read-only maps, whole-file reads and atomic writes. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

rm_status rm_file_map(const char *path, rm_mapped *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rm_err(RAMOLE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rm_err(RAMOLE_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return rm_err(RAMOLE_ERR_IO, "%s: is a directory, expected a file", path);
    }
    out->size = (size_t)st.st_size;
    if (out->size > 0) {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return rm_err(RAMOLE_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        out->data = p;
    }
    close(fd);
    out->path = rm_strdup(path);
    if (!out->path) {
        rm_file_unmap(out);
        return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    }
    return RAMOLE_OK;
}

void rm_file_unmap(rm_mapped *m) {
    if (!m) return;
    if (m->data && m->size) munmap((void *)m->data, m->size);
    rm_free(m->path);
    memset(m, 0, sizeof *m);
}

void rm_file_map_release(const void *p, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)p + page - 1) & ~(page - 1),
              hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice: a refusal only keeps the pages */
}

rm_status rm_file_read(const char *path, char **out, size_t *size) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rm_err(RAMOLE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = rm_malloc(cap);
    if (!buf) {
        fclose(f);
        return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = rm_realloc(buf, cap * 2);
            if (!nb) {
                rm_free(buf);
                fclose(f);
                return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        rm_free(buf);
        return rm_err(RAMOLE_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    if (size) *size = n;
    return RAMOLE_OK;
}

bool rm_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool rm_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *rm_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir);
    return rm_asprintf("%s%s%s", dir, (n && dir[n - 1] == '/') ? "" : "/", name);
}

rm_status rm_file_write_atomic(const char *path, const void *data, size_t size) {
    char *tmp = rm_asprintf("%s.tmp.%d", path, (int)getpid());
    if (!tmp) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    rm_status st = RAMOLE_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        st = rm_err(RAMOLE_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    const uint8_t *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            st = rm_err(RAMOLE_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (st == RAMOLE_OK && fsync(fd) != 0)
        st = rm_err(RAMOLE_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    close(fd);
    if (st == RAMOLE_OK && rename(tmp, path) != 0)
        st = rm_err(RAMOLE_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != RAMOLE_OK) unlink(tmp);
done:
    rm_free(tmp);
    return st;
}
