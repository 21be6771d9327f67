/*
 * adapter_peft.c — PEFT LoRA folders: adapter_config.json +
 * adapter_model.safetensors, loaded against a base model and written back.
 *
 * Loading runs in four steps, and nothing is handed out before the last:
 *  1. The config is read into a plan: for every (layer, target) of the base,
 *     is the module targeted, with which rank and scale. The rules are
 *     PEFT's own (peft/tuners/tuners_utils.py check_target_module_exists,
 *     peft/utils/other.py get_pattern_key), applied to the module names a
 *     transformers Llama/Mistral/Qwen2 model has
 *     ("model.layers.N.self_attn.q_proj", "model.layers.N.mlp.up_proj"):
 *       - target_modules a string: re.fullmatch(string, name); "all-linear":
 *         every linear module of the layers; a list: name in the list, or
 *         name ends with "." + entry, then layers_to_transform (int or list)
 *         keeps only the layers whose index re.match(".*\.{P}\.(\d+)\.", name)
 *         finds, P each of layers_pattern (default "[^.]*");
 *       - exclude_modules (string: fullmatch; list: equal or suffix) drops
 *         modules;
 *       - rank_pattern / alpha_pattern: the first key K (in file order) with
 *         re.match("(.*\.)?(K)$", name) gives the module's r / alpha;
 *       - scale = alpha / r, or alpha / sqrt(r) with use_rslora.
 *     Regexes run on PCRE2 with the anchoring of the Python call they stand
 *     for. A list entry that names no module of the model ("lm_head",
 *     "embed_tokens", a typo) is an "unknown target module" error, as PEFT
 *     fails on targets it cannot find. Features ramole does not run are
 *     refused with ERR_UNSUPPORTED: other peft_type, DoRA, modules_to_save,
 *     bias other than "none", lora_bias, layer_replication, trainable
 *     tokens, target_parameters, aLoRA, QALoRA.
 *  2. Every tensor name is parsed and checked against the plan and its
 *     shape against the base: A [r][din], B [dout][r]. fan_in_fan_out: PEFT
 *     forces it off for nn.Linear modules (Llama's), so the tensors keep the
 *     standard shapes and are read as such; a file that really stores them
 *     transposed (A [din][r], B [r][dout]) is also accepted when
 *     fan_in_fan_out is set and the shapes cannot be read the standard way.
 *  3. A and B must come in pairs.
 *  4. Values are converted to f32 (f32/f16/bf16 in the file), each checked
 *     finite, and the rows of B for q/k are permuted into the base's order
 *     (adapter_internal.h).
 *
 * Saving writes f32 tensors in HF order, "ramole.base_fingerprint" (and a
 * router's "ramole.gate_pool" when it pools over the prompt and its
 * "ramole.retrieval_prior" when it has one) in the
 * safetensors __metadata__ (PEFT ignores keys it does not know), and a
 * config that reproduces every module's rank and scale through r,
 * lora_alpha, use_rslora, rank_pattern and alpha_pattern.
 */
#include "lora/adapter_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "formats/safetensors.h"

#define T_COUNT RM_TARGET_COUNT

/* The transformers module name of (layer, target). */
static void module_name(char *buf, size_t n, int layer, rm_target t) {
    snprintf(buf, n, "model.layers.%d.%s.%s", layer, t <= RM_TARGET_O ? "self_attn" : "mlp", rm_target_hf_name(t));
}

/* ---- PCRE2 with ramole's allocator ---------------------------------------------- */

static void *pc_malloc(size_t n, void *u) { (void)u; return rm_malloc(n); }
static void pc_free(void *p, void *u) { (void)u; rm_free(p); }

typedef struct {
    pcre2_general_context *gc;
    pcre2_compile_context *cc;
    pcre2_match_data *md; /* 8 pairs: enough for every pattern built here */
    int failed;           /* first pcre2_match error (not "no match"), sticky */
} regex_env;

static rm_status regex_env_init(regex_env *e, const char *origin) {
    memset(e, 0, sizeof *e);
    e->gc = pcre2_general_context_create(pc_malloc, pc_free, NULL);
    e->cc = e->gc ? pcre2_compile_context_create(e->gc) : NULL;
    e->md = e->gc ? pcre2_match_data_create(8, e->gc) : NULL;
    if (!e->gc || !e->cc || !e->md) return rm_err(RAMOLE_ERR_NOMEM, "adapter %s: out of memory for PCRE2", origin);
    return RAMOLE_OK;
}

static void regex_env_free(regex_env *e) {
    pcre2_match_data_free(e->md);
    pcre2_compile_context_free(e->cc);
    pcre2_general_context_free(e->gc);
}

/* Compile prefix + user + suffix; `what` names the key for messages. */
static rm_status regex_compile(regex_env *e, const char *prefix, const char *user, const char *suffix,
                               uint32_t opts, const char *origin, const char *what, pcre2_code **out) {
    *out = NULL;
    char *pat = rm_asprintf("%s%s%s", prefix, user, suffix);
    if (!pat) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    int code = 0;
    PCRE2_SIZE off = 0;
    *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &code, &off, e->cc);
    rm_free(pat);
    if (!*out) {
        if (code == PCRE2_ERROR_HEAP_FAILED || code == PCRE2_ERROR_NOMEMORY)
            return rm_err(RAMOLE_ERR_NOMEM, "adapter %s: out of memory compiling %s", origin, what);
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return rm_err(RAMOLE_ERR_FORMAT, "adapter %s: adapter_config.json: %s: bad regular expression \"%.200s\": %s",
                      origin, what, user, (const char *)msg);
    }
    return RAMOLE_OK;
}

