/*
 * test_json_schema.c — responses constrained to a JSON Schema: the grammar
 * the schema compiles to takes the documents it should and refuses the
 * others, refuses unsupported schemas by name, and the token filter's
 * trie walk allows exactly the tokens a byte-by-byte check allows.
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "engine/json_schema.h"
#include "engine/token_filter.h"
#include "test_util.h"

/* Does the grammar of schema take text whole (complete at its end)? */
static int takes(const char *schema, const char *text) {
    rm_grammar *g;
    if (rm_json_schema_grammar(schema, strlen(schema), &g) != RAMOLE_OK) {
        rm_test_fail(__FILE__, __LINE__, "schema %s refused: %s", schema, ramole_last_error());
        return -1;
    }
    rm_grammar_pos p = {0}, tmp = {0};
    bool ok = false;
    size_t taken;
    if (rm_grammar_start(g, &p) == RAMOLE_OK &&
        rm_grammar_accept_all(g, &p, &tmp, text, strlen(text), &taken) == RAMOLE_OK && taken == strlen(text))
        ok = rm_grammar_can_end(&p);
    rm_grammar_pos_free(&p);
    rm_grammar_pos_free(&tmp);
    rm_grammar_free(g);
    return ok;
}

#define TAKES(schema, text) CHECK_MSG(takes(schema, text) == 1, "%s should take %s", schema, text)
#define REFUSES(schema, text) CHECK_MSG(takes(schema, text) == 0, "%s should refuse %s", schema, text)

static void schema_refused(const char *schema, const char *needle) {
    rm_grammar *g = NULL;
    ramole_status st = rm_json_schema_grammar(schema, strlen(schema), &g);
    CHECK_MSG(st == RAMOLE_ERR_INVALID, "%s was not refused", schema);
    if (st == RAMOLE_OK) rm_grammar_free(g);
    else CHECK_MSG(strstr(ramole_last_error(), needle), "%s: message \"%s\" lacks \"%s\"", schema,
                   ramole_last_error(), needle);
}

TEST(json_schema_any_object) {
    const char *s = "{\"type\": \"object\"}";
    TAKES(s, "{}");
    TAKES(s, "{\"a\":1}");
    TAKES(s, " {\"a\": [1, 2.5e-3, \"x\", true, null, {\"b\": {}}], \"c\": \"\\u00e9\\n\"}");
    TAKES(s, "{\n  \"a\": -0.5,\n  \"b\": []\n}");
    REFUSES(s, "[]");
    REFUSES(s, "{\"a\":1,}");
    REFUSES(s, "{\"a\":01}");
    REFUSES(s, "{\"a\":1} ");     /* nothing after the value */
    REFUSES(s, "{\"a\":\"\x01\"}"); /* control characters must be escaped */
    REFUSES(s, "{\"a\":\"\\x\"}");
    REFUSES(s, "{\"a\":tru}");
    REFUSES(s, "{'a':1}");
    REFUSES(s, "{\"a\":1");        /* incomplete */
    /* UTF-8: well-formed sequences only */
    TAKES(s, "{\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\":0}");
    REFUSES(s, "{\"\xc0\xaf\":0}");     /* overlong */
    REFUSES(s, "{\"\xed\xa0\x80\":0}"); /* a surrogate */
    REFUSES(s, "{\"\xe2\x82\":0}");     /* cut short */
}

