/*
 * adapters_api.c — the adapter routes: multipart uploads, read, delete,
 * approve, and vLLM's load/unload by server path.
 *
 * An upload streams through libmicrohttpd's multipart parser into a
 * private temporary folder (the files' own names, reduced to a safe base
 * name), then rm_registry_adapter_add screens, embeds and stores it, on the
 * connection's thread: the scheduler never waits for an upload. The folder
 * is removed whatever happens.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/serve_internal.h"

#define UPLOAD_FIELD_MAX 4096

struct srv_upload {
    struct MHD_PostProcessor *pp;
    char dir[256];                 /* the temporary folder; adapter files in dir/adapter */
    char name[RM_REG_NAME_MAX + 1], description[UPLOAD_FIELD_MAX], visibility[16];
    size_t name_len, description_len, visibility_len;
    bool has_samples;
    int n_files;
    char cur_key[32], cur_file[128];
    FILE *f;                       /* the file being written */
    char *error;                   /* the first problem, for a 400 */
};

static void upload_fail(srv_upload *u, const char *msg) {
    if (!u->error) u->error = rm_strdup(msg);
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

static void field_add(char *buf, size_t cap, size_t *len, const char *data, size_t n, srv_upload *u,
                      const char *field) {
    if (*len + n >= cap) {
        char msg[96];
        snprintf(msg, sizeof msg, "field \"%s\" is too long", field);
        upload_fail(u, msg);
        return;
    }
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = 0;
}

static enum MHD_Result upload_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                   const char *content_type, const char *transfer_encoding, const char *data,
                                   uint64_t off, size_t size) {
    srv_upload *u = cls;
    (void)kind, (void)content_type, (void)transfer_encoding;
    if (u->error) return MHD_YES; /* read on, answer after */
    bool is_file = !strcmp(key, "file"), is_samples = !strcmp(key, "samples");
    if (is_file || is_samples) {
        /* a new part begins at offset 0 */
        if (off == 0 || !u->f || strcmp(u->cur_key, key) || strcmp(u->cur_file, filename ? filename : "")) {
            if (u->f) fclose(u->f), u->f = NULL;
            char path[512], base[96];
            if (is_samples) {
                snprintf(path, sizeof path, "%s/samples.jsonl", u->dir);
                u->has_samples = true;
            } else {
                if (!filename || !safe_name(filename, base, sizeof base)) {
                    upload_fail(u, "field \"file\": each file needs a plain file name (letters, digits, . _ -)");
                    return MHD_YES;
                }
                snprintf(path, sizeof path, "%s/adapter/%s", u->dir, base);
                u->n_files++;
            }
            snprintf(u->cur_key, sizeof u->cur_key, "%s", key);
            snprintf(u->cur_file, sizeof u->cur_file, "%s", filename ? filename : "");
            if (!(u->f = fopen(path, "wb"))) {
                upload_fail(u, "cannot store the upload");
                return MHD_YES;
            }
        }
        if (size && fwrite(data, 1, size, u->f) != size) upload_fail(u, "cannot store the upload");
        return MHD_YES;
    }
    if (!strcmp(key, "name")) field_add(u->name, sizeof u->name, &u->name_len, data, size, u, "name");
    else if (!strcmp(key, "description"))
        field_add(u->description, sizeof u->description, &u->description_len, data, size, u, "description");
    else if (!strcmp(key, "visibility"))
        field_add(u->visibility, sizeof u->visibility, &u->visibility_len, data, size, u, "visibility");
    return MHD_YES; /* other fields are ignored, as with JSON */
}

srv_upload *srv_upload_new(struct MHD_Connection *c) {
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
    u->pp = MHD_create_post_processor(c, 65536, upload_iter, u);
    if (!u->pp) upload_fail(u, "the body must be multipart/form-data");
    return u;
}

