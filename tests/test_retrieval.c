/*
 * test_retrieval.c — the retrieval module: the InfoNCE gradient against
 * central finite differences in double, the flat index against brute force
 * (ties by id, removes), the embedder (a text alone equals the text in a
 * batch; the kept hidden states leave logits unchanged and the final ones
 * are what the output head reads), projection files (round trip; another
 * base, wrong shape, NaN, all zeros, missing metadata, every truncation:
 * clear errors), task data errors with line numbers, the trainer
 * (deterministic for a seed, and it separates noisy synthetic tasks),
 * retrieve's index and scores against the first-samples rule computed text
 * by text, and allocation failure walked at every point without leaks.
 */
#include "test.h"
#include "test_util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "lora/adapter.h"
#include "model/model.h"
#include "model/kv_cache.h"
#include "retrieval/embed.h"
#include "retrieval/index.h"
#include "retrieval/infonce.h"
#include "retrieval/retrieve.h"
#include "retrieval/tasks.h"
#include "tokenizer/tokenizer.h"

static rm_model_config small_config(int vocab, int hidden) {
    rm_model_config c;
    rm_model_config_defaults(&c, RM_ARCH_LLAMA);
    c.vocab_size = vocab;
    c.hidden = hidden;
    c.ffn = 2 * hidden;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = hidden / 4;
    c.rope.n_rot = c.head_dim;
    c.max_pos = 128;
    return c;
}

/* A byte-level tokenizer: ids 0..255 are the bytes, no merges. */
static rm_tok *byte_tokenizer(void) {
    char *js = rm_test_byte_tokenizer_json();
    rm_tok *t = NULL;
    CHECK(js != NULL);
    if (js) CHECK_OK(rm_tok_load_json(js, strlen(js), NULL, 0, "bytes.json", &t));
    free(js);
    return t;
}

static double urand(uint64_t *r) { return 2.0 * rm_rng_uniform(r) - 1.0; }

/* ---- InfoNCE gradient ----------------------------------------------------------------- */

TEST(retrieval_infonce_gradient_matches_finite_differences) {
    enum { D = 5, H = 7, B = 6 };
    const int32_t label[B] = {0, 1, 2, 0, 3, 1}; /* pairs 0/3 and 1/5 share a task: not negatives */
    uint64_t r = 42;
    double P[D * H], A[B * H], Pos[B * H], dP[D * H];
    for (int i = 0; i < D * H; i++) P[i] = urand(&r);
    for (int i = 0; i < B * H; i++) A[i] = urand(&r), Pos[i] = urand(&r);
    for (int sym = 0; sym < 2; sym++) {
        double loss;
        CHECK_OK(rm_infonce_loss(P, D, H, A, Pos, label, B, 0.3, sym, &loss, dP));
        CHECK(loss > 0 && isfinite(loss));
        double worst = 0;
        for (int i = 0; i < D * H; i++) {
            const double h = 1e-6, keep = P[i];
            double lp, lm;
            P[i] = keep + h;
            CHECK_OK(rm_infonce_loss(P, D, H, A, Pos, label, B, 0.3, sym, &lp, NULL));
            P[i] = keep - h;
            CHECK_OK(rm_infonce_loss(P, D, H, A, Pos, label, B, 0.3, sym, &lm, NULL));
            P[i] = keep;
            double fd = (lp - lm) / (2 * h), err = fabs(fd - dP[i]) / fmax(1e-3, fabs(fd) + fabs(dP[i]));
            if (err > worst) worst = err;
        }
        CHECK_MSG(worst < 1e-6, "%s: worst relative error %g", sym ? "symmetric" : "one-sided", worst);
    }
    /* a batch where every other pair is of the same task has no negatives: loss 0, gradient 0 */
    const int32_t same[B] = {0, 0, 0, 0, 0, 0};
    double loss;
    CHECK_OK(rm_infonce_loss(P, D, H, A, Pos, same, B, 0.3, true, &loss, dP));
    CHECK_NEAR(loss, 0, 1e-12);
    double gmax = 0;
    for (int i = 0; i < D * H; i++) gmax = fmax(gmax, fabs(dP[i]));
    CHECK_NEAR(gmax, 0, 1e-12);
    CHECK_ERR(rm_infonce_loss(P, D, H, A, Pos, label, B, 0.0, true, &loss, NULL), RAMOLE_ERR_INVALID);
}

/* ---- index ------------------------------------------------------------------------------ */