TEST(json_schema_properties_in_order) {
    const char *s = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, "
                    "\"age\": {\"type\": \"integer\"}, \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}},"
                    " \"required\": [\"name\", \"age\"]}";
    TAKES(s, "{\"name\":\"Ann\",\"age\":31}");
    TAKES(s, "{\"name\": \"Ann\", \"age\": -4, \"tags\": [\"a\", \"b\"]}");
    TAKES(s, "{\"name\":\"\",\"age\":0,\"tags\":[]}");
    REFUSES(s, "{\"age\":31,\"name\":\"Ann\"}");          /* declared order */
    REFUSES(s, "{\"name\":\"Ann\"}");                     /* age is required */
    REFUSES(s, "{\"name\":\"Ann\",\"age\":3.5}");         /* an integer */
    REFUSES(s, "{\"name\":\"Ann\",\"age\":3,\"x\":1}");   /* additionalProperties taken as false */
    REFUSES(s, "{\"name\":\"Ann\",\"age\":3,\"tags\":[1]}");
    REFUSES(s, "{}");
    /* every property optional: any subset, in order, with commas right */
    const char *o = "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": "
                    "\"integer\"}, \"c\": {\"type\": \"integer\"}}}";
    TAKES(o, "{}");
    TAKES(o, "{\"b\":2}");
    TAKES(o, "{\"a\":1,\"c\":3}");
    TAKES(o, "{\"a\":1,\"b\":2,\"c\":3}");
    REFUSES(o, "{,\"b\":2}");
    REFUSES(o, "{\"a\":1,}");
    REFUSES(o, "{\"c\":3,\"a\":1}");
    /* additional members where the schema allows them, after the declared ones */
    const char *x = "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}, "
                    "\"additionalProperties\": {\"type\": \"boolean\"}}";
    TAKES(x, "{\"a\":1,\"z\":true}");
    TAKES(x, "{\"z\":false,\"y\":true}");
    REFUSES(x, "{\"a\":1,\"z\":2}");
    TAKES("{\"type\": \"object\", \"properties\": {}, \"additionalProperties\": true}", "{\"q\": [1]}");
    TAKES("{\"type\": \"object\", \"additionalProperties\": false}", "{}");
    REFUSES("{\"type\": \"object\", \"additionalProperties\": false}", "{\"a\":1}");
}

TEST(json_schema_scalars_and_bounds) {
    TAKES("{\"type\": \"integer\"}", "-120");
    REFUSES("{\"type\": \"integer\"}", "1.0");
    REFUSES("{\"type\": \"integer\"}", "-");
    TAKES("{\"type\": \"number\"}", "1.0");
    TAKES("{\"type\": \"number\"}", "6.02E+23");
    REFUSES("{\"type\": \"number\"}", "1.");
    REFUSES("{\"type\": \"number\"}", ".5");
    REFUSES("{\"type\": \"number\"}", "12345678901234567"); /* 17 digits */
    TAKES("{\"type\": \"number\"}", "1234567890123456");
    TAKES("{\"type\": \"boolean\"}", "false");
    REFUSES("{\"type\": \"boolean\"}", "0");
    TAKES("{\"type\": \"null\"}", "null");
    TAKES("{\"type\": [\"string\", \"null\"]}", "null");
    TAKES("{\"type\": [\"string\", \"null\"]}", "\"x\"");
    REFUSES("{\"type\": [\"string\", \"null\"]}", "1");
    const char *len = "{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3}";
    TAKES(len, "\"ab\"");
    TAKES(len, "\"a\\u00e9\\n\""); /* an escape is one character */
    TAKES(len, "\"\xc3\xa9\xc3\xa9\"");
    REFUSES(len, "\"a\"");
    REFUSES(len, "\"abcd\"");
    const char *arr = "{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"minItems\": 1, \"maxItems\": 2}";
    TAKES(arr, "[1]");
    TAKES(arr, "[1, 2]");
    REFUSES(arr, "[]");
    REFUSES(arr, "[1,2,3]");
    TAKES("{\"type\": \"array\", \"maxItems\": 0}", "[]");
    REFUSES("{\"type\": \"array\", \"maxItems\": 0}", "[1]");
}

