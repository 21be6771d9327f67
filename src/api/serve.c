/*
 * serve.c — include/ramole/serve.h over src/serve: the server together with
 * the model and registry it owns.
 */
#include "core/core.h"
#include "registry/registry.h"
#include "serve/serve.h"

_Static_assert(RAMOLE_FEEDBACK_TTL == RM_REG_RESPONSE_TTL, "one default feedback window");

struct ramole_server {
    rm_model *m;
    rm_registry *reg;
    rm_server *srv;
    int n_active;
};

static int count_active(rm_registry *reg) {
    rm_reg_adapter *ads = NULL;
    int n = 0, n_active = 0;
    if (reg && rm_registry_adapter_list(reg, NULL, &ads, &n) == RAMOLE_OK)
        for (int i = 0; i < n; i++) n_active += ads[i].status == RM_REG_ACTIVE;
    rm_reg_adapters_free(ads, n);
    return n_active;
}

ramole_status ramole_server_open(const ramole_serve_options *o, ramole_server **out) {
    *out = NULL;
    if (!o->model) return rm_err(RAMOLE_ERR_INVALID, "serve: no model given");
    ramole_server *s = rm_calloc(1, sizeof *s);
    if (!s) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    char *url = NULL;
    rm_status st = rm_model_open(o->model, &s->m);
    if (st == RAMOLE_OK && !o->no_registry) {
        if (o->registry) st = (url = rm_strdup(o->registry)) ? RAMOLE_OK : rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        else st = rm_registry_default_url(&url);
        if (st == RAMOLE_OK) st = rm_registry_open(url, &s->reg);
    }
    rm_free(url);
    if (st == RAMOLE_OK) {
        rm_engine_params ep = {.n_threads = o->n_threads, .max_seqs = o->max_seqs, .n_ctx = o->n_ctx,
                               .prefill_tokens = o->prefill_tokens, .prefix_cache_mib = o->prefix_cache_mib,
                               .kv_type = o->kv_type == RAMOLE_KV_F16 ? RM_TYPE_F16 : RM_TYPE_F32};
        rm_server_opts so = {.host = o->host, .port = o->port, .model_name = o->model_name, .queue = o->queue,
                             .max_body = o->max_body, .timeout_s = o->timeout_s, .default_top_k = o->default_top_k,
                             .deadline_s = o->deadline_s, .feedback_ttl_s = o->feedback_ttl_s};
        st = rm_server_new(s->m, s->reg, &ep, &so, &s->srv);
    }
    if (st == RAMOLE_OK) st = rm_server_start(s->srv);
    if (st != RAMOLE_OK) {
        ramole_server_free(s);
        return st;
    }
    s->n_active = count_active(s->reg);
    *out = s;
    return RAMOLE_OK;
}

int ramole_server_port(const ramole_server *s) { return rm_server_port(s->srv); }
const char *ramole_server_registry_url(const ramole_server *s) { return s->reg ? rm_registry_url(s->reg) : NULL; }
int ramole_server_active_adapters(const ramole_server *s) { return s->n_active; }
int ramole_server_keys_required(const ramole_server *s) { return rm_server_keys_required(s->srv); }
void ramole_server_shutdown(ramole_server *s, double grace_s) { rm_server_shutdown(s->srv, grace_s); }

void ramole_server_free(ramole_server *s) {
    if (!s) return;
    rm_server_free(s->srv);
    rm_registry_free(s->reg);
    rm_model_free(s->m);
    rm_free(s);
}
