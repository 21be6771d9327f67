/*
 * metrics.h — the scores of the evaluation: one prediction against one
 * reference answer, each a number in [0, 1].
 *
 * Both strings are trimmed of surrounding whitespace and split on runs of
 * whitespace into tokens, exactly as Python's str.strip() and str.split()
 * do (ASCII \t \n \v \f \r and space, U+001C..U+001F, U+0085, U+00A0,
 * U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000; other
 * bytes, including invalid UTF-8, are token bytes). Tokens compare as byte
 * strings: case-sensitive, no normalisation, no article stripping.
 *
 *   EM       1 when the trimmed strings are equal, else 0.
 *   F1       SQuAD's bag-of-tokens F1: the clipped token overlap c,
 *            P = c / |pred|, R = c / |ref|, 2PR / (P + R); with an empty
 *            side, 1 if both are empty, else 0.
 *   BLEU     nltk 3.8's sentence_bleu([ref.split()], pred.split(),
 *            smoothing_function=SmoothingFunction().method1): BLEU-4 with
 *            uniform weights, clipped n-gram precisions num_n / max(1,
 *            |pred| - n + 1), a zero numerator smoothed to 0.1 / den, brevity
 *            penalty exp(1 - |ref| / |pred|) when |pred| <= |ref|; 0 when no
 *            unigram matches (so also for an empty side).
 *   ROUGE-L  npm js-rouge 3.2's l(pred, ref) F-measure (beta 1) with these
 *            whitespace tokens and the whole answer as one sentence: LCS
 *            length m, P = m / |pred|, R = m / |ref|, combined by js-rouge's
 *            own fMeasure arithmetic. js-rouge refuses an empty side; here
 *            that is 1 if both are empty, else 0 (as F1).
 * tests/reference/make_metrics_golden.sh checks these against nltk and
 * js-rouge themselves on committed pairs (to 1e-9).
 */
#ifndef RM_EVAL_METRICS_H
#define RM_EVAL_METRICS_H

#include "core/core.h"

typedef enum {
    RM_METRIC_EM = 0,
    RM_METRIC_F1,
    RM_METRIC_BLEU,
    RM_METRIC_ROUGE_L,
    RM_METRIC_COUNT
} rm_metric;

/* "em", "f1", "bleu", "rougeL" (the names of tasks.json). */
const char *rm_metric_name(rm_metric m);
bool        rm_metric_from_name(const char *s, rm_metric *out);

/*
 * *out = metric m of pred against ref (NUL-terminated, any bytes).
 * Errors: ERR_INVALID (m out of range), ERR_NOMEM. Cost: O(|pred| |ref|)
 * token comparisons, which answers of tens of tokens make negligible.
 */
rm_status rm_metric_score(rm_metric m, const char *pred, const char *ref, double *out);

#endif /* RM_EVAL_METRICS_H */