TEST(json_schema_enum_const_anyof_ref) {
    const char *e = "{\"enum\": [\"red\", \"green\", 3, null, {\"a\": [1]}]}";
    TAKES(e, "\"red\"");
    TAKES(e, "3");
    TAKES(e, "null");
    TAKES(e, "{\"a\":[1]}");
    REFUSES(e, "\"blue\"");
    REFUSES(e, "\"re\"");
    TAKES("{\"type\": \"string\", \"enum\": [\"a\", 1]}", "\"a\"");
    REFUSES("{\"type\": \"string\", \"enum\": [\"a\", 1]}", "1"); /* not of the type */
    TAKES("{\"const\": \"caf\xc3\xa9\\\"\"}", "\"caf\xc3\xa9\\\"\"");
    const char *any = "{\"anyOf\": [{\"type\": \"integer\"}, {\"type\": \"object\", \"properties\": {\"x\": "
                      "{\"type\": \"string\"}}, \"required\": [\"x\"]}], \"title\": \"T\"}";
    TAKES(any, "7");
    TAKES(any, "{\"x\":\"y\"}");
    REFUSES(any, "{}");
    /* pydantic's shape: $defs and $ref, and a recursive tree */
    const char *tree = "{\"$defs\": {\"Node\": {\"type\": \"object\", \"properties\": {\"v\": {\"type\": "
                       "\"integer\"}, \"kids\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/Node\"}}}, "
                       "\"required\": [\"v\"]}}, \"$ref\": \"#/$defs/Node\"}";
    TAKES(tree, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4,\"kids\":[]}]}]}");
    REFUSES(tree, "{\"v\":1,\"kids\":[{\"w\":2}]}");
    TAKES("{\"allOf\": [{\"type\": \"boolean\"}]}", "true");
    TAKES("true", "[{}]");
    TAKES("{}", "\"any\"");
}

TEST(json_schema_refuses_by_name) {
    schema_refused("{\"type\": \"string\", \"pattern\": \"^a\"}", "keyword \"pattern\" is not supported");
    schema_refused("{\"type\": \"integer\", \"minimum\": 0}", "\"minimum\"");
    schema_refused("{\"type\": \"objekt\"}", "\"objekt\" is not a JSON Schema type");
    schema_refused("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"maximum\": 3}}}",
                   "/properties/a");
    schema_refused("{\"type\": \"object\", \"properties\": {}, \"required\": [\"a\"]}",
                   "required property \"a\" is not among");
    schema_refused("{\"$ref\": \"#/$defs/Missing\"}", "names nothing");
    schema_refused("{\"$ref\": \"http://example.com/s.json\"}", "is not in this schema");
    schema_refused("{\"allOf\": [{\"type\": \"string\"}, {\"maxLength\": 3}]}", "\"allOf\" of more than one");
    schema_refused("{\"anyOf\": [{\"type\": \"string\"}], \"type\": \"string\"}", "beside other keywords");
    schema_refused("{\"enum\": [1], \"type\": \"string\"}", "no value satisfies it");
    schema_refused("{\"type\": \"array\", \"minItems\": 3, \"maxItems\": 2}", "\"minItems\" is above");
    schema_refused("false", "no value satisfies it");
    schema_refused("{\"type\": \"object\"", "not valid JSON");
    schema_refused("[1]", "must be an object or a boolean");
    /* sizes: a schema cannot make the matcher recurse or grow without bound */
    char *big = malloc(20000), *p = big;
    p += sprintf(p, "{\"type\": \"object\", \"properties\": {");
    for (int i = 0; i < 300; i++) p += sprintf(p, "%s\"p%d\": {\"type\": \"integer\"}", i ? ", " : "", i);
    sprintf(p, "}}");
    schema_refused(big, "more than 256 \"properties\"");
    p = big + sprintf(big, "{\"$ref\": \"#/$defs/a0\", \"$defs\": {");
    for (int i = 0; i < 100; i++) p += sprintf(p, "\"a%d\": {\"$ref\": \"#/$defs/a%d\"}, ", i, i + 1);
    sprintf(p, "\"a100\": {\"type\": \"null\"}}}");
    schema_refused(big, "nest deeper than 64");
    free(big);
    /* 256 optional properties: the longest chain of optional members expands */
    p = big = malloc(20000);
    p += sprintf(p, "{\"type\": \"object\", \"properties\": {");
    for (int i = 0; i < 256; i++) p += sprintf(p, "%s\"p%d\": {\"type\": \"integer\"}", i ? ", " : "", i);
    sprintf(p, "}}");
    TAKES(big, "{\"p255\":1}");
    TAKES(big, "{\"p0\":1,\"p255\":2}");
    REFUSES(big, "{\"p255\":1,\"p0\":2}");
    free(big);
}

/* A tokenizer of single bytes, pairs and a few longer tokens, with an EOS. */
static rm_tok *small_tok(void) {
    static const char *const words[] = {"{\"", "\":", "\"}", "\", \"", "true", "false", "null", "name", "age", " {",
                                  "12", "3.", "\\u", "e-", "}\n", "\xc3", "\xa9", "\xc3\xa9"};
    char *json = rm_test_byte_level_tokenizer_json(words, (int)(sizeof words / sizeof *words));
    rm_tok *tok = NULL;
    CHECK_OK(rm_tok_load_json(json, strlen(json), NULL, 0, "small", &tok));
    free(json);
    return tok;
}