typedef struct {
    int64_t id;
    double s;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

TEST(retrieval_index_topk_matches_brute_force) {
    enum { DIM = 12, N = 300 };
    static float vecs[N][DIM];
    static bool alive[N];
    uint64_t r = 7;
    rm_index *ix = NULL;
    CHECK_OK(rm_index_new(DIM, &ix));
    if (!ix) return;
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < DIM; k++) vecs[i][k] = (float)urand(&r);
        if (i % 50 == 49) memcpy(vecs[i], vecs[i - 1], sizeof vecs[i]); /* exact ties */
        CHECK_OK(rm_index_add(ix, 1000 - 3 * i, vecs[i])); /* ids descending: ties must still go by id */
        alive[i] = true;
    }
    for (int i = 0; i < N; i += 7) { /* remove some */
        CHECK_OK(rm_index_remove(ix, 1000 - 3 * i));
        alive[i] = false;
    }
    CHECK(rm_index_size(ix) == N - (N + 6) / 7);
    rm_hit hits[40];
    static scored all[N];
    for (int q = 0; q < 20; q++) {
        float qv[DIM];
        int src = 3 * q + 1;
        while (!alive[src]) src++;
        for (int k = 0; k < DIM; k++) qv[k] = q % 4 == 0 ? 2.5f * vecs[src][k] : (float)urand(&r);
        int n = 0;
        for (int i = 0; i < N; i++) {
            if (!alive[i]) continue;
            double s = 0, a = 0, b = 0;
            for (int k = 0; k < DIM; k++) s += (double)vecs[i][k] * qv[k], a += (double)vecs[i][k] * vecs[i][k], b += (double)qv[k] * qv[k];
            all[n++] = (scored){1000 - 3 * i, s / sqrt(a * b)};
        }
        qsort(all, (size_t)n, sizeof all[0], cmp_scored);
        int k = 1 + q * 2;
        int got = rm_index_query(ix, qv, k, hits);
        CHECK(got == k);
        for (int j = 0; j < got; j++) {
            CHECK_NEAR(hits[j].score, all[j].s, 1e-5);
            bool near_tie = (j > 0 && fabs(all[j].s - all[j - 1].s) < 1e-6) ||
                            (j + 1 < n && fabs(all[j].s - all[j + 1].s) < 1e-6);
            CHECK_MSG(hits[j].id == all[j].id || near_tie, "query %d rank %d: id %lld, brute force %lld", q, j,
                      (long long)hits[j].id, (long long)all[j].id);
            if (j) CHECK(hits[j - 1].score > hits[j].score || (hits[j - 1].score == hits[j].score && hits[j - 1].id < hits[j].id));
        }
        if (q % 4 == 0)
            CHECK_MSG(hits[0].id == 1000 - 3 * src && hits[0].score > 0.99999f, "query %d: best %lld (%g), want %d",
                      q, (long long)hits[0].id, hits[0].score, 1000 - 3 * src);
    }
    /* exact ties come out by id ascending, whatever the order of adds */
    rm_index *t = NULL;
    CHECK_OK(rm_index_new(3, &t));
    float v[3] = {1, 2, 3}, w[3] = {-1, 0, 0};
    CHECK_OK(rm_index_add(t, 30, v));
    CHECK_OK(rm_index_add(t, 5, w));
    CHECK_OK(rm_index_add(t, 10, v));
    CHECK_OK(rm_index_add(t, 20, v));
    CHECK(rm_index_query(t, v, 10, hits) == 4);
    CHECK(hits[0].id == 10 && hits[1].id == 20 && hits[2].id == 30 && hits[3].id == 5);
    CHECK_ERR(rm_index_add(t, 10, v), RAMOLE_ERR_INVALID);
    float zero[3] = {0, 0, 0}, nan3[3] = {1, NAN, 0};
    CHECK_ERR(rm_index_add(t, 99, zero), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_index_add(t, 99, nan3), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_index_remove(t, 99), RAMOLE_ERR_NOT_FOUND);
    CHECK(rm_index_query(t, zero, 3, hits) == 0);
    CHECK_OK(rm_index_remove(t, 10));
    CHECK(!rm_index_contains(t, 10) && rm_index_contains(t, 20));
    CHECK(rm_index_query(t, v, 1, hits) == 1 && hits[0].id == 20);
    rm_index_free(t);
    rm_index_free(ix);
}

/* ---- embedder ----------------------------------------------------------------------------- */

TEST(retrieval_embedding_alone_equals_embedding_in_a_batch) {
    rm_tok *tok = byte_tokenizer();
    rm_model_config c = small_config(300, 64);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 5, 0.1f, &m));
    if (!tok || !m) goto done;
    const char *texts[] = {"a short one", "Translate to German: the old bridge", "x",
                           "What is 12 plus 30? please answer quickly", "sort 3 1 2", "hello world, hello world, hello"};
    enum { N = 6 };
    for (int variant = 0; variant < 3; variant++) {
        rm_embed_opts o;
        rm_embed_opts_default(&o);
        o.n_threads = 2;
        if (variant == 1) o.layer = 1, o.pooling = RM_POOL_MEAN_ALL, o.n_seq = 2; /* several decodes */
        if (variant == 2) o.layer = 0, o.pooling = RM_POOL_LAST, o.n_batch = 90, o.max_tokens = 80;
        rm_embedder *e = NULL;
        CHECK_OK(rm_embedder_new(m, tok, &o, NULL, &e));
        if (!e) continue;
        int d = rm_embedder_dim(e);
        CHECK(d == 64);
        float batch[N][64], alone[64];
        CHECK_OK(rm_embedder_embed(e, texts, N, &batch[0][0]));
        double worst = 0;
        for (int i = 0; i < N; i++) {
            CHECK_OK(rm_embedder_embed(e, &texts[i], 1, alone));
            double nrm = 0;
            for (int k = 0; k < d; k++) worst = fmax(worst, fabs(alone[k] - batch[i][k])), nrm += (double)alone[k] * alone[k];
            CHECK_NEAR(nrm, 1.0, 1e-5);
        }
        CHECK_MSG(worst < 1e-5, "variant %d: alone vs batch differ by %g", variant, worst);
        /* different texts, different vectors */
        double dot = 0;
        for (int k = 0; k < d; k++) dot += (double)batch[0][k] * batch[1][k];
        CHECK(dot < 0.9999);
        rm_embedder_free(e);
    }
    /* the instruction prefix must leave room for the text */
    rm_embed_opts o;
    rm_embed_opts_default(&o);
    o.max_tokens = 20;
    rm_embedder *e = NULL;
    CHECK_ERR(rm_embedder_new(m, tok, &o, NULL, &e), RAMOLE_ERR_RANGE);
    CHECK(strstr(ramole_last_error(), "prefix") != NULL);
    o.max_tokens = 0, o.layer = 3;
    CHECK_ERR(rm_embedder_new(m, tok, &o, NULL, &e), RAMOLE_ERR_RANGE);
    CHECK(e == NULL);
done:
    rm_model_free(m);
    rm_tok_free(tok);
}

