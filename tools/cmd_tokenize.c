/*
 * cmd_tokenize.c — `ramole tokenize`, `ramole detokenize`, `ramole tokenizer train`.
 *
 * -m takes a model folder (tokenizer.json [+ tokenizer_config.json], or
 * GPT-2's encoder.json + vocab.bpe) or a tokenizer.json path. Output is
 * meant for scripts: tokenize prints ids as "1,2,3" (the form detokenize
 * and `generate --tokens` read); with --jsonl it reads one JSON string per
 * line and prints one JSON array per line, so a whole corpus is checked in
 * one process. Every failure prints "ramole VERB: message" and exits 1;
 * usage errors exit 2.
 */
#include "cmd_tokenize.h"
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whole stream into a fresh buffer. */
static char *read_all(FILE *f, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); return NULL; }
            b = nb;
        }
        size_t r = fread(b + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) break;
    }
    b[len] = 0;
    *n = len;
    return b;
}

static int oom(const char *cmd, const char *what) {
    fprintf(stderr, "ramole %s: out of memory%s\n", cmd, what);
    return 1;
}

static void print_ids(FILE *f, const int32_t *ids, size_t n, bool json) {
    if (json) fputc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, i ? ",%d" : "%d", ids[i]);
    fputs(json ? "]\n" : "\n", f);
}

static int usage_tokenize(void) {
    fprintf(stderr, "usage: ramole tokenize -m MODEL_OR_TOKENIZER [--special] [--no-parse-special] TEXT|-\n"
                    "       ramole tokenize -m MODEL_OR_TOKENIZER --jsonl [--special]   (stdin: a JSON string per line)\n");
    return 2;
}

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize", *model = NULL, *text = NULL;
    unsigned flags = 0;
    bool jsonl = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--special")) flags |= RAMOLE_TOKENIZE_ADD_SPECIAL;
        else if (!strcmp(a, "--no-parse-special")) flags |= RAMOLE_TOKENIZE_NO_PARSE_SPECIAL;
        else if (!strcmp(a, "--jsonl")) jsonl = true;
        else if (!strcmp(a, "--") && i + 1 < argc && !text) text = argv[++i];
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage_tokenize(); return 0; }
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ramole %s: unknown option %s\n", cmd, a);
            return usage_tokenize();
        } else if (text) {
            fprintf(stderr, "ramole %s: one TEXT only (quote it, or use - for standard input)\n", cmd);
            return 2;
        } else text = a;
    }
    if (!model) { fprintf(stderr, "ramole %s: -m MODEL_OR_TOKENIZER is required\n", cmd); return 2; }
    if (!jsonl && !text) { fprintf(stderr, "ramole %s: give TEXT, or - to read standard input\n", cmd); return 2; }
    if (jsonl && text && strcmp(text, "-")) { fprintf(stderr, "ramole %s: --jsonl reads standard input; drop TEXT\n", cmd); return 2; }

    ramole_tokenizer *tok = NULL;
    ramole_status st = ramole_tokenizer_open(model, &tok);
    if (st) return cli_fail(cmd, st);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 0;
    size_t n = 0;
    char *in = NULL;
    if (!jsonl) {
        if (!strcmp(text, "-")) {
            in = read_all(stdin, &n);
            if (!in) { rc = oom(cmd, " reading standard input"); goto done; }
            text = in;
        } else n = strlen(text);
        st = ramole_tokenizer_encode(tok, text, n, flags, &ids, &n_ids);
        if (st) { rc = cli_fail(cmd, st); goto done; }
        print_ids(stdout, ids, n_ids, false);
        goto done;
    }
    in = read_all(stdin, &n);
    if (!in) { rc = oom(cmd, " reading standard input"); goto done; }
    size_t lineno = 0;
    for (char *line = in; line < in + n;) {
        char *nl = memchr(line, '\n', (size_t)(in + n - line));
        size_t ln = nl ? (size_t)(nl - line) : (size_t)(in + n - line);
        lineno++;
        if (ln && line[ln - 1] == '\r') ln--;
        if (ln) {
            json_error_t e;
            json_t *v = json_loadb(line, ln, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
            if (!v || !json_is_string(v)) {
                fprintf(stderr, "ramole %s: standard input line %zu: expected a JSON string%s%s\n", cmd, lineno,
                        v ? "" : ": ", v ? "" : e.text);
                json_decref(v);
                rc = 1;
                goto done;
            }
            ramole_free(ids);
            st = ramole_tokenizer_encode(tok, json_string_value(v), json_string_length(v), flags, &ids, &n_ids);
            json_decref(v);
            if (st) { rc = cli_fail(cmd, st); goto done; }
            print_ids(stdout, ids, n_ids, true);
        }
        line = nl ? nl + 1 : in + n;
    }
done:
    free(in);
    ramole_free(ids);
    ramole_tokenizer_free(tok);
    if (fflush(stdout) != 0 && !rc) { fprintf(stderr, "ramole %s: write error\n", cmd); rc = 1; }
    return rc;
}

