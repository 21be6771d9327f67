/*
 * metrics.c — exact match, token F1, sentence BLEU and ROUGE-L (see
 * metrics.h for the contract and the references they follow).
 *
 * Both answers are cut into whitespace tokens once and the tokens are
 * interned to small integers (equal bytes, equal id), so that n-gram
 * counts and the LCS compare integers. The arithmetic of each score
 * follows its reference's order of operations, so that results agree to
 * the last bits rather than only to a tolerance.
 */
#include "eval/metrics.h"

#include <math.h>
#include <string.h>

static const char *const metric_names[RM_METRIC_COUNT] = {"em", "f1", "bleu", "rougeL"};

const char *rm_metric_name(rm_metric m) { return (unsigned)m < RM_METRIC_COUNT ? metric_names[m] : "?"; }

bool rm_metric_from_name(const char *s, rm_metric *out) {
    for (int i = 0; i < RM_METRIC_COUNT; i++)
        if (s && !strcmp(s, metric_names[i])) {
            *out = (rm_metric)i;
            return true;
        }
    return false;
}

/* Bytes of the whitespace character at s (one of Python's str.split set), or 0. */
static int space_len(const unsigned char *s) {
    unsigned c = s[0];
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (c == 0xe1 && s[1] == 0x9a && s[2] == 0x80) return 3;                           /* U+1680 */
    if (c == 0xe2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3;                                                                       /* U+2000-200A, 2028, 2029, 202F */
    if (c == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) return 3;                           /* U+205F */
    if (c == 0xe3 && s[1] == 0x80 && s[2] == 0x80) return 3;                           /* U+3000 */
    return 0;
}

typedef struct {
    const char *p;
    size_t len;
} span;

/* The tokens of s into t[] (NULL: only count); returns their number. */
static int split_tokens(const char *s, span *t) {
    const unsigned char *u = (const unsigned char *)s;
    int n = 0;
    size_t i = 0;
    while (u[i]) {
        int w = space_len(u + i);
        if (w) {
            i += (size_t)w;
            continue;
        }
        size_t start = i;
        while (u[i] && !space_len(u + i)) i++;
        if (t) t[n] = (span){s + start, i - start};
        n++;
    }
    return n;
}

/* The trimmed extent of s. */
static span trimmed(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, end = 0, k = 0;
    while (u[i] && space_len(u + i)) i += (size_t)space_len(u + i);
    for (k = i; u[k];) {
        int w = space_len(u + k);
        if (w) k += (size_t)w;
        else end = ++k;
    }
    return (span){s + i, end > i ? end - i : 0};
}

typedef struct {
    int np, nr;
    int *p, *r; /* interned token ids: [np], [nr] */
} token_pair;

static rm_status tokens_of(const char *pred, const char *ref, token_pair *tp) {
    memset(tp, 0, sizeof *tp);
    int np = split_tokens(pred, NULL), nr = split_tokens(ref, NULL), n = np + nr;
    span *sp = rm_malloc((size_t)(n ? n : 1) * sizeof *sp);
    int *ids = rm_malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!sp || !ids) {
        rm_free(sp), rm_free(ids);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory scoring an answer");
    }
    split_tokens(pred, sp);
    split_tokens(ref, sp + np);
    for (int i = 0; i < n; i++) {
        ids[i] = i;
        for (int j = 0; j < i; j++)
            if (sp[j].len == sp[i].len && !memcmp(sp[j].p, sp[i].p, sp[i].len)) {
                ids[i] = ids[j];
                break;
            }
    }
    rm_free(sp);
    *tp = (token_pair){np, nr, ids, ids + np};
    return RAMOLE_OK;
}

/* Occurrences of the n-gram g[0..n) in s[0..len). */
static int count_gram(const int *s, int len, const int *g, int n) {
    int c = 0;
    for (int i = 0; i + n <= len; i++) c += !memcmp(s + i, g, (size_t)n * sizeof *g);
    return c;
}

