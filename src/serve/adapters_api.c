/*
 * adapters_api.c — the adapter routes: multipart uploads, read, delete,
 * approve, and vLLM's load/unload by server path.
 *
 * An upload streams through ramole's multipart reader (multipart.h) into a
 * private temporary folder (the files' own names, reduced to a safe base
 * name), then rm_registry_adapter_add screens, embeds and stores it, on the
 * connection's thread: the scheduler never waits for an upload. The folder
 * is removed whatever happens.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/multipart.h"
#include "serve/serve_internal.h"

#define UPLOAD_FIELD_MAX 4096
#define UPLOAD_FILES_MAX 8       /* files of one upload: a PEFT folder needs two */

/* What the part being read goes to. */
typedef enum { PART_SKIP = 0, PART_FILE, PART_FIELD } part_kind;

struct srv_upload {
    srv_mp *mp;                    /* NULL when the body is not multipart: error says so */
    char dir[256];                 /* the temporary folder; adapter files in dir/adapter */
    char name[RM_REG_NAME_MAX + 1], description[UPLOAD_FIELD_MAX], visibility[16];
    size_t name_len, description_len, visibility_len;
    bool has_name, has_description, has_visibility, has_samples;
    char files[UPLOAD_FILES_MAX][96];  /* the adapter files' names */
    int n_files;
    part_kind part;
    const char *field;             /* the field being read (PART_FIELD) */
    char *buf;
    size_t cap, *len;
    FILE *f;                       /* the file being written (PART_FILE) */
    char *error;                   /* the first problem, for a 400 */
};