/* 1 match, 0 no match (or an error, recorded in e->failed: callers check
 * regex_failed after a series of matches); captures in e->md. */
static int regex_match(regex_env *e, pcre2_code *re, const char *s, uint32_t opts) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, opts, e->md, NULL);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && !e->failed) e->failed = rc;
    return rc >= 0 ? 1 : 0;
}

static rm_status regex_failed(const regex_env *e, const char *origin) {
    if (!e->failed) return RAMOLE_OK;
    if (e->failed == PCRE2_ERROR_NOMEMORY || e->failed == PCRE2_ERROR_HEAPLIMIT)
        return rm_err(RAMOLE_ERR_NOMEM, "adapter %s: out of memory matching module names", origin);
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(e->failed, msg, sizeof msg);
    return rm_err(RAMOLE_ERR_FORMAT, "adapter %s: adapter_config.json: a regular expression failed: %s", origin,
                  (const char *)msg);
}

/* ---- the config --------------------------------------------------------------------- */

typedef struct {
    char *key;
    pcre2_code *re; /* ^(?:.*\.)?(?:key)$ */
    double value;
} pattern_entry;

typedef struct {
    const char *origin;
    json_t *root;
    regex_env rx;
    int r;
    double alpha;
    bool rslora;
    bool fan_in_fan_out;
    /* target_modules */
    enum { TM_LIST, TM_REGEX, TM_ALL_LINEAR } tm_kind;
    json_t *tm_list;        /* borrowed from root */
    pcre2_code *tm_re;
    /* exclude_modules */
    json_t *ex_list;
    pcre2_code *ex_re;
    /* layers_to_transform */
    bool use_layers;
    json_t *layers;         /* int or list, borrowed */
    pcre2_code **layer_re;  /* one per layers_pattern */
    int n_layer_re;
    pattern_entry *rank_pat, *alpha_pat;
    int n_rank_pat, n_alpha_pat;
} peft_config;

static void peft_config_free(peft_config *c) {
    pcre2_code_free(c->tm_re);
    pcre2_code_free(c->ex_re);
    for (int i = 0; i < c->n_layer_re; i++) pcre2_code_free(c->layer_re[i]);
    rm_free(c->layer_re);
    for (int i = 0; i < c->n_rank_pat; i++) pcre2_code_free(c->rank_pat[i].re), rm_free(c->rank_pat[i].key);
    for (int i = 0; i < c->n_alpha_pat; i++) pcre2_code_free(c->alpha_pat[i].re), rm_free(c->alpha_pat[i].key);
    rm_free(c->rank_pat);
    rm_free(c->alpha_pat);
    json_decref(c->root);
    regex_env_free(&c->rx);
}

#define CFG_ERR(st, ...) rm_err_prefix(rm_err(st, __VA_ARGS__), "adapter %s: adapter_config.json", c->origin)

static bool json_truthy(const json_t *v) {
    if (!v || json_is_null(v) || json_is_false(v)) return false;
    if (json_is_array(v)) return json_array_size(v) > 0;
    if (json_is_object(v)) return json_object_size(v) > 0;
    if (json_is_string(v)) return json_string_length(v) > 0;
    if (json_is_integer(v)) return json_integer_value(v) != 0;
    return true;
}

static rm_status read_patterns(peft_config *c, const char *key, bool is_rank, pattern_entry **out, int *n_out) {
    json_t *obj = json_object_get(c->root, key);
    if (!obj || json_is_null(obj)) return RAMOLE_OK;
    if (!json_is_object(obj)) return CFG_ERR(RAMOLE_ERR_FORMAT, "%s must be an object", key);
    size_t n = json_object_size(obj);
    if (!n) return RAMOLE_OK;
    pattern_entry *p = rm_calloc(n, sizeof *p);
    if (!p) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    *out = p;
    const char *k;
    json_t *v;
    int i = 0;
    json_object_foreach(obj, k, v) {
        if (is_rank) {
            if (!json_is_integer(v)) return CFG_ERR(RAMOLE_ERR_FORMAT, "%s[\"%s\"] must be an integer", key, k);
            json_int_t r = json_integer_value(v);
            if (r < 1 || r > RM_LORA_MAX_RANK)
                return CFG_ERR(RAMOLE_ERR_RANGE, "%s[\"%s\"]: rank %lld is out of range 1..%d", key, k, (long long)r,
                               RM_LORA_MAX_RANK);
            p[i].value = (double)r;
        } else {
            if (!json_is_number(v)) return CFG_ERR(RAMOLE_ERR_FORMAT, "%s[\"%s\"] must be a number", key, k);
            p[i].value = json_number_value(v);
            if (!isfinite(p[i].value)) return CFG_ERR(RAMOLE_ERR_FORMAT, "%s[\"%s\"] is not finite", key, k);
        }
        p[i].key = rm_strdup(k);
        if (!p[i].key) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        *n_out = ++i; /* counted before compiling so that free sees it */
        char what[160];
        snprintf(what, sizeof what, "%s key \"%.100s\"", key, k);
        RM_TRY(regex_compile(&c->rx, "(?:.*\\.)?(?:", k, ")$", PCRE2_ANCHORED, c->origin, what, &p[i - 1].re));
    }
    return RAMOLE_OK;
}

/* An optional bool key. */
static rm_status get_bool(peft_config *c, const char *key, bool *out) {
    json_t *v = json_object_get(c->root, key);
    *out = false;
    if (!v || json_is_null(v)) return RAMOLE_OK;
    if (!json_is_boolean(v)) return CFG_ERR(RAMOLE_ERR_FORMAT, "%s must be true or false", key);
    *out = json_is_true(v);
    return RAMOLE_OK;
}

