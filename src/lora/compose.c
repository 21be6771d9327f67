/*
 * compose.c — per-sequence LoRA composition inside the batched forward
 * (see compose.h for the method).
 *
 * A plan, built once per step, lists the (token, expert) pairs of the batch
 * grouped by adapter: rows[] holds them group after group, and tok_row[]
 * finds a token's row for expert j (the router's own row is j = max_k).
 * Each row owns max_rank floats of U. Every group is one matrix product
 * for shrink and one for expand, so each adapter matrix is read once per
 * step whatever the number of its tokens. Both products read and write the
 * tokens' rows in place, through row-invariant kernels (rm_matmul_rows,
 * rm_matmul_rows_add): a row's result does not depend on the rows beside
 * it, so a sequence decodes the same tokens alone and in any batch. Shrink
 * splits the rows' work over threads; expand splits output columns, so
 * that threads never write the same element.
 */
#include "lora/compose.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

static const char *const mode_names[RM_COMPOSE_COUNT] = {"none", "explicit", "selection",
                                                         "mixture", "fusion", "router"};

const char *rm_compose_mode_name(rm_compose_mode m) {
    return (unsigned)m < RM_COMPOSE_COUNT ? mode_names[m] : "?";
}

bool rm_compose_mode_from_name(const char *s, rm_compose_mode *out) {
    for (int i = 0; i < RM_COMPOSE_COUNT; i++)
        if (!strcmp(s, mode_names[i])) {
            *out = (rm_compose_mode)i;
            return true;
        }
    return false;
}

typedef struct {
    rm_composition comp;
    int fed;            /* prompt-pooled router: tokens planned since rm_lora_set (the next one's index) */
    float prior[RM_LORA_MAX_K]; /* router: lambda r_j, added to expert j's scores (0: no prior) */
    rm_adapter *fused;  /* fusion: the averaged adapter, owned */
    const rm_router_c *rc[RM_LORA_MAX_K];  /* router: C_rj of each expert */
    rm_router_c *rc_owned[RM_LORA_MAX_K];  /* those built by rm_lora_set */
} slot_state;

typedef struct {
    const rm_adapter *a;
    int first, n_rows;
    int64_t cost_before; /* shrink work of the groups before this one, for the module being applied */
} group;

typedef struct {
    int32_t token;
    int16_t j;      /* expert index; max_k for the router's own row */
    int32_t group;
} row_ref;

struct rm_lora_state {
    const rm_model *m;
    int n_seq, n_batch, max_k, max_rank, rows_cap;
    slot_state *slots;
    /* plan */
    int n_tokens, n_groups, n_rows;
    const int32_t *seq;
    group *groups;       /* [rows_cap] */
    row_ref *rows;       /* [rows_cap] */
    int32_t *tok_row;    /* [n_batch][max_k + 1] */
    const rm_adapter **hkeys; /* [2 * rows_cap] open addressing: adapter -> group */
    int32_t *hvals;
    /* buffers */
    float *U;            /* [rows_cap][max_rank] */
    float *gates;        /* [n_batch][max_k] */
    /* prompt-pooled routers: per slot and module, the sum of the raw score
     * vectors of the prompt tokens fed so far; per batch token, its index in
     * its sequence (-1: not pooled) */
    float *pool_sums;    /* [n_seq][n_layers * RM_TARGET_COUNT][max_k] */
    int32_t *tok_index;  /* [n_batch] */
    int n_pooled;        /* pooled tokens of the planned batch */
    rm_gate_trace trace; /* rm_lora_trace_gates (gates NULL: off) */
    const float **xp;    /* per thread: a chunk's X rows (shrink) or gated U rows (expand) [n_batch] */
    float **yp;          /* per thread: a chunk's Y rows (expand) [n_batch] */
    int64_t shrink_cost; /* sum of rows x rank over the groups, for the module being applied */
    int n_threads;
    /* the module being applied (for pool jobs) */
    int layer;
    rm_target target;
    const float *x;
    float *y;
    int64_t din, dout;
};

/* ---- creation and attachment --------------------------------------------------- */

static int n_mods(const rm_model *m) { return m->cfg.n_layers * RM_TARGET_COUNT; }

