/*
 * blob.c — content-addressed blob folders and SHA-256.
 *
 * A blob with hash H lives at DIR/H[0..2)/H. It is written as a unique
 * temporary file in DIR/tmp (mkstemp, so threads and processes writing the
 * same content never share one), fsync'd, renamed into place and the
 * folder fsync'd, so that after blob_put returns the blob survives a crash
 * and a reader never sees a partial file. A blob already present is not
 * written again: the same content is stored once. Left-over temporary files
 * of a killed writer are collected with the orphans (registry.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry/backend.h"

static void hex(const unsigned char *md, char out[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[64] = 0;
}

void rm_sha256_hex(const void *data, size_t n, char out[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    hex(md, out);
}

rm_status rm_sha256_file(const char *path, char out[65], int64_t *size) {
    rm_mapped m;
    RM_TRY(rm_file_map(path, &m));
    rm_sha256_hex(m.data, m.size, out);
    if (size) *size = (int64_t)m.size;
    rm_file_unmap(&m);
    return RAMOLE_OK;
}

static bool is_hash(const char *h) {
    if (strlen(h) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
    return true;
}

static rm_status mkdir_p(const char *dir) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return RAMOLE_OK;
    return rm_err(RAMOLE_ERR_IO, "%s: cannot create the folder: %s", dir, strerror(errno));
}

static rm_status fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return rm_err(RAMOLE_ERR_IO, "%s: cannot open the folder: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? RAMOLE_OK : rm_err(RAMOLE_ERR_IO, "%s: fsync of the folder failed: %s", dir, strerror(errno));
}

rm_status rm_blob_dir_init(const char *dir) {
    RM_TRY(mkdir_p(dir));
    char *tmp = rm_path_join(dir, "tmp");
    if (!tmp) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    rm_status st = mkdir_p(tmp);
    rm_free(tmp);
    return st;
}

char *rm_blob_dir_path(const char *dir, const char *hash) {
    return rm_asprintf("%s/%.2s/%s", dir, hash, hash);
}

rm_status rm_blob_dir_put(const char *dir, const char *hash, const void *data, size_t n) {
    if (!is_hash(hash)) return rm_err(RAMOLE_ERR_INVALID, "blob: '%s' is not a SHA-256 hex digest", hash);
    char *path = rm_blob_dir_path(dir, hash), *sub = rm_asprintf("%s/%.2s", dir, hash);
    char *tmp = rm_asprintf("%s/tmp/%s.XXXXXX", dir, hash);
    rm_status st = RAMOLE_OK;
    int fd = -1;
    if (!path || !sub || !tmp) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); goto out; }
    struct stat sb;
    if (stat(path, &sb) == 0 && (size_t)sb.st_size == n) goto out; /* stored once */
    if ((st = mkdir_p(sub)) != RAMOLE_OK) goto out;
    fd = mkstemp(tmp);
    if (fd < 0) { st = rm_err(RAMOLE_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno)); goto out; }
    fchmod(fd, 0644);
    for (const uint8_t *p = data; n > 0;) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { st = rm_err(RAMOLE_ERR_IO, "%s: write failed: %s", tmp, strerror(errno)); break; }
        p += w, n -= (size_t)w;
    }
    if (st == RAMOLE_OK && fsync(fd) != 0) st = rm_err(RAMOLE_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    close(fd);
    if (st == RAMOLE_OK && rename(tmp, path) != 0)
        st = rm_err(RAMOLE_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != RAMOLE_OK) unlink(tmp);
    else st = fsync_dir(sub);
out:
    rm_free(path), rm_free(sub), rm_free(tmp);
    return st;
}

rm_status rm_blob_dir_list(const char *dir, char ***hashes, double **mtimes, int *n) {
    *hashes = NULL, *mtimes = NULL, *n = 0;
    int cap = 0;
    rm_status st = RAMOLE_OK;
    DIR *top = opendir(dir);
    if (!top) return rm_err(RAMOLE_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *d;
    while (st == RAMOLE_OK && (d = readdir(top))) {
        if (d->d_name[0] == '.') continue;
        bool is_tmp = !strcmp(d->d_name, "tmp");
        if (!is_tmp && strlen(d->d_name) != 2) continue;
        char *sub = rm_path_join(dir, d->d_name);
        DIR *in = sub ? opendir(sub) : NULL;
        struct dirent *e;
        while (in && st == RAMOLE_OK && (e = readdir(in))) {
            if (e->d_name[0] == '.') continue;
            char *full = rm_path_join(sub, e->d_name);
            struct stat sb;
            if (!full || stat(full, &sb) != 0) { rm_free(full); continue; }
            if (*n == cap) {
                cap = cap ? 2 * cap : 64;
                char **h = rm_realloc(*hashes, (size_t)cap * sizeof *h);
                double *m = h ? rm_realloc(*mtimes, (size_t)cap * sizeof *m) : NULL;
                if (h) *hashes = h;
                if (m) *mtimes = m;
                if (!h || !m) { st = rm_err(RAMOLE_ERR_NOMEM, "out of memory"); rm_free(full); break; }
            }
            /* temporary files are listed as "tmp/NAME" so collection can remove them */
            (*hashes)[*n] = is_tmp ? rm_asprintf("tmp/%s", e->d_name) : rm_strdup(e->d_name);
            (*mtimes)[*n] = (double)sb.st_mtime;
            if ((*hashes)[*n]) (*n)++;
            rm_free(full);
        }
        if (in) closedir(in);
        rm_free(sub);
    }
    closedir(top);
    return st;
}
