/*
 * cmd_registry.c — `ramole registry`, `adapter`, `tenant`, `key`, `audit`
 * and `retrieve` over a registry: include/ramole/registry.h on the command
 * line. Parsing and printing only; every rule lives in the library.
 *
 * Every verb takes --registry URL (sqlite:PATH or postgresql://...);
 * without it $RAMOLE_REGISTRY, then
 * sqlite:$XDG_DATA_HOME/ramole/registry.db. The command line acts as admin
 * locally; the audit log names it "cli:USER".
 */
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

typedef struct {
    const char *registry, *model, *projection, *router, *probes, *tenant, *name, *samples, *description, *role;
    const char *prompt, *since, *approval, *positional;
    long layer, k, n_samples;
    double kl;
    bool layer_set, require_approval, is_private, json, all, collect, no_projection;
} reg_opts;

static char actor[160];

static const char *cli_actor(void) {
    if (!actor[0]) {
        const char *u = getenv("USER");
        struct passwd *pw = (!u || !*u) ? getpwuid(getuid()) : NULL;
        snprintf(actor, sizeof actor, "cli:%s", u && *u ? u : pw ? pw->pw_name : "?");
    }
    return actor;
}

/* Options shared by every verb; positional arguments (at most one) go to o->positional. */
static bool parse(const char *cmd, int argc, char **argv, int first, reg_opts *o) {
    memset(o, 0, sizeof *o);
    o->k = 3, o->n_samples = 20, o->layer = RAMOLE_LAYER_FINAL;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(cmd, argc, argv, &i))) return false
        if (!strcmp(a, "--registry")) { VAL(); o->registry = v; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); o->model = v; }
        else if (!strcmp(a, "--projection")) { VAL(); if (!strcmp(v, "none")) o->no_projection = true; else o->projection = v; }
        else if (!strcmp(a, "--router")) { VAL(); o->router = v; }
        else if (!strcmp(a, "--probes")) { VAL(); o->probes = v; }
        else if (!strcmp(a, "--tenant")) { VAL(); o->tenant = v; }
        else if (!strcmp(a, "--name")) { VAL(); o->name = v; }
        else if (!strcmp(a, "--samples")) { VAL(); o->samples = v; }
        else if (!strcmp(a, "--description")) { VAL(); o->description = v; }
        else if (!strcmp(a, "--role")) { VAL(); o->role = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { VAL(); o->prompt = v; }
        else if (!strcmp(a, "--since")) { VAL(); o->since = v; }
        else if (!strcmp(a, "--require-approval")) {
            if (i + 1 < argc && (!strcmp(argv[i + 1], "on") || !strcmp(argv[i + 1], "off"))) o->approval = argv[++i];
            else o->require_approval = true, o->approval = "on";
        }
        else if (!strcmp(a, "--layer")) {
            VAL();
            if (strcmp(v, "final") && !cli_int(cmd, a, v, 0, 100000, &o->layer)) return false;
            o->layer_set = true;
        }
        else if (!strcmp(a, "-k") || !strcmp(a, "--top-k")) { VAL(); if (!cli_int(cmd, a, v, 1, 1024, &o->k)) return false; }
        else if (!strcmp(a, "--n-samples")) { VAL(); if (!cli_int(cmd, a, v, 1, RAMOLE_REGISTRY_SAMPLES_MAX, &o->n_samples)) return false; }
        else if (!strcmp(a, "--kl-threshold")) { VAL(); if (!cli_float(cmd, a, v, 1e-9, 1e9, &o->kl)) return false; }
        else if (!strcmp(a, "--private")) o->is_private = true;
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "--all")) o->all = true;
        else if (!strcmp(a, "--collect")) o->collect = true;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ramole %s: unknown option '%s'\n", cmd, a);
            return false;
        } else if (o->positional) {
            fprintf(stderr, "ramole %s: unexpected argument '%s'\n", cmd, a);
            return false;
        } else
            o->positional = a;
#undef VAL
    }
    return true;
}