TEST(retrieval_kept_hidden_states_leave_logits_unchanged) {
    rm_model_config c = small_config(300, 64);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 9, 0.1f, &m));
    if (!m) return;
    rm_ctx_params p = {.n_ctx = 16, .n_seq = 2, .n_batch = 16, .n_threads = 2};
    rm_ctx *a = NULL, *b = NULL;
    CHECK_OK(rm_ctx_new(m, &p, &a));
    CHECK_OK(rm_ctx_new(m, &p, &b));
    if (!a || !b) goto done;
    CHECK(rm_ctx_hidden(a, 0) == NULL);
    CHECK_OK(rm_ctx_keep_hidden(b, RM_HIDDEN_FINAL));
    CHECK_ERR(rm_ctx_keep_hidden(b, 3), RAMOLE_ERR_RANGE);
    int32_t tok[7] = {5, 17, 200, 3, 99, 4, 250}, pos[7] = {0, 1, 2, 3, 0, 1, 2}, seq[7] = {0, 0, 0, 0, 1, 1, 1};
    uint8_t want[7] = {0, 0, 0, 1, 0, 0, 1};
    rm_batch bt = {7, tok, pos, seq, want};
    CHECK_OK(rm_ctx_decode(a, &bt));
    CHECK_OK(rm_ctx_decode(b, &bt));
    for (int i = 0; i < 2; i++) {
        const float *la = rm_ctx_logits(a, i), *lb = rm_ctx_logits(b, i);
        CHECK(la && lb && !memcmp(la, lb, (size_t)c.vocab_size * sizeof(float)));
    }
    /* the final hidden row is what the head reads: logits = h W_out^T */
    float ref[300];
    rm_matmul_ref(ref, rm_ctx_hidden(b, 6), 1, m->output.data, m->output.type, m->output.rows, m->output.cols);
    double worst = 0;
    for (int v = 0; v < c.vocab_size; v++) worst = fmax(worst, fabs(ref[v] - rm_ctx_logits(b, 1)[v]));
    CHECK_MSG(worst < 1e-4, "final hidden state vs logits: %g", worst);
    CHECK(rm_ctx_hidden(b, 7) == NULL && rm_ctx_hidden(b, -1) == NULL);
    /* layer 0 is the token embedding */
    CHECK_OK(rm_ctx_keep_hidden(b, 0));
    rm_ctx_seq_clear(b, 0), rm_ctx_seq_clear(b, 1);
    CHECK_OK(rm_ctx_decode(b, &bt));
    float row[64];
    rm_convert(RM_TYPE_F32, row, m->tok_embd.type,
               (const uint8_t *)m->tok_embd.data + 200 * rm_type_row_bytes(m->tok_embd.type, 64), 64);
    CHECK(!memcmp(row, rm_ctx_hidden(b, 2), sizeof row));
    /* an inner layer with no logits wanted stops there: the same rows */
    CHECK_OK(rm_ctx_keep_hidden(b, 1));
    rm_ctx_seq_clear(b, 0), rm_ctx_seq_clear(b, 1);
    CHECK_OK(rm_ctx_decode(b, &bt));
    static float full[7][64];
    for (int i = 0; i < 7; i++) memcpy(full[i], rm_ctx_hidden(b, i), sizeof full[i]);
    uint8_t none[7] = {0};
    rm_batch bn = {7, tok, pos, seq, none};
    rm_ctx_seq_clear(b, 0), rm_ctx_seq_clear(b, 1);
    CHECK_OK(rm_ctx_decode(b, &bn));
    int same = 1;
    for (int i = 0; i < 7; i++) same &= !memcmp(full[i], rm_ctx_hidden(b, i), sizeof full[i]);
    CHECK_MSG(same, "layer-1 rows differ when the batch stops early");
    /* b is not hidden_only (an engine's context: prompt chunks want no
     * logits either), so that batch ran every layer and the next token
     * sees the whole prompt's KV, as a's does */
    int32_t t1 = 7, p1 = 4, s1 = 0;
    uint8_t w1 = 1;
    rm_batch b1 = {1, &t1, &p1, &s1, &w1};
    CHECK_OK(rm_ctx_decode(a, &b1));
    CHECK_OK(rm_ctx_decode(b, &b1));
    CHECK_MSG(!memcmp(rm_ctx_logits(a, 0), rm_ctx_logits(b, 0), (size_t)c.vocab_size * sizeof(float)),
              "a batch without logits left KV unwritten in a context that is not hidden_only");
    CHECK_OK(rm_ctx_keep_hidden(b, RM_HIDDEN_OFF));
    CHECK(rm_ctx_hidden(b, 0) == NULL);
done:
    rm_ctx_free(a);
    rm_ctx_free(b);
    rm_model_free(m);
}

/* A batch's last n_stop rows stop at the kept inner layer: their hidden
 * rows are those of a full run, the other rows' logits do not change, and
 * a batch that asks it wrongly is refused. */