/* Ids separated by commas and/or white space ("1,2,3", "1 2 3", "[1, 2]"). */
static bool parse_ids(const char *cmd, const char *s, int32_t **out, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) { fprintf(stderr, "ramole %s: out of memory\n", cmd); return false; }
    const char *p = s;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX) {
            fprintf(stderr, "ramole %s: expected token ids like 1,2,3; got \"%.40s\"\n", cmd, p);
            free(v);
            return false;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { free(v); fprintf(stderr, "ramole %s: out of memory\n", cmd); return false; }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    *out = v;
    *n = k;
    return true;
}

static int usage_detokenize(void) {
    fprintf(stderr, "usage: ramole detokenize -m MODEL_OR_TOKENIZER [--skip-special] [--cleanup] [-n] IDS|-\n"
                    "       ramole detokenize -m MODEL_OR_TOKENIZER --jsonl   (stdin: a JSON id array per line;\n"
                    "       prints a JSON string per line)\n"
                    "  --cleanup  apply clean_up_tokenization_spaces when tokenizer_config.json asks for it\n"
                    "  -n         no newline after the text\n");
    return 2;
}

int cmd_detokenize(int argc, char **argv) {
    const char *cmd = "detokenize", *model = NULL, *arg = NULL;
    unsigned flags = RAMOLE_DETOKENIZE_NO_CLEANUP;
    bool jsonl = false, newline = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--skip-special")) flags |= RAMOLE_DETOKENIZE_SKIP_SPECIAL;
        else if (!strcmp(a, "--cleanup")) flags &= ~(unsigned)RAMOLE_DETOKENIZE_NO_CLEANUP;
        else if (!strcmp(a, "--jsonl")) jsonl = true;
        else if (!strcmp(a, "-n")) newline = false;
        else if (!strcmp(a, "--") && i + 1 < argc && !arg) arg = argv[++i];
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage_detokenize(); return 0; }
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ramole %s: unknown option %s\n", cmd, a);
            return usage_detokenize();
        } else if (arg) {
            fprintf(stderr, "ramole %s: give the ids as one argument (1,2,3) or - for standard input\n", cmd);
            return 2;
        } else arg = a;
    }
    if (!model) { fprintf(stderr, "ramole %s: -m MODEL_OR_TOKENIZER is required\n", cmd); return 2; }
    if (!jsonl && !arg) { fprintf(stderr, "ramole %s: give IDS (1,2,3), or - to read standard input\n", cmd); return 2; }

    ramole_tokenizer *tok = NULL;
    ramole_status st = ramole_tokenizer_open(model, &tok);
    if (st) return cli_fail(cmd, st);
    int rc = 0;
    size_t n = 0, nids = 0;
    char *in = NULL, *text = NULL;
    int32_t *ids = NULL;
    if (!jsonl) {
        const char *src = arg;
        if (!strcmp(arg, "-")) {
            if (!(in = read_all(stdin, &n))) { rc = oom(cmd, ""); goto done; }
            src = in;
        }
        if (!parse_ids(cmd, src, &ids, &nids)) { rc = 1; goto done; }
        size_t len;
        st = ramole_tokenizer_decode(tok, ids, nids, flags, &text, &len);
        if (st) { rc = cli_fail(cmd, st); goto done; }
        fwrite(text, 1, len, stdout);
        if (newline) fputc('\n', stdout);
        goto done;
    }
    if (!(in = read_all(stdin, &n))) { rc = oom(cmd, ""); goto done; }
    size_t lineno = 0;
    for (char *line = in; line < in + n;) {
        char *nl = memchr(line, '\n', (size_t)(in + n - line));
        size_t ln = nl ? (size_t)(nl - line) : (size_t)(in + n - line);
        lineno++;
        if (ln) {
            json_error_t e;
            json_t *v = json_loadb(line, ln, 0, &e);
            bool ok = json_is_array(v);
            size_t k = ok ? json_array_size(v) : 0;
            int32_t *x = malloc((k ? k : 1) * sizeof *x);
            for (size_t j = 0; ok && x && j < k; j++) {
                json_t *it = json_array_get(v, j);
                if (!json_is_integer(it) || json_integer_value(it) < INT32_MIN || json_integer_value(it) > INT32_MAX) ok = false;
                else x[j] = (int32_t)json_integer_value(it);
            }
            json_decref(v);
            if (!ok || !x) {
                free(x);
                fprintf(stderr, "ramole %s: standard input line %zu: expected a JSON array of integer ids\n", cmd, lineno);
                rc = 1;
                goto done;
            }
            size_t len;
            st = ramole_tokenizer_decode(tok, x, k, flags, &text, &len);
            free(x);
            if (st) {
                const char *msg = ramole_last_error();
                fprintf(stderr, "ramole %s: standard input line %zu: %s\n", cmd, lineno, msg[0] ? msg : ramole_status_str(st));
                rc = 1;
                goto done;
            }
            json_t *s = json_stringn(text, len);
            char *js = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
            if (js) puts(js);
            free(js); /* jansson's allocation */
            json_decref(s);
            ramole_free(text);
            text = NULL;
        }
        line = nl ? nl + 1 : in + n;
    }