rm_status rm_lora_state_new(const rm_model *m, int n_seq, int n_batch, int max_k, int max_rank, int n_threads,
                            rm_lora_state **out) {
    *out = NULL;
    if (max_k < 1 || max_k > RM_LORA_MAX_K || max_rank < 1 || max_rank > RM_LORA_MAX_RANK)
        return rm_err(RAMOLE_ERR_INVALID, "LoRA: max_k must be 1..%d and max_rank 1..%d (got %d, %d)",
                      RM_LORA_MAX_K, RM_LORA_MAX_RANK, max_k, max_rank);
    rm_lora_state *s = rm_calloc(1, sizeof *s);
    if (!s) return rm_err(RAMOLE_ERR_NOMEM, "LoRA: out of memory");
    s->m = m;
    s->n_seq = n_seq;
    s->n_batch = n_batch;
    s->max_k = max_k;
    s->max_rank = max_rank;
    s->rows_cap = n_batch * (max_k + 1);
    size_t nb = (size_t)n_batch, rc = (size_t)s->rows_cap;
    s->slots = rm_calloc((size_t)n_seq, sizeof *s->slots);
    s->groups = rm_calloc(rc, sizeof *s->groups);
    s->rows = rm_calloc(rc, sizeof *s->rows);
    s->tok_row = rm_calloc(nb * (size_t)(max_k + 1), sizeof *s->tok_row);
    s->hkeys = rm_calloc(2 * rc, sizeof *s->hkeys);
    s->hvals = rm_calloc(2 * rc, sizeof *s->hvals);
    s->U = rm_calloc(rc * (size_t)max_rank, sizeof *s->U);
    s->gates = rm_calloc(nb * (size_t)max_k, sizeof *s->gates);
    s->pool_sums = rm_calloc((size_t)n_seq * (size_t)n_mods(m) * (size_t)max_k, sizeof *s->pool_sums);
    s->tok_index = rm_calloc(nb, sizeof *s->tok_index);
    s->n_threads = n_threads > 0 ? n_threads : 1;
    size_t nt = (size_t)s->n_threads;
    s->xp = rm_calloc(nt * nb, sizeof *s->xp);
    s->yp = rm_calloc(nt * nb, sizeof *s->yp);
    if (!s->slots || !s->groups || !s->rows || !s->tok_row || !s->hkeys || !s->hvals || !s->U || !s->gates ||
        !s->pool_sums || !s->tok_index || !s->xp || !s->yp) {
        rm_lora_state_free(s);
        return rm_err(RAMOLE_ERR_NOMEM, "LoRA: out of memory");
    }
    *out = s;
    return RAMOLE_OK;
}

rm_status rm_lora_state_grow_rank(rm_lora_state *s, int rank) {
    if (rank <= s->max_rank) return RAMOLE_OK;
    if (rank > RM_LORA_MAX_RANK)
        return rm_err(RAMOLE_ERR_RANGE, "LoRA: rank %d is above the most ramole takes (%d)", rank, RM_LORA_MAX_RANK);
    float *U = rm_calloc((size_t)s->rows_cap * (size_t)rank, sizeof *U);
    if (!U) return rm_err(RAMOLE_ERR_NOMEM, "LoRA: out of memory for rank %d", rank);
    /* U is per-step scratch: nothing in it outlives a step */
    rm_free(s->U);
    s->U = U;
    s->max_rank = rank;
    return RAMOLE_OK;
}

int rm_lora_state_max_rank(const rm_lora_state *s) { return s->max_rank; }

static void slot_clear(slot_state *sl) {
    rm_adapter_free(sl->fused);
    for (int j = 0; j < RM_LORA_MAX_K; j++) rm_router_c_free(sl->rc_owned[j]);
    memset(sl, 0, sizeof *sl);
}

void rm_lora_state_free(rm_lora_state *s) {
    if (!s) return;
    for (int i = 0; s->slots && i < s->n_seq; i++) slot_clear(&s->slots[i]);
    rm_free(s->slots);
    rm_free(s->groups);
    rm_free(s->rows);
    rm_free(s->tok_row);
    rm_free(s->hkeys);
    rm_free(s->hvals);
    rm_free(s->U);
    rm_free(s->gates);
    rm_free(s->pool_sums);
    rm_free(s->tok_index);
    rm_free(s->xp);
    rm_free(s->yp);
    rm_free(s);
}

/* ---- setting a composition ---------------------------------------------------- */

/* Average the experts' parameters module by module (ranks zero-padded). */
static rm_status build_fused(const rm_lora_state *s, const rm_composition *c, rm_adapter **out) {
    const rm_model *m = s->m;
    rm_adapter *f = rm_calloc(1, sizeof *f);
    if (!f) return rm_err(RAMOLE_ERR_NOMEM, "LoRA fusion: out of memory");
    *out = f;
    f->n_layers = m->cfg.n_layers;
    f->base_fingerprint = c->experts[0]->base_fingerprint;
    f->name = rm_strdup("fusion");
    f->mods = rm_calloc((size_t)n_mods(m), sizeof *f->mods);
    if (!f->name || !f->mods) return rm_err(RAMOLE_ERR_NOMEM, "LoRA fusion: out of memory");
    float inv_k = 1.0f / (float)c->k;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < RM_TARGET_COUNT; t++) {
            int r = 0;
            for (int j = 0; j < c->k; j++) {
                int rj = rm_adapter_mod(c->experts[j], l, (rm_target)t)->rank;
                if (rj > r) r = rj;
            }
            if (!r) continue;
            int64_t din, dout;
            rm_target_dims(&m->cfg, (rm_target)t, &din, &dout);
            rm_lora_module *fm = rm_adapter_mod(f, l, (rm_target)t);
            fm->A = rm_calloc((size_t)r * (size_t)din, sizeof(float));
            fm->B = rm_calloc((size_t)dout * (size_t)r, sizeof(float));
            if (!fm->A || !fm->B) return rm_err(RAMOLE_ERR_NOMEM, "LoRA fusion: out of memory");
            fm->rank = r;
            fm->scale = 1.0f;
            fm->type = RM_TYPE_F32;
            float *fa = fm->A, *fb = fm->B;
            for (int j = 0; j < c->k; j++) {
                const rm_lora_module *em = rm_adapter_mod(c->experts[j], l, (rm_target)t);
                for (int64_t i = 0; i < (int64_t)em->rank * din; i++) fa[i] += inv_k * rm_lora_elem(em, em->A, (size_t)i);
                for (int64_t o = 0; o < dout; o++)
                    for (int kk = 0; kk < em->rank; kk++)
                        fb[o * r + kk] += inv_k * em->scale * rm_lora_elem(em, em->B, (size_t)(o * em->rank + kk));
            }
            if (r > f->max_rank) f->max_rank = r;
            f->target_mask |= 1u << t;
        }
    return RAMOLE_OK;
}