TEST(retrieval_batch_tail_stops_at_kept_layer) {
    rm_model_config c = small_config(300, 64);
    c.n_layers = 3;
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 12, 0.1f, &m));
    if (!m) return;
    rm_ctx_params p = {.n_ctx = 16, .n_seq = 3, .n_batch = 16, .n_threads = 2};
    rm_ctx *a = NULL, *b = NULL;
    CHECK_OK(rm_ctx_new(m, &p, &a));
    CHECK_OK(rm_ctx_new(m, &p, &b));
    if (!a || !b) goto done;
    /* sequence 0 generates (rows 0-3, logits at 3); sequences 1 and 2 are embeddings (rows 4-8) */
    int32_t tok[9] = {5, 17, 200, 3, 99, 4, 250, 8, 61}, pos[9] = {0, 1, 2, 3, 0, 1, 2, 0, 1},
            seq[9] = {0, 0, 0, 0, 1, 1, 1, 2, 2};
    uint8_t want[9] = {0, 0, 0, 1, 0, 0, 0, 0, 0};
    for (int layer = 0; layer <= 2; layer++) {
        CHECK_OK(rm_ctx_keep_hidden(a, layer));
        CHECK_OK(rm_ctx_keep_hidden(b, layer));
        for (int s = 0; s < 3; s++) rm_ctx_seq_clear(a, s), rm_ctx_seq_clear(b, s);
        rm_batch full = {9, tok, pos, seq, want}, tail = {9, tok, pos, seq, want, 5};
        CHECK_OK(rm_ctx_decode(a, &full));
        CHECK_OK(rm_ctx_decode(b, &tail));
        CHECK_MSG(!memcmp(rm_ctx_logits(a, 0), rm_ctx_logits(b, 0), 300 * sizeof(float)),
                  "layer %d: the full rows' logits changed when the tail stopped", layer);
        bool same = true;
        for (int i = 0; i < 9; i++) same &= !memcmp(rm_ctx_hidden(a, i), rm_ctx_hidden(b, i), 64 * sizeof(float));
        CHECK_MSG(same, "layer %d: hidden rows differ when the tail stops there", layer);
        /* the next chunk of an embedding stops there too and sees its own earlier rows */
        int32_t t2[2] = {7, 9}, p2[2] = {4, 3}, s2[2] = {0, 1};
        uint8_t w2[2] = {1, 0};
        rm_batch fa = {2, t2, p2, s2, w2}, fb = {2, t2, p2, s2, w2, 1};
        CHECK_OK(rm_ctx_decode(a, &fa));
        CHECK_OK(rm_ctx_decode(b, &fb));
        CHECK_MSG(!memcmp(rm_ctx_hidden(a, 1), rm_ctx_hidden(b, 1), 64 * sizeof(float)),
                  "layer %d: a later chunk's hidden row differs", layer);
        double worst = 0;
        for (int v = 0; v < 300; v++) worst = fmax(worst, fabs(rm_ctx_logits(a, 0)[v] - rm_ctx_logits(b, 0)[v]));
        CHECK_MSG(worst < 1e-5, "layer %d: a later chunk's logits differ by %g", layer, worst);
    }
    /* and they do stop: in a fresh context (zeroed KV), kept layer 1 (the
     * output of block 0), the embeddings' keys are written in block 0 and
     * not in block 1, the generation's in every block */
    rm_ctx *f = NULL;
    CHECK_OK(rm_ctx_new(m, &p, &f));
    if (f) {
        CHECK_OK(rm_ctx_keep_hidden(f, 1));
        rm_batch tail = {9, tok, pos, seq, want, 5};
        CHECK_OK(rm_ctx_decode(f, &tail));
        const float *k1 = rm_kv_block_rows(rm_ctx_kv(f), false, 0, 1, 0),
                    *k2 = rm_kv_block_rows(rm_ctx_kv(f), false, 1, 1, 0),
                    *g2 = rm_kv_block_rows(rm_ctx_kv(f), false, 2, 0, 0);
        CHECK_MSG(k1 && k2 && g2 && k1[0] != 0.0f && g2[0] != 0.0f, "k1 %g g2 %g", k1 ? k1[0] : -1.0, g2 ? g2[0] : -1.0);
        CHECK_MSG(k2 && k2[0] == 0.0f && k2[1] == 0.0f, "the stopped rows ran block 1");
        rm_ctx_free(f);
    }
    rm_batch bad = {9, tok, pos, seq, want, 6}; /* row 3 wants logits */
    for (int s = 0; s < 3; s++) rm_ctx_seq_clear(b, s);
    CHECK_ERR(rm_ctx_decode(b, &bad), RAMOLE_ERR_INVALID);
    CHECK(strstr(ramole_last_error(), "wants logits") != NULL);
    CHECK_OK(rm_ctx_keep_hidden(b, RM_HIDDEN_FINAL));
    bad.n_stop = 5;
    CHECK_ERR(rm_ctx_decode(b, &bad), RAMOLE_ERR_INVALID);
    CHECK(strstr(ramole_last_error(), "final") != NULL);
done:
    rm_ctx_free(a);
    rm_ctx_free(b);
    rm_model_free(m);
}

/* ---- projection files ---------------------------------------------------------------------- */

static char *tmp_path(const char *name) { return rm_path_join(rm_test_tmp_dir(), name); }

static bool write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