bool srv_upload_feed(srv_upload *u, const char *data, size_t n) {
    if (!u->pp) return true;
    if (MHD_post_process(u->pp, data, n) != MHD_YES) upload_fail(u, "the multipart body is malformed");
    return true;
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
    if (u->pp) MHD_destroy_post_processor(u->pp);
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

/* The screening failures of an upload (its bytes are not an adapter of this base): 422. */
static int upload_status(rm_status st) {
    switch (st) {
    case RAMOLE_ERR_RANGE: case RAMOLE_ERR_MISMATCH: case RAMOLE_ERR_FORMAT: return 422;
    case RAMOLE_ERR_INVALID: case RAMOLE_ERR_NOT_FOUND: return 400;
    default: return 500;
    }
}

/* 201 with the new row and its screening results. */
static enum MHD_Result send_created(rm_server *s, struct MHD_Connection *c, const char *route, const char *tenant,
                                    const char *name) {
    rm_reg_adapter a = {0};
    if (rm_registry_adapter_get(s->reg, tenant, name, &a) != RAMOLE_OK)
        return send_error(s, c, route, 500, NULL, NULL, "%s", ramole_last_error());
    json_t *o = adapter_json(&a);
    json_t *scr = a.screening ? json_loads(a.screening, 0, NULL) : NULL;
    json_object_set_new(o, "screening", scr ? scr : json_null());
    rm_reg_adapter_clear(&a);
    return send_json(s, c, route, 201, o);
}

enum MHD_Result route_upload(rm_server *s, struct MHD_Connection *c, conn_ctx *cx) {
    const char *route = "/v1/adapters";
    caller who;
    enum MHD_Result ret;
    if (!authorize(s, c, route, RM_REG_ROLE_UPLOAD, &who, &ret)) return ret;
    srv_upload *u = cx->upload;
    char path[512];
    char **samples = NULL;
    int n_samples = 0;
    bool stored = true;
    if (u && u->f) {
        stored = fclose(u->f) == 0;
        u->f = NULL;
    }
    if (!s->reg) ret = send_error(s, c, route, 404, NULL, "no_registry", "this server has no adapter registry");
    else if (!u) ret = send_error(s, c, route, 500, NULL, NULL, "cannot store the upload");
    else if (!stored) ret = send_error(s, c, route, 500, NULL, NULL, "cannot store the upload");
    else if (u->error) ret = send_error(s, c, route, 400, NULL, "invalid_upload", "%s", u->error);
    else if (!u->name_len) ret = send_error(s, c, route, 400, "name", "invalid_value", "field \"name\" is required");
    else if (u->visibility_len && strcmp(u->visibility, "public") && strcmp(u->visibility, "private"))
        ret = send_error(s, c, route, 400, "visibility", "invalid_value", "field \"visibility\" must be public or private");
    else if (!u->has_samples)
        ret = send_error(s, c, route, 400, "samples", "invalid_value", "field \"samples\" (a JSONL file with \"input\" per line) is required");
    else if (!upload_path(u, path, sizeof path))
        ret = send_error(s, c, route, 400, "file", "invalid_value",
                         "field \"file\": give adapter_config.json and adapter_model.safetensors, or one GGUF LoRA file");
    else {
        char sp[400];
        snprintf(sp, sizeof sp, "%s/samples.jsonl", u->dir);
        rm_status st = rm_reg_samples_load(sp, RM_REG_SAMPLES_MAX, &samples, &n_samples);
        if (st != RAMOLE_OK)
            ret = send_error(s, c, route, 400, "samples", "invalid_value", "field \"samples\": %s", ramole_last_error());
        else {
            rm_reg_add_opts o = {.path = path, .name = u->name, .description = u->description,
                                 .tenant = tenant_of(&who), .is_private = !strcmp(u->visibility, "private"),
                                 .samples = (const char *const *)samples, .n_samples = n_samples,
                                 .actor = tenant_of(&who)};
            int64_t id = 0;
            st = rm_registry_adapter_add(s->reg, &o, &id);
            if (st != RAMOLE_OK)
                ret = send_error(s, c, route, upload_status(st), NULL,
                                 upload_status(st) == 422 ? "screening_failed" : "invalid_value", "%s",
                                 ramole_last_error());
            else ret = send_created(s, c, route, tenant_of(&who), u->name);
        }
    }
    rm_reg_samples_free(samples, n_samples);
    rm_free(who.tenant);
    return ret;
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
        else ret = send_created(s, c, route, a.tenant, a.name);
    }
    rm_reg_adapter_clear(&a);
    rm_free(who.tenant);
    return ret;
}

enum MHD_Result route_vllm_load(rm_server *s, struct MHD_Connection *c, conn_ctx *cx, bool load) {
    const char *route = load ? "/v1/load_lora_adapter" : "/v1/unload_lora_adapter";
    caller who;
    enum MHD_Result ret;
    if (!authorize(s, c, route, RM_REG_ROLE_ADMIN, &who, &ret)) return ret;
    json_t *body = json_loadb(cx->body ? cx->body : "", cx->len, 0, NULL);
    const json_t *jn = body ? json_object_get(body, "lora_name") : NULL, *jp = body ? json_object_get(body, "lora_path") : NULL;
    if (!json_is_object(body)) ret = send_error(s, c, route, 400, NULL, "invalid_json", "the body is not a JSON object");
    else if (!json_is_string(jn)) ret = send_error(s, c, route, 400, "lora_name", "invalid_value", "field \"lora_name\" (a string) is required");
    else if (load && !json_is_string(jp)) ret = send_error(s, c, route, 400, "lora_path", "invalid_value", "field \"lora_path\" (a string) is required");
    else if (!s->reg) ret = send_error(s, c, route, 404, NULL, "no_registry", "this server has no adapter registry");
    else {
        const char *name = json_string_value(jn);
        rm_status st;
        if (load) {
            /* vLLM's clients send no samples: the name stands for the adapter's task in retrieval */
            const char *samples[1] = {name};
            rm_reg_add_opts o = {.path = json_string_value(jp), .name = name, .tenant = tenant_of(&who),
                                 .samples = samples, .n_samples = 1, .actor = tenant_of(&who)};
            int64_t id;
            st = rm_registry_adapter_add(s->reg, &o, &id);
        } else {
            drop_cached(s, tenant_of(&who), name);
            st = rm_registry_adapter_remove(s->reg, tenant_of(&who), name, tenant_of(&who));
        }
        if (st != RAMOLE_OK) {
            int code = load ? upload_status(st) : status_of(st);
            if (load && st == RAMOLE_ERR_NOT_FOUND) code = 404;
            ret = send_error(s, c, route, code, load ? "lora_path" : "lora_name", NULL, "%s", ramole_last_error());
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "Success: LoRA adapter '%s' %s successfully.", name, load ? "added" : "removed");
            ret = send_text(s, c, route, 200, "text/plain", msg, strlen(msg));
        }
    }
    json_decref(body);
    rm_free(who.tenant);
    return ret;
}