struct rm_router_c {
    const rm_adapter *router, *expert; /* identities, for the check in rm_lora_set */
    float *c;                          /* every module's C, back to back */
    size_t *off;                       /* [n_layers*COUNT] offset into c, SIZE_MAX if absent */
    size_t bytes;
};

rm_status rm_router_c_new(const rm_model *m, const rm_adapter *router, const rm_adapter *expert,
                          rm_router_c **out) {
    *out = NULL;
    int nm = n_mods(m);
    rm_router_c *rc = rm_calloc(1, sizeof *rc);
    if (!rc) return rm_err(RAMOLE_ERR_NOMEM, "LoRA router: out of memory");
    rc->router = router;
    rc->expert = expert;
    rc->off = rm_malloc((size_t)nm * sizeof *rc->off);
    size_t total = 0;
    for (int i = 0; rc->off && i < nm; i++) {
        int rr = router->mods[i].rank, rj = expert->mods[i].rank;
        rc->off[i] = rj && rr ? total : SIZE_MAX;
        if (rj && rr) total += (size_t)rr * (size_t)rj;
    }
    rc->c = rm_malloc((total ? total : 1) * sizeof(float));
    rc->bytes = total * sizeof(float) + (size_t)nm * sizeof *rc->off;
    /* f16/bf16 B matrices are widened into scratch for sgemm */
    int max_r = router->max_rank > expert->max_rank ? router->max_rank : expert->max_rank;
    bool narrow = router->type != RM_TYPE_F32 || expert->type != RM_TYPE_F32;
    size_t half = (size_t)rm_target_max_dim(&m->cfg) * (size_t)max_r;
    float *wide = narrow ? rm_malloc(2 * half * sizeof *wide) : NULL;
    if (!rc->off || !rc->c || (narrow && !wide)) {
        rm_free(wide);
        rm_router_c_free(rc);
        return rm_err(RAMOLE_ERR_NOMEM, "LoRA router: out of memory");
    }
    rm_blas_init();
    for (int i = 0; i < nm; i++) {
        if (rc->off[i] == SIZE_MAX) continue;
        const rm_lora_module *R = &router->mods[i], *E = &expert->mods[i];
        rm_target t = (rm_target)(i % RM_TARGET_COUNT);
        int64_t din, dout;
        rm_target_dims(&m->cfg, t, &din, &dout);
        const float *br = R->B, *be = E->B;
        if (R->type != RM_TYPE_F32) rm_lora_module_get(R, &m->cfg, t, true, wide), br = wide;
        if (E->type != RM_TYPE_F32) {
            rm_lora_module_get(E, &m->cfg, t, true, wide + half);
            be = wide + half;
        }
        /* C = B_r^T B_j: [r_r][dout] . [dout][r_j] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R->rank, E->rank, (int)dout, 1.0f, br, R->rank, be,
                    E->rank, 0.0f, rc->c + rc->off[i], E->rank);
    }
    rm_free(wide);
    *out = rc;
    return RAMOLE_OK;
}

void rm_router_c_free(rm_router_c *rc) {
    if (!rc) return;
    rm_free(rc->c);
    rm_free(rc->off);
    rm_free(rc);
}

size_t rm_router_c_bytes(const rm_router_c *rc) { return rc ? rc->bytes : 0; }

/* C of module mi for expert j of a router slot, or NULL where either lacks it. */
static const float *slot_c(const slot_state *sl, int j, int mi) {
    const rm_router_c *rc = sl->rc[j];
    return rc->off[mi] == SIZE_MAX ? NULL : rc->c + rc->off[mi];
}

/* The router's C for every expert: the caller's precomputed ones where
 * given (they must be of this router and expert), the rest built here. */
static rm_status build_router(const rm_lora_state *s, const rm_composition *c, slot_state *sl) {
    for (int j = 0; j < c->k; j++) {
        const rm_router_c *given = c->router_c[j];
        if (given) {
            if (given->router != c->router || given->expert != c->experts[j])
                return rm_err(RAMOLE_ERR_INVALID, "LoRA router: the precomputed C of expert %d belongs to another "
                              "router or expert", j);
            sl->rc[j] = given;
            continue;
        }
        RM_TRY(rm_router_c_new(s->m, c->router, c->experts[j], &sl->rc_owned[j]));
        sl->rc[j] = sl->rc_owned[j];
    }
    return RAMOLE_OK;
}

static rm_status check_adapter(const rm_lora_state *s, const rm_adapter *a, const char *role) {
    if (!a) return rm_err(RAMOLE_ERR_INVALID, "LoRA: %s adapter is missing", role);
    if (a->n_layers != s->m->cfg.n_layers || a->base_fingerprint != rm_model_fingerprint(s->m))
        return rm_err(RAMOLE_ERR_MISMATCH, "LoRA: %s adapter %s was made for another base model", role,
                      a->name ? a->name : "?");
    if (a->max_rank > s->max_rank)
        return rm_err(RAMOLE_ERR_RANGE, "LoRA: %s adapter %s has rank %d, above this context's maximum of %d",
                      role, a->name ? a->name : "?", a->max_rank, s->max_rank);
    return RAMOLE_OK;
}

/* Whether composition c is a router that pools its gates over the prompt. */
static bool pooled_router(const rm_composition *c) {
    return c->mode == RM_COMPOSE_ROUTER && c->router->gate_pool == RM_GATE_POOL_PROMPT;
}

/* A prompt-pooled router's sequence needs its prompt's length. */
static rm_status check_prompt(const rm_composition *c, int n_prompt) {
    if (!pooled_router(c) || n_prompt >= 1) return RAMOLE_OK;
    return rm_err(RAMOLE_ERR_INVALID,
                  "LoRA: router %s pools its gates over the prompt: the sequence needs the prompt's length "
                  "(n_prompt is %d)",
                  c->router->name, n_prompt);
}


static rm_status check_composition(const rm_lora_state *s, const rm_composition *c) {
    if ((unsigned)c->mode >= RM_COMPOSE_COUNT) return rm_err(RAMOLE_ERR_INVALID, "LoRA: unknown mode %d", c->mode);
    if (c->k < 1 || c->k > s->max_k)
        return rm_err(RAMOLE_ERR_RANGE, "LoRA: %s needs 1 to %d adapters (got %d)", rm_compose_mode_name(c->mode),
                      s->max_k, c->k);
    for (int j = 0; j < c->k; j++) RM_TRY(check_adapter(s, c->experts[j], "expert"));
    if (c->mode == RM_COMPOSE_EXPLICIT)
        for (int j = 0; j < c->k; j++)
            if (!isfinite(c->weights[j]))
                return rm_err(RAMOLE_ERR_INVALID, "LoRA: weight %d of adapter %s is not finite", j,
                              c->experts[j]->name);
    if (c->mode != RM_COMPOSE_ROUTER) return RAMOLE_OK;
    RM_TRY(check_adapter(s, c->router, "router"));
    if ((unsigned)c->router->gate_pool > RM_GATE_POOL_PROMPT)
        return rm_err(RAMOLE_ERR_INVALID, "LoRA: router %s has an unknown gate pooling %d", c->router->name,
                      (int)c->router->gate_pool);
    RM_TRY(check_prompt(c, c->n_prompt));
    if (!rm_retrieval_prior_ok(c->router->retrieval_prior))
        return rm_err(RAMOLE_ERR_INVALID, "LoRA: router %s has a retrieval prior of %g (0 to %g)", c->router->name,
                      (double)c->router->retrieval_prior, RM_RETRIEVAL_PRIOR_MAX);
    if (c->router->retrieval_prior != 0)
        for (int j = 0; j < c->k; j++)
            if (!rm_retrieval_score_ok(c->retrieval[j]))
                return rm_err(RAMOLE_ERR_INVALID,
                              "LoRA: router %s has a retrieval prior, and expert %s's retrieval score %g is not a "
                              "cosine in [-1, 1]",
                              c->router->name, c->experts[j]->name, (double)c->retrieval[j]);
    const rm_model *m = s->m;
    for (int i = 0; i < n_mods(m); i++) {
        if (c->router->mods[i].rank) continue;
        for (int j = 0; j < c->k; j++)
            if (c->experts[j]->mods[i].rank)
                return rm_err(RAMOLE_ERR_MISMATCH,
                              "LoRA: router %s does not adapt layer %d %s, which expert %s adapts: the router's "
                              "targets must cover the experts'",
                              c->router->name, i / RM_TARGET_COUNT, rm_target_hf_name((rm_target)(i % RM_TARGET_COUNT)),
                              c->experts[j]->name);
    }
    return RAMOLE_OK;
}

/* A pooled slot's running state, back to before its first token. */
static void slot_restart(rm_lora_state *s, int seq) {
    size_t per = (size_t)n_mods(s->m) * (size_t)s->max_k;
    s->slots[seq].fed = 0;
    memset(s->pool_sums + (size_t)seq * per, 0, per * sizeof *s->pool_sums);
}

rm_status rm_lora_set(rm_lora_state *s, int seq, const rm_composition *c) {
    if (!s) /* a context made without LoRA runs the base alone */
        return !c || c->mode == RM_COMPOSE_NONE
                   ? RAMOLE_OK
                   : rm_err(RAMOLE_ERR_INVALID, "LoRA: no LoRA state (this context runs the base alone)");
    if (seq < 0 || seq >= s->n_seq)
        return rm_err(RAMOLE_ERR_RANGE, "LoRA: sequence %d is out of range (%d sequences)", seq, s->n_seq);
    slot_state next = {0};
    if (c && c->mode != RM_COMPOSE_NONE) {
        RM_TRY(check_composition(s, c));
        next.comp = *c;
        if (c->mode == RM_COMPOSE_SELECTION) next.comp.k = 1;
        rm_status st = RAMOLE_OK;
        if (c->mode == RM_COMPOSE_FUSION) st = build_fused(s, c, &next.fused);
        if (c->mode == RM_COMPOSE_ROUTER) {
            st = build_router(s, c, &next);
            for (int j = 0; j < c->k; j++) next.prior[j] = c->router->retrieval_prior * c->retrieval[j];
        }
        if (st != RAMOLE_OK) {
            slot_clear(&next);
            return st;
        }
        if (next.fused && next.fused->max_rank > s->max_rank) {
            slot_clear(&next);
            return rm_err(RAMOLE_ERR_RANGE, "LoRA: fused rank above this context's maximum of %d", s->max_rank);
        }
    }
    slot_clear(&s->slots[seq]);
    s->slots[seq] = next;
    slot_restart(s, seq);
    return RAMOLE_OK;
}

rm_status rm_lora_restart(rm_lora_state *s, int seq, int n_prompt) {
    if (!s) return RAMOLE_OK;
    if (seq < 0 || seq >= s->n_seq)
        return rm_err(RAMOLE_ERR_RANGE, "LoRA: sequence %d is out of range (%d sequences)", seq, s->n_seq);
    slot_state *sl = &s->slots[seq];
    RM_TRY(check_prompt(&sl->comp, n_prompt));
    sl->comp.n_prompt = n_prompt;
    slot_restart(s, seq);
    return RAMOLE_OK;
}

/* ---- planning ------------------------------------------------------------------ */

/* Adapters used by token slot `sl` as (adapter, j) pairs; returns count. */
static int slot_adapters(const rm_lora_state *s, const slot_state *sl, const rm_adapter **a, int16_t *j) {
    const rm_composition *c = &sl->comp;
    int n = 0;
    switch (c->mode) {
    case RM_COMPOSE_NONE:
        break;
    case RM_COMPOSE_FUSION:
        a[n] = sl->fused, j[n++] = 0;
        break;
    case RM_COMPOSE_ROUTER:
        a[n] = c->router, j[n++] = (int16_t)s->max_k;
        __attribute__((fallthrough)); /* the experts too */
    default:
        for (int e = 0; e < c->k; e++) a[n] = c->experts[e], j[n++] = (int16_t)e;
    }
    return n;
}

static int group_of(rm_lora_state *s, const rm_adapter *a) {
    size_t cap = 2 * (size_t)s->rows_cap, h = ((uintptr_t)a >> 4) * 0x9e3779b97f4a7c15ull % cap;
    while (s->hkeys[h] && s->hkeys[h] != a) h = (h + 1) % cap;
    if (!s->hkeys[h]) {
        s->hkeys[h] = a;
        s->hvals[h] = s->n_groups;
        s->groups[s->n_groups].a = a;
        s->groups[s->n_groups].n_rows = 0;
        s->n_groups++;
    }
    return s->hvals[h];
}

bool rm_lora_plan(rm_lora_state *s, int n_tokens, const int32_t *seq) {
    const rm_adapter *a[RM_LORA_MAX_K + 1];
    int16_t j[RM_LORA_MAX_K + 1];
    s->n_tokens = n_tokens;
    s->seq = seq;
    s->n_groups = 0;
    memset(s->hkeys, 0, 2 * (size_t)s->rows_cap * sizeof *s->hkeys);
    /* pass 1: count rows per group; number the tokens of pooled slots in
     * batch order, which is their order in the sequence */
    int total = 0;
    s->n_pooled = 0;
    for (int i = 0; i < n_tokens; i++) {
        slot_state *sl = &s->slots[seq[i]];
        bool pooled = pooled_router(&sl->comp);
        s->tok_index[i] = pooled ? sl->fed++ : -1;
        s->n_pooled += pooled;
        int n = slot_adapters(s, sl, a, j);
        for (int e = 0; e < n; e++) s->groups[group_of(s, a[e])].n_rows++;
        total += n;
    }
    s->n_rows = total;
    if (!total) return false;
    int first = 0;
    for (int g = 0; g < s->n_groups; g++) {
        s->groups[g].first = first;
        first += s->groups[g].n_rows;
        s->groups[g].n_rows = 0;
    }
    /* pass 2: place rows group after group */
    memset(s->tok_row, 0xff, (size_t)n_tokens * (size_t)(s->max_k + 1) * sizeof *s->tok_row);
    for (int i = 0; i < n_tokens; i++) {
        int n = slot_adapters(s, &s->slots[seq[i]], a, j);
        for (int e = 0; e < n; e++) {
            int g = group_of(s, a[e]);
            int r = s->groups[g].first + s->groups[g].n_rows++;
            s->rows[r] = (row_ref){i, j[e], g};
            s->tok_row[(size_t)i * (s->max_k + 1) + j[e]] = r;
        }
    }
    return true;
}

/* ---- applying ------------------------------------------------------------------ */

static float *row_u(const rm_lora_state *s, int r) { return s->U + (size_t)r * (size_t)s->max_rank; }

/* Gate of row r: the mode's coefficient times the module's scale. */
static float row_gate(const rm_lora_state *s, const row_ref *rr, const rm_lora_module *md) {
    const slot_state *sl = &s->slots[s->seq[rr->token]];
    switch (sl->comp.mode) {
    case RM_COMPOSE_EXPLICIT: return sl->comp.weights[rr->j] * md->scale;
    case RM_COMPOSE_MIXTURE: return md->scale / (float)sl->comp.k;
    case RM_COMPOSE_ROUTER: return s->gates[(size_t)rr->token * s->max_k + rr->j] * md->scale;
    default: return md->scale; /* selection, fusion (scale 1) */
    }
}

/* Add token i's gates w (and, if asked, the experts' output shares) to the
 * trace. |v_j| = s_j |B_j u_j| is computed here from B_j's rows: evaluation
 * only. */
static void trace_token(rm_lora_state *s, const slot_state *sl, int i, const float *w) {
    int k = sl->comp.k, mi = s->layer * RM_TARGET_COUNT + (int)s->target;
    size_t at = (size_t)i * s->max_k;
    for (int j = 0; j < k; j++) s->trace.gates[at + j] += w[j];
    s->trace.n[i]++;
    if (!s->trace.shares) return;
    const int32_t *tr = s->tok_row + (size_t)i * (s->max_k + 1);
    double c[RM_LORA_MAX_K], total = 0;
    for (int j = 0; j < k; j++) {
        const rm_lora_module *E = &sl->comp.experts[j]->mods[mi];
        double sq = 0;
        if (E->rank) {
            const float *u = row_u(s, tr[j]);
            for (int64_t o = 0; o < s->dout; o++) {
                double v = 0;
                for (int a = 0; a < E->rank; a++) v += (double)rm_lora_elem(E, E->B, (size_t)o * E->rank + a) * u[a];
                sq += v * v;
            }
        }
        c[j] = w[j] * fabs(E->scale) * sqrt(sq);
        total += c[j];
    }
    for (int j = 0; j < k && total > 0; j++) s->trace.shares[at + j] += c[j] / total;
}

/* Token i's raw router scores z_j = <A_r x, s_j C_rj u_j> / sqrt(r_r)
 * over its experts, from their unscaled U rows, into w. False where the
 * router does not adapt the module (no expert does, checked at set time):
 * w is then zero. */
static bool router_scores(const rm_lora_state *s, const slot_state *sl, int i, int mi, float *w) {
    const int32_t *tr = s->tok_row + (size_t)i * (s->max_k + 1);
    const rm_lora_module *R = &sl->comp.router->mods[mi];
    int k = sl->comp.k;
    if (!R->rank) {
        for (int j = 0; j < k; j++) w[j] = 0;
        return false;
    }
    const float *q = row_u(s, tr[s->max_k]);
    float key[RM_LORA_MAX_RANK];
    float inv = 1.0f / sqrtf((float)R->rank);
    for (int j = 0; j < k; j++) {
        const float *C = slot_c(sl, j, mi);
        w[j] = 0;
        if (C) {
            const rm_lora_module *E = &sl->comp.experts[j]->mods[mi];
            const float *u = row_u(s, tr[j]);
            for (int a = 0; a < R->rank; a++) key[a] = E->scale * rm_vec_dot(C + (size_t)a * E->rank, u, E->rank);
            w[j] = rm_vec_dot(q, key, R->rank) * inv;
        }
    }
    return true;
}

static void softmax_in_place(float *w, int k) {
    float mx = -INFINITY, sum = 0;
    for (int j = 0; j < k; j++)
        if (w[j] > mx) mx = w[j];
    for (int j = 0; j < k; j++) sum += (w[j] = expf(w[j] - mx));
    for (int j = 0; j < k; j++) w[j] /= sum;
}

/* A router slot's gates from its scores (per token, or pooled), in place:
 * the retrieval prior joins them, then the softmax. */
static void gates_of_scores(const slot_state *sl, float *w) {
    for (int j = 0; j < sl->comp.k; j++) w[j] += sl->prior[j];
    softmax_in_place(w, sl->comp.k);
}

/* Each of token i's expert rows of U times its gate, in place, so that the
 * expand reads them as they are. The router's own row has no output and
 * keeps its values. */
static void scale_rows(rm_lora_state *s, int i) {
    const int32_t *tr = s->tok_row + (size_t)i * (s->max_k + 1);
    for (int j = 0; j < s->max_k; j++) {
        if (tr[j] < 0) continue;
        const row_ref *rr = &s->rows[tr[j]];
        const rm_lora_module *md = rm_adapter_mod(s->groups[rr->group].a, s->layer, s->target);
        float gate = row_gate(s, rr, md), *u = row_u(s, tr[j]);
        for (int k = 0; k < md->rank; k++) u[k] *= gate;
    }
}

/* Gates, tokens split over the pool (a token writes only its own gates,
 * trace and U rows): a router token's softmax of its scores (and its
 * trace), then its rows scaled. A token of a prompt-pooled router gets only
 * its raw scores here: pool_gates and pooled_rows finish it. */
static void token_gates(void *arg, int ith, int nth) {
    rm_lora_state *s = arg;
    int mi = s->layer * RM_TARGET_COUNT + (int)s->target;
    int64_t lo, hi;
    rm_split(s->n_tokens, ith, nth, &lo, &hi);
    for (int i = (int)lo; i < (int)hi; i++) {
        const slot_state *sl = &s->slots[s->seq[i]];
        if (sl->comp.mode == RM_COMPOSE_ROUTER) {
            float *w = s->gates + (size_t)i * s->max_k;
            bool routed = router_scores(s, sl, i, mi, w);
            if (s->tok_index[i] >= 0) continue; /* pooled: pool_gates finishes it */
            if (routed) {
                gates_of_scores(sl, w);
                if (s->trace.gates) trace_token(s, sl, i, w);
            }
        }
        scale_rows(s, i);
    }
}

/* Prompt-pooled routers, serially in batch order (a sequence's tokens come
 * in position order, and each adds to its slot's running sum): token i of
 * index n in a sequence of prompt length P adds its scores to the module's
 * sum while n < P, and is gated by softmax(sum / min(n + 1, P) + prior). */
static void pool_gates(rm_lora_state *s) {
    int mi = s->layer * RM_TARGET_COUNT + (int)s->target;
    size_t per_slot = (size_t)n_mods(s->m) * (size_t)s->max_k;
    for (int i = 0; i < s->n_tokens; i++) {
        int n = s->tok_index[i];
        if (n < 0) continue;
        const slot_state *sl = &s->slots[s->seq[i]];
        if (!sl->comp.router->mods[mi].rank) continue; /* gates stay 0 */
        float *w = s->gates + (size_t)i * s->max_k;
        float *sum = s->pool_sums + (size_t)s->seq[i] * per_slot + (size_t)mi * (size_t)s->max_k;
        int k = sl->comp.k, P = sl->comp.n_prompt;
        if (n < P)
            for (int j = 0; j < k; j++) sum[j] += w[j];
        float count = (float)(n < P ? n + 1 : P);
        for (int j = 0; j < k; j++) w[j] = sum[j] / count;
        gates_of_scores(sl, w);
    }
}

/* The pooled tokens' trace and rows, split over the pool as token_gates. */
static void pooled_rows(void *arg, int ith, int nth) {
    rm_lora_state *s = arg;
    int mi = s->layer * RM_TARGET_COUNT + (int)s->target;
    int64_t lo, hi;
    rm_split(s->n_tokens, ith, nth, &lo, &hi);
    for (int i = (int)lo; i < (int)hi; i++) {
        if (s->tok_index[i] < 0) continue;
        const slot_state *sl = &s->slots[s->seq[i]];
        if (s->trace.gates && sl->comp.router->mods[mi].rank) trace_token(s, sl, i, s->gates + (size_t)i * s->max_k);
        scale_rows(s, i);
    }
}

/* The first lines of the matrix the next group reads. A decode step reads
 * each adapter's matrices once, from memory, in short streams of a few
 * tens of KB: the kernels prefetch within a stream, this covers the jump
 * to the next one. */
#define HEAD_PREFETCH 2048

static void prefetch_head(const void *p) {
    for (int b = 0; b < HEAD_PREFETCH; b += 64) __builtin_prefetch((const char *)p + b, 0, 3);
}

/*
 * Shrink, U rows = X rows . A^T for every group. The module's work (rows x
 * rank over the groups) is split evenly over the threads, a share cutting
 * groups at row boundaries: a router's long group of low rank weighs what
 * it costs, and a lone prefill's one group still spans the pool. A
 * token's X row is read where it lies (a gather would cost as much as the
 * product in decode).
 */
static void shrink_rows(void *arg, int ith, int nth) {
    rm_lora_state *s = arg;
    int64_t lo, hi;
    rm_split(s->shrink_cost, ith, nth, &lo, &hi);
    const float **xp = s->xp + (size_t)ith * s->n_batch;
    for (int gi = 0; gi < s->n_groups; gi++) {
        const group *g = &s->groups[gi];
        const rm_lora_module *md = rm_adapter_mod(g->a, s->layer, s->target);
        int64_t r = md->rank, cb = g->cost_before, ce = cb + (int64_t)g->n_rows * r;
        if (!r || ce <= lo || cb >= hi) continue;
        if (gi + 1 < s->n_groups) {
            const rm_lora_module *nx = rm_adapter_mod(s->groups[gi + 1].a, s->layer, s->target);
            if (nx->rank) prefetch_head(nx->A);
        }
        /* this thread's rows: those whose work starts in [lo, hi) */
        int q0 = lo > cb ? (int)((lo - cb + r - 1) / r) : 0;
        int q1 = hi < ce ? (int)((hi - cb + r - 1) / r) : g->n_rows;
        for (int c0 = q0; c0 < q1; c0 += s->n_batch) { /* a token may use one adapter twice */
            int nq = q1 - c0 < s->n_batch ? q1 - c0 : s->n_batch;
            const row_ref *rr = &s->rows[g->first + c0];
            for (int q = 0; q < nq; q++) xp[q] = s->x + (size_t)rr[q].token * s->din;
            rm_matmul_rows(row_u(s, g->first + c0), s->max_rank, xp, nq, md->A, md->type, md->rank, s->din);
        }
    }
}

/* Columns of Y per tile of the expand: the batch's rows of one tile (256
 * tokens x 128 floats = 128 KB) stay in L2 while every group adds to them,
 * rather than each group streaming whole rows of Y from memory. */
#define EXPAND_TILE 128

/* Expand, output columns [lo, hi) of this thread, a tile at a time, for
 * every group: gated U rows (n_batch at a time) times B[tile]^T, added to
 * their tokens' rows of Y in place. */
static void expand_groups(void *arg, int ith, int nth) {
    rm_lora_state *s = arg;
    int64_t lo, hi;
    rm_split(s->dout, ith, nth, &lo, &hi);
    const float **zp = s->xp + (size_t)ith * s->n_batch;
    float **yp = s->yp + (size_t)ith * s->n_batch;
    for (int64_t t0 = lo; t0 < hi; t0 += EXPAND_TILE) {
        int64_t tn = hi - t0 < EXPAND_TILE ? hi - t0 : EXPAND_TILE;
        for (int gi = 0; gi < s->n_groups; gi++) {
            const group *g = &s->groups[gi];
            const rm_lora_module *md = rm_adapter_mod(g->a, s->layer, s->target);
            if (gi + 1 < s->n_groups) {
                const rm_lora_module *nx = rm_adapter_mod(s->groups[gi + 1].a, s->layer, s->target);
                if (nx->rank) prefetch_head((const char *)nx->B + rm_type_row_bytes(nx->type, t0 * nx->rank));
            }
            if (!md->rank) continue;
            const void *b = (const char *)md->B + rm_type_row_bytes(md->type, t0 * md->rank);
            for (int q = 0; q < g->n_rows;) {
                int n = 0;
                for (; q < g->n_rows && n < s->n_batch; q++) {
                    const row_ref *rr = &s->rows[g->first + q];
                    if (rr->j == s->max_k) continue; /* the router's own row: no output */
                    zp[n] = row_u(s, g->first + q);
                    yp[n++] = s->y + (size_t)rr->token * s->dout + t0;
                }
                rm_matmul_rows_add(yp, zp, n, b, md->type, tn, md->rank);
            }
        }
    }
}

void rm_lora_apply(rm_lora_state *s, const rm_compute *c, int layer, rm_target t, const float *x, float *y) {
    s->layer = layer;
    s->target = t;
    s->x = x;
    s->y = y;
    rm_target_dims(&s->m->cfg, t, &s->din, &s->dout);
    rm_pool *pool = rm_pool_size(c->pool) <= s->n_threads ? c->pool : NULL; /* scratch is per thread */
    s->shrink_cost = 0;
    for (int gi = 0; gi < s->n_groups; gi++) {
        s->groups[gi].cost_before = s->shrink_cost;
        s->shrink_cost += (int64_t)s->groups[gi].n_rows * rm_adapter_mod(s->groups[gi].a, layer, t)->rank;
    }
    rm_pool_run(pool, shrink_rows, s);
    rm_pool_run(s->n_tokens >= 16 ? pool : NULL, token_gates, s);
    if (s->n_pooled) {
        pool_gates(s);
        rm_pool_run(s->n_pooled >= 16 ? pool : NULL, pooled_rows, s);
    }
    /* expand: every thread owns a slice of output columns, for every group */
    rm_pool_run(s->dout > 64 ? pool : NULL, expand_groups, s);
}

/* ---- the model's delta hook ----------------------------------------------------- */

static bool delta_plan(void *state, int n_tokens, const int32_t *seq) { return rm_lora_plan(state, n_tokens, seq); }

static void delta_apply(void *state, const rm_compute *c, int layer, rm_target t, const float *x, float *y) {
    rm_lora_apply(state, c, layer, t, x, y);
}

static const rm_delta_ops lora_delta = {delta_plan, delta_apply};

rm_status rm_lora_attach(rm_ctx *c, rm_lora_state *s) {
    if (!s) {
        rm_ctx_set_delta(c, NULL, NULL);
        return RAMOLE_OK;
    }
    const rm_ctx_params *p = rm_ctx_get_params(c);
    if (s->m != rm_ctx_model(c))
        return rm_err(RAMOLE_ERR_MISMATCH, "LoRA: the state was made for another model than the context's");
    if (s->n_seq < p->n_seq || s->n_batch < p->n_batch)
        return rm_err(RAMOLE_ERR_MISMATCH,
                      "LoRA: the state holds %d sequences and %d tokens per batch, the context %d and %d",
                      s->n_seq, s->n_batch, p->n_seq, p->n_batch);
    if (p->scratch_rank < s->max_rank)
        return rm_err(RAMOLE_ERR_MISMATCH,
                      "LoRA: the context's matmul scratch is sized for rank %d, the state takes rank %d "
                      "(set rm_ctx_params.scratch_rank)",
                      p->scratch_rank, s->max_rank);
    rm_ctx_set_delta(c, &lora_delta, s);
    return RAMOLE_OK;
}

rm_status rm_lora_ctx_new(const rm_model *m, const rm_ctx_params *p, int max_k, int max_rank, rm_ctx **ctx,
                          rm_lora_state **state) {
    *ctx = NULL;
    *state = NULL;
    rm_ctx_params cp = *p;
    if (cp.scratch_rank < max_rank) cp.scratch_rank = max_rank;
    rm_ctx *c = NULL;
    rm_lora_state *s = NULL;
    RM_TRY(rm_ctx_new(m, &cp, &c));
    const rm_ctx_params *ep = rm_ctx_get_params(c);
    rm_status st = rm_lora_state_new(m, ep->n_seq, ep->n_batch, max_k, max_rank, ep->n_threads, &s);
    if (st == RAMOLE_OK) st = rm_lora_attach(c, s);
    if (st != RAMOLE_OK) {
        rm_ctx_free(c);
        rm_lora_state_free(s);
        return st;
    }
    *ctx = c;
    *state = s;
    return RAMOLE_OK;
}

/* ---- tests and evaluation ----------------------------------------------------------- */

const float *rm_lora_last_gates(const rm_lora_state *s, int i) {
    return s->gates + (size_t)i * s->max_k;
}

void rm_lora_trace_gates(rm_lora_state *s, const rm_gate_trace *t) {
    if (t && t->gates && t->n) s->trace = *t;
    else s->trace = (rm_gate_trace){0};
}
