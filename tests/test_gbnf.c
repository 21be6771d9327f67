/*
 * test_gbnf.c — llama.cpp's grammar format: what a GBNF grammar takes and
 * refuses once compiled (literals and escapes, classes over code points
 * as UTF-8, groups, every repetition, comments and line rules), and the
 * errors that name the line and column.
 */
#include "test.h"

#include <string.h>

#include "engine/gbnf.h"

static int takes(const char *gbnf, const char *text, size_t n) {
    rm_grammar *g;
    if (rm_gbnf_grammar(gbnf, strlen(gbnf), &g) != RAMOLE_OK) {
        rm_test_fail(__FILE__, __LINE__, "grammar %s refused: %s", gbnf, ramole_last_error());
        return -1;
    }
    rm_grammar_pos p = {0}, tmp = {0};
    bool ok = false;
    size_t taken;
    if (rm_grammar_start(g, &p) == RAMOLE_OK && rm_grammar_accept_all(g, &p, &tmp, text, n, &taken) == RAMOLE_OK &&
        taken == n)
        ok = rm_grammar_can_end(&p);
    rm_grammar_pos_free(&p);
    rm_grammar_pos_free(&tmp);
    rm_grammar_free(g);
    return ok;
}

#define TAKES(g, t) CHECK_MSG(takes(g, t, strlen(t)) == 1, "%s should take %s", g, t)
#define REFUSES(g, t) CHECK_MSG(takes(g, t, strlen(t)) == 0, "%s should refuse %s", g, t)

static void refused(const char *gbnf, const char *needle) {
    rm_grammar *g = NULL;
    ramole_status st = rm_gbnf_grammar(gbnf, strlen(gbnf), &g);
    CHECK_MSG(st == RAMOLE_ERR_INVALID, "%s was not refused", gbnf);
    if (st == RAMOLE_OK) rm_grammar_free(g);
    else CHECK_MSG(strstr(ramole_last_error(), needle), "%s: message \"%s\" lacks \"%s\"", gbnf, ramole_last_error(),
                   needle);
}

TEST(gbnf_literals_alternatives_groups) {
    const char *yn = "root ::= \"yes\" | \"no\"";
    TAKES(yn, "yes");
    TAKES(yn, "no");
    REFUSES(yn, "ye");
    REFUSES(yn, "yesno");
    /* rules on several lines, continued after '|' and inside parentheses, comments */
    const char *g = "# a greeting\n"
                    "root ::= greet \" \" (\n"
                    "    name |\n"
                    "    \"you\"   # the fallback\n"
                    "  ) \"!\"\n"
                    "greet ::= \"hi\" |\n"
                    "  \"hello\"\n"
                    "name ::= [A-Z] [a-z]*\n";
    TAKES(g, "hi Ann!");
    TAKES(g, "hello you!");
    TAKES(g, "hi Z!");
    REFUSES(g, "hi ann!");
    REFUSES(g, "hey you!");
    /* escapes */
    TAKES("root ::= \"a\\tb\\n\\\"\\\\\\x41\\u00e9\\U0001F600\"", "a\tb\n\"\\A\xc3\xa9\xf0\x9f\x98\x80");
    TAKES("root ::= [\\[\\]] \"\\[\"", "][");
}

TEST(gbnf_classes_over_code_points) {
    const char *greek = "root ::= [\xce\xb1-\xcf\x89]+"; /* [α-ω] */
    TAKES(greek, "\xce\xbb\xcf\x89");                   /* λω */
    REFUSES(greek, "a");
    REFUSES(greek, "\xce\x91"); /* Α, capital */
    const char *not_a = "root ::= [^a\\n]";
    TAKES(not_a, "b");
    TAKES(not_a, "\xe2\x82\xac");     /* € */
    TAKES(not_a, "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    REFUSES(not_a, "a");
    REFUSES(not_a, "\n");
    REFUSES(not_a, "\xed\xa0\x80"); /* a surrogate is no character */
    REFUSES(not_a, "\xc0\x80");     /* overlong */
    /* a range across every encoding length: each boundary */
    const char *wide = "root ::= [\\x7e-\\U00010001]";
    const char *in[] = {"~", "\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
                        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf0\x90\x80\x81"};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) TAKES(wide, in[i]);
    REFUSES(wide, "}");
    REFUSES(wide, "\xf0\x90\x80\x82");
    const char *dot = "root ::= . .";
    TAKES(dot, "a\xe6\x97\xa5");
    TAKES(dot, "\n\n");
    REFUSES(dot, "a");
    TAKES("root ::= [a-c-]", "-");
}

TEST(gbnf_repetitions) {
    const char *r = "root ::= \"a\"{2,3} \"b\"{2} \"c\"{1,} (\"d\" \"e\")? [0-9]*";
    TAKES(r, "aabbc");
    TAKES(r, "aaabbcccde12");
    REFUSES(r, "abbc");
    REFUSES(r, "aaaabbc");
    REFUSES(r, "aabbbc");
    REFUSES(r, "aabb");
    REFUSES(r, "aabbcd");
    TAKES("root ::= \"ab\"+", "ababab");
    REFUSES("root ::= \"ab\"+", "aba");
    TAKES("root ::= x{ 0 , 2 }\nx ::= \"x\"", "xx");
    /* a recursive rule: balanced parentheses */
    const char *bal = "root ::= (\"(\" root \")\")*";
    TAKES(bal, "(()())");
    TAKES(bal, "");
    REFUSES(bal, "(()");
}

TEST(gbnf_errors_name_the_place) {
    refused("root ::= \"a\"\nroot ::= \"b\"", "line 2 column 1: rule \"root\" is defined twice");
    refused("root ::= x", "rule \"x\" (line 1) is used but never defined");
    refused("main ::= \"a\"", "no rule named \"root\"");
    refused("root ::= \"abc", "a literal is not closed");
    refused("root ::= [a-", "not closed with ']'");
    refused("root ::= [z-a]", "runs backwards");
    refused("root ::= (\"a\"", "a group is not closed");
    refused("root ::= * \"a\"", "'*' repeats nothing");
    refused("root ::= \"a\"{3,1}", "below its minimum");
    refused("root ::= \"a\"{99999}", "above 4096");
    refused("root ::= \"\\q\"", "unknown escape");
    refused("root ::= <think>", "token references");
    refused("root ::= root \"a\" | \"b\"", "rule \"root\" is left-recursive");
    refused("root \"a\"", "expected \"::=\"");
    refused("root ::= \"a\" )", "line 1 column 14: unexpected ')'");
    refused("root ::= \"\\uD800\"", "is not a character");
    /* a kilobyte of text must not build a grammar without bound */
    char big[2048] = "root ::=";
    for (int i = 0; i < 60; i++) strcat(big, " \"a\"{0,4096}");
    refused(big, "more than 200000 rules");
}