static rm_status parse_config(peft_config *c, const char *path) {
    char *text = NULL;
    size_t len = 0;
    rm_status st = rm_file_read(path, &text, &len);
    if (st != RAMOLE_OK) {
        if (!rm_file_exists(path))
            return rm_err(RAMOLE_ERR_NOT_FOUND, "adapter %s: adapter_config.json is missing", c->origin);
        return rm_err_prefix(st, "adapter %s", c->origin);
    }
    json_error_t jerr;
    c->root = json_loadb(text, len, 0, &jerr);
    rm_free(text);
    if (!c->root)
        return rm_err(RAMOLE_ERR_FORMAT, "adapter %s: adapter_config.json: malformed JSON at line %d column %d: %s",
                      c->origin, jerr.line, jerr.column, jerr.text);
    if (!json_is_object(c->root)) return CFG_ERR(RAMOLE_ERR_FORMAT, "expected a JSON object");
    json_t *v;
    /* what kind of adapter */
    v = json_object_get(c->root, "peft_type");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) return CFG_ERR(RAMOLE_ERR_FORMAT, "peft_type must be a string");
        if (strcmp(json_string_value(v), "LORA"))
            return CFG_ERR(RAMOLE_ERR_UNSUPPORTED, "peft_type \"%.64s\" is not supported (only LORA)",
                           json_string_value(v));
    }
    bool b;
    RM_TRY(get_bool(c, "use_dora", &b));
    if (b) return CFG_ERR(RAMOLE_ERR_UNSUPPORTED, "DoRA (use_dora) is not supported");
    RM_TRY(get_bool(c, "lora_bias", &b));
    if (b) return CFG_ERR(RAMOLE_ERR_UNSUPPORTED, "lora_bias is not supported");
    RM_TRY(get_bool(c, "use_qalora", &b));
    if (b) return CFG_ERR(RAMOLE_ERR_UNSUPPORTED, "QALoRA (use_qalora) is not supported");
    if (json_truthy(json_object_get(c->root, "modules_to_save")))
        return CFG_ERR(RAMOLE_ERR_UNSUPPORTED,
                       "modules_to_save is not supported (the adapter carries full copies of other modules)");
    static const char *const unsupported[] = {"layer_replication", "trainable_token_indices", "target_parameters",
                                              "alora_invocation_tokens"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (json_truthy(json_object_get(c->root, unsupported[i])))
            return CFG_ERR(RAMOLE_ERR_UNSUPPORTED, "%s is not supported", unsupported[i]);
    v = json_object_get(c->root, "bias");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) return CFG_ERR(RAMOLE_ERR_FORMAT, "bias must be a string");
        if (strcmp(json_string_value(v), "none"))
            return CFG_ERR(RAMOLE_ERR_UNSUPPORTED, "bias \"%.32s\" is not supported (only \"none\")",
                           json_string_value(v));
    }
    /* rank, alpha, rsLoRA (PEFT's defaults: r 8, lora_alpha 8) */
    c->r = 8;
    v = json_object_get(c->root, "r");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)) return CFG_ERR(RAMOLE_ERR_FORMAT, "r must be an integer");
        json_int_t r = json_integer_value(v);
        if (r < 1 || r > RM_LORA_MAX_RANK)
            return CFG_ERR(RAMOLE_ERR_RANGE, "r = %lld is out of range 1..%d", (long long)r, RM_LORA_MAX_RANK);
        c->r = (int)r;
    }
    c->alpha = 8;
    v = json_object_get(c->root, "lora_alpha");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v)) return CFG_ERR(RAMOLE_ERR_FORMAT, "lora_alpha must be a number");
        c->alpha = json_number_value(v);
        if (!isfinite(c->alpha)) return CFG_ERR(RAMOLE_ERR_FORMAT, "lora_alpha is not finite");
    }
    RM_TRY(get_bool(c, "use_rslora", &c->rslora));
    RM_TRY(get_bool(c, "fan_in_fan_out", &c->fan_in_fan_out));
    /* target_modules (null: PEFT's default for llama, mistral and qwen2) */
    v = json_object_get(c->root, "target_modules");
    if (!v || json_is_null(v)) {
        c->tm_kind = TM_LIST;
        c->tm_list = json_pack("[ss]", "q_proj", "v_proj");
        if (!c->tm_list || json_object_set_new(c->root, "ramole.default_targets", c->tm_list))
            return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "all-linear")) c->tm_kind = TM_ALL_LINEAR;
        else {
            c->tm_kind = TM_REGEX;
            RM_TRY(regex_compile(&c->rx, "", s, "", PCRE2_ANCHORED | PCRE2_ENDANCHORED, c->origin, "target_modules",
                                 &c->tm_re));
        }
    } else if (json_is_array(v)) {
        c->tm_kind = TM_LIST;
        c->tm_list = v;
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (!json_is_string(e))
            return CFG_ERR(RAMOLE_ERR_FORMAT, "target_modules[%zu] must be a string", i);
    } else {
        return CFG_ERR(RAMOLE_ERR_FORMAT, "target_modules must be a list of names or a regular expression");
    }
    v = json_object_get(c->root, "exclude_modules");
    if (v && !json_is_null(v)) {
        if (json_is_string(v)) {
            RM_TRY(regex_compile(&c->rx, "", json_string_value(v), "", PCRE2_ANCHORED | PCRE2_ENDANCHORED, c->origin,
                                 "exclude_modules", &c->ex_re));
        } else if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) if (!json_is_string(e))
                return CFG_ERR(RAMOLE_ERR_FORMAT, "exclude_modules[%zu] must be a string", i);
            c->ex_list = v;
        } else {
            return CFG_ERR(RAMOLE_ERR_FORMAT, "exclude_modules must be a list of names or a regular expression");
        }
    }
    /* layers_to_transform / layers_pattern */
    v = json_object_get(c->root, "layers_to_transform");
    if (v && !json_is_null(v)) {
        if (json_is_integer(v)) {
            if (json_integer_value(v) < 0) return CFG_ERR(RAMOLE_ERR_FORMAT, "layers_to_transform is negative");
            c->use_layers = true;
        } else if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) if (!json_is_integer(e) || json_integer_value(e) < 0)
                return CFG_ERR(RAMOLE_ERR_FORMAT, "layers_to_transform[%zu] must be a layer index", i);
            c->use_layers = json_array_size(v) > 0;
        } else {
            return CFG_ERR(RAMOLE_ERR_FORMAT, "layers_to_transform must be an integer or a list of integers");
        }
        c->layers = v;
    }
    if (c->use_layers) {
        json_t *lp = json_object_get(c->root, "layers_pattern");
        size_t n = 1;
        if (json_is_array(lp) && json_array_size(lp) > 0) n = json_array_size(lp);
        c->layer_re = rm_calloc(n, sizeof *c->layer_re);
        if (!c->layer_re) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const char *pat = "[^.]*";
            if (json_is_string(lp) && json_string_length(lp) > 0) pat = json_string_value(lp);
            else if (json_is_array(lp) && json_array_size(lp) > 0) {
                json_t *e = json_array_get(lp, i);
                if (!json_is_string(e)) return CFG_ERR(RAMOLE_ERR_FORMAT, "layers_pattern[%zu] must be a string", i);
                pat = json_string_value(e);
            } else if (lp && !json_is_null(lp) && !json_is_string(lp) && !json_is_array(lp)) {
                return CFG_ERR(RAMOLE_ERR_FORMAT, "layers_pattern must be a string or a list of strings");
            }
            c->n_layer_re = (int)i + 1;
            RM_TRY(regex_compile(&c->rx, ".*\\.(?:", pat, ")\\.(\\d+)\\.", PCRE2_ANCHORED, c->origin, "layers_pattern",
                                 &c->layer_re[i]));
        }
    }
    RM_TRY(read_patterns(c, "rank_pattern", true, &c->rank_pat, &c->n_rank_pat));
    RM_TRY(read_patterns(c, "alpha_pattern", false, &c->alpha_pat, &c->n_alpha_pat));
    return RAMOLE_OK;
}