static void upload_fail(srv_upload *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void upload_fail(srv_upload *u, const char *fmt, ...) {
    if (u->error) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    u->error = rm_strdup(msg);
}

/* The base name of a client's file name, if it is a safe one. */
static bool safe_name(const char *fn, char *out, size_t n) {
    const char *b = strrchr(fn, '/');
    b = b ? b + 1 : fn;
    if (!*b || *b == '.' || strlen(b) >= n) return false;
    for (const char *p = b; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-'))
            return false;
    snprintf(out, n, "%s", b);
    return true;
}

/* Where a "file" part goes: its safe base name, each name once, at most
 * UPLOAD_FILES_MAX files (each is a file on disk); NULL after upload_fail. */
static const char *file_part_name(srv_upload *u, const char *filename) {
    if (u->n_files >= UPLOAD_FILES_MAX) {
        upload_fail(u, "field \"file\": at most %d files", UPLOAD_FILES_MAX);
        return NULL;
    }
    char *base = u->files[u->n_files];
    if (!filename || !safe_name(filename, base, sizeof u->files[0])) {
        upload_fail(u, "field \"file\": each file needs a plain file name (letters, digits, . _ -)");
        return NULL;
    }
    for (int i = 0; i < u->n_files; i++)
        if (!strcmp(u->files[i], base)) {
            upload_fail(u, "field \"file\": %s is given twice", base);
            return NULL;
        }
    u->n_files++;
    return base;
}

/* The multipart reader's callback: a part begins. */
static void upload_part(void *user, const char *key, const char *filename) {
    srv_upload *u = user;
    if (u->f) fclose(u->f), u->f = NULL;
    u->part = PART_SKIP;
    if (u->error) return; /* read on, answer after */
    bool is_file = !strcmp(key, "file"), is_samples = !strcmp(key, "samples"), is_name = !strcmp(key, "name"),
         is_desc = !strcmp(key, "description"), is_vis = !strcmp(key, "visibility");
    bool *given = is_samples ? &u->has_samples : is_name ? &u->has_name : is_desc ? &u->has_description
                : is_vis ? &u->has_visibility : NULL;
    if (given && *given) {
        upload_fail(u, "field \"%s\" is given twice", key);
        return;
    }
    if (given) *given = true;
    if (is_file || is_samples) {
        const char *base = is_file ? file_part_name(u, filename) : "samples.jsonl";
        char path[512];
        snprintf(path, sizeof path, is_file ? "%s/adapter/%s" : "%s/%s", u->dir, base ? base : "");
        if (!base) return;
        if (!(u->f = fopen(path, "wb"))) upload_fail(u, "cannot store the upload");
        else u->part = PART_FILE;
    } else if (given) { /* other fields are ignored, as with JSON */
        u->part = PART_FIELD;
        u->field = is_name ? "name" : is_desc ? "description" : "visibility";
        u->buf = is_name ? u->name : is_desc ? u->description : u->visibility;
        u->cap = is_name ? sizeof u->name : is_desc ? sizeof u->description : sizeof u->visibility;
        u->len = is_name ? &u->name_len : is_desc ? &u->description_len : &u->visibility_len;
    }
}

/* The multipart reader's callback: more bytes of the part. */
static void upload_data(void *user, const char *data, size_t n) {
    srv_upload *u = user;
    if (u->error) return;
    if (u->part == PART_FILE && fwrite(data, 1, n, u->f) != n) upload_fail(u, "cannot store the upload");
    if (u->part != PART_FIELD) return;
    if (*u->len + n >= u->cap) {
        upload_fail(u, "field \"%s\" is too long", u->field);
        return;
    }
    memcpy(u->buf + *u->len, data, n);
    *u->len += n;
    u->buf[*u->len] = 0;
}

srv_upload *srv_upload_new(const char *content_type) {
    srv_upload *u = rm_calloc(1, sizeof *u);
    if (!u) return NULL;
    const char *tmp = getenv("TMPDIR");
    snprintf(u->dir, sizeof u->dir, "%s/ramole-upload-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    char sub[300];
    if (!mkdtemp(u->dir) || (snprintf(sub, sizeof sub, "%s/adapter", u->dir), mkdir(sub, 0700)) != 0) {
        u->dir[0] = 0;
        srv_upload_free(u);
        return NULL;
    }
    srv_mp_sink sink = {.part = upload_part, .data = upload_data, .user = u};
    if (srv_mp_new(content_type, &sink, &u->mp) != RAMOLE_OK) upload_fail(u, "%s", ramole_last_error());
    return u;
}

void srv_upload_feed(srv_upload *u, const char *data, size_t n) {
    if (u->mp && !u->error && srv_mp_feed(u->mp, data, n) != RAMOLE_OK)
        upload_fail(u, "the multipart body is malformed: %s", ramole_last_error());
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[600];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
            else unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

void srv_upload_free(srv_upload *u) {
    if (!u) return;
    srv_mp_free(u->mp);
    if (u->f) fclose(u->f);
    if (u->dir[0]) remove_tree(u->dir);
    rm_free(u->error);
    rm_free(u);
}

/* The adapter's path inside the upload: the PEFT folder or the one GGUF file. */
static bool upload_path(srv_upload *u, char *out, size_t n) {
    char p[400];
    snprintf(p, sizeof p, "%s/adapter/adapter_config.json", u->dir);
    if (access(p, R_OK) == 0) {
        snprintf(out, n, "%s/adapter", u->dir);
        return true;
    }
    if (u->n_files != 1) return false;
    snprintf(p, sizeof p, "%s/adapter", u->dir);
    DIR *d = opendir(p);
    bool found = false;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            int w = snprintf(out, n, "%s/adapter/%s", u->dir, e->d_name);
            found = w > 0 && (size_t)w < n;
        }
    if (d) closedir(d);
    return found;
}

/* err as the client may read it: the upload's temporary folder, a path on
 * the server, is left out of the paths it quotes ("DIR/adapter/a.gguf"
 * reads "a.gguf", the PEFT folder "DIR/adapter" reads "adapter"). */
static void upload_message(const srv_upload *u, const char *err, char *out, size_t n) {
    char files[300], dir[300];
    int nf = snprintf(files, sizeof files, "%s/adapter/", u->dir), nd = snprintf(dir, sizeof dir, "%s/", u->dir);
    size_t k = 0;
    for (const char *p = err; *p && k + 1 < n;) {
        if (nf > 0 && !strncmp(p, files, (size_t)nf)) p += nf;
        else if (nd > 0 && !strncmp(p, dir, (size_t)nd)) p += nd;
        else out[k++] = *p++;
    }
    out[k] = 0;
}

/* The screening failures of an upload (its bytes are not an adapter of this base): 422. */
static int upload_status(rm_status st) {
    switch (st) {
    case RAMOLE_ERR_RANGE: case RAMOLE_ERR_MISMATCH: case RAMOLE_ERR_FORMAT: case RAMOLE_ERR_UNSUPPORTED: return 422;
    case RAMOLE_ERR_INVALID: case RAMOLE_ERR_NOT_FOUND: return 400;
    default: return 500;
    }
}

/* 201 with the new row and its screening results. */
static void created_reply(rm_server *s, const char *tenant, const char *name, srv_reply *out) {
    memset(out, 0, sizeof *out);
    rm_reg_adapter a = {0};
    if (rm_registry_adapter_get(s->reg, tenant, name, &a) != RAMOLE_OK) {
        srv_reply_error(out, 500, NULL, NULL, "%s", ramole_last_error());
        return;
    }
    json_t *o = adapter_json(&a);
    json_t *scr = a.screening ? json_loads(a.screening, 0, NULL) : NULL;
    json_object_set_new(o, "screening", scr ? scr : json_null());
    rm_reg_adapter_clear(&a);
    srv_reply_json(out, 201, o);
}

void srv_upload_reply(rm_server *s, srv_upload *u, const caller *who, srv_reply *out, const char **name) {
    memset(out, 0, sizeof *out);
    if (name) *name = u ? u->name : "";
    char path[512];
    char **samples = NULL;
    int n_samples = 0;
    bool stored = true;
    if (u && u->f) {
        stored = fclose(u->f) == 0;
        u->f = NULL;
    }
    if (u && u->mp && !u->error && srv_mp_finish(u->mp) != RAMOLE_OK)
        upload_fail(u, "the multipart body is malformed: %s", ramole_last_error());
    if (!s->reg) srv_reply_error(out, 404, NULL, "no_registry", "this server has no adapter registry");
    else if (!u || !stored) srv_reply_error(out, 500, NULL, NULL, "cannot store the upload");
    else if (u->error) srv_reply_error(out, 400, NULL, "invalid_upload", "%s", u->error);
    else if (!u->name_len) srv_reply_error(out, 400, "name", "invalid_value", "field \"name\" is required");
    else if (!srv_utf8_valid(u->name) || !srv_utf8_valid(u->description))
        srv_reply_error(out, 400, srv_utf8_valid(u->name) ? "description" : "name", "invalid_value",
                        "field \"%s\" must be UTF-8 text", srv_utf8_valid(u->name) ? "description" : "name");
    else if (u->visibility_len && strcmp(u->visibility, "public") && strcmp(u->visibility, "private"))
        srv_reply_error(out, 400, "visibility", "invalid_value", "field \"visibility\" must be public or private");
    else if (!u->has_samples)
        srv_reply_error(out, 400, "samples", "invalid_value",
                        "field \"samples\" (a JSONL file with \"input\" per line) is required");
    else if (!upload_path(u, path, sizeof path))
        srv_reply_error(out, 400, "file", "invalid_value",
                        "field \"file\": give adapter_config.json and adapter_model.safetensors, or one GGUF LoRA file");
    else {
        char sp[400];
        snprintf(sp, sizeof sp, "%s/samples.jsonl", u->dir);
        rm_status st = rm_reg_samples_load(sp, RM_REG_SAMPLES_MAX, &samples, &n_samples);
        if (st != RAMOLE_OK)
            srv_reply_error(out, 400, "samples", "invalid_value", "field \"samples\": %s", ramole_last_error());
        else {
            rm_reg_add_opts o = {.path = path, .name = u->name, .description = u->description,
                                 .tenant = tenant_of(who), .is_private = !strcmp(u->visibility, "private"),
                                 .samples = (const char *const *)samples, .n_samples = n_samples,
                                 .actor = tenant_of(who)};
            int64_t id = 0;
            st = rm_registry_adapter_add(s->reg, &o, &id);
            if (st != RAMOLE_OK) {
                char msg[1024];
                upload_message(u, ramole_last_error(), msg, sizeof msg);
                srv_reply_error(out, upload_status(st), NULL,
                                upload_status(st) == 422 ? "screening_failed" : "invalid_value", "%s", msg);
            }
            else created_reply(s, tenant_of(who), u->name, out);
        }
    }
    rm_reg_samples_free(samples, n_samples);
}

enum MHD_Result route_upload(rm_server *s, struct MHD_Connection *c, conn_ctx *cx) {
    const char *route = "/v1/adapters";
    caller who;
    enum MHD_Result ret;
    if (!authorize(s, c, route, RM_REG_ROLE_UPLOAD, &who, &ret)) return ret;
    srv_reply rep;
    srv_upload_reply(s, cx->upload, &who, &rep, NULL);
    rm_free(who.tenant);
    return send_reply(s, c, route, &rep);
}

/* The row `id` as `tenant` may see it (its own, or public and active); false: 404. */
static bool find_visible(rm_server *s, const char *tenant, int64_t id, bool admin, rm_reg_adapter *out) {
    rm_reg_adapter *a = NULL;
    int n = 0;
    bool found = false;
    if (!s->reg || rm_registry_adapter_list(s->reg, NULL, &a, &n) != RAMOLE_OK) return false;
    for (int i = 0; i < n && !found; i++) {
        if (a[i].id != id) continue;
        bool own = a[i].tenant && !strcmp(a[i].tenant, tenant);
        if (own || admin || (a[i].is_public && a[i].status == RM_REG_ACTIVE)) {
            *out = a[i];
            memset(&a[i], 0, sizeof a[i]);
            found = true;
        }
    }
    rm_reg_adapters_free(a, n);
    return found;
}

/* Forget an adapter's file in the engine's cache: new requests cannot use it. */
static void drop_cached(rm_server *s, const char *tenant, const char *name) {
    char *path = NULL;
    if (rm_registry_adapter_file(s->reg, tenant, name, &path, NULL) == RAMOLE_OK) rm_engine_drop_adapter(s->engine, path);
    rm_free(path);
}

enum MHD_Result route_adapter_id(rm_server *s, struct MHD_Connection *c, const char *url, const char *method,
                                 bool *handled) {
    *handled = false;
    const char *p = url + strlen("/v1/adapters/");
    char *end = NULL;
    long long id = strtoll(p, &end, 10);
    bool approve = end && !strcmp(end, "/approve");
    if (end == p || !end || (*end && !approve)) return MHD_NO;
    *handled = true;
    const char *route = approve ? "/v1/adapters/{id}/approve" : "/v1/adapters/{id}";
    bool get = !strcmp(method, "GET"), del = !strcmp(method, "DELETE"), post = !strcmp(method, "POST");
    if (approve ? !post : !(get || del))
        return send_error(s, c, route, 405, NULL, "method_not_allowed", "%s does not take %s", route, method);
    caller who;
    enum MHD_Result ret;
    rm_reg_role need = approve ? RM_REG_ROLE_ADMIN : del ? RM_REG_ROLE_UPLOAD : RM_REG_ROLE_GENERATE;
    if (!authorize(s, c, route, need, &who, &ret)) return ret;
    rm_reg_adapter a = {0};
    bool admin = who.role >= RM_REG_ROLE_ADMIN;
    if (!find_visible(s, tenant_of(&who), id, admin, &a)) {
        ret = send_error(s, c, route, 404, "id", "adapter_not_found", "no adapter %lld", id);
    } else if (get) {
        json_t *o = adapter_json(&a);
        json_t *scr = a.screening ? json_loads(a.screening, 0, NULL) : NULL;
        json_object_set_new(o, "screening", scr ? scr : json_null());
        json_object_set_new(o, "n_samples", json_integer(a.n_samples));
        ret = send_json(s, c, route, 200, o);
    } else if (del && strcmp(a.tenant, tenant_of(&who)) && !admin) {
        ret = send_error(s, c, route, 403, "id", "not_owner", "adapter %lld belongs to another tenant; deleting it needs admin", id);
    } else {
        if (del) drop_cached(s, a.tenant, a.name);
        rm_status st = del ? rm_registry_adapter_remove(s->reg, a.tenant, a.name, tenant_of(&who))
                           : rm_registry_adapter_act(s->reg, a.tenant, a.name, RM_REG_APPROVE, tenant_of(&who));
        if (st != RAMOLE_OK) ret = send_error(s, c, route, status_of(st), NULL, NULL, "%s", ramole_last_error());
        else if (del) ret = send_json(s, c, route, 200, json_pack("{s:I, s:s, s:b}", "id", (json_int_t)id, "object", "adapter", "deleted", 1));
        else {
            srv_reply rep;
            created_reply(s, a.tenant, a.name, &rep);
            ret = send_reply(s, c, route, &rep);
        }
    }
    rm_reg_adapter_clear(&a);
    rm_free(who.tenant);
    return ret;
}

void srv_vllm_reply(rm_server *s, const caller *who, bool load, const json_t *body, srv_reply *out) {
    memset(out, 0, sizeof *out);
    const json_t *jn = json_object_get(body, "lora_name"), *jp = json_object_get(body, "lora_path");
    if (!json_is_string(jn)) {
        srv_reply_error(out, 400, "lora_name", "invalid_value", "field \"lora_name\" (a string) is required");
        return;
    }
    if (load && !json_is_string(jp)) {
        srv_reply_error(out, 400, "lora_path", "invalid_value", "field \"lora_path\" (a string) is required");
        return;
    }
    if (!s->reg) {
        srv_reply_error(out, 404, NULL, "no_registry", "this server has no adapter registry");
        return;
    }
    const char *name = json_string_value(jn);
    rm_status st;
    if (load) {
        /* vLLM's clients send no samples: the name stands for the adapter's task in retrieval */
        const char *samples[1] = {name};
        rm_reg_add_opts o = {.path = json_string_value(jp), .name = name, .tenant = tenant_of(who),
                             .samples = samples, .n_samples = 1, .actor = tenant_of(who)};
        int64_t id;
        st = rm_registry_adapter_add(s->reg, &o, &id);
    } else {
        drop_cached(s, tenant_of(who), name);
        st = rm_registry_adapter_remove(s->reg, tenant_of(who), name, tenant_of(who));
    }
    if (st != RAMOLE_OK) {
        int code = load ? upload_status(st) : status_of(st);
        if (load && st == RAMOLE_ERR_NOT_FOUND) code = 404;
        srv_reply_error(out, code, load ? "lora_path" : "lora_name", NULL, "%s", ramole_last_error());
        return;
    }
    out->status = 200;
    out->text = rm_asprintf("Success: LoRA adapter '%s' %s successfully.", name, load ? "added" : "removed");
    if (!out->text) srv_reply_error(out, 500, NULL, NULL, "out of memory");
}