TEST(token_filter_walk_matches_bytewise_check) {
    rm_tok *tok = small_tok();
    if (!tok) return;
    int V = rm_tok_vocab_size(tok);
    rm_vocab_trie *trie;
    CHECK_OK(rm_vocab_trie_new(tok, V + 3, &trie)); /* ids past the tokenizer: never allowed */
    const char *schema = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": "
                         "{\"type\": \"number\"}, \"ok\": {\"type\": \"boolean\"}}, \"required\": [\"name\"]}";
    const char *text = " {\"name\":\"\xc3\xa9\\u0041\", \"age\":12.5e-3,\"ok\":true}";
    rm_grammar *g, *ref;
    CHECK_OK(rm_json_schema_grammar(schema, strlen(schema), &g));
    CHECK_OK(rm_json_schema_grammar(schema, strlen(schema), &ref));
    rm_token_filter *f;
    CHECK_OK(rm_token_filter_new(trie, g, true, &f));
    rm_grammar_pos p = {0}, q = {0}, tmp = {0};
    CHECK_OK(rm_grammar_start(ref, &p));
    /* at every prefix of text, the mask is what feeding each token's bytes
     * to a fresh copy of the position says; then move by one byte token */
    for (size_t at = 0; at <= strlen(text); at++) {
        const uint64_t *mask;
        int n_allowed, n = 0;
        CHECK_OK(rm_token_filter_allowed(f, &mask, &n_allowed));
        for (int id = 0; id < V + 3; id++) {
            bool want = false;
            const char *s;
            size_t len;
            if (id < V && rm_tok_is_eog(tok, id)) want = rm_grammar_can_end(&p);
            else if (id < V && !rm_tok_is_special(tok, id) && rm_tok_piece(tok, id, &s, &len) == RAMOLE_OK && len) {
                CHECK_OK(rm_grammar_pos_copy(&q, &p));
                size_t taken;
                CHECK_OK(rm_grammar_accept_all(ref, &q, &tmp, s, len, &taken));
                want = taken == len;
            }
            bool got = mask[id / 64] >> (id % 64) & 1;
            CHECK_MSG(got == want, "at byte %zu token %d: mask %d, bytewise %d", at, id, got, want);
            n += got;
        }
        CHECK(n == n_allowed);
        if (at == strlen(text)) break;
        /* the single-byte token of text[at] */
        char one[2] = {text[at], 0};
        int32_t id = -1;
        for (int k = 0; k < V && id < 0; k++) {
            const char *s;
            size_t len;
            if (!rm_tok_is_special(tok, k) && rm_tok_piece(tok, k, &s, &len) == RAMOLE_OK && len == 1 && s[0] == one[0])
                id = k;
        }
        CHECK(id >= 0);
        CHECK_OK(rm_token_filter_take(f, id));
        size_t taken;
        CHECK_OK(rm_grammar_accept_all(ref, &p, &tmp, one, 1, &taken));
        CHECK(taken == 1);
    }
    CHECK(rm_token_filter_done(f));
    /* a token the grammar refuses is refused by take too */
    rm_grammar *g2;
    CHECK_OK(rm_json_schema_grammar(schema, strlen(schema), &g2));
    rm_token_filter *f2;
    CHECK_OK(rm_token_filter_new(trie, g2, true, &f2));
    CHECK(rm_token_filter_take(f2, rm_tok_token_id(tok, "true", 4)) == RAMOLE_ERR_INTERNAL);
    CHECK(rm_token_filter_take(f2, rm_tok_eos(tok)) == RAMOLE_ERR_INTERNAL); /* not complete */
    rm_token_filter_free(f2);
    rm_grammar_pos_free(&p);
    rm_grammar_pos_free(&q);
    rm_grammar_pos_free(&tmp);
    rm_grammar_free(ref);
    rm_token_filter_free(f);
    rm_vocab_trie_free(trie);
    rm_tok_free(tok);
}