/* key in list, or key ends with "." + entry (PEFT's list rule). */
static bool list_matches(json_t *list, const char *key, bool *exact) {
    size_t i, kn = strlen(key);
    json_t *e;
    if (exact) *exact = false;
    json_array_foreach(list, i, e) {
        const char *s = json_string_value(e);
        if (!strcmp(s, key)) {
            if (exact) *exact = true;
            return true;
        }
    }
    json_array_foreach(list, i, e) {
        const char *s = json_string_value(e);
        size_t sn = strlen(s);
        if (sn + 1 <= kn && key[kn - sn - 1] == '.' && !strcmp(key + kn - sn, s)) return true;
    }
    return false;
}

static bool layer_selected(peft_config *c, const char *key) {
    for (int i = 0; i < c->n_layer_re; i++) {
        if (!regex_match(&c->rx, c->layer_re[i], key, 0)) continue;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->rx.md);
        char num[24];
        size_t n = ov[3] - ov[2];
        if (n == 0 || n >= sizeof num) return false;
        memcpy(num, key + ov[2], n);
        num[n] = 0;
        long long idx = strtoll(num, NULL, 10);
        if (json_is_integer(c->layers)) return idx == json_integer_value(c->layers);
        size_t j;
        json_t *e;
        json_array_foreach(c->layers, j, e) if (json_integer_value(e) == idx) return true;
        return false;
    }
    return false;
}

/* PEFT's check_target_module_exists for one module name. */
static bool module_targeted(peft_config *c, const char *key) {
    if (c->ex_re && regex_match(&c->rx, c->ex_re, key, 0)) return false;
    if (c->ex_list && list_matches(c->ex_list, key, NULL)) return false;
    switch (c->tm_kind) {
    case TM_ALL_LINEAR: return true;
    case TM_REGEX: return regex_match(&c->rx, c->tm_re, key, 0) == 1;
    case TM_LIST: {
        bool exact;
        if (!list_matches(c->tm_list, key, &exact)) return false;
        if (exact || !c->use_layers) return true;
        return layer_selected(c, key);
    }
    }
    return false;
}

static const pattern_entry *pattern_find(peft_config *c, const pattern_entry *p, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (regex_match(&c->rx, p[i].re, key, 0)) return &p[i];
    return NULL;
}

