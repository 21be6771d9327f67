/*
 * test_response_format.c — generations constrained to a JSON Schema through
 * the engine, with GPT-2's real tokenizer (multi-byte tokens such as "{\""
 * and "\":") on a random model: sampled answers parse with jansson and
 * satisfy the schema (checked here by hand, field by field), finish with
 * STOP as soon as the value is complete, and are the same batched with
 * free-text requests as alone.
 */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "test_util.h"

char *tokt_family_path(const char *family); /* test_tokenizer_golden.c */

static const char *SCHEMA =
    "{\"type\": \"object\", \"properties\": {"
    "\"ok\": {\"type\": \"boolean\"}, \"n\": {\"type\": \"integer\"}, "
    "\"color\": {\"enum\": [\"red\", \"green\", \"blue\"]}, "
    "\"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\", \"maxLength\": 3}, \"maxItems\": 2}}, "
    "\"required\": [\"ok\", \"color\"]}";

typedef struct {
    char text[4096];
    size_t len;
    int n_tokens;
    rm_finish_reason finish;
    char error[256];
} answer;

static void collect(const rm_engine_event *ev, void *user) {
    answer *a = user;
    if (ev->len && a->len + ev->len < sizeof a->text) {
        memcpy(a->text + a->len, ev->text, ev->len);
        a->len += ev->len;
        a->text[a->len] = 0;
    }
    if (ev->token >= 0) a->n_tokens++;
    if (ev->finish) {
        a->finish = ev->finish;
        if (ev->error) snprintf(a->error, sizeof a->error, "%s", ev->error);
    }
}

static bool gpt2(rm_model **m) {
    *m = NULL;
    char *path = tokt_family_path("gpt2");
    CHECK_MSG(path != NULL, "the gpt2 tokenizer of the golden set is missing");
    if (!path) return false;
    *m = rm_test_small_llama(50257, 512);
    CHECK(*m != NULL);
    if (*m) CHECK_OK(rm_model_set_tokenizer(*m, path));
    rm_free(path);
    return *m && (*m)->tokenizer;
}

/* UTF-8 characters of s. */
static int chars(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((uint8_t)*s & 0xC0) != 0x80;
    return n;
}

/* a satisfies SCHEMA: an object of those keys in that order, the required
 * ones present, each of its type. */
static void check_answer(const answer *a, int i) {
    json_error_t je;
    json_t *o = json_loads(a->text, 0, &je);
    CHECK_MSG(o && json_is_object(o), "answer %d is not a JSON object: %s (%s)", i, a->text, je.text);
    if (!o) return;
    static const char *const order[] = {"ok", "n", "color", "tags"};
    int at = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        while (at < 4 && strcmp(order[at], key)) at++;
        CHECK_MSG(at < 4, "answer %d: key \"%s\" unknown or out of order: %s", i, key, a->text);
    }
    CHECK_MSG(json_is_boolean(json_object_get(o, "ok")), "answer %d: ok: %s", i, a->text);
    const char *color = json_string_value(json_object_get(o, "color"));
    CHECK_MSG(color && (!strcmp(color, "red") || !strcmp(color, "green") || !strcmp(color, "blue")),
              "answer %d: color: %s", i, a->text);
    json_t *n = json_object_get(o, "n");
    CHECK_MSG(!n || json_is_integer(n), "answer %d: n: %s", i, a->text);
    json_t *tags = json_object_get(o, "tags");
    if (tags) {
        CHECK_MSG(json_is_array(tags) && json_array_size(tags) <= 2, "answer %d: tags: %s", i, a->text);
        size_t k;
        json_t *t;
        json_array_foreach(tags, k, t)
            CHECK_MSG(json_is_string(t) && chars(json_string_value(t)) <= 3, "answer %d: tag %zu: %s", i, k, a->text);
    }
    json_decref(o);
}

/* Request i: greedy (i == 0) or sampled with seed 100 + i, constrained or
 * free text, its answer into *out. */
static void submit(rm_engine *e, int i, bool constrained, answer *out) {
    rm_engine_request q;
    rm_engine_request_init(&q);
    q.prompt = i % 2 ? "Reply with JSON: " : "The weather today";
    q.max_tokens = 300;
    q.sampling.temperature = i == 0 ? 0.0f : 1.0f;
    q.sampling.top_k = 0;
    q.sampling.top_p = 1.0f;
    q.sampling.min_p = 0;
    q.sampling.seed = 100 + (uint64_t)i;
    q.json_schema = constrained ? SCHEMA : NULL;
    q.on_event = collect;
    q.user = out;
    int64_t id;
    CHECK_OK(rm_engine_submit(e, &q, &id));
}

static void drain(rm_engine *e) {
    for (int n = 1, guard = 0; n && guard < 100000; guard++) CHECK_OK(rm_engine_step(e, &n));
}

