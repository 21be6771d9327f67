/*
 * test_serve_keep.c — how the server keeps an answer from the engine's
 * events (srv_req_keep, src/serve/sched.c): text, log-probabilities and
 * the finish as they came, and, when memory fails part way, an error in
 * place of an answer cut short.
 */
#include "test.h"
#include "serve/serve_internal.h"

#include <string.h>

/* Feed r the events of "hello world" in two pieces with log-probabilities,
 * then a finish; the allocation `fail` (0: none) of the feeding fails.
 * Returns how many times keep asked for a cancel. */
static int feed(srv_req *r, size_t fail) {
    rm_token_logprob top[2] = {{5, -0.1f}, {6, -2.0f}};
    rm_engine_event ev[3] = {
        {.id = 1, .token = 5, .text = "hello", .len = 5, .n_prompt = 3, .n_generated = 1, .logprob = -0.1f,
         .top = top, .n_top = 2},
        {.id = 1, .token = 6, .text = " world", .len = 6, .n_prompt = 3, .n_generated = 2, .logprob = -0.3f,
         .top = top, .n_top = 2},
        {.id = 1, .finish = RM_FINISH_LENGTH, .token = -1, .text = "", .n_prompt = 3, .n_generated = 2},
    };
    int cancels = 0;
    pthread_mutex_lock(&r->mu);
    rm_alloc_fail_after(fail);
    for (int i = 0; i < 3; i++) cancels += srv_req_keep(r, &ev[i]);
    rm_alloc_fail_after(0);
    pthread_mutex_unlock(&r->mu);
    return cancels;
}

TEST(serve_keep_answer_whole_or_an_error) {
    srv_req *r = srv_req_new();
    if (!r) return;
    CHECK(feed(r, 0) == 0);
    CHECK(r->state == SRV_DONE && r->finish == RM_FINISH_LENGTH && !r->lost && !r->error);
    CHECK(r->len == 11 && !strcmp(r->text, "hello world") && r->lps.n == 2 && r->n_generated == 2);
    srv_req_release(r);
    /* each allocation the keeping makes, failing in turn: the text's, then
     * the list's arrays (ids, values, alternatives) */
    int failures = 0;
    for (size_t fail = 1; fail <= 8; fail++) {
        r = srv_req_new();
        if (!r) return;
        int cancels = feed(r, fail);
        if (!r->lost) { /* past the last allocation: kept whole */
            CHECK(r->finish == RM_FINISH_LENGTH && r->text && !strcmp(r->text, "hello world") && r->lps.n == 2);
            srv_req_release(r);
            break;
        }
        failures++;
        CHECK_MSG(cancels == 1, "allocation %zu: %d cancels asked for (want 1)", fail, cancels);
        CHECK_MSG(r->state == SRV_DONE && r->finish == RM_FINISH_ERROR && srv_req_error(r) &&
                      !strcmp(srv_req_error(r), SRV_LOST_MESSAGE),
                  "allocation %zu failed: finish %s, error %s", fail, rm_finish_reason_name(r->finish),
                  srv_req_error(r) ? srv_req_error(r) : "(none)");
        srv_req_release(r);
    }
    printf("  %d allocations of the keeping failed in turn, each an error\n", failures);
    CHECK_MSG(failures >= 4, "%d allocations of the keeping failed in turn (want the text's and the list's)", failures);
}
