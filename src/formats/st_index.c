/*
 * st_index.c — sharded safetensors (see st_index.h).
 *
 * The index is parsed once with jansson: shard names are collected in order
 * of first appearance (a linear scan per entry against the distinct shards,
 * which are few), each shard is opened, and each weight_map entry is
 * resolved to its tensor right away, so a missing tensor fails at open and
 * not in the middle of loading a model. The resolved entries, sorted by
 * name, make find a binary search; names point into the shards' own
 * copies, so nothing outlives the JSON tree.
 */
#include "formats/st_index.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const rm_st_tensor *t;
    int shard;
} st_entry;

struct rm_st_set {
    rm_safetensors **shards;
    int n_shards;
    st_entry *e; /* sorted by name */
    int n;
};

void rm_st_set_free(rm_st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_shards; i++) rm_st_free(s->shards[i]);
    rm_free(s->shards);
    rm_free(s->e);
    rm_free(s);
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->t->name, ((const st_entry *)b)->t->name);
}

/* Every tensor of a single file. */
static rm_status set_single(rm_st_set *s, const char *file) {
    s->shards = rm_calloc(1, sizeof *s->shards);
    if (!s->shards) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", file);
    RM_TRY(rm_st_open(file, &s->shards[0]));
    s->n_shards = 1;
    int n = rm_st_count(s->shards[0]);
    s->e = rm_calloc(n ? (size_t)n : 1, sizeof *s->e);
    if (!s->e) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", file);
    for (int i = 0; i < n; i++) s->e[i] = (st_entry){rm_st_get(s->shards[0], i), 0};
    s->n = n; /* rm_st_get is already sorted by name */
    return RAMOLE_OK;
}

/* Index of shard `file` (opening it on first use). */
static rm_status set_shard(rm_st_set *s, const char *dir, const char *index, const char *file,
                           int *out) {
    for (int i = 0; i < s->n_shards; i++) {
        /* every shard was opened as dir + "/" + its file name (below) */
        if (strcmp(rm_st_path(s->shards[i]) + strlen(dir) + 1, file) == 0) {
            *out = i;
            return RAMOLE_OK;
        }
    }
    if (!file[0] || strchr(file, '/') || strcmp(file, ".") == 0 || strcmp(file, "..") == 0)
        return rm_err(RAMOLE_ERR_FORMAT, "%s: shard name '%s' must be a plain file name", index,
                      file);
    char *p = rm_asprintf("%s/%s", dir, file);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", index);
    rm_status rc = rm_st_open(p, &s->shards[s->n_shards]);
    if (rc != RAMOLE_OK) rm_err_prefix(rc, "%s", index);
    rm_free(p);
    RM_TRY(rc);
    *out = s->n_shards++;
    return RAMOLE_OK;
}

static rm_status set_from_index(rm_st_set *s, const char *dir, const char *index, json_t *wm) {
    size_t n = json_object_size(wm);
    if (n > INT_MAX / 2) return rm_err(RAMOLE_ERR_FORMAT, "%s: too many tensors", index);
    s->shards = rm_calloc(n ? n : 1, sizeof *s->shards);
    s->e = rm_calloc(n ? n : 1, sizeof *s->e);
    if (!s->shards || !s->e) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", index);
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v))
            return rm_err(RAMOLE_ERR_FORMAT, "%s: weight_map entry of '%s' is not a file name",
                          index, name);
        int k = 0;
        RM_TRY(set_shard(s, dir, index, json_string_value(v), &k));
        const rm_st_tensor *t = rm_st_find(s->shards[k], name);
        if (!t)
            return rm_err(RAMOLE_ERR_FORMAT, "%s: tensor '%s' is not in its shard %s", index, name,
                          json_string_value(v));
        s->e[s->n++] = (st_entry){t, k};
    }
    qsort(s->e, (size_t)s->n, sizeof *s->e, entry_cmp);
    return RAMOLE_OK;
}

static rm_status set_index(rm_st_set *s, const char *index) {
    char *dir = rm_strdup(index);
    if (!dir) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", index);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    json_error_t jerr;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &jerr);
    rm_status rc = RAMOLE_OK;
    json_t *wm = root ? json_object_get(root, "weight_map") : NULL;
    if (!root)
        rc = rm_err(RAMOLE_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", index, jerr.text,
                    jerr.line);
    else if (!json_is_object(wm) || json_object_size(wm) == 0)
        rc = rm_err(RAMOLE_ERR_FORMAT, "%s: weight_map is missing or empty", index);
    else
        rc = set_from_index(s, dir, index, wm);
    json_decref(root);
    rm_free(dir);
    return rc;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

rm_status rm_st_set_open(const char *path, rm_st_set **out) {
    *out = NULL;
    rm_st_set *s = rm_calloc(1, sizeof *s);
    char *index = NULL, *single = NULL;
    rm_status rc = RAMOLE_OK;
    if (!s) return rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
    if (rm_dir_exists(path)) {
        index = rm_path_join(path, "model.safetensors.index.json");
        single = rm_path_join(path, "model.safetensors");
        if (!index || !single) {
            rc = rm_err(RAMOLE_ERR_NOMEM, "%s: out of memory", path);
        } else if (rm_file_exists(index)) {
            rc = set_index(s, index);
        } else if (rm_file_exists(single)) {
            rc = set_single(s, single);
        } else {
            rc = rm_err(RAMOLE_ERR_NOT_FOUND,
                        "%s: no model.safetensors or model.safetensors.index.json", path);
        }
    } else if (ends_with(path, ".json")) {
        rc = set_index(s, path);
    } else {
        rc = set_single(s, path);
    }
    rm_free(index);
    rm_free(single);
    if (rc != RAMOLE_OK) {
        rm_st_set_free(s);
        return rc;
    }
    *out = s;
    return RAMOLE_OK;
}

int rm_st_set_shard_count(const rm_st_set *s) { return s->n_shards; }

const rm_safetensors *rm_st_set_shard(const rm_st_set *s, int i) {
    return (i >= 0 && i < s->n_shards) ? s->shards[i] : NULL;
}

int rm_st_set_count(const rm_st_set *s) { return s->n; }

const rm_st_tensor *rm_st_set_get(const rm_st_set *s, int i) {
    return (i >= 0 && i < s->n) ? s->e[i].t : NULL;
}

static const st_entry *set_lookup(const rm_st_set *s, const char *name) {
    int lo = 0, hi = s->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s->e[mid].t->name, name);
        if (c == 0) return &s->e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const rm_st_tensor *rm_st_set_find(const rm_st_set *s, const char *name) {
    const st_entry *e = set_lookup(s, name);
    return e ? e->t : NULL;
}

const rm_safetensors *rm_st_set_shard_of(const rm_st_set *s, const rm_st_tensor *t) {
    const st_entry *e = t ? set_lookup(s, t->name) : NULL;
    return (e && e->t == t) ? s->shards[e->shard] : NULL;
}