/* Fill rank[] and scale[] (n_layers x T_COUNT; rank 0 = not targeted). */
static rm_status make_plan(peft_config *c, const rm_model *base, int *rank, float *scale) {
    int L = base->cfg.n_layers;
    char key[96];
    for (int l = 0; l < L; l++)
        for (int t = 0; t < T_COUNT; t++) {
            module_name(key, sizeof key, l, (rm_target)t);
            size_t i = (size_t)l * T_COUNT + (size_t)t;
            rank[i] = 0;
            scale[i] = 0;
            if (!module_targeted(c, key)) continue;
            const pattern_entry *rp = pattern_find(c, c->rank_pat, c->n_rank_pat, key);
            const pattern_entry *ap = pattern_find(c, c->alpha_pat, c->n_alpha_pat, key);
            rank[i] = rp ? (int)rp->value : c->r;
            scale[i] = rm_lora_scale(ap ? ap->value : c->alpha, rank[i], c->rslora);
        }
    RM_TRY(regex_failed(&c->rx, c->origin));
    /* every list entry must name a module of this model */
    if (c->tm_kind == TM_LIST) {
        size_t j;
        json_t *e;
        json_array_foreach(c->tm_list, j, e) {
            json_t *one = json_pack("[s]", json_string_value(e));
            if (!one) return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
            bool found = false;
            for (int l = 0; l < L && !found; l++)
                for (int t = 0; t < T_COUNT && !found; t++) {
                    module_name(key, sizeof key, l, (rm_target)t);
                    found = list_matches(one, key, NULL);
                }
            json_decref(one);
            if (!found)
                return CFG_ERR(RAMOLE_ERR_UNSUPPORTED,
                               "unknown target module \"%.100s\" (ramole adapts q_proj, k_proj, v_proj, o_proj, "
                               "gate_proj, up_proj, down_proj of layers 0..%d)",
                               json_string_value(e), L - 1);
        }
    }
    bool any = false;
    for (size_t i = 0; i < (size_t)L * T_COUNT; i++) any |= rank[i] > 0;
    if (!any)
        return CFG_ERR(RAMOLE_ERR_FORMAT, "target_modules selects no module of this model (%s)",
                       c->tm_kind == TM_REGEX ? "regular expression" : "list");
    return RAMOLE_OK;
}

/* ---- tensor names ----------------------------------------------------------------------- */

/*
 * Parse "base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight"
 * (and .lora_B, and mlp.{gate,up,down}_proj). false if the name has another
 * form; *layer may then be anything.
 */
static bool parse_tensor_name(const char *name, int *layer, rm_target *t, bool *is_b) {
    static const char pre[] = "base_model.model.model.layers.";
    if (strncmp(name, pre, sizeof pre - 1)) return false;
    const char *p = name + sizeof pre - 1;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return false;
    long long n = 0;
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (*p++ - '0');
        if (n > 1000000) return false;
    }
    *layer = (int)n;
    if (*p++ != '.') return false;
    for (int k = 0; k < T_COUNT; k++) {
        char want[64];
        snprintf(want, sizeof want, "%s.%s.lora_", k <= RM_TARGET_O ? "self_attn" : "mlp",
                 rm_target_hf_name((rm_target)k));
        size_t wn = strlen(want);
        if (strncmp(p, want, wn)) continue;
        const char *q = p + wn;
        if (!strcmp(q, "A.weight")) *is_b = false;
        else if (!strcmp(q, "B.weight")) *is_b = true;
        else return false;
        *t = (rm_target)k;
        return true;
    }
    return false;
}

static void shape_str(char *buf, size_t n, const rm_st_tensor *t) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->n_dims && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* ---- loading ------------------------------------------------------------------------------ */

