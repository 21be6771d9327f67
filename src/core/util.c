/* util.c — random fills and JSON files, shared by the writers and tests. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

void rm_rng_fill_uniform(float *x, size_t n, float std, uint64_t *state) {
    float a = std * 1.7320508f;
    for (size_t i = 0; i < n; i++) {
        uint32_t r = (uint32_t)(rm_rng_next(state) >> 40); /* 24 bits */
        x[i] = a * ((float)r * (2.0f / 16777216.0f) - 1.0f);
    }
}

rm_status rm_json_write_atomic(const char *path, const void *json, size_t flags) {
    char *text = json_dumps((const json_t *)json, flags);
    if (!text) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory writing JSON", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps's buffer holds the NUL we overwrite */
    rm_status st = rm_file_write_atomic(path, text, n + 1);
    free(text);
    return st;
}

rm_status rm_lines_each(const char *text, size_t len, const char *name, rm_line_fn fn, void *ctx) {
    int line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + 1;
        line++;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k == n) continue;
        rm_status st = fn(s, n, line, ctx);
        if (st != RAMOLE_OK) return rm_err_prefix(st, "%s:%d", name, line);
    }
    return RAMOLE_OK;
}
