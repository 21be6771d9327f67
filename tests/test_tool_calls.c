/*
 * test_tool_calls.c — a request's tools and the calls read out of answers
 * (engine/tool_calls.h): the grammar of required and named calls takes
 * exactly the calls the tools allow, calls are read back as vLLM's Hermes
 * reader reads them, and a growing answer's content is held back where a
 * call may begin.
 */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tool_calls.h"

static const char *TOOLS =
    "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": {\"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"],"
    " \"additionalProperties\": false}}}, {\"type\": \"function\", \"function\": {\"name\": \"now\"}}]";

static rm_status tools_of(const char *tail, rm_tools *t) {
    char *text = malloc(strlen(TOOLS) + strlen(tail) + 4);
    sprintf(text, "%s%s}", TOOLS, tail);
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    rm_status st = rm_tools_from_json(o, t);
    json_decref(o);
    return st;
}

/* Does g take text whole? */
static int takes(rm_grammar *g, const char *text) {
    rm_grammar_pos p = {0}, tmp = {0};
    size_t taken = 0;
    bool ok = rm_grammar_start(g, &p) == RAMOLE_OK &&
              rm_grammar_accept_all(g, &p, &tmp, text, strlen(text), &taken) == RAMOLE_OK && taken == strlen(text) &&
              rm_grammar_can_end(&p);
    rm_grammar_pos_free(&p);
    rm_grammar_pos_free(&tmp);
    return ok;
}