TEST(engine_response_format_answers_satisfy_the_schema) {
    rm_model *m;
    if (!gpt2(&m)) {
        rm_model_free(m);
        return;
    }
    enum { N = 8 };
    answer *together = calloc(2 * N, sizeof *together), *alone = calloc(2 * N, sizeof *alone);
    rm_engine_params p = {.n_threads = 2, .max_seqs = 2 * N};
    rm_engine *e;
    CHECK_OK(rm_engine_new(m, &p, &e));
    /* constrained requests (ids 0..N-1) beside free-text ones (N..2N-1) */
    for (int i = 0; i < 2 * N; i++) submit(e, i % N, i < N, &together[i]);
    drain(e);
    int free_chars = 0;
    for (int i = 0; i < N; i++) {
        CHECK_MSG(together[i].finish == RM_FINISH_STOP, "answer %d finished %s (%s): %s", i,
                  rm_finish_reason_name(together[i].finish), together[i].error, together[i].text);
        check_answer(&together[i], i);
        free_chars += (int)together[N + i].len;
    }
    CHECK(free_chars > 0);
    /* each alone: the same answer */
    rm_engine_free(e);
    CHECK_OK(rm_engine_new(m, &p, &e));
    for (int i = 0; i < 2 * N; i++) {
        submit(e, i % N, i < N, &alone[i]);
        drain(e);
        CHECK_MSG(!strcmp(alone[i].text, together[i].text) && alone[i].finish == together[i].finish,
                  "request %d: alone %s, batched %s", i, alone[i].text, together[i].text);
    }
    rm_engine_free(e);
    /* a response format needs a schema the compiler takes: refused at submit */
    CHECK_OK(rm_engine_new(m, &p, &e));
    rm_engine_request q;
    rm_engine_request_init(&q);
    q.prompt = "x";
    q.json_schema = "{\"type\": \"string\", \"pattern\": \"a\"}";
    int64_t id;
    CHECK(rm_engine_submit(e, &q, &id) == RAMOLE_ERR_INVALID);
    CHECK(strstr(ramole_last_error(), "\"pattern\"") != NULL);
    rm_engine_free(e);
    free(together);
    free(alone);
    rm_model_free(m);
}

/*
 * A format that waits for its trigger (rm_engine_request.format_trigger, as
 * tool calls under "auto"): GPT-2's single-character tokens "<", "x" and
 * ">" pushed by logit_bias write free text of those characters until
 * "<x>" appears across three tokens; from there the grammar rules, so the
 * answer ends "<x>ddd</x>" and finishes with STOP.
 */
TEST(engine_format_trigger_applies_from_the_trigger) {
    rm_model *m;
    if (!gpt2(&m)) {
        rm_model_free(m);
        return;
    }
    rm_engine_params p = {.n_threads = 2, .max_seqs = 4};
    rm_engine *e;
    CHECK_OK(rm_engine_new(m, &p, &e));
    static const rm_logit_bias bias[] = {{27, 30.0f}, {87, 30.0f}, {29, 30.0f}}; /* "<", "x", ">" */
    answer a[4];
    memset(a, 0, sizeof a);
    for (int i = 0; i < 4; i++) {
        rm_engine_request q;
        rm_engine_request_init(&q);
        q.prompt = "Tag:";
        q.max_tokens = 200;
        q.sampling.temperature = 1.0f;
        q.sampling.top_k = 0;
        q.sampling.top_p = 1.0f;
        q.sampling.min_p = 0;
        q.sampling.seed = 7 + (uint64_t)i;
        q.sampling.logit_bias = bias;
        q.sampling.n_logit_bias = 3;
        q.grammar = "root ::= \"<x>\" [0-9] [0-9] [0-9] \"</x>\"";
        q.format_trigger = "<x>";
        q.on_event = collect;
        q.user = &a[i];
        int64_t id;
        CHECK_OK(rm_engine_submit(e, &q, &id));
    }
    drain(e);
    for (int i = 0; i < 4; i++) {
        const char *t = a[i].text, *hit = strstr(t, "<x>");
        size_t n = strlen(t);
        bool tail_ok = hit && n == (size_t)(hit - t) + 10 && !strcmp(hit + 6, "</x>");
        for (int d = 3; tail_ok && d < 6; d++) tail_ok = hit[d] >= '0' && hit[d] <= '9';
        bool free_ok = hit && strspn(t, "<x>") >= (size_t)(hit - t); /* the free part: the biased characters */
        CHECK_MSG(a[i].finish == RM_FINISH_STOP && tail_ok && free_ok, "answer %d (%s): %s", i,
                  rm_finish_reason_name(a[i].finish), t);
    }
    rm_engine_free(e);
    rm_model_free(m);
}
