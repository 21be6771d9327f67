/* cli.c — option parsing helpers shared by the commands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* val as a whole decimal integer in [lo, hi]; prints nothing. */
static bool parse_long(const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out) {
    if (parse_long(val, lo, hi, out)) return true;
    fprintf(stderr, "ramole %s: %s expects an integer from %ld to %ld, got '%s'\n", cmd, opt, lo, hi, val);
    return false;
}

bool cli_float(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "ramole %s: %s expects a number from %g to %g, got '%s'\n", cmd, opt, lo, hi, val);
        return false;
    }
    *out = v;
    return true;
}

bool cli_u64(const char *cmd, const char *opt, const char *val, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end || val[0] == '-') {
        fprintf(stderr, "ramole %s: %s expects a non-negative integer, got '%s'\n", cmd, opt, val);
        return false;
    }
    *out = v;
    return true;
}

bool cli_tokens(const char *cmd, const char *val, int32_t **out, int *n) {
    *out = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = val; *p; p++) cap += *p == ',';
    int32_t *t = malloc(cap * sizeof *t);
    if (!t) {
        fprintf(stderr, "ramole %s: out of memory\n", cmd);
        return false;
    }
    const char *p = val;
    int k = 0;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "ramole %s: --tokens expects comma-separated non-negative ids, got '%s'\n", cmd, val);
            free(t);
            return false;
        }
        t[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        fprintf(stderr, "ramole %s: --tokens is empty\n", cmd);
        free(t);
        return false;
    }
    *out = t;
    *n = k;
    return true;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "ramole %s: option %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_fail(const char *cmd, ramole_status st) {
    const char *msg = ramole_last_error();
    fprintf(stderr, "ramole %s: %s\n", cmd, msg[0] ? msg : ramole_status_str(st));
    return 1;
}

bool cli_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

bool cli_lora_spec(const char *cmd, char *arg, float *weight) {
    *weight = 1.0f;
    char *colon = strrchr(arg, ':');
    if (!colon || !colon[1]) return true;
    char *end;
    double v = strtod(colon + 1, &end);
    if (*end) return true; /* not a number: part of the path */
    if (!isfinite(v)) {
        fprintf(stderr, "ramole %s: --lora weight must be finite, got '%s'\n", cmd, colon + 1);
        return false;
    }
    *weight = (float)v;
    *colon = 0;
    return true;
}

bool cli_targets(const char *cmd, const char *v, unsigned *mask) {
    *mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        ramole_target t;
        if (!ramole_target_from_name(tok, &t)) {
            fprintf(stderr, "ramole %s: unknown target module '%s' (q, k, v, o, gate, up, down)\n", cmd, tok);
            return false;
        }
        *mask |= 1u << t;
    }
    if (!*mask) {
        fprintf(stderr, "ramole %s: --targets is empty\n", cmd);
        return false;
    }
    return true;
}

bool cli_layers(const char *cmd, const char *opt, const char *v, int n_layers, bool *keep) {
    for (int l = 0; l < n_layers; l++) keep[l] = false;
    const char *p = v;
    bool any = false;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        bool ok = end != p && *p >= '0' && *p <= '9';
        if (ok && *end == '-') {
            const char *q = end + 1;
            hi = strtol(q, &end, 10);
            ok = end != q && *q >= '0' && *q <= '9';
        }
        if (!ok || (*end && *end != ',') || (*end == ',' && !end[1])) {
            fprintf(stderr, "ramole %s: %s must list layers like 1-3 or 0,2,5-7, got '%s'\n", cmd, opt, v);
            return false;
        }
        if (lo > hi) {
            fprintf(stderr, "ramole %s: %s '%s': the range %ld-%ld runs backwards\n", cmd, opt, v, lo, hi);
            return false;
        }
        if (hi >= n_layers) {
            fprintf(stderr, "ramole %s: %s '%s': layer %ld is not in this model (layers 0..%d)\n", cmd, opt, v, hi,
                    n_layers - 1);
            return false;
        }
        for (long l = lo; l <= hi; l++) keep[l] = any = true;
        p = *end ? end + 1 : end;
    }
    if (!any) {
        fprintf(stderr, "ramole %s: %s is empty\n", cmd, opt);
        return false;
    }
    return true;
}

