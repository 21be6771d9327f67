/*
 * tok_pyjson.c — JSON written as Python's json.dumps(x, ensure_ascii=False)
 * writes it, which is what transformers' `tojson` filter gives a chat
 * template: ", " and ": " between items, keys in the order given, non-ASCII
 * characters as they are, control characters as \n-style or lowercase
 * \u00XX escapes, and floats as Python's repr (the shortest text that reads
 * back as the same double; "1.0", "1e-05", "1e+16"). A tool's schema the
 * model reads in its prompt is then byte for byte what it was trained on.
 */
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rm_status put(tok_buf *b, const char *s) { return tok_buf_put(b, s, strlen(s)); }

static rm_status py_string(tok_buf *b, const char *s, size_t n) {
    rm_status st = tok_buf_putc(b, '"');
    size_t run = 0; /* bytes copied as they are, waiting */
    for (size_t i = 0; i < n && !st; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) snprintf(u, sizeof u, "\\u%04x", c), esc = u;
        }
        if (!esc) {
            run++;
            continue;
        }
        st = tok_buf_put(b, s + i - run, run);
        run = 0;
        if (!st) st = put(b, esc);
    }
    if (!st) st = tok_buf_put(b, s + n - run, run);
    return st ? st : tok_buf_putc(b, '"');
}

/* Python's float repr: the shortest digits that read back as d, fixed
 * notation for decimal exponents -4 < decpt <= 16, else d.ddde+XX. */
static rm_status py_float(tok_buf *b, double d) {
    if (isnan(d)) return put(b, "NaN");
    if (isinf(d)) return put(b, d < 0 ? "-Infinity" : "Infinity");
    char e[40], digits[24], out[64];
    int p = 1;
    for (; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, d);
        if (strtod(e, NULL) == d) break;
    }
    snprintf(e, sizeof e, "%.*e", p - 1, d);
    const char *q = e;
    bool neg = *q == '-';
    if (neg) q++;
    int nd = 0;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') nd--; /* "%.0e" of 100 is "1e+02": no trailing zeros to drop */
    digits[nd] = 0;
    int decpt = atoi(q + 1) + 1;
    char *o = out;
    if (neg) *o++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            o += sprintf(o, "0.");
            for (int i = 0; i < -decpt; i++) *o++ = '0';
            o += sprintf(o, "%s", digits);
        } else if (decpt >= nd) {
            o += sprintf(o, "%s", digits);
            for (int i = nd; i < decpt; i++) *o++ = '0';
            o += sprintf(o, ".0");
        } else {
            o += sprintf(o, "%.*s.%s", decpt, digits, digits + decpt);
        }
    } else {
        *o++ = digits[0];
        if (nd > 1) o += sprintf(o, ".%s", digits + 1);
        o += sprintf(o, "e%c%02d", decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
    }
    *o = 0;
    return put(b, out);
}

static rm_status py_value(tok_buf *b, const json_t *v, int depth) {
    if (depth > 512) return rm_err(RAMOLE_ERR_INVALID, "tojson: nested deeper than 512");
    rm_status st = RM_OK;
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        bool first = true;
        st = tok_buf_putc(b, '{');
        json_object_foreach((json_t *)v, key, val) {
            if (!st && !first) st = put(b, ", ");
            first = false;
            if (!st) st = py_string(b, key, strlen(key));
            if (!st) st = put(b, ": ");
            if (!st) st = py_value(b, val, depth + 1);
        }
        return st ? st : tok_buf_putc(b, '}');
    }
    case JSON_ARRAY:
        st = tok_buf_putc(b, '[');
        for (size_t i = 0; i < json_array_size(v) && !st; i++) {
            if (i) st = put(b, ", ");
            if (!st) st = py_value(b, json_array_get(v, i), depth + 1);
        }
        return st ? st : tok_buf_putc(b, ']');
    case JSON_STRING: return py_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return put(b, num);
    case JSON_REAL: return py_float(b, json_real_value(v));
    case JSON_TRUE: return put(b, "true");
    case JSON_FALSE: return put(b, "false");
    default: return put(b, "null");
    }
}

rm_status rm_chat_tojson(const void *json, char **out) {
    *out = NULL;
    tok_buf b = {0};
    rm_status st = py_value(&b, json, 0);
    if (!st) st = tok_buf_putc(&b, 0);
    if (st) {
        tok_buf_free(&b);
        return st;
    }
    *out = b.p;
    return RM_OK;
}