TEST(retrieval_projection_file_round_trip_and_bad_input) {
    rm_model_config c = small_config(96, 32), c2 = small_config(96, 48);
    rm_model *m = NULL, *other = NULL;
    CHECK_OK(rm_model_random(&c, 1, 0.1f, &m));
    CHECK_OK(rm_model_random(&c2, 1, 0.1f, &other));
    char *path = tmp_path("retrieval_proj.safetensors"), *bad = tmp_path("retrieval_bad.safetensors");
    rm_projection *p = NULL, *q = NULL;
    char *bytes = NULL;
    if (!m || !other) goto done;
    CHECK_OK(rm_projection_new(m, 3, 1, "Find the task: \"quoted\" ", RM_POOL_LAST, 0.07f, &p));
    if (!p) goto done;
    uint64_t r = 3;
    for (int i = 0; i < 3 * 32; i++) p->w[i] = (float)urand(&r);
    CHECK_OK(rm_projection_save(p, path));
    CHECK_OK(rm_projection_load(path, m, &q));
    if (q) {
        CHECK(q->dim == 3 && q->hidden == 32 && q->layer == 1 && q->pooling == RM_POOL_LAST);
        CHECK(!strcmp(q->prefix, "Find the task: \"quoted\" ") && q->temperature == 0.07f);
        CHECK(!memcmp(q->w, p->w, 3 * 32 * sizeof(float)));
        rm_projection_free(q), q = NULL;
    }
    /* the embedder takes the projection's layer, prefix and pooling */
    {
        rm_tok *tok = byte_tokenizer();
        rm_embedder *e = NULL;
        rm_model *big = NULL;
        rm_model_config cb = small_config(300, 32);
        CHECK_OK(rm_model_random(&cb, 2, 0.1f, &big));
        if (tok && big) {
            rm_projection *pb = NULL;
            CHECK_OK(rm_projection_new(big, 3, 1, "Find: ", RM_POOL_LAST, 0.07f, &pb));
            if (pb) {
                memcpy(pb->w, p->w, 3 * 32 * sizeof(float));
                CHECK_OK(rm_embedder_new(big, tok, NULL, pb, &e));
                float v[3], h[32], w2[3];
                const char *t = "some text";
                if (e) {
                    CHECK(rm_embedder_dim(e) == 3);
                    CHECK_OK(rm_embedder_embed(e, &t, 1, v));
                    CHECK_OK(rm_embedder_pool(e, &t, 1, h));
                    rm_projection_apply(pb, 32, h, w2);
                    for (int k = 0; k < 3; k++) CHECK_NEAR(v[k], w2[k], 1e-6);
                    CHECK_NEAR(v[0] * v[0] + v[1] * v[1] + v[2] * v[2], 1.0, 1e-5);
                }
                rm_embedder_free(e);
                CHECK_ERR(rm_embedder_new(m, tok, NULL, pb, &e), RAMOLE_ERR_MISMATCH); /* another base */
                rm_projection_free(pb);
            }
        }
        rm_model_free(big);
        rm_tok_free(tok);
    }
    /* another base */
    CHECK_ERR(rm_projection_load(path, other, &q), RAMOLE_ERR_MISMATCH);
    CHECK(strstr(ramole_last_error(), "another base model") && strstr(ramole_last_error(), path));
    CHECK(q == NULL);
    /* NaN, infinity, all zeros */
    p->w[40] = NAN;
    CHECK_OK(rm_projection_save(p, bad));
    CHECK_ERR(rm_projection_load(bad, m, &q), RAMOLE_ERR_FORMAT);
    CHECK(strstr(ramole_last_error(), "projection.weight[1][8] is NaN") && strstr(ramole_last_error(), bad));
    p->w[40] = INFINITY;
    CHECK_OK(rm_projection_save(p, bad));
    CHECK_ERR(rm_projection_load(bad, m, &q), RAMOLE_ERR_FORMAT);
    CHECK(strstr(ramole_last_error(), "infinite"));
    memset(p->w, 0, 3 * 32 * sizeof(float));
    CHECK_OK(rm_projection_save(p, bad));
    CHECK_ERR(rm_projection_load(bad, m, &q), RAMOLE_ERR_FORMAT);
    CHECK(strstr(ramole_last_error(), "all zeros"));
    /* wrong shape, missing metadata, bad layer: written by hand */
    {
        char fp[24];
        snprintf(fp, sizeof fp, "%016llx", (unsigned long long)rm_model_fingerprint(m));
        float w[4 * 33];
        for (int i = 0; i < 4 * 33; i++) w[i] = 0.5f;
        struct {
            const char *fmt, *fp, *layer, *pool;
            int64_t rows, cols;
            int dims;
            const char *want;
        } cases[] = {
            {RM_PROJECTION_FORMAT, fp, "final", "mean", 4, 33, 2, "must equal the base's hidden size 32"},
            {RM_PROJECTION_FORMAT, fp, "final", "mean", 4, 32, 1, "1 dimensions"},
            {NULL, fp, "final", "mean", 4, 32, 2, "not a ramole retriever projection"},
            {RM_PROJECTION_FORMAT, NULL, "final", "mean", 4, 32, 2, "lacks \"ramole.base_fingerprint\""},
            {RM_PROJECTION_FORMAT, "zz", "final", "mean", 4, 32, 2, "not a hexadecimal number"},
            {RM_PROJECTION_FORMAT, fp, "7", "mean", 4, 32, 2, "layer \"7\""},
            {RM_PROJECTION_FORMAT, fp, "final", "max", 4, 32, 2, "unknown pooling \"max\""},
        };
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            rm_st_writer *wr = NULL;
            CHECK_OK(rm_st_writer_new(&wr));
            if (!wr) continue;
            if (cases[k].fmt) rm_st_writer_meta(wr, "format", cases[k].fmt);
            if (cases[k].fp) rm_st_writer_meta(wr, "ramole.base_fingerprint", cases[k].fp);
            rm_st_writer_meta(wr, "layer", cases[k].layer);
            rm_st_writer_meta(wr, "pooling", cases[k].pool);
            rm_st_writer_meta(wr, "prefix", "p: ");
            int64_t shape[2] = {cases[k].rows, cases[k].cols};
            if (cases[k].dims == 1) shape[0] = cases[k].rows * cases[k].cols;
            CHECK_OK(rm_st_writer_add(wr, "projection.weight", RM_TYPE_F32, cases[k].dims, shape, w));
            CHECK_OK(rm_st_writer_write(wr, bad));
            rm_st_writer_free(wr);
            rm_status st = rm_projection_load(bad, m, &q);
            CHECK_MSG(st != RAMOLE_OK && q == NULL, "case %zu loaded", k);
            CHECK_MSG(strstr(ramole_last_error(), cases[k].want) && strstr(ramole_last_error(), bad),
                      "case %zu: message '%s' lacks '%s'", k, ramole_last_error(), cases[k].want);
        }
    }
    /* every truncation of a good file fails cleanly */
    {
        for (int i = 0; i < 3 * 32; i++) p->w[i] = (float)urand(&r);
        CHECK_OK(rm_projection_save(p, path));
        size_t n = 0;
        CHECK_OK(rm_file_read(path, &bytes, &n));
        int failures = 0;
        for (size_t cut = 0; bytes && cut < n; cut++) {
            if (!write_bytes(bad, bytes, cut)) { failures++; continue; }
            rm_status st = rm_projection_load(bad, m, &q);
            if (st == RAMOLE_OK || q != NULL || !strstr(ramole_last_error(), bad)) failures++;
            rm_projection_free(q), q = NULL;
        }
        CHECK_MSG(failures == 0, "%d of %zu truncations loaded or gave no clear error", failures, n);
    }
    CHECK_ERR(rm_projection_load("/nonexistent/p.safetensors", m, &q), RAMOLE_ERR_IO);
done:
    rm_free(bytes);
    rm_projection_free(p);
    rm_projection_free(q);
    rm_model_free(m);
    rm_model_free(other);
    rm_free(path);
    rm_free(bad);
}

/* ---- task data ------------------------------------------------------------------------------ */

