/*
 * registry.c — include/ramole/registry.h over src/registry. Rows move from
 * the internal structs into the public ones (their strings change owner,
 * nothing is copied); hits, tenants and audit entries share their layout
 * with the internal ones, checked below.
 */
#include <string.h>

#include "model/public.h"
#include "registry/registry.h"

struct ramole_registry {
    rm_registry *r;
    ramole_model base; /* the registry's own base, wrapped for ramole_registry_base */
};

_Static_assert(sizeof(ramole_registry_hit) == sizeof(rm_reg_hit) &&
                   offsetof(ramole_registry_hit, name) == offsetof(rm_reg_hit, name),
               "ramole_registry_hit and rm_reg_hit must share their layout");
_Static_assert(sizeof(ramole_registry_tenant) == sizeof(rm_reg_tenant) &&
                   offsetof(ramole_registry_tenant, created) == offsetof(rm_reg_tenant, created),
               "ramole_registry_tenant and rm_reg_tenant must share their layout");
_Static_assert(sizeof(ramole_registry_audit) == sizeof(rm_reg_audit) &&
                   offsetof(ramole_registry_audit, detail) == offsetof(rm_reg_audit, detail),
               "ramole_registry_audit and rm_reg_audit must share their layout");
_Static_assert(RAMOLE_REGISTRY_NAME_MAX == RM_REG_NAME_MAX && RAMOLE_REGISTRY_SAMPLES_MAX == RM_REG_SAMPLES_MAX &&
                   RAMOLE_LAYER_FINAL == RM_HIDDEN_FINAL,
               "public and internal registry limits must agree");
_Static_assert((int)RAMOLE_ADAPTER_DISABLED == (int)RM_REG_DISABLED && (int)RAMOLE_ROLE_ADMIN == (int)RM_REG_ROLE_ADMIN &&
                   (int)RAMOLE_ADAPTER_REJECT == (int)RM_REG_REJECT,
               "public and internal registry enums must agree");

/* ---- opening ------------------------------------------------------------------ */

ramole_status ramole_registry_default_url(char **out) { return rm_registry_default_url(out); }