done:
    free(in);
    free(ids);
    ramole_free(text);
    ramole_tokenizer_free(tok);
    if (fflush(stdout) != 0 && !rc) { fprintf(stderr, "ramole %s: write error\n", cmd); rc = 1; }
    return rc;
}

static int usage_tokenizer(void) {
    fprintf(stderr, "usage: ramole tokenizer train --vocab-size N -o tokenizer.json [--special TOKEN]... [--min-frequency F] FILES...\n"
                    "         learns a byte-level BPE (Llama-3/Qwen split regex) from the text files\n"
                    "       ramole tokenizer export-gguf -m MODEL_OR_TOKENIZER -o OUT.gguf [--llamacpp-only]\n"
                    "         writes a vocabulary-only GGUF (as llama.cpp's ggml-vocab-*.gguf files)\n");
    return 2;
}

/* A GGUF holding only the tokenizer (and the few llama hyper-parameters
 * llama.cpp reads before it looks at the vocabulary). */
static int export_gguf(int argc, char **argv) {
    const char *cmd = "tokenizer export-gguf", *model = NULL, *outp = NULL;
    bool ramole_keys = true;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-m")) { if (!(model = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(argv[i], "-o")) { if (!(outp = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(argv[i], "--llamacpp-only")) ramole_keys = false;
        else { fprintf(stderr, "ramole %s: unknown argument %s\n", cmd, argv[i]); return usage_tokenizer(); }
    }
    if (!model || !outp) { fprintf(stderr, "ramole %s: -m and -o are required\n", cmd); return 2; }
    ramole_tokenizer *tok = NULL;
    ramole_status st = ramole_tokenizer_open(model, &tok);
    if (!st) st = ramole_tokenizer_export_gguf(tok, outp, ramole_keys);
    ramole_tokenizer_free(tok);
    return st ? cli_fail(cmd, st) : 0;
}

int cmd_tokenizer(int argc, char **argv) {
    const char *cmd = "tokenizer train";
    if (argc >= 2 && !strcmp(argv[1], "export-gguf")) return export_gguf(argc, argv);
    if (argc < 2 || strcmp(argv[1], "train")) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) { usage_tokenizer(); return 0; }
        fprintf(stderr, "ramole tokenizer: expected the subcommand 'train' or 'export-gguf'\n");
        return usage_tokenizer();
    }
    long vocab = 0, minf = 2;
    const char *outp = NULL;
    const char **files = calloc((size_t)argc, sizeof *files), **specials = calloc((size_t)argc, sizeof *specials);
    size_t nf = 0, ns = 0;
    int rc = 0;
    if (!files || !specials) { rc = oom(cmd, ""); goto done; }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--vocab-size")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 257, 1 << 22, &vocab)) { rc = 2; goto done; }
        } else if (!strcmp(a, "--min-frequency")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1 << 30, &minf)) { rc = 2; goto done; }
        } else if (!strcmp(a, "-o")) {
            if (!(outp = cli_value(cmd, argc, argv, &i))) { rc = 2; goto done; }
        } else if (!strcmp(a, "--special")) {
            if (!(specials[ns++] = cli_value(cmd, argc, argv, &i))) { rc = 2; goto done; }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ramole %s: unknown option %s\n", cmd, a);
            rc = usage_tokenizer();
            goto done;
        } else files[nf++] = a;
    }
    if (!vocab || !outp || !nf) {
        fprintf(stderr, "ramole %s: --vocab-size, -o and at least one input file are required\n", cmd);
        rc = usage_tokenizer();
        goto done;
    }
    ramole_tokenizer_train_params o = {.vocab_size = (int)vocab, .special_tokens = specials, .n_special = ns,
                                       .min_frequency = (int)minf};
    ramole_status st = ramole_tokenizer_train(files, nf, &o, outp);
    if (st) { rc = cli_fail(cmd, st); goto done; }
    fprintf(stderr, "ramole %s: wrote %s\n", cmd, outp);
done:
    free(files);
    free(specials);
    return rc;
}