TEST(retrieval_task_data_errors_name_the_line) {
    rm_task_data *d = NULL;
    const char *good = "{\"task\": \"a\", \"input\": \"one\", \"output\": \"ignored\"}\n\n"
                       "{\"task\": \"b\", \"input\": \"two\"}\n{\"task\": \"a\", \"input\": \"three\"}\n"
                       "{\"task\": \"b\", \"input\": \"four\"}\n{\"task\": \"c\", \"input\": \"five\"}\n"
                       "{\"task\": \"c\", \"input\": \"six\"}\n";
    CHECK_OK(rm_task_data_parse(good, strlen(good), "t.jsonl", 2, &d));
    if (d) {
        CHECK(d->n == 6 && d->n_tasks == 3 && d->count[0] == 2 && d->line[1] == 3 && !strcmp(d->names[2], "c"));
        CHECK(rm_task_data_find(d, "b") == 1 && rm_task_data_find(d, "z") == -1);
        bool held[3];
        CHECK_OK(rm_task_split_fraction(d, 0.5, 1, held));
        CHECK(held[0] + held[1] + held[2] == 1); /* two must stay to train */
        bool hin[6];
        CHECK_OK(rm_task_split_inputs(d, 0.5, 1, NULL, hin));
        int nh = 0;
        for (int i = 0; i < 6; i++) nh += hin[i];
        CHECK(nh == 0); /* tasks of two keep both */
        rm_task_data_free(d);
        d = NULL;
    }
    struct {
        const char *text, *want;
    } bad[] = {
        {"{\"task\": \"a\", \"input\": \"x\"}\n{\"task\": \"a\", \"input\": \"y\"\n", "t.jsonl:2: malformed JSON"},
        {"[1, 2]\n", "t.jsonl:1: expected a JSON object"},
        {"{\"task\": \"a\", \"input\": \"x\"}\n\n{\"input\": \"y\"}\n", "t.jsonl:3: missing or non-string \"task\""},
        {"{\"task\": \"a\", \"input\": 5}\n", "t.jsonl:1: missing or non-string \"input\""},
        {"{\"task\": \"a\", \"input\": \"\"}\n", "t.jsonl:1: empty \"input\""},
        {"{\"task\": \"\", \"input\": \"x\"}\n", "t.jsonl:1: empty \"task\""},
        {"{\"task\": \"a\", \"input\": \"x\"}\n{\"task\": \"lonely\", \"input\": \"y\"}\n{\"task\": \"a\", \"input\": \"z\"}\n",
         "task 'lonely' has 1 example"},
        {"\n\n", "no examples"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rm_status st = rm_task_data_parse(bad[k].text, strlen(bad[k].text), "t.jsonl", 2, &d);
        CHECK_MSG(st != RAMOLE_OK && d == NULL, "case %zu parsed", k);
        CHECK_MSG(strstr(ramole_last_error(), bad[k].want), "case %zu: '%s' lacks '%s'", k, ramole_last_error(),
                  bad[k].want);
    }
}

/* ---- trainer ----------------------------------------------------------------------------------- */

/* Synthetic pooled states: task t is a direction u_t (small) plus a large
 * random component along a few shared "filler" directions. */
static void synth(int n_tasks, int per, int hidden, uint64_t seed, float *H, int32_t *task) {
    uint64_t r = seed;
    double u[16][64], f[4][64];
    for (int t = 0; t < n_tasks; t++)
        for (int k = 0; k < hidden; k++) u[t][k] = urand(&r);
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < hidden; k++) f[j][k] = urand(&r);
    for (int t = 0, i = 0; t < n_tasks; t++)
        for (int e = 0; e < per; e++, i++) {
            double a[4];
            for (int j = 0; j < 4; j++) a[j] = 1.5 * urand(&r);
            for (int k = 0; k < hidden; k++) {
                double v = 0.6 * u[t][k] + 0.3 * urand(&r);
                for (int j = 0; j < 4; j++) v += a[j] * f[j][k];
                H[(size_t)i * hidden + k] = (float)v;
            }
            task[i] = t;
        }
}

TEST(retrieval_trainer_is_deterministic_and_separates_tasks) {
    enum { T = 8, PER = 12, HID = 24, N = T * PER };
    static float H[N * HID], E[N * HID], w1[HID * HID], w2[HID * HID];
    int32_t task[N];
    synth(T, PER, HID, 11, H, task);
    rm_task_data d = {.n = N, .task = task, .n_tasks = T};
    rm_infonce_params p;
    rm_infonce_params_default(&p);
    p.steps = 150;
    p.batch = 16;
    p.tau = 0.1;
    rm_retrieval_score before, after;
    for (int i = 0; i < N; i++) rm_projection_apply(NULL, HID, H + (size_t)i * HID, E + (size_t)i * HID);
    CHECK_OK(rm_task_top1(&d, E, HID, 20, NULL, &before));
    /* run 1 reads the same examples through rows[] from a reversed copy:
     * the same order of examples, so the same weights bit for bit */
    static float Hrev[N * HID];
    int32_t trev[N];
    int rows[N];
    for (int i = 0; i < N; i++) {
        rows[i] = N - 1 - i;
        trev[N - 1 - i] = task[i];
        memcpy(Hrev + (size_t)(N - 1 - i) * HID, H + (size_t)i * HID, HID * sizeof *H);
    }
    float *ws[2] = {w1, w2};
    for (int run = 0; run < 2; run++) {
        rm_infonce_trainer *t = NULL;
        if (run == 0) CHECK_OK(rm_infonce_trainer_new(H, task, NULL, N, HID, T, &p, &t));
        else CHECK_OK(rm_infonce_trainer_new(Hrev, trev, rows, N, HID, T, &p, &t));
        if (!t) return;
        rm_infonce_stats s0 = {0}, s = {0};
        for (int k = 0; k < p.steps; k++) {
            CHECK_OK(rm_infonce_trainer_step(t, &s));
            if (k == 0) s0 = s;
        }
        CHECK_MSG(s.loss < 0.5 * s0.loss, "loss %g -> %g", s0.loss, s.loss);
        rm_infonce_trainer_weights(t, ws[run]);
        rm_infonce_trainer_free(t);
    }
    CHECK(!memcmp(w1, w2, sizeof w1));
    rm_projection P = {.dim = HID, .hidden = HID, .w = w1};
    for (int i = 0; i < N; i++) rm_projection_apply(&P, HID, H + (size_t)i * HID, E + (size_t)i * HID);
    CHECK_OK(rm_task_top1(&d, E, HID, 20, NULL, &after));
    CHECK_MSG(after.correct > before.correct && after.correct >= N * 9 / 10, "top-1 %d -> %d of %d", before.correct,
              after.correct, N);
    /* a task of one example, or a single task, cannot train */
    rm_infonce_trainer *t = NULL;
    int32_t lonely[N];
    memcpy(lonely, task, sizeof lonely);
    lonely[0] = T; /* task T has one example */
    CHECK_ERR(rm_infonce_trainer_new(H, lonely, NULL, N, HID, T + 1, &p, &t), RAMOLE_ERR_INVALID);
    CHECK(strstr(ramole_last_error(), "task 8 has one example"));
    int32_t one[N] = {0};
    CHECK_ERR(rm_infonce_trainer_new(H, one, NULL, N, HID, 1, &p, &t), RAMOLE_ERR_INVALID);
    CHECK(t == NULL);
}