/* The URL: --registry, else the library's default. */
static int open_registry(const char *cmd, const reg_opts *o, ramole_registry **r) {
    ramole_status st = ramole_registry_open(o->registry, r);
    return st == RAMOLE_OK ? 0 : cli_fail(cmd, st);
}

static void fmt_time(double t, char *buf, size_t n) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fmt_targets(unsigned mask, char *buf, size_t n) {
    buf[0] = 0;
    for (int t = 0; t < RAMOLE_TARGET_COUNT; t++)
        if (mask & (1u << t)) {
            size_t l = strlen(buf);
            snprintf(buf + l, n - l, "%s%s", l ? "," : "", ramole_target_name((ramole_target)t));
        }
}

static void progress(const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "%s\n", msg);
}

/* ---- registry init | set | check ------------------------------------------------------- */

static int registry_usage(FILE *f) {
    fprintf(f, "usage: ramole registry init -m MODEL [--projection P] [--router R] [--layer L|final] [--require-approval]\n"
               "                              [--probes FILE] [--kl-threshold X] [--registry URL]\n"
               "       ramole registry set [--projection P|none] [--router R] [--kl-threshold X] [--require-approval on|off]\n"
               "       ramole registry check [--collect]   (every row against its blob; --collect removes orphan blobs)\n"
               "       ramole registry info\n");
    return f == stdout ? 0 : 2;
}

int cmd_registry(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) return registry_usage(argc < 2 ? stderr : stdout);
    const char *verb = argv[1];
    char cmd[64];
    snprintf(cmd, sizeof cmd, "registry %s", verb);
    reg_opts o;
    if (!parse(cmd, argc, argv, 2, &o)) return 2;
    ramole_registry *r = NULL;
    ramole_status st = RAMOLE_OK;
    int rc = 0;
    if (!strcmp(verb, "init")) {
        if (!o.model) {
            fprintf(stderr, "ramole %s: -m MODEL is required\n", cmd);
            return 2;
        }
        char *url = NULL;
        if (!o.registry) st = ramole_registry_default_url(&url);
        ramole_registry_init_params io = {.model = o.model, .projection = o.projection, .router = o.router,
                                          .layer = (int)o.layer, .require_approval = o.require_approval,
                                          .probes = o.probes, .kl_threshold = o.kl, .actor = cli_actor()};
        const char *where = o.registry ? o.registry : url;
        if (st == RAMOLE_OK) st = ramole_registry_create(where, &io, &r);
        if (st == RAMOLE_OK) printf("initialised %s for %s\n", where, o.model);
        ramole_free(url);
    } else if (!strcmp(verb, "set")) {
        if (!o.projection && !o.no_projection && !o.router && !o.kl && !o.approval) {
            fprintf(stderr, "ramole %s: give --projection, --router, --kl-threshold or --require-approval\n", cmd);
            return 2;
        }
        if ((rc = open_registry(cmd, &o, &r)) != 0) return rc;
        if (o.projection || o.no_projection) {
            fprintf(stderr, "replacing the projection: every adapter is re-embedded\n");
            st = ramole_registry_set_projection(r, o.projection, cli_actor(), progress, NULL);
        }
        if (st == RAMOLE_OK && o.router) st = ramole_registry_set_router(r, o.router, cli_actor());
        if (st == RAMOLE_OK && o.kl) st = ramole_registry_set_kl_threshold(r, o.kl, cli_actor());
        if (st == RAMOLE_OK && o.approval) st = ramole_registry_set_require_approval(r, !strcmp(o.approval, "on"), cli_actor());
    } else if (!strcmp(verb, "check")) {
        if ((rc = open_registry(cmd, &o, &r)) != 0) return rc;
        ramole_registry_check_report rep;
        if ((st = ramole_registry_check(r, o.collect, &rep)) == RAMOLE_OK) {
            printf("%d adapters checked, %d bad, %d orphan blobs%s\n", rep.n_rows, rep.n_bad, rep.n_orphans,
                   o.collect ? " (those older than a minute collected)" : "");
            if (rep.first_problem) fprintf(stderr, "ramole %s: %s\n", cmd, rep.first_problem);
            rc = rep.n_bad ? 1 : 0;
            ramole_free(rep.first_problem);
        }
    } else if (!strcmp(verb, "info")) {
        if ((rc = open_registry(cmd, &o, &r)) != 0) return rc;
        static const char *const keys[] = {"base_path", "base_fingerprint", "layer", "projection", "router",
                                           "require_approval", "kl_threshold"};
        printf("url\t%s\n", ramole_registry_url(r));
        for (size_t i = 0; st == RAMOLE_OK && i < sizeof keys / sizeof keys[0]; i++) {
            char *v = NULL;
            if ((st = ramole_registry_meta(r, keys[i], &v)) == RAMOLE_OK) printf("%s\t%s\n", keys[i], v);
            ramole_free(v);
        }
    } else {
        fprintf(stderr, "ramole registry: unknown verb '%s'\n", verb);
        return registry_usage(stderr);
    }
    if (st != RAMOLE_OK) rc = cli_fail(cmd, st);
    ramole_registry_free(r);
    return rc;
}