bool cli_adapter_type(const char *cmd, const char *opt, const char *v, ramole_adapter_type *out) {
    static const char *names[] = {"f32", "f16", "bf16"};
    static const ramole_adapter_type types[] = {RAMOLE_ADAPTERS_F32, RAMOLE_ADAPTERS_F16, RAMOLE_ADAPTERS_BF16};
    for (int i = 0; i < 3; i++)
        if (!strcmp(v, names[i])) {
            *out = types[i];
            return true;
        }
    fprintf(stderr, "ramole %s: %s must be f32, f16, bf16, got '%s'\n", cmd, opt, v);
    return false;
}

bool cli_plan(const char *cmd, const char *opt, const char *v, int *out) {
    if (!strcmp(v, "q4_k_m")) {
        *out = RAMOLE_PLAN_Q4_K_M;
        return true;
    }
    ramole_type t;
    if (!ramole_type_from_name(v, &t)) {
        fprintf(stderr, "ramole %s: %s must be f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k or q4_k_m, got '%s'\n",
                cmd, opt, v);
        return false;
    }
    *out = (int)t;
    return true;
}

bool cli_kv_type(const char *cmd, const char *v, ramole_kv_type *out) {
    if (!strcmp(v, "f32")) *out = RAMOLE_KV_F32;
    else if (!strcmp(v, "f16")) *out = RAMOLE_KV_F16;
    else {
        fprintf(stderr, "ramole %s: --kv-type must be f32 or f16, got '%s'\n", cmd, v);
        return false;
    }
    return true;
}

bool cli_prefill_tokens(const char *cmd, const char *v, long *out) {
    if (!strcmp(v, "auto")) *out = 0;
    else if (!strcmp(v, "all")) *out = -1;
    else if (!parse_long(v, 1, 1 << 20, out)) {
        fprintf(stderr, "ramole %s: --prefill-tokens takes auto, all or a count from 1 to %d, got '%s'\n", cmd, 1 << 20,
                v);
        return false;
    }
    return true;
}

void cli_fmt_time(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

json_t *cli_json_num(const char *fmt, double x) {
    if (!isfinite(x)) return json_null();
    char buf[64];
    snprintf(buf, sizeof buf, fmt, x);
    return json_real(strtod(buf, NULL));
}

json_t *cli_json_u64(uint64_t v) {
    if (v <= (uint64_t)INT64_MAX) return json_integer((json_int_t)v);
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_string(buf);
}

bool cli_json_line(FILE *f, json_t *obj) {
    /* 15 digits print the shortest form of every value cli_json_num rounded */
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(obj);
    bool ok = s && fprintf(f, "%s\n", s) >= 0;
    free(s);
    return ok;
}

/* The whole of file `path`, NUL-terminated (malloc'd), or NULL after saying why. */
char *cli_read_text(const char *cmd, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *s = NULL;
    size_t n = 0, cap = 0;
    bool ok = f != NULL;
    for (size_t got = 1; ok && got;) {
        if (n + 4096 + 1 > cap) {
            char *t = realloc(s, cap = cap * 2 + 4096 + 1);
            if (!(ok = t != NULL)) break;
            s = t;
        }
        n += got = fread(s + n, 1, 4096, f);
    }
    if (f && ferror(f)) ok = false;
    if (f) fclose(f);
    if (!ok) {
        fprintf(stderr, "ramole %s: cannot read %s\n", cmd, path);
        free(s);
        return NULL;
    }
    s[n] = 0;
    if (len) *len = n;
    return s;
}