rm_status rm_adapter_load_peft(const rm_model *base, const char *dir, rm_adapter **out) {
    *out = NULL;
    peft_config cfg = {0};
    peft_config *c = &cfg;
    c->origin = dir;
    rm_status st = RAMOLE_OK;
    char *cfg_path = rm_path_join(dir, "adapter_config.json");
    char *st_path = rm_path_join(dir, "adapter_model.safetensors");
    int L = base->cfg.n_layers;
    size_t nmod = (size_t)L * T_COUNT;
    int *rank = rm_calloc(nmod, sizeof *rank);
    float *scale = rm_calloc(nmod, sizeof *scale);
    int *ia = rm_malloc(nmod * sizeof *ia), *ib = rm_malloc(nmod * sizeof *ib);
    bool *tr = rm_calloc(nmod * 2, sizeof *tr); /* transposed layout, per module: A, B */
    rm_safetensors *sf = NULL;
    rm_adapter *a = NULL;
    float *tmp = NULL;
    if (!cfg_path || !st_path || !rank || !scale || !ia || !ib || !tr) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!rm_dir_exists(dir)) {
        st = rm_err(RAMOLE_ERR_NOT_FOUND, "adapter %s: no such folder", dir);
        goto done;
    }
    if ((st = regex_env_init(&c->rx, dir)) != RAMOLE_OK) goto done;
    if ((st = parse_config(c, cfg_path)) != RAMOLE_OK) goto done;
    if ((st = make_plan(c, base, rank, scale)) != RAMOLE_OK) goto done;

    /* the weights */
    if (!rm_file_exists(st_path)) {
        char *bin = rm_path_join(dir, "adapter_model.bin");
        bool has_bin = bin && rm_file_exists(bin);
        rm_free(bin);
        st = has_bin ? rm_err(RAMOLE_ERR_UNSUPPORTED,
                              "adapter %s: adapter_model.bin (PyTorch pickle) is not supported; save the adapter "
                              "with safetensors",
                              dir)
                     : rm_err(RAMOLE_ERR_NOT_FOUND, "adapter %s: adapter_model.safetensors is missing", dir);
        goto done;
    }
    if ((st = rm_st_open(st_path, &sf)) != RAMOLE_OK) {
        rm_err_prefix(st, "adapter %s", dir);
        goto done;
    }
    const char *fp = rm_st_meta(sf, "ramole.base_fingerprint");
    uint64_t want_fp = rm_model_fingerprint(base);
    if (fp) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(fp, &end, 16);
        if (!*fp || *end || errno) {
            st = rm_err(RAMOLE_ERR_FORMAT,
                        "adapter %s: adapter_model.safetensors: ramole.base_fingerprint \"%.40s\" is not a "
                        "hexadecimal number",
                        dir, fp);
            goto done;
        }
        if ((uint64_t)v != want_fp) {
            st = rm_err(RAMOLE_ERR_MISMATCH,
                        "adapter %s was made for another base model (fingerprint %016llx, base %s has %016llx)", dir, v,
                        base->path ? base->path : "?", (unsigned long long)want_fp);
            goto done;
        }
    }
    rm_gate_pool pool;
    if ((st = rm_gate_pool_parse(dir, rm_st_meta(sf, RM_GATE_POOL_KEY), &pool)) != RAMOLE_OK) goto done;
    float prior;
    if ((st = rm_retrieval_prior_parse(dir, rm_st_meta(sf, RM_RETRIEVAL_PRIOR_KEY), &prior)) != RAMOLE_OK) goto done;
    for (size_t i = 0; i < nmod; i++) ia[i] = ib[i] = -1;
    int nt = rm_st_count(sf);
    for (int i = 0; i < nt; i++) {
        const rm_st_tensor *t = rm_st_get(sf, i);
        int layer;
        rm_target tg;
        bool is_b;
        if (!parse_tensor_name(t->name, &layer, &tg, &is_b)) {
            st = rm_err(RAMOLE_ERR_FORMAT,
                        "adapter %s: unexpected tensor %s (ramole reads only lora_A/lora_B of q/k/v/o/gate/up/down "
                        "projections: base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ...)",
                        dir, t->name);
            goto done;
        }
        if (layer >= L) {
            st = rm_err(RAMOLE_ERR_MISMATCH, "adapter %s: tensor %s: layer %d does not exist (the base has %d layers)",
                        dir, t->name, layer, L);
            goto done;
        }
        size_t mi = (size_t)layer * T_COUNT + (size_t)tg;
        char key[96];
        module_name(key, sizeof key, layer, tg);
        if (rank[mi] == 0) {
            st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s: tensor %s: module %s is not a target of adapter_config.json",
                        dir, t->name, key);
            goto done;
        }
        if (t->type < 0) {
            st = rm_err(RAMOLE_ERR_UNSUPPORTED, "adapter %s: tensor %s has dtype %s (supported: F32, F16, BF16)", dir,
                        t->name, t->dtype);
            goto done;
        }
        int64_t din, dout;
        rm_target_dims(&base->cfg, tg, &din, &dout);
        int r = rank[mi];
        int64_t rows = is_b ? dout : r, cols = is_b ? r : din;
        char got[96];
        shape_str(got, sizeof got, t);
        bool normal = t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
        bool transposed = c->fan_in_fan_out && !normal && t->n_dims == 2 && t->shape[0] == cols && t->shape[1] == rows;
        if (!normal && !transposed) {
            /* say whether the rank or the model size is wrong */
            int64_t file_r = t->n_dims == 2 ? (is_b ? t->shape[1] : t->shape[0]) : -1;
            int64_t file_d = t->n_dims == 2 ? (is_b ? t->shape[0] : t->shape[1]) : -1;
            if (file_d == (is_b ? dout : din) && file_r != r)
                st = rm_err(RAMOLE_ERR_FORMAT,
                            "adapter %s: tensor %s has rank %lld, adapter_config.json gives rank %d for %s", dir,
                            t->name, (long long)file_r, r, key);
            else
                st = rm_err(RAMOLE_ERR_MISMATCH,
                            "adapter %s: tensor %s has shape %s, the base needs [%lld, %lld] (%s, rank %d)", dir,
                            t->name, got, (long long)rows, (long long)cols, key, r);
            goto done;
        }
        tr[mi * 2 + (is_b ? 1 : 0)] = transposed;
        (is_b ? ib : ia)[mi] = i;
    }
    /* pairs */
    for (int l = 0; l < L; l++)
        for (int t = 0; t < T_COUNT; t++) {
            size_t mi = (size_t)l * T_COUNT + (size_t)t;
            if ((ia[mi] < 0) == (ib[mi] < 0)) continue;
            char key[96];
            module_name(key, sizeof key, l, (rm_target)t);
            st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s: tensor base_model.model.%s.lora_%s.weight is missing (its "
                                           "partner lora_%s is present)",
                        dir, key, ia[mi] < 0 ? "A" : "B", ia[mi] < 0 ? "B" : "A");
            goto done;
        }
    /* values */
    if ((st = rm_adapter_alloc(base, dir, &a)) != RAMOLE_OK) goto done;
    size_t bytes = 0;
    for (size_t mi = 0; mi < nmod; mi++)
        if (ia[mi] >= 0) bytes += rm_adapter_module_bytes(base, (rm_target)(mi % T_COUNT), rank[mi]);
    if ((st = rm_adapter_reserve(a, bytes)) != RAMOLE_OK) goto done;
    a->alpha = (float)c->alpha;
    a->rank = c->r;
    a->rslora = c->rslora;
    a->gate_pool = pool;
    a->retrieval_prior = prior;
    bool pairs = rm_lora_base_pairs(base);
    bool any = false;
    for (int l = 0; l < L; l++)
        for (int t = 0; t < T_COUNT; t++) {
            size_t mi = (size_t)l * T_COUNT + (size_t)t;
            if (ia[mi] < 0) continue;
            any = true;
            int r = rank[mi];
            if ((st = rm_adapter_module_alloc(a, base, l, (rm_target)t, r, scale[mi])) != RAMOLE_OK) goto done;
            rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            int64_t din, dout;
            rm_target_dims(&base->cfg, (rm_target)t, &din, &dout);
            const rm_st_tensor *ta = rm_st_get(sf, ia[mi]), *tb = rm_st_get(sf, ib[mi]);
            if ((st = rm_lora_read_f32(m->A, ta->data, (rm_type)ta->type, r, din, tr[mi * 2], dir, ta->name)) !=
                RAMOLE_OK)
                goto done;
            if ((st = rm_lora_read_f32(m->B, tb->data, (rm_type)tb->type, dout, r, tr[mi * 2 + 1], dir, tb->name)) !=
                RAMOLE_OK)
                goto done;
            int heads = rm_lora_perm_heads(base, (rm_target)t);
            if (pairs && heads) {
                rm_free(tmp);
                if (!(tmp = rm_malloc((size_t)dout * (size_t)r * sizeof *tmp))) {
                    st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
                    goto done;
                }
                rm_lora_permute_rows(m->B, tmp, dout, r, heads, true);
            }
        }
    if (!any) {
        st = rm_err(RAMOLE_ERR_FORMAT, "adapter %s: adapter_model.safetensors holds no LoRA tensors", dir);
        goto done;
    }
    rm_adapter_update_summary(a);
    *out = a;
    a = NULL;