/* ---- allocation failure ------------------------------------------------------------------------ */

TEST(retrieval_allocation_failure_at_every_point) {
    rm_tok *tok = byte_tokenizer();
    rm_model_config c = small_config(300, 32);
    rm_model *m = NULL;
    CHECK_OK(rm_model_random(&c, 4, 0.1f, &m));
    char *path = tmp_path("retrieval_af.safetensors");
    rm_projection *p = NULL;
    if (!tok || !m) goto done;
    CHECK_OK(rm_projection_new(m, 4, RM_HIDDEN_FINAL, NULL, RM_POOL_MEAN, 0.05f, &p));
    if (!p) goto done;
    for (int i = 0; i < 4 * 32; i++) p->w[i] = (float)(i % 7) - 3.0f;
    CHECK_OK(rm_projection_save(p, path));
    size_t live = rm_alloc_live_bytes();
    const char *texts[3] = {"one text", "another, longer text", "x"};
    const char *tasks = "{\"task\": \"a\", \"input\": \"x\"}\n{\"task\": \"b\", \"input\": \"y\"}\n"
                        "{\"task\": \"a\", \"input\": \"z\"}\n{\"task\": \"b\", \"input\": \"w\"}\n";
    float H[4 * 32];
    int32_t task[4] = {0, 1, 0, 1};
    for (int i = 0; i < 4 * 32; i++) H[i] = (float)((i * 37) % 11) - 5.0f;
    bool done = false;
    for (size_t n = 1; n < 2000 && !done; n++) {
        rm_projection *q = NULL;
        rm_embedder *e = NULL;
        rm_index *ix = NULL;
        rm_task_data *d = NULL;
        rm_infonce_trainer *t = NULL;
        float out[3 * 4];
        rm_alloc_fail_after(n);
        rm_status st = rm_projection_load(path, m, &q);
        if (st == RAMOLE_OK) st = rm_embedder_new(m, tok, NULL, q, &e);
        if (st == RAMOLE_OK) st = rm_embedder_embed(e, texts, 3, out);
        if (st == RAMOLE_OK) st = rm_index_new(4, &ix);
        for (int i = 0; st == RAMOLE_OK && i < 20; i++) st = rm_index_add(ix, i, out + (i % 3) * 4);
        if (st == RAMOLE_OK) st = rm_task_data_parse(tasks, strlen(tasks), "af.jsonl", 2, &d);
        if (st == RAMOLE_OK) {
            rm_infonce_params ip;
            rm_infonce_params_default(&ip);
            ip.batch = 4;
            st = rm_infonce_trainer_new(H, task, NULL, 4, 32, 2, &ip, &t);
        }
        if (st == RAMOLE_OK) st = rm_infonce_trainer_step(t, NULL);
        rm_alloc_fail_after(0);
        CHECK_MSG(st == RAMOLE_OK || st == RAMOLE_ERR_NOMEM, "fail at %zu: %s: %s", n, ramole_status_str(st),
                  ramole_last_error());
        done = st == RAMOLE_OK;
        rm_infonce_trainer_free(t);
        rm_task_data_free(d);
        rm_index_free(ix);
        rm_embedder_free(e);
        rm_projection_free(q);
        CHECK_MSG(rm_alloc_live_bytes() == live, "leak after failure at %zu", n);
        if (rm_alloc_live_bytes() != live) break;
    }
    CHECK(done);
done:
    rm_projection_free(p);
    rm_model_free(m);
    rm_tok_free(tok);
    rm_free(path);
}

/* The evidence of a query is the first m other inputs of its task in file
 * order, and every other task's first m: rm_task_top1 and rm_task_vectors
 * against that rule spelled out by a scan of every row, on interleaved
 * tasks (so that "file order" and "skip the query" both matter). */
static int naive_rows(const int32_t *task, int n, int t, int skip, int m, int *rows) {
    int c = 0;
    for (int i = 0; i < n && c < m; i++)
        if (task[i] == t && i != skip) rows[c++] = i;
    return c;
}

TEST(retrieval_task_evidence_is_first_inputs_in_file_order) {
    enum { T = 5, N = 70, DIM = 6, M = 3 };
    static float E[N * DIM], reps[T * DIM], want[T * DIM], own[DIM];
    int32_t task[N];
    bool query[N];
    int rows[M];
    double acc[DIM];
    uint64_t r = 5;
    for (int i = 0; i < N; i++) {
        task[i] = (int32_t)(rm_rng_next(&r) % T);
        query[i] = i % 3 != 1;
        double s = 0;
        for (int k = 0; k < DIM; k++) {
            E[i * DIM + k] = (float)urand(&r);
            s += (double)E[i * DIM + k] * E[i * DIM + k];
        }
        for (int k = 0; k < DIM; k++) E[i * DIM + k] /= (float)sqrt(s);
    }
    rm_task_data d = {.n = N, .task = task, .n_tasks = T};
    CHECK_OK(rm_task_vectors(&d, E, DIM, M, reps));
    for (int t = 0; t < T; t++) rm_embed_mean(E, DIM, rows, naive_rows(task, N, t, -1, M, rows), acc, want + t * DIM);
    CHECK(memcmp(reps, want, sizeof reps) == 0);
    int queries = 0, correct = 0;
    for (int q = 0; q < N; q++) {
        if (!query[q]) continue;
        int c = naive_rows(task, N, task[q], q, M, rows);
        if (!c) continue;
        rm_embed_mean(E, DIM, rows, c, acc, own);
        int best = -1;
        double bs = 0;
        for (int k = 0; k < T; k++) {
            const float *v = k == task[q] ? own : want + k * DIM;
            double s = 0;
            for (int j = 0; j < DIM; j++) s += (double)E[q * DIM + j] * v[j];
            if (best < 0 || s > bs) best = k, bs = s;
        }
        queries++, correct += best == task[q];
    }
    rm_retrieval_score got;
    CHECK_OK(rm_task_top1(&d, E, DIM, M, query, &got));
    CHECK_MSG(got.queries == queries && got.correct == correct, "top-1 %d/%d, the rule gives %d/%d", got.correct,
              got.queries, correct, queries);
    CHECK(queries > 30 && correct > 0 && correct < queries); /* a score that can differ */
}