static rm_status wrap(rm_status st, rm_registry *r, ramole_registry **out) {
    if (st != RAMOLE_OK) return st;
    ramole_registry *pr = rm_calloc(1, sizeof *pr);
    if (!pr) {
        rm_registry_free(r);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    pr->r = r;
    *out = pr;
    return RAMOLE_OK;
}

ramole_status ramole_registry_create(const char *url, const ramole_registry_init_params *p, ramole_registry **out) {
    *out = NULL;
    rm_registry_init_opts io = {.model = p->model, .projection = p->projection, .router = p->router,
                                .layer = p->layer, .require_approval = p->require_approval != 0,
                                .probes = p->probes, .kl_threshold = p->kl_threshold, .actor = p->actor};
    rm_registry *r = NULL;
    rm_status st = rm_registry_create(url, &io, &r);
    return wrap(st, r, out);
}

ramole_status ramole_registry_open(const char *url, ramole_registry **out) {
    *out = NULL;
    char *own = NULL;
    if (!url) RM_TRY(rm_registry_default_url(&own));
    rm_registry *r = NULL;
    rm_status st = rm_registry_open(url ? url : own, &r);
    rm_free(own);
    return wrap(st, r, out);
}

void ramole_registry_free(ramole_registry *r) {
    if (!r) return;
    rm_registry_free(r->r);
    rm_free(r);
}

const char *ramole_registry_url(const ramole_registry *r) { return rm_registry_url(r->r); }

ramole_status ramole_registry_set_base(ramole_registry *r, const ramole_model *m) {
    return rm_registry_set_base(r->r, m->m); /* the registry only reads its base */
}

ramole_status ramole_registry_base(ramole_registry *r, const ramole_model **out) {
    *out = NULL;
    RM_TRY(rm_registry_base(r->r, &r->base.m));
    *out = &r->base;
    return RAMOLE_OK;
}

/* ---- settings ------------------------------------------------------------------ */

ramole_status ramole_registry_set_projection(ramole_registry *r, const char *path, const char *actor,
                                             ramole_message_fn fn, void *user) {
    return rm_registry_set_projection(r->r, path, actor, fn, user);
}
ramole_status ramole_registry_set_router(ramole_registry *r, const char *path, const char *actor) {
    return rm_registry_set_router(r->r, path, actor);
}
ramole_status ramole_registry_set_kl_threshold(ramole_registry *r, double t, const char *actor) {
    return rm_registry_set_kl_threshold(r->r, t, actor);
}
ramole_status ramole_registry_set_require_approval(ramole_registry *r, int on, const char *actor) {
    return rm_registry_set_require_approval(r->r, on != 0, actor);
}
ramole_status ramole_registry_meta(ramole_registry *r, const char *key, char **out) {
    return rm_registry_meta(r->r, key, out);
}
ramole_status ramole_registry_router_file(ramole_registry *r, char **path) {
    return rm_registry_router_file(r->r, path);
}

ramole_status ramole_registry_check(ramole_registry *r, int collect, ramole_registry_check_report *out) {
    rm_reg_check_report rep = {0};
    rm_status st = rm_registry_check(r->r, collect != 0, &rep);
    *out = (ramole_registry_check_report){.n_rows = rep.n_rows, .n_bad = rep.n_bad, .n_orphans = rep.n_orphans,
                                          .first_problem = rep.first_problem};
    return st;
}

/* ---- adapters ------------------------------------------------------------------ */

const char *ramole_adapter_status_name(ramole_adapter_status s) { return rm_reg_status_name((rm_reg_status)s); }

/* Move row a into the public form (a keeps nothing to free). */
static void adapter_move(rm_reg_adapter *a, ramole_registry_adapter *out) {
    *out = (ramole_registry_adapter){.id = a->id, .name = a->name, .description = a->description,
                                     .tenant = a->tenant, .creator = a->creator, .is_public = a->is_public,
                                     .status = (ramole_adapter_status)a->status, .rank = a->rank,
                                     .alpha = a->alpha, .targets = a->targets, .size = a->size,
                                     .created = a->created, .samples = a->samples, .n_samples = a->n_samples,
                                     .embedding = a->embedding, .dim = a->dim,
                                     .emb_fingerprint = a->emb_fingerprint, .emb_layer = a->emb_layer,
                                     .screening = a->screening};
    memcpy(out->hash, a->hash, sizeof out->hash);
    memcpy(out->emb_projection, a->emb_projection, sizeof out->emb_projection);
    memset(a, 0, sizeof *a);
}

/* Back into the internal form, to free it the one way rows are freed. */
static void adapter_unmove(ramole_registry_adapter *a, rm_reg_adapter *out) {
    memset(out, 0, sizeof *out);
    out->name = a->name, out->description = a->description, out->tenant = a->tenant, out->creator = a->creator;
    out->samples = a->samples, out->n_samples = a->n_samples, out->embedding = a->embedding;
    out->screening = a->screening;
    memset(a, 0, sizeof *a);
}

void ramole_registry_adapter_clear(ramole_registry_adapter *a) {
    if (!a) return;
    rm_reg_adapter row;
    adapter_unmove(a, &row);
    rm_reg_adapter_clear(&row);
}

void ramole_registry_adapters_free(ramole_registry_adapter *a, int n) {
    for (int i = 0; a && i < n; i++) ramole_registry_adapter_clear(&a[i]);
    rm_free(a);
}

ramole_status ramole_registry_samples_load(const char *path, int max, char ***out, int *n) {
    return rm_reg_samples_load(path, max, out, n);
}
void ramole_registry_samples_free(char **samples, int n) { rm_reg_samples_free(samples, n); }

ramole_status ramole_registry_adapter_add(ramole_registry *r, const ramole_registry_add_params *p, int64_t *id) {
    rm_reg_add_opts ao = {.path = p->path, .name = p->name, .description = p->description, .tenant = p->tenant,
                          .is_private = p->is_private != 0, .samples = p->samples, .n_samples = p->n_samples,
                          .actor = p->actor};
    return rm_registry_adapter_add(r->r, &ao, id);
}

ramole_status ramole_registry_adapter_get(ramole_registry *r, const char *tenant, const char *name,
                                          ramole_registry_adapter *out) {
    rm_reg_adapter a;
    memset(out, 0, sizeof *out);
    RM_TRY(rm_registry_adapter_get(r->r, tenant, name, &a));
    adapter_move(&a, out);
    return RAMOLE_OK;
}

ramole_status ramole_registry_adapter_list(ramole_registry *r, const char *tenant, ramole_registry_adapter **out,
                                           int *n) {
    *out = NULL;
    *n = 0;
    rm_reg_adapter *rows = NULL;
    int k = 0;
    RM_TRY(rm_registry_adapter_list(r->r, tenant, &rows, &k));
    ramole_registry_adapter *v = rm_calloc(k ? (size_t)k : 1, sizeof *v);
    if (!v) {
        rm_reg_adapters_free(rows, k);
        return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < k; i++) adapter_move(&rows[i], &v[i]);
    rm_reg_adapters_free(rows, k); /* only the array is left */
    *out = v;
    *n = k;
    return RAMOLE_OK;
}

ramole_status ramole_registry_adapter_remove(ramole_registry *r, const char *tenant, const char *name,
                                             const char *actor) {
    return rm_registry_adapter_remove(r->r, tenant, name, actor);
}

ramole_status ramole_registry_adapter_act(ramole_registry *r, const char *tenant, const char *name,
                                          ramole_adapter_action act, const char *actor) {
    return rm_registry_adapter_act(r->r, tenant, name, (rm_reg_action)act, actor);
}

ramole_status ramole_registry_adapter_recheck(ramole_registry *r, const char *tenant, const char *name,
                                              const char *actor, int *n_checked, int *n_held) {
    return rm_registry_adapter_recheck(r->r, tenant, name, actor, n_checked, n_held);
}

ramole_status ramole_registry_adapter_file(ramole_registry *r, const char *tenant, int64_t id, char **path) {
    return rm_registry_adapter_file_id(r->r, tenant, id, path, NULL);
}

ramole_status ramole_registry_adapter_ratings(ramole_registry *r, const char *hash, int64_t *up, int64_t *down) {
    rm_reg_rating *v = NULL;
    int n = 0;
    *up = *down = 0;
    RM_TRY(rm_registry_ratings(r->r, hash, &v, &n));
    for (int i = 0; i < n; i++) *up += v[i].up, *down += v[i].down;
    rm_reg_ratings_free(v, n);
    return RAMOLE_OK;
}

/* ---- retrieval ------------------------------------------------------------------ */

ramole_status ramole_registry_retrieve(ramole_registry *r, const char *text, const char *tenant, int k,
                                       ramole_registry_hit *hits, int *n) {
    return rm_registry_retrieve(r->r, text, tenant, k, (rm_reg_hit *)hits, n);
}

int ramole_registry_n_stale(const ramole_registry *r) { return rm_registry_n_stale(r->r); }

/* ---- tenants, keys, audit ------------------------------------------------------- */

ramole_status ramole_registry_tenant_add(ramole_registry *r, const char *name, const char *actor) {
    return rm_registry_tenant_add(r->r, name, actor);
}
ramole_status ramole_registry_tenant_list(ramole_registry *r, ramole_registry_tenant **out, int *n) {
    return rm_registry_tenant_list(r->r, (rm_reg_tenant **)out, n);
}
void ramole_registry_tenants_free(ramole_registry_tenant *t, int n) { rm_reg_tenants_free((rm_reg_tenant *)t, n); }

int ramole_role_from_name(const char *s, ramole_role *out) {
    rm_reg_role role;
    if (!rm_reg_role_from_name(s, &role)) return 0;
    *out = (ramole_role)role;
    return 1;
}

ramole_status ramole_registry_key_create(ramole_registry *r, const char *tenant, ramole_role role, const char *actor,
                                         char key[69], int64_t *id) {
    return rm_registry_key_create(r->r, tenant, (rm_reg_role)role, actor, key, id);
}
ramole_status ramole_registry_key_revoke(ramole_registry *r, const char *key_or_id, const char *actor) {
    return rm_registry_key_revoke(r->r, key_or_id, actor);
}

ramole_status ramole_registry_audit_list(ramole_registry *r, double since, ramole_registry_audit **out, int *n) {
    return rm_registry_audit_list(r->r, since, (rm_reg_audit **)out, n);
}
void ramole_registry_audits_free(ramole_registry_audit *a, int n) { rm_reg_audits_free((rm_reg_audit *)a, n); }