done:
    rm_adapter_free(a);
    rm_free(tmp);
    rm_st_free(sf);
    peft_config_free(c);
    rm_free(cfg_path);
    rm_free(st_path);
    rm_free(rank);
    rm_free(scale);
    rm_free(ia);
    rm_free(ib);
    rm_free(tr);
    return st;
}

/* ---- saving --------------------------------------------------------------------------------- */

/* The rank of most modules (ties: the larger). */
static int common_rank(const rm_adapter *a) {
    if (a->rank >= 1 && a->rank <= RM_LORA_MAX_RANK) return a->rank;
    int best = 0, best_n = 0;
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < T_COUNT; t++) {
            int r = rm_adapter_mod(a, l, (rm_target)t)->rank, n = 0;
            if (r <= 0) continue;
            for (int l2 = 0; l2 < a->n_layers; l2++)
                for (int t2 = 0; t2 < T_COUNT; t2++) n += rm_adapter_mod(a, l2, (rm_target)t2)->rank == r;
            if (n > best_n || (n == best_n && r > best)) best = r, best_n = n;
        }
    return best;
}

/* The alpha that gives module m its scale under the adapter's rule. */
static double module_alpha(const rm_adapter *a, const rm_lora_module *m) {
    return (double)m->scale * (a->rslora ? sqrt((double)m->rank) : (double)m->rank);
}

/*
 * Add rank_pattern / alpha_pattern entries so that PEFT's rules give every
 * module its rank and scale: one key per target ("q_proj", which PEFT's
 * "(.*\.)?(q_proj)$" matches in every layer and in no other target) when
 * all its adapted layers agree, else one full module name per module that
 * differs from r / lora_alpha.
 */
static rm_status add_patterns(const rm_adapter *a, int r, json_t *rank_pat, json_t *alpha_pat) {
    char key[96];
    for (int t = 0; t < T_COUNT; t++) {
        const char *hf = rm_target_hf_name((rm_target)t);
        const rm_lora_module *first = NULL;
        bool same_rank = true, same_alpha = true, all_default_alpha = true;
        for (int l = 0; l < a->n_layers; l++) {
            const rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            if (m->rank <= 0) continue;
            if (!first) first = m;
            same_rank &= m->rank == first->rank;
            all_default_alpha &= m->scale == rm_lora_scale(a->alpha, m->rank, a->rslora);
            same_alpha &= rm_lora_scale(module_alpha(a, first), m->rank, a->rslora) == m->scale;
        }
        if (!first) continue;
        if (same_rank && first->rank != r) {
            if (json_object_set_new(rank_pat, hf, json_integer(first->rank))) goto nomem;
        }
        if (!all_default_alpha && same_alpha) {
            if (json_object_set_new(alpha_pat, hf, json_real(module_alpha(a, first)))) goto nomem;
        }
        for (int l = 0; l < a->n_layers; l++) {
            const rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            if (m->rank <= 0) continue;
            module_name(key, sizeof key, l, (rm_target)t);
            if (!same_rank && m->rank != r && json_object_set_new(rank_pat, key, json_integer(m->rank))) goto nomem;
            if (!same_alpha && m->scale != rm_lora_scale(a->alpha, m->rank, a->rslora) &&
                json_object_set_new(alpha_pat, key, json_real(module_alpha(a, m))))
                goto nomem;
        }
    }
    return RAMOLE_OK;
nomem:
    return rm_err(RAMOLE_ERR_NOMEM, "out of memory");
}