TEST(tool_calls_required_grammar_takes_calls_of_the_tools) {
    rm_tools t;
    CHECK_OK(tools_of(", \"tool_choice\": \"required\"", &t));
    CHECK(t.n == 2 && t.choice == RM_TOOL_CHOICE_REQUIRED && t.parallel);
    char *absent = json_dumps(t.params[1], JSON_COMPACT); /* no parameters: any object */
    CHECK(!strcmp(t.names[1], "now") && absent && !strcmp(absent, "{\"type\":\"object\"}"));
    free(absent);
    /* the tool as the template's tojson writes it */
    CHECK_MSG(strstr(t.texts[0], "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", ") == t.texts[0],
              "%s", t.texts[0]);
    rm_grammar *g = NULL;
    const char *trigger = "x";
    CHECK_OK(rm_tools_grammar(&t, &g, &trigger));
    CHECK(g != NULL && trigger == NULL);
    if (g) {
        CHECK(takes(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
        CHECK(takes(g, "<tool_call>\n{\"name\":\"now\",\"arguments\":{}}\n</tool_call>\n"
                       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"x\", \"unit\": \"f\"}}\n</tool_call>"));
        CHECK(!takes(g, "<tool_call>\n{\"name\": \"fly\", \"arguments\": {}}\n</tool_call>"));
        CHECK(!takes(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"unit\": \"c\"}}\n</tool_call>"));
        CHECK(!takes(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"x\", \"t\": 1}}\n</tool_call>"));
        CHECK(!takes(g, "Sure. <tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
        CHECK(!takes(g, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}")); /* not closed */
    }
    rm_grammar_free(g);
    rm_tools_free(&t);
    /* named, one call only */
    CHECK_OK(tools_of(", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"now\"}}, "
                      "\"parallel_tool_calls\": false", &t));
    CHECK(t.choice == RM_TOOL_CHOICE_NAMED && t.named == 1 && !t.parallel);
    CHECK_OK(rm_tools_grammar(&t, &g, &trigger));
    if (g) {
        CHECK(takes(g, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
        CHECK(!takes(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"x\"}}\n</tool_call>"));
        CHECK(!takes(g, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>\n"
                        "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
    }
    rm_grammar_free(g);
    rm_tools_free(&t);
    /* auto: the same grammar, from the trigger on; none: no grammar */
    CHECK_OK(tools_of("", &t));
    CHECK(t.choice == RM_TOOL_CHOICE_AUTO && rm_tools_active(&t));
    CHECK_OK(rm_tools_grammar(&t, &g, &trigger));
    CHECK(g != NULL && trigger && !strcmp(trigger, "<tool_call>"));
    if (g) CHECK(takes(g, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
    rm_grammar_free(g);
    rm_tools_free(&t);
    CHECK_OK(tools_of(", \"tool_choice\": \"none\"", &t));
    CHECK(!rm_tools_active(&t));
    CHECK_OK(rm_tools_grammar(&t, &g, &trigger));
    CHECK(g == NULL && trigger == NULL);
    rm_tools_free(&t);
}

/* Under "auto" a grammar that fails to compile for want of memory is an
 * error, not an answer left unconstrained: every allocation failure point
 * gives either the grammar with its trigger or ERR_NOMEM with neither. */
TEST(tool_calls_auto_grammar_out_of_memory_is_an_error) {
    rm_tools t;
    CHECK_OK(tools_of("", &t));
    int nomem = 0, whole = 0, bad = 0;
    for (size_t n = 1; n < 100000; n++) {
        rm_grammar *g = NULL;
        const char *trigger = NULL;
        rm_alloc_fail_after(n);
        rm_status st = rm_tools_grammar(&t, &g, &trigger);
        rm_alloc_fail_after(0);
        if (st == RAMOLE_ERR_NOMEM && !g && !trigger) nomem++;
        else if (st == RAMOLE_OK && g && trigger) whole++;
        else bad++;
        rm_grammar_free(g);
        if (st == RAMOLE_OK) break; /* past the last allocation */
    }
    CHECK_MSG(bad == 0 && whole == 1 && nomem > 0, "%d failure points gave ERR_NOMEM, %d a grammar, %d neither",
              nomem, whole, bad);
    rm_tools_free(&t);
}

TEST(tool_calls_bad_fields_named) {
    static const struct { const char *tail, *needle; } bad[] = {
        {", \"tool_choice\": \"always\"", "\"tool_choice\" must be"},
        {", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"fly\"}}", "\"fly\", which"},
        {", \"parallel_tool_calls\": 1", "\"parallel_tool_calls\" must be true or false"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rm_tools t;
        CHECK_ERR(tools_of(bad[i].tail, &t), RAMOLE_ERR_INVALID);
        CHECK_MSG(strstr(ramole_last_error(), bad[i].needle) != NULL, "%s: %s", bad[i].tail, ramole_last_error());
        CHECK(t.n == 0 && !t.texts); /* nothing left behind */
    }
}

/* text's calls as "name(arguments);..." and its content length */
static char *calls_of(const char *text, size_t *content_len) {
    rm_tool_call *c = NULL;
    int n = 0;
    if (rm_tool_calls_parse(text, strlen(text), &c, &n, content_len) != RAMOLE_OK) return NULL;
    char *out = calloc(1, 4096);
    for (int i = 0; i < n; i++) snprintf(out + strlen(out), 4096 - strlen(out), "%s(%s);", c[i].name, c[i].arguments);
    rm_tool_calls_free(c, n);
    return out;
}

#define ALL ((size_t)-1) /* the whole text is content */

TEST(tool_calls_read_back_as_vllm_reads_them) {
    static const struct { const char *text, *calls; size_t content; } cases[] = {
        {"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>", "f({\"a\": 1});", 0},
        {"Let me see.\n<tool_call>\n{\"name\":\"f\",\"arguments\":{\"b\":[1.5,\"\\u00e9\"]}}\n</tool_call>\n"
         "<tool_call>{\"name\": \"g\"}</tool_call>", "f({\"b\": [1.5, \"\xc3\xa9\"]});g({});", 12},
        /* cut by max_tokens after a whole JSON: read */
        {"<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_", "f({});", 0},
        /* "<tool_call>" inside a string argument is text */
        {"<tool_call>{\"name\": \"f\", \"arguments\": {\"s\": \"<tool_call>x\"}}</tool_call>",
         "f({\"s\": \"<tool_call>x\"});", 0},
        /* a block ends at the first </tool_call>: an unclosed one swallows the next (as vLLM reads it) */
        {"<tool_call>{\"name\": \"f\", \"arguments\": {}}<tool_call>{\"name\": \"g\", \"arguments\": {}}</tool_call>",
         "", ALL},
        /* not calls: the whole text is content */
        {"plain answer", "", ALL},
        {"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \n</tool_call>", "", ALL},
        {"<tool_call>[1, 2]</tool_call>", "", ALL},
        {"x <tool_call>{\"arguments\": {}}</tool_call>", "", ALL},
        {"<tool_call>{\"name\": \"f\"} trailing", "", ALL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t content = 0;
        char *got = calls_of(cases[i].text, &content);
        CHECK_MSG(got && !strcmp(got, cases[i].calls), "case %zu: calls %s, want %s", i, got ? got : "(error)", cases[i].calls);
        size_t want = cases[i].content == ALL ? strlen(cases[i].text) : cases[i].content;
        CHECK_MSG(content == want, "case %zu: content %zu, want %zu", i, content, want);
        free(got);
    }
}

TEST(tool_calls_content_prefix_holds_back_a_possible_call) {
    static const struct { const char *text; size_t sendable; } cases[] = {
        {"Hello", 5}, {"Hello <", 6}, {"Hello <tool", 6}, {"Hello <tool_call", 6}, {"Hello <tool_call>\n{", 6},
        {"a<b", 3}, {"a <t>", 5}, {"<tool_call>", 0}, {"", 0}, {"x<tool_calls", 12},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t got = rm_tool_calls_content_prefix(cases[i].text, strlen(cases[i].text));
        CHECK_MSG(got == cases[i].sendable, "\"%s\": %zu, want %zu", cases[i].text, got, cases[i].sendable);
    }
}
