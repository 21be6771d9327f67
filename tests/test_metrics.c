/*
 * test_metrics.c — the evaluation's metrics (src/eval/metrics.h) against
 * their references on the committed golden pairs (tests/golden/metrics/,
 * made by tests/reference/make_metrics_golden.sh with nltk 3.8 and
 * js-rouge): 400 pairs with empty, one-word, repeated-word, unicode,
 * identical and disjoint answers, each score to 1e-9; hand-worked values
 * that pin each formula; names; and allocation failure at every point.
 */
#include "test.h"

#include <jansson.h>
#include <string.h>

#include "core/core.h"
#include "eval/metrics.h"

static const char *const golden_keys[RM_METRIC_COUNT] = {"em", "f1", "bleu", "rougeL"};

TEST(metrics_golden_pairs_match_references) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/metrics/pairs.jsonl", rm_test_data_dir());
    FILE *f = fopen(path, "r");
    CHECK_MSG(f, "cannot open %s", path);
    if (!f) return;
    char line[8192];
    int n = 0, bad = 0, kinds[4] = {0}; /* empty side, identical, disjoint, partial */
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        CHECK_MSG(o, "%s:%d: %s", path, n + 1, e.text);
        if (!o) break;
        const char *pred = json_string_value(json_object_get(o, "pred"));
        const char *ref = json_string_value(json_object_get(o, "ref"));
        CHECK(pred && ref);
        for (int m = 0; pred && ref && m < RM_METRIC_COUNT; m++) {
            json_t *want = json_object_get(o, golden_keys[m]);
            double got = -1;
            CHECK_OK(rm_metric_score((rm_metric)m, pred, ref, &got));
            if (!(json_is_number(want) && fabs(got - json_number_value(want)) <= 1e-9) && bad++ < 10)
                rm_test_fail(__FILE__, __LINE__, "line %d %s(\"%s\", \"%s\") = %.17g, reference %.17g", n + 1,
                             golden_keys[m], pred, ref, got, json_number_value(want));
        }
        double f1 = json_number_value(json_object_get(o, "f1")), em = json_number_value(json_object_get(o, "em"));
        kinds[!*pred || !*ref ? 0 : em == 1 ? 1 : f1 == 0 ? 2 : 3]++;
        json_decref(o);
        n++;
    }
    fclose(f);
    CHECK_MSG(n >= 200, "%d golden pairs", n);
    CHECK_MSG(kinds[0] >= 5 && kinds[1] >= 20 && kinds[2] >= 20 && kinds[3] >= 50,
              "pair kinds: %d empty, %d identical, %d disjoint, %d partial", kinds[0], kinds[1], kinds[2], kinds[3]);
}

static double score(rm_metric m, const char *p, const char *r) {
    double v = -1;
    CHECK_OK(rm_metric_score(m, p, r, &v));
    return v;
}

TEST(metrics_hand_worked_values) {
    /* F1: 2 of 3 predicted tokens, 2 of 4 reference tokens: P 2/3, R 1/2 -> 4/7 */
    CHECK_NEAR(score(RM_METRIC_F1, "a b x", "a b c d"), 4.0 / 7.0, 1e-15);
    /* clipping: "the" three times against once */
    CHECK_NEAR(score(RM_METRIC_F1, "the the the", "the cat"), 2 * (1.0 / 3) * 0.5 / (1.0 / 3 + 0.5), 1e-15);
    /* case counts */
    CHECK(score(RM_METRIC_EM, "Paris", "paris") == 0);
    CHECK(score(RM_METRIC_EM, " Paris\n", "Paris") == 1);
    /* BLEU of one matching word: p1 = 1, p2..p4 = 0.1 (smoothed), BP 1 -> 0.1^(3/4) */
    CHECK_NEAR(score(RM_METRIC_BLEU, "cat", "cat"), pow(0.1, 0.75), 1e-12);
    /* BLEU brevity: 2 of 4 words, bigram matches: p = 1, 1, 0.1, 0.1; BP exp(1 - 4/2) */
    CHECK_NEAR(score(RM_METRIC_BLEU, "a b", "a b c d"), exp(-1.0) * pow(0.1, 0.5), 1e-12);
    CHECK(score(RM_METRIC_BLEU, "x", "y") == 0);
    /* ROUGE-L: LCS of "a c b" and "a b c d" is 2: P 2/3, R 1/2 */
    CHECK_NEAR(score(RM_METRIC_ROUGE_L, "a c b", "a b c d"), 4.0 / 7.0, 1e-12);
    CHECK(score(RM_METRIC_ROUGE_L, "d c b a", "a b c d") == 0.25);
    /* unicode whitespace splits, other unicode is token bytes */
    CHECK(score(RM_METRIC_F1, "a\xe3\x80\x80" "b", "a b") == 1);
    CHECK(score(RM_METRIC_F1, "a\xe2\x80\x8b" "b", "a b") == 0); /* U+200B is not whitespace */
    /* empty sides */
    CHECK(score(RM_METRIC_F1, "", " ") == 1 && score(RM_METRIC_ROUGE_L, "", "") == 1);
    CHECK(score(RM_METRIC_F1, "", "a") == 0 && score(RM_METRIC_ROUGE_L, "a", "") == 0);
    CHECK(score(RM_METRIC_BLEU, "", "") == 0);
}

TEST(metrics_names_and_bad_arguments) {
    for (int m = 0; m < RM_METRIC_COUNT; m++) {
        rm_metric back;
        CHECK(rm_metric_from_name(rm_metric_name((rm_metric)m), &back) && back == (rm_metric)m);
    }
    rm_metric x;
    CHECK(!rm_metric_from_name("rouge", &x) && !rm_metric_from_name(NULL, &x));
    double v;
    CHECK_ERR(rm_metric_score(RM_METRIC_COUNT, "a", "a", &v), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_metric_score(RM_METRIC_F1, NULL, "a", &v), RAMOLE_ERR_INVALID);
}

TEST(metrics_allocation_failure) {
    for (int m = RM_METRIC_F1; m < RM_METRIC_COUNT; m++) {
        double want = score((rm_metric)m, "a b c a", "c a b"), got = -1;
        for (int k = 1;; k++) {
            rm_alloc_fail_after(k);
            rm_status st = rm_metric_score((rm_metric)m, "a b c a", "c a b", &got);
            rm_alloc_fail_after(0);
            if (st == RAMOLE_OK) {
                CHECK(got == want);
                break;
            }
            CHECK_ERR(st, RAMOLE_ERR_NOMEM);
            if (k > 10) break;
        }
    }
}