static json_t *number_json(double v) {
    if (v == floor(v) && fabs(v) < 1e15) return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *peft_config_json(const rm_adapter *a, const rm_model *base, int r, rm_status *st) {
    json_t *j = json_object(), *targets = json_array(), *rank_pat = json_object(), *alpha_pat = json_object(),
           *layers = json_array();
    *st = RAMOLE_OK;
    if (!j || !targets || !rank_pat || !alpha_pat || !layers) {
        *st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto fail;
    }
    unsigned mask = 0;
    int n_used = 0;
    for (int l = 0; l < a->n_layers; l++) {
        bool used = false;
        for (int t = 0; t < T_COUNT; t++)
            if (rm_adapter_mod(a, l, (rm_target)t)->rank > 0) used = true, mask |= 1u << t;
        if (used) {
            n_used++;
            json_array_append_new(layers, json_integer(l));
        }
    }
    for (int t = 0; t < T_COUNT; t++)
        if (mask & (1u << t)) json_array_append_new(targets, json_string(rm_target_hf_name((rm_target)t)));
    if ((*st = add_patterns(a, r, rank_pat, alpha_pat)) != RAMOLE_OK) goto fail;
    json_object_set_new(j, "alpha_pattern", alpha_pat);
    alpha_pat = NULL;
    json_object_set_new(j, "base_model_name_or_path", json_string(base->path ? base->path : ""));
    json_object_set_new(j, "bias", json_string("none"));
    json_object_set_new(j, "fan_in_fan_out", json_false());
    json_object_set_new(j, "inference_mode", json_true());
    json_object_set_new(j, "init_lora_weights", json_true());
    json_object_set_new(j, "layers_pattern", json_null());
    if (n_used < a->n_layers) {
        json_object_set_new(j, "layers_to_transform", layers);
    } else {
        json_object_set_new(j, "layers_to_transform", json_null());
        json_decref(layers);
    }
    layers = NULL;
    json_object_set_new(j, "lora_alpha", number_json(a->alpha));
    json_object_set_new(j, "lora_dropout", json_real(0.0));
    json_object_set_new(j, "modules_to_save", json_null());
    json_object_set_new(j, "peft_type", json_string("LORA"));
    json_object_set_new(j, "r", json_integer(r));
    json_object_set_new(j, "rank_pattern", rank_pat);
    rank_pat = NULL;
    json_object_set_new(j, "target_modules", targets);
    targets = NULL;
    json_object_set_new(j, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(j, "use_dora", json_false());
    json_object_set_new(j, "use_rslora", json_boolean(a->rslora));
    return j;
fail:
    json_decref(j);
    json_decref(targets);
    json_decref(rank_pat);
    json_decref(alpha_pat);
    json_decref(layers);
    return NULL;
}

rm_status rm_adapter_save_peft(const rm_adapter *a, const rm_model *base, const char *dir) {
    RM_TRY(rm_adapter_check(a, base));
    int r = common_rank(a);
    if (r <= 0) return rm_err(RAMOLE_ERR_INVALID, "adapter %s adapts no module: nothing to save", a->path);
    if (mkdir(dir, 0755) != 0 && !rm_dir_exists(dir))
        return rm_err(RAMOLE_ERR_IO, "%s: cannot create the adapter folder: %s", dir, strerror(errno));
    rm_status st = RAMOLE_OK;
    char *cfg_path = rm_path_join(dir, "adapter_config.json");
    char *st_path = rm_path_join(dir, "adapter_model.safetensors");
    size_t nmod = (size_t)a->n_layers * T_COUNT;
    void **owned = rm_calloc(nmod, sizeof *owned); /* unpermuted copies of B */
    rm_st_writer *w = NULL;
    json_t *cfg = NULL;
    float *tmp = NULL;
    if (!cfg_path || !st_path || !owned) {
        st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = rm_st_writer_new(&w)) != RAMOLE_OK) goto done;
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)rm_model_fingerprint(base));
    if ((st = rm_st_writer_meta(w, "format", "pt")) != RAMOLE_OK) goto done;
    if ((st = rm_st_writer_meta(w, "ramole.base_fingerprint", fp)) != RAMOLE_OK) goto done;
    if (a->gate_pool != RM_GATE_POOL_TOKEN &&
        (st = rm_st_writer_meta(w, RM_GATE_POOL_KEY, rm_gate_pool_name(a->gate_pool))) != RAMOLE_OK)
        goto done;
    char prior[32];
    rm_retrieval_prior_format(a->retrieval_prior, prior);
    if (a->retrieval_prior != 0 && (st = rm_st_writer_meta(w, RM_RETRIEVAL_PRIOR_KEY, prior)) != RAMOLE_OK) goto done;
    bool pairs = rm_lora_base_pairs(base);
    for (int l = 0; l < a->n_layers; l++)
        for (int t = 0; t < T_COUNT; t++) {
            const rm_lora_module *m = rm_adapter_mod(a, l, (rm_target)t);
            if (m->rank <= 0) continue;
            int64_t din, dout;
            rm_target_dims(&base->cfg, (rm_target)t, &din, &dout);
            const void *B = m->B;
            int heads = rm_lora_perm_heads(base, (rm_target)t);
            if (pairs && heads) {
                size_t n = (size_t)dout * (size_t)m->rank;
                float *copy = rm_malloc(n * sizeof *copy);
                rm_free(tmp);
                tmp = rm_malloc(n * sizeof *tmp);
                if (!copy || !tmp) {
                    rm_free(copy);
                    st = rm_err(RAMOLE_ERR_NOMEM, "out of memory");
                    goto done;
                }
                rm_lora_module_get(m, &base->cfg, (rm_target)t, true, copy);
                rm_lora_permute_rows(copy, tmp, dout, m->rank, heads, false);
                rm_convert(m->type, tmp, RM_TYPE_F32, copy, (int64_t)n); /* exact: the values came from m->type */
                rm_free(copy);
                owned[(size_t)l * T_COUNT + (size_t)t] = tmp;
                tmp = NULL;
                B = owned[(size_t)l * T_COUNT + (size_t)t];
            }
            char key[96], name[160];
            module_name(key, sizeof key, l, (rm_target)t);
            int64_t sa[2] = {m->rank, din}, sb[2] = {dout, m->rank};
            snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", key);
            if ((st = rm_st_writer_add(w, name, m->type, 2, sa, m->A)) != RAMOLE_OK) goto done;
            snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", key);
            if ((st = rm_st_writer_add(w, name, m->type, 2, sb, B)) != RAMOLE_OK) goto done;
        }
    if ((st = rm_st_writer_write(w, st_path)) != RAMOLE_OK) goto done;
    if (!(cfg = peft_config_json(a, base, r, &st))) goto done;
    st = rm_json_write_atomic(cfg_path, cfg, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
done:
    json_decref(cfg);
    rm_st_writer_free(w);
    if (owned)
        for (size_t i = 0; i < nmod; i++) rm_free(owned[i]);
    rm_free(owned);
    rm_free(tmp);
    rm_free(cfg_path);
    rm_free(st_path);
    return st;
}