/* ---- adapter ---------------------------------------------------------------------------- */

static int adapter_usage(FILE *f) {
    fprintf(f, "usage: ramole adapter add PATH --name NAME --samples FILE [--n-samples M] [--description TEXT]\n"
               "                          [--tenant T] [--private]\n"
               "       ramole adapter list [--json] [--tenant T]\n"
               "       ramole adapter show|rm|disable|enable|approve|reject NAME [--tenant T]\n"
               "       ramole adapter recheck NAME|--all [--tenant T]\n"
               "every verb takes --registry URL (sqlite:PATH or postgresql://...); default $RAMOLE_REGISTRY, then\n"
               "$XDG_DATA_HOME/ramole/registry.db\n");
    return f == stdout ? 0 : 2;
}

static json_t *adapter_json(const ramole_registry_adapter *a, bool full) {
    char created[32], targets[128];
    fmt_time(a->created, created, sizeof created);
    fmt_targets(a->targets, targets, sizeof targets);
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:s, s:I, s:s, s:s, s:s, s:i}", "id",
                          (json_int_t)a->id, "name", a->name, "tenant", a->tenant, "visibility",
                          a->is_public ? "public" : "private", "status", ramole_adapter_status_name(a->status),
                          "description", a->description, "rank", a->rank, "alpha", (double)a->alpha, "targets",
                          targets, "size", (json_int_t)a->size, "hash", a->hash, "created", created, "creator",
                          a->creator, "n_samples", a->n_samples);
    if (o && full) {
        json_t *s = json_array();
        for (int i = 0; i < a->n_samples; i++) json_array_append_new(s, json_string_nocheck(a->samples[i]));
        json_object_set_new(o, "samples", s);
        char fp[17];
        snprintf(fp, sizeof fp, "%016llx", (unsigned long long)a->emb_fingerprint);
        json_object_set_new(o, "embedder", json_pack("{s:s, s:i, s:s, s:i}", "base_fingerprint", fp, "layer",
                                                     a->emb_layer, "projection", a->emb_projection, "dim", a->dim));
        json_t *scr = json_loads(a->screening, 0, NULL);
        json_object_del(scr, "norms"); /* per-module numbers: kept in the registry, too long to show */
        json_object_set_new(o, "screening", scr ? scr : json_object());
    }
    return o;
}