/* Clipped matches of pred's n-grams in ref: sum over distinct grams of min(count in pred, count in ref). */
static int clipped_matches(const token_pair *t, int n) {
    int m = 0;
    for (int i = 0; i + n <= t->np; i++) {
        if (count_gram(t->p, i + n - 1, t->p + i, n)) continue; /* counted at its first occurrence */
        int cp = count_gram(t->p, t->np, t->p + i, n), cr = count_gram(t->r, t->nr, t->p + i, n);
        m += cp < cr ? cp : cr;
    }
    return m;
}

static double score_f1(const token_pair *t) {
    if (!t->np || !t->nr) return t->np == t->nr;
    int same = clipped_matches(t, 1);
    if (!same) return 0;
    double precision = 1.0 * same / t->np, recall = 1.0 * same / t->nr;
    return (2 * precision * recall) / (precision + recall);
}

/* Neumaier's compensated sum: nltk adds the log-precisions with math.fsum. */
static double sum_compensated(const double *x, int n) {
    double s = 0, c = 0;
    for (int i = 0; i < n; i++) {
        double y = s + x[i];
        c += fabs(s) >= fabs(x[i]) ? (s - y) + x[i] : (x[i] - y) + s;
        s = y;
    }
    return s + c;
}

static double score_bleu(const token_pair *t) {
    double logs[4];
    int first = 0;
    for (int n = 1; n <= 4; n++) {
        int num = clipped_matches(t, n), den = t->np - n + 1 > 1 ? t->np - n + 1 : 1;
        if (n == 1) first = num;
        double p = num ? (double)num / (double)den : (0 + 0.1) / den; /* method1: epsilon 0.1 */
        logs[n - 1] = 0.25 * log(p);
    }
    if (!first) return 0;
    double bp = t->np > t->nr ? 1 : t->np == 0 ? 0 : exp(1 - (double)t->nr / (double)t->np);
    return bp * exp(sum_compensated(logs, 4));
}

/* js-rouge's fMeasure(p, r, beta = 1), operation for operation. */
static double js_rouge_f(double p, double r) {
    if (p == r) return p;
    if (p == 0 || r == 0) return 0;
    if (p > r) {
        double v = r * ((1 + 1.0) / (1 + 1.0 * (r / p)));
        return p < v ? p : v;
    }
    double v = p * ((1 + 1.0) / (1 + 1.0 * (p / r)));
    return r < v ? r : v;
}

static rm_status score_rouge_l(const token_pair *t, double *out) {
    if (!t->np || !t->nr) {
        *out = t->np == t->nr;
        return RAMOLE_OK;
    }
    int *row = rm_calloc((size_t)t->nr + 1, sizeof *row);
    if (!row) return rm_err(RAMOLE_ERR_NOMEM, "out of memory scoring an answer");
    for (int i = 0; i < t->np; i++) { /* one row of the LCS table, updated in place */
        int diag = 0;
        for (int j = 1; j <= t->nr; j++) {
            int up = row[j];
            row[j] = t->p[i] == t->r[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    int m = row[t->nr];
    rm_free(row);
    *out = m ? js_rouge_f((double)m / t->np, (double)m / t->nr) : 0;
    return RAMOLE_OK;
}

rm_status rm_metric_score(rm_metric m, const char *pred, const char *ref, double *out) {
    if ((unsigned)m >= RM_METRIC_COUNT || !pred || !ref || !out)
        return rm_err(RAMOLE_ERR_INVALID, "rm_metric_score: bad metric %d or NULL argument", (int)m);
    if (m == RM_METRIC_EM) {
        span a = trimmed(pred), b = trimmed(ref);
        *out = a.len == b.len && !memcmp(a.p, b.p, a.len);
        return RAMOLE_OK;
    }
    token_pair t;
    RM_TRY(tokens_of(pred, ref, &t));
    rm_status st = RAMOLE_OK;
    if (m == RM_METRIC_F1) *out = score_f1(&t);
    else if (m == RM_METRIC_BLEU) *out = score_bleu(&t);
    else st = score_rouge_l(&t, out);
    rm_free(t.p);
    return st;
}