/* retrieve: a task's entry is the normalised mean embedding of its first m
 * inputs in file order, and a query's scores are cosines with those: the
 * index and the queries against that rule computed here text by text. */
TEST(retrieval_retrieve_scores_are_cosines_with_first_samples) {
    rm_tok *tok = byte_tokenizer();
    rm_model_config c = small_config(300, 32);
    rm_model *m = NULL;
    rm_embedder *e = NULL;
    rm_task_data *d = NULL;
    rm_index *ix = NULL;
    CHECK_OK(rm_model_random(&c, 9, 0.6f, &m)); /* a wide spread of cosines */
    if (!tok || !m) goto done;
    static const char jsonl[] =
        "{\"task\": \"add\", \"input\": \"What is 2 plus 2?\"}\n"
        "{\"task\": \"rev\", \"input\": \"Reverse stone\"}\n"
        "{\"task\": \"add\", \"input\": \"Add 5 and 7.\"}\n"
        "{\"task\": \"up\", \"input\": \"Uppercase this: river\"}\n"
        "{\"task\": \"rev\", \"input\": \"Write apple backwards\"}\n"
        "{\"task\": \"add\", \"input\": \"Sum of 1 and 9\"}\n"
        "{\"task\": \"rev\", \"input\": \"Give cloud reversed\"}\n";
    CHECK_OK(rm_task_data_parse(jsonl, sizeof jsonl - 1, "pool.jsonl", 1, &d));
    rm_embed_opts o;
    rm_embed_opts_default(&o);
    o.n_threads = 2;
    CHECK_OK(rm_embedder_new(m, tok, &o, NULL, &e));
    if (!d || !e) goto done;
    enum { M = 2, K = 2, NQ = 2, DIM = 32 };
    CHECK_OK(rm_task_index_build(e, d, M, &ix));
    if (!ix) goto done;
    CHECK(rm_index_size(ix) == 3 && d->n_tasks == 3);
    /* the rule, text by text: the first M inputs of each task in file order */
    float rep[3][DIM], one[DIM];
    for (int t = 0; t < 3; t++) {
        double sum[DIM] = {0}, nrm = 0;
        for (int i = 0, used = 0; i < d->n && used < M; i++) {
            if (d->task[i] != t) continue;
            CHECK_OK(rm_embedder_embed(e, (const char *const *)&d->inputs[i], 1, one));
            for (int k = 0; k < DIM; k++) sum[k] += one[k];
            used++;
        }
        for (int k = 0; k < DIM; k++) nrm += sum[k] * sum[k];
        for (int k = 0; k < DIM; k++) rep[t][k] = (float)(sum[k] / sqrt(nrm));
    }
    const char *q[NQ] = {"What is 8 plus 1?", "Reverse paper"};
    rm_hit hits[NQ * K];
    int n_hits[NQ];
    CHECK_OK(rm_retrieve(e, ix, q, NQ, K, hits, n_hits));
    for (int i = 0; i < NQ; i++) {
        CHECK_OK(rm_embedder_embed(e, &q[i], 1, one));
        double s[3];
        for (int t = 0; t < 3; t++) {
            s[t] = 0;
            for (int k = 0; k < DIM; k++) s[t] += (double)one[k] * rep[t][k];
        }
        int best = 0, second = -1;
        for (int t = 1; t < 3; t++) best = s[t] > s[best] ? t : best;
        for (int t = 0; t < 3; t++)
            if (t != best && (second < 0 || s[t] > s[second])) second = t;
        CHECK(n_hits[i] == K);
        CHECK_MSG(hits[i * K].id == best && hits[i * K + 1].id == second, "query %d: got tasks %d, %d; the rule %d, %d",
                  i, (int)hits[i * K].id, (int)hits[i * K + 1].id, best, second);
        CHECK_NEAR(hits[i * K].score, s[best], 2e-5);
        CHECK_NEAR(hits[i * K + 1].score, s[second], 2e-5);
    }
    CHECK_ERR(rm_retrieve(e, ix, q, NQ, 0, hits, n_hits), RAMOLE_ERR_INVALID);
    /* the three-way evaluation: rm_task_top1 of each kind; a kind without queries counts none */
    float E[7 * DIM];
    CHECK_OK(rm_embedder_embed(e, (const char *const *)d->inputs, d->n, E));
    bool held[7] = {0, 1, 0, 0, 0, 1, 1}, train[7] = {1, 0, 1, 1, 1, 0, 0};
    rm_retrieval_eval ev;
    rm_retrieval_score want;
    CHECK_OK(rm_retrieval_evaluate(d, E, DIM, M, NULL, held, train, &ev));
    CHECK(ev.held_out_tasks.queries == 0 && isnan(rm_retrieval_accuracy(&ev.held_out_tasks)));
    CHECK_OK(rm_task_top1(d, E, DIM, M, held, &want));
    CHECK(ev.held_out_inputs.queries == want.queries && ev.held_out_inputs.correct == want.correct && want.queries == 3);
    CHECK_OK(rm_task_top1(d, E, DIM, M, train, &want));
    CHECK(ev.train.queries == want.queries && ev.train.correct == want.correct);
done:
    rm_index_free(ix);
    rm_embedder_free(e);
    rm_task_data_free(d);
    rm_model_free(m);
    rm_tok_free(tok);
}