static int print_json(json_t *v) {
    char *s = v ? json_dumps(v, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(v);
    if (!s) {
        fprintf(stderr, "ramole adapter: out of memory\n");
        return 1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

static int adapter_add(const char *cmd, ramole_registry *r, const reg_opts *o) {
    if (!o->positional || !o->name || !o->samples) {
        fprintf(stderr, "ramole %s: PATH, --name NAME and --samples FILE are required\n", cmd);
        return 2;
    }
    char **samples = NULL;
    int n = 0;
    ramole_status st = ramole_registry_samples_load(o->samples, (int)o->n_samples, &samples, &n);
    int64_t id = -1;
    ramole_registry_add_params ao = {.path = o->positional, .name = o->name, .description = o->description,
                          .tenant = o->tenant, .is_private = o->is_private, .samples = (const char *const *)samples,
                          .n_samples = n, .actor = cli_actor()};
    if (st == RAMOLE_OK) st = ramole_registry_adapter_add(r, &ao, &id);
    ramole_registry_samples_free(samples, n);
    if (st != RAMOLE_OK) return cli_fail(cmd, st);
    ramole_registry_adapter a;
    if (ramole_registry_adapter_get(r, o->tenant, o->name, &a) == RAMOLE_OK) {
        if (a.status != RAMOLE_ADAPTER_ACTIVE) fprintf(stderr, "%s is %s (ramole adapter approve %s)\n", a.name,
                                               ramole_adapter_status_name(a.status), a.name);
        ramole_registry_adapter_clear(&a);
    }
    printf("%lld\n", (long long)id);
    return 0;
}

int cmd_adapter(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) return adapter_usage(argc < 2 ? stderr : stdout);
    const char *verb = argv[1];
    char cmd[64];
    snprintf(cmd, sizeof cmd, "adapter %s", verb);
    static const char *const known[] = {"add", "list", "show", "rm", "disable", "enable", "approve", "reject", "recheck"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) ok |= !strcmp(verb, known[i]);
    if (!ok) {
        fprintf(stderr, "ramole adapter: unknown verb '%s'\n", verb);
        return adapter_usage(stderr);
    }
    reg_opts o;
    if (!parse(cmd, argc, argv, 2, &o)) return 2;
    bool wants_name = strcmp(verb, "add") && strcmp(verb, "list") && !(o.all && !strcmp(verb, "recheck"));
    if (wants_name && !o.positional) {
        fprintf(stderr, "ramole %s: NAME is required\n", cmd);
        return 2;
    }
    ramole_registry *r = NULL;
    int rc = open_registry(cmd, &o, &r);
    if (rc) return rc;
    ramole_status st = RAMOLE_OK;
    if (!strcmp(verb, "add")) rc = adapter_add(cmd, r, &o);
    else if (!strcmp(verb, "list")) {
        ramole_registry_adapter *rows = NULL;
        int n = 0;
        if ((st = ramole_registry_adapter_list(r, o.tenant, &rows, &n)) == RAMOLE_OK) {
            if (o.json) {
                json_t *arr = json_array();
                for (int i = 0; i < n; i++) json_array_append_new(arr, adapter_json(&rows[i], false));
                rc = print_json(arr);
            } else
                for (int i = 0; i < n; i++)
                    printf("%lld\t%s\t%s\t%s\t%s\trank %d\n", (long long)rows[i].id, rows[i].name, rows[i].tenant,
                           rows[i].is_public ? "public" : "private", ramole_adapter_status_name(rows[i].status), rows[i].rank);
        }
        ramole_registry_adapters_free(rows, n);
    } else if (!strcmp(verb, "show")) {
        ramole_registry_adapter a;
        if ((st = ramole_registry_adapter_get(r, o.tenant, o.positional, &a)) == RAMOLE_OK) {
            json_t *j = adapter_json(&a, true);
            int64_t up = 0, down = 0; /* this adapter's file, rated under any of its names */
            if ((st = ramole_registry_adapter_ratings(r, a.hash, &up, &down)) == RAMOLE_OK) {
                json_object_set_new(j, "ratings", json_pack("{s:I, s:I}", "up", (json_int_t)up, "down", (json_int_t)down));
                rc = print_json(j);
            } else
                json_decref(j);
        }
        ramole_registry_adapter_clear(&a);
    } else if (!strcmp(verb, "rm")) {
        st = ramole_registry_adapter_remove(r, o.tenant, o.positional, cli_actor());
    } else if (!strcmp(verb, "recheck")) {
        int n_checked = 0, n_held = 0;
        st = ramole_registry_adapter_recheck(r, o.tenant, o.all ? NULL : o.positional, cli_actor(), &n_checked, &n_held);
        if (st == RAMOLE_OK) printf("%d rechecked, %d held for review\n", n_checked, n_held);
    } else {
        ramole_adapter_action act = !strcmp(verb, "enable") ? RAMOLE_ADAPTER_ENABLE : !strcmp(verb, "disable") ? RAMOLE_ADAPTER_DISABLE
                            : !strcmp(verb, "approve") ? RAMOLE_ADAPTER_APPROVE : RAMOLE_ADAPTER_REJECT;
        st = ramole_registry_adapter_act(r, o.tenant, o.positional, act, cli_actor());
    }
    if (st != RAMOLE_OK) rc = cli_fail(cmd, st);
    ramole_registry_free(r);
    return rc;
}

/* ---- tenant, key, audit ---------------------------------------------------------------- */

int cmd_tenant(int argc, char **argv) {
    const char *verb = argc >= 2 ? argv[1] : "";
    if (strcmp(verb, "add") && strcmp(verb, "list")) {
        fprintf(stderr, "usage: ramole tenant add NAME | ramole tenant list   [--registry URL]\n");
        return 2;
    }
    char cmd[64];
    snprintf(cmd, sizeof cmd, "tenant %s", verb);
    reg_opts o;
    if (!parse(cmd, argc, argv, 2, &o)) return 2;
    if (!strcmp(verb, "add") && !o.positional) {
        fprintf(stderr, "ramole %s: NAME is required\n", cmd);
        return 2;
    }
    ramole_registry *r = NULL;
    int rc = open_registry(cmd, &o, &r);
    if (rc) return rc;
    ramole_status st;
    if (!strcmp(verb, "add")) st = ramole_registry_tenant_add(r, o.positional, cli_actor());
    else {
        ramole_registry_tenant *t = NULL;
        int n = 0;
        if ((st = ramole_registry_tenant_list(r, &t, &n)) == RAMOLE_OK)
            for (int i = 0; i < n; i++) {
                char when[32];
                fmt_time(t[i].created, when, sizeof when);
                printf("%s\t%s\n", t[i].name, when);
            }
        ramole_registry_tenants_free(t, n);
    }
    if (st != RAMOLE_OK) rc = cli_fail(cmd, st);
    ramole_registry_free(r);
    return rc;
}

int cmd_key(int argc, char **argv) {
    const char *verb = argc >= 2 ? argv[1] : "";
    if (strcmp(verb, "create") && strcmp(verb, "revoke")) {
        fprintf(stderr, "usage: ramole key create --tenant T --role generate|upload|admin | ramole key revoke KEY|ID"
                        "   [--registry URL]\n");
        return 2;
    }
    char cmd[64];
    snprintf(cmd, sizeof cmd, "key %s", verb);
    reg_opts o;
    if (!parse(cmd, argc, argv, 2, &o)) return 2;
    ramole_role role = RAMOLE_ROLE_GENERATE;
    if (!strcmp(verb, "create")) {
        if (!o.tenant || !o.role) {
            fprintf(stderr, "ramole %s: --tenant T and --role R are required\n", cmd);
            return 2;
        }
        if (!ramole_role_from_name(o.role, &role)) {
            fprintf(stderr, "ramole %s: unknown role '%s' (generate, upload, admin)\n", cmd, o.role);
            return 2;
        }
    } else if (!o.positional) {
        fprintf(stderr, "ramole %s: the key or its id is required\n", cmd);
        return 2;
    }
    ramole_registry *r = NULL;
    int rc = open_registry(cmd, &o, &r);
    if (rc) return rc;
    ramole_status st;
    if (!strcmp(verb, "create")) {
        char key[69];
        int64_t id = -1;
        if ((st = ramole_registry_key_create(r, o.tenant, role, cli_actor(), key, &id)) == RAMOLE_OK) {
            printf("key id %lld for tenant %s, role %s (shown once; only its hash is stored):\n%s\n", (long long)id,
                   o.tenant, o.role, key);
            memset(key, 0, sizeof key);
        }
    } else
        st = ramole_registry_key_revoke(r, o.positional, cli_actor());
    if (st != RAMOLE_OK) rc = cli_fail(cmd, st);
    ramole_registry_free(r);
    return rc;
}

/* "2026-12-06", "2026-12-06T04:00:00" (UTC) or unix seconds. */
static bool parse_since(const char *s, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (*s && !*end) return *out = v, true;
    struct tm tm = {0};
    const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!e || *e) {
        memset(&tm, 0, sizeof tm);
        e = strptime(s, "%Y-%m-%d", &tm);
    }
    if (!e || (*e && strcmp(e, "Z"))) return false;
    *out = (double)timegm(&tm);
    return true;
}

int cmd_audit(int argc, char **argv) {
    const char *cmd = "audit";
    reg_opts o;
    if (!parse(cmd, argc, argv, 1, &o)) return 2;
    double since = 0;
    if (o.since && !parse_since(o.since, &since)) {
        fprintf(stderr, "ramole audit: --since %s: expected YYYY-MM-DD[THH:MM:SS] (UTC) or unix seconds\n", o.since);
        return 2;
    }
    ramole_registry *r = NULL;
    int rc = open_registry(cmd, &o, &r);
    if (rc) return rc;
    ramole_registry_audit *a = NULL;
    int n = 0;
    ramole_status st = ramole_registry_audit_list(r, since, &a, &n);
    for (int i = 0; st == RAMOLE_OK && i < n; i++) {
        char when[32];
        fmt_time(a[i].time, when, sizeof when);
        printf("%s\t%s\t%s\t%s\t%s\t%s\n", when, a[i].actor, a[i].action, a[i].target, a[i].hash, a[i].detail);
    }
    ramole_registry_audits_free(a, n);
    if (st != RAMOLE_OK) rc = cli_fail(cmd, st);
    ramole_registry_free(r);
    return rc;
}

/* ---- retrieve over the registry --------------------------------------------------------- */

int cmd_registry_retrieve(int argc, char **argv) {
    const char *cmd = "retrieve";
    reg_opts o;
    if (!parse(cmd, argc, argv, 1, &o)) return 2;
    if (!o.prompt) {
        fprintf(stderr, "ramole retrieve: -p TEXT is required (or --pool tasks.jsonl for a task file)\n");
        return 2;
    }
    ramole_registry *r = NULL;
    int rc = open_registry(cmd, &o, &r);
    if (rc) {
        fprintf(stderr, "ramole retrieve: (to retrieve tasks of a file instead: --pool tasks.jsonl)\n");
        return rc;
    }
    ramole_registry_hit *hits = malloc((size_t)o.k * sizeof *hits);
    int n = 0;
    ramole_status st = hits ? RAMOLE_OK : ramole_error_set(RAMOLE_ERR_NOMEM, "out of memory");
    ramole_model *base = NULL;
    if (st == RAMOLE_OK && o.model) { /* -m: the caller's base must be the registry's */
        if ((st = ramole_model_open(o.model, &base)) == RAMOLE_OK) st = ramole_registry_set_base(r, base);
    }
    if (st == RAMOLE_OK) st = ramole_registry_retrieve(r, o.prompt, o.tenant, (int)o.k, hits, &n);
    if (st == RAMOLE_OK && ramole_registry_n_stale(r))
        fprintf(stderr, "note: %d adapters have embeddings of another embedder and are left out\n", ramole_registry_n_stale(r));
    for (int i = 0; st == RAMOLE_OK && i < n; i++) printf("%s\t%.6f\n", hits[i].name, (double)hits[i].score);
    if (st != RAMOLE_OK) rc = cli_fail(cmd, st);
    free(hits);
    ramole_registry_free(r);
    ramole_model_free(base);
    return rc;
}
