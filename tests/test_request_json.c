/*
 * test_request_json.c — a generation request from the JSON that OpenAI's
 * clients send: the fields ramole reads, the defaults OpenAI gives, and
 * the clear refusals of what ramole does not do.
 */
#include "test.h"

#include <jansson.h>
#include <string.h>

#include "engine/request_json.h"

/* Parse text into spec; the status, with spec freed on failure. */
static ramole_status parse_text(const char *text, rm_request_spec *spec) {
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!o) {
        rm_test_fail(__FILE__, __LINE__, "bad test JSON %s: %s", text, je.text);
        return RAMOLE_ERR_INVALID;
    }
    ramole_status st = rm_request_spec_from_json(o, spec);
    json_decref(o);
    return st;
}

/* text must be refused, with a message holding needle. */
static void refused(const char *text, const char *needle) {
    rm_request_spec sp;
    ramole_status st = parse_text(text, &sp);
    CHECK_MSG(st == RAMOLE_ERR_INVALID, "%s was not refused", text);
    if (st == RAMOLE_OK) rm_request_spec_free(&sp);
    else CHECK_MSG(strstr(ramole_last_error(), needle), "%s: message \"%s\" lacks \"%s\"", text,
                   ramole_last_error(), needle);
}

static void accepted(const char *text) {
    rm_request_spec sp;
    ramole_status st = parse_text(text, &sp);
    CHECK_MSG(st == RAMOLE_OK, "%s refused: %s", text, ramole_last_error());
    if (st == RAMOLE_OK) rm_request_spec_free(&sp);
}

TEST(request_json_max_tokens_defaults_as_openai) {
    rm_request_spec sp;
    /* legacy completions stop at 16; chat runs until it ends or the context is full (0) */
    CHECK_OK(parse_text("{\"prompt\": \"a\"}", &sp));
    CHECK(sp.req.max_tokens == 16);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}", &sp));
    CHECK(sp.req.max_tokens == 0);
    rm_request_spec_free(&sp);
    /* the newer name, either name, both when they agree */
    CHECK_OK(parse_text("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"max_completion_tokens\": 7}", &sp));
    CHECK(sp.req.max_tokens == 7);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"max_tokens\": 5, \"max_completion_tokens\": 5}", &sp));
    CHECK(sp.req.max_tokens == 5);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"max_tokens\": null, \"max_completion_tokens\": 3}", &sp));
    CHECK(sp.req.max_tokens == 3);
    rm_request_spec_free(&sp);
    refused("{\"prompt\": \"a\", \"max_tokens\": 5, \"max_completion_tokens\": 6}", "disagree");
    refused("{\"prompt\": \"a\", \"max_completion_tokens\": -1}", "\"max_completion_tokens\" must be");
    refused("{\"prompt\": \"a\", \"max_completion_tokens\": 2.5}", "\"max_completion_tokens\" must be");
}

TEST(request_json_message_content_parts_and_roles) {
    rm_request_spec sp;
    CHECK_OK(parse_text("{\"messages\": [{\"role\": \"developer\", \"content\": \"Be brief.\"},"
                        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"one\"},"
                        " {\"type\": \"text\", \"text\": \"two\"}]},"
                        " {\"role\": \"assistant\", \"content\": []}]}",
                        &sp));
    CHECK(sp.req.n_messages == 3);
    if (sp.req.n_messages == 3) {
        CHECK(!strcmp(sp.req.messages[0].role, "system")); /* OpenAI's newer name for it */
        CHECK(!strcmp(sp.req.messages[0].content, "Be brief."));
        CHECK(!strcmp(sp.req.messages[1].role, "user"));
        CHECK(!strcmp(sp.req.messages[1].content, "one\ntwo")); /* joined as vLLM joins them */
        CHECK(!strcmp(sp.req.messages[2].content, ""));
    }
    rm_request_spec_free(&sp);
    refused("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"x\"}}]}]}",
            "part 0 is of type \"image_url\"");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}", "part 0 needs a string \"text\"");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": [\"x\"]}]}", "message 0 needs \"content\"");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": null}]}", "message 0 needs \"content\"");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"function\", \"content\": \"b\"}]}",
            "message 1 has role \"function\"");
    /* an assistant's calls (content null beside them) and a tool's result */
    CHECK_OK(parse_text("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", "
                        "\"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", \"function\": "
                        "{\"name\": \"f\", \"arguments\": \"{\\\"x\\\":1}\"}}, {\"type\": \"function\", \"function\": "
                        "{\"name\": \"g\", \"arguments\": {\"y\": [1.0, \"\u00e9\"]}}}]}, {\"role\": \"tool\", "
                        "\"tool_call_id\": \"c1\", \"content\": \"ok\"}]}", &sp));
    if (sp.req.n_messages == 3) {
        const rm_chat_msg *m = &sp.req.messages[1];
        CHECK(!m->content && m->n_calls == 2 && !strcmp(m->calls[0].name, "f"));
        CHECK(!strcmp(m->calls[0].arguments, "{\"x\":1}")); /* a string: as sent */
        CHECK_MSG(!strcmp(m->calls[1].arguments, "{\"y\": [1.0, \"\xc3\xa9\"]}"), "%s", m->calls[1].arguments); /* tojson */
        CHECK(!strcmp(sp.req.messages[2].role, "tool") && !strcmp(sp.req.messages[2].content, "ok"));
    }
    rm_request_spec_free(&sp);
    refused("{\"messages\": [{\"role\": \"assistant\", \"content\": null}]}", "message 0 needs \"content\"");
    refused("{\"messages\": [{\"content\": \"a\"}]}", "message 0 needs a string \"role\"");
}

TEST(request_json_logit_bias) {
    rm_request_spec sp;
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"logit_bias\": {\"50256\": -100, \"7\": 2.5}}", &sp));
    CHECK(sp.req.sampling.n_logit_bias == 2);
    if (sp.req.sampling.n_logit_bias == 2) {
        const rm_logit_bias *b = sp.req.sampling.logit_bias;
        CHECK((b[0].id == 50256 && b[0].bias == -100 && b[1].id == 7 && b[1].bias == 2.5f) ||
              (b[1].id == 50256 && b[1].bias == -100 && b[0].id == 7 && b[0].bias == 2.5f));
    }
    rm_request_spec_free(&sp);
    refused("{\"prompt\": \"a\", \"logit_bias\": {\"x1\": 1}}", "key \"x1\" is not a token id");
    refused("{\"prompt\": \"a\", \"logit_bias\": {\"-3\": 1}}", "key \"-3\" is not a token id");
    refused("{\"prompt\": \"a\", \"logit_bias\": {\"3\": 101}}", "the bias of token 3 must be a number in [-100, 100]");
    refused("{\"prompt\": \"a\", \"logit_bias\": [1]}", "\"logit_bias\" must be an object");
}

/* vLLM's cache_salt: kept as given, hashed for the engine; two salts differ */
TEST(request_json_cache_salt) {
    rm_request_spec a, b, none;
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"cache_salt\": \"user-1\"}", &a));
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"cache_salt\": \"user-2\"}", &b));
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"cache_salt\": null}", &none));
    CHECK(a.cache_salt && !strcmp(a.cache_salt, "user-1") && a.req.cache_salt != 0);
    CHECK(b.req.cache_salt != a.req.cache_salt);
    CHECK(!none.cache_salt && none.req.cache_salt == 0);
    rm_request_spec_free(&a), rm_request_spec_free(&b), rm_request_spec_free(&none);
    refused("{\"prompt\": \"a\", \"cache_salt\": \"\"}", "\"cache_salt\" must be a non-empty string");
    refused("{\"prompt\": \"a\", \"cache_salt\": 7}", "\"cache_salt\" must be a non-empty string");
}

TEST(request_json_openai_penalties) {
    rm_request_spec sp;
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"frequency_penalty\": 0.5, \"presence_penalty\": -1.25}", &sp));
    CHECK(sp.req.sampling.frequency_penalty == 0.5f);
    CHECK(sp.req.sampling.presence_penalty == -1.25f);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\"}", &sp));
    CHECK(sp.req.sampling.frequency_penalty == 0 && sp.req.sampling.presence_penalty == 0);
    rm_request_spec_free(&sp);
    refused("{\"prompt\": \"a\", \"frequency_penalty\": 2.5}", "\"frequency_penalty\" must be a number in [-2, 2]");
    refused("{\"prompt\": \"a\", \"presence_penalty\": \"high\"}", "\"presence_penalty\" must be a number in [-2, 2]");
}

TEST(request_json_logprobs_as_both_routes_ask) {
    rm_request_spec sp;
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"logprobs\": 3}", &sp)); /* completions: N alternatives */
    CHECK(sp.req.logprobs && sp.req.top_logprobs == 3);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"logprobs\": 0}", &sp)); /* the chosen tokens' alone */
    CHECK(sp.req.logprobs && sp.req.top_logprobs == 0);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"logprobs\": true,"
                        " \"top_logprobs\": 20}", &sp)); /* chat */
    CHECK(sp.req.logprobs && sp.req.top_logprobs == 20);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"logprobs\": false, \"top_logprobs\": 0}", &sp));
    CHECK(!sp.req.logprobs && !sp.req.top_logprobs);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"logprobs\": 1, \"echo\": true}", &sp)); /* lm-eval's scoring */
    CHECK(sp.echo && sp.req.prompt_logprobs && sp.req.top_logprobs == 1);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"echo\": true}", &sp)); /* the text only */
    CHECK(sp.echo && !sp.req.prompt_logprobs && !sp.req.prompt_only);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"echo\": true, \"logprobs\": 0, \"max_tokens\": 0}", &sp));
    CHECK(sp.req.prompt_only && sp.req.prompt_logprobs); /* OpenAI's: the prompt alone, scored */
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"max_tokens\": 0}", &sp)); /* without echo: until the context is full */
    CHECK(!sp.req.prompt_only && sp.req.max_tokens == 0);
    rm_request_spec_free(&sp);
    refused("{\"prompt\": \"a\", \"logprobs\": 21}", "\"logprobs\" must be true, false or an integer from 0 to 20");
    refused("{\"prompt\": \"a\", \"logprobs\": \"yes\"}", "\"logprobs\" must be");
    refused("{\"prompt\": \"a\", \"top_logprobs\": 2}", "needs \"logprobs\": true");
    refused("{\"prompt\": \"a\", \"logprobs\": true, \"top_logprobs\": -1}", "\"top_logprobs\" must be");
}

TEST(request_json_refuses_what_ramole_does_not_do) {
    /* each field's "off" value is accepted: clients send them by default */
    accepted("{\"prompt\": \"a\", \"n\": 1, \"best_of\": 1, \"logit_bias\": null, \"echo\": false, \"suffix\": null,"
             " \"logit_bias\": {}, \"user\": \"u\", \"stream\": false}");
    accepted("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}],"
             " \"tools\": [], \"functions\": null, \"tool_choice\": \"none\", \"response_format\": {\"type\": \"text\"},"
             " \"parallel_tool_calls\": false, \"store\": false, \"metadata\": {}}");
    /* on, each is refused by name */
    refused("{\"prompt\": \"a\", \"n\": 2}", "field \"n\" must be 1");
    refused("{\"prompt\": \"a\", \"best_of\": 3}", "field \"best_of\" must be 1");
    refused("{\"prompt\": \"a\", \"echo\": \"yes\"}", "field \"echo\" must be true or false");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"echo\": true}", "field \"echo\"");
    refused("{\"prompt\": \"a\", \"suffix\": \"end\"}", "field \"suffix\"");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"functions\": [{\"name\": \"f\"}]}",
            "field \"functions\" must be null or []: ramole takes \"tools\" instead");
    refused("{\"prompt\": \"a\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]}",
            "\"tools\" needs \"messages\"");
    /* tools offered: their texts go to the chat template; required makes a format */
    rm_request_spec sp;
    CHECK_OK(parse_text("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"tools\": [{\"type\": "
                        "\"function\", \"function\": {\"name\": \"f\"}}], \"tool_choice\": \"required\"}", &sp));
    CHECK(sp.req.n_tools == 1 && sp.req.format != NULL && !sp.req.no_thinking);
    CHECK(sp.req.tools && !strcmp(sp.req.tools[0], "{\"type\": \"function\", \"function\": {\"name\": \"f\"}}"));
    rm_request_spec_free(&sp);
    /* vLLM's chat_template_kwargs: enable_thinking, nothing else */
    CHECK_OK(parse_text("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"chat_template_kwargs\": "
                        "{\"enable_thinking\": false}}", &sp));
    CHECK(sp.req.no_thinking);
    rm_request_spec_free(&sp);
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"chat_template_kwargs\": {\"x\": 1}}",
            "\"chat_template_kwargs.x\" is not one ramole's chat templates take");
    refused("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"chat_template_kwargs\": "
            "{\"enable_thinking\": \"no\"}}", "\"chat_template_kwargs.enable_thinking\" must be true or false");
    refused("{\"prompt\": \"a\", \"chat_template_kwargs\": {\"enable_thinking\": false}}", "needs \"messages\"");
}

TEST(request_json_response_format) {
    rm_request_spec sp;
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"response_format\": {\"type\": \"text\"}}", &sp));
    CHECK(!sp.req.json_schema);
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"response_format\": {\"type\": \"json_object\"}}", &sp));
    CHECK(sp.req.json_schema && !strcmp(sp.req.json_schema, "{\"type\":\"object\"}"));
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": "
                        "{\"name\": \"p\", \"strict\": true, \"schema\": {\"type\": \"object\", \"properties\": "
                        "{\"n\": {\"type\": \"integer\"}}, \"required\": [\"n\"]}}}}", &sp));
    CHECK(sp.req.json_schema && strstr(sp.req.json_schema, "\"required\":[\"n\"]"));
    rm_request_spec_free(&sp);
    refused("{\"prompt\": \"a\", \"response_format\": {\"type\": \"xml\"}}", "field \"response_format\" must be");
    refused("{\"prompt\": \"a\", \"response_format\": \"json_object\"}", "field \"response_format\" must be");
    refused("{\"prompt\": \"a\", \"response_format\": {\"type\": \"json_schema\"}}",
            "\"response_format.json_schema\" must be an object with a \"schema\"");
    refused("{\"prompt\": \"a\", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": 3, "
            "\"schema\": {}}}}", "\"response_format.json_schema.name\" must be a string");
    refused("{\"prompt\": \"a\", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"schema\": "
            "{\"type\": \"object\", \"properties\": {\"z\": {\"type\": \"string\", \"pattern\": \"^a\"}}}}}}",
            "field \"response_format\": json schema at \"/properties/z\": keyword \"pattern\" is not supported");
    /* llama.cpp's "grammar" (GBNF) */
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"grammar\": \"root ::= [0-9]+\"}", &sp));
    CHECK(sp.req.grammar && !strcmp(sp.req.grammar, "root ::= [0-9]+") && !sp.req.json_schema);
    rm_request_spec_free(&sp);
    accepted("{\"prompt\": \"a\", \"grammar\": \"\"}");
    refused("{\"prompt\": \"a\", \"grammar\": 3}", "field \"grammar\" must be a string");
    refused("{\"prompt\": \"a\", \"grammar\": \"root ::= x\"}", "field \"grammar\": grammar: rule \"x\"");
    refused("{\"prompt\": \"a\", \"grammar\": \"root ::= \\\"a\\\"\", \"response_format\": {\"type\": "
            "\"json_object\"}}", "give one");
    /* vLLM's names */
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"guided_json\": {\"type\": \"integer\"}}", &sp));
    CHECK(sp.req.json_schema && !strcmp(sp.req.json_schema, "{\"type\":\"integer\"}"));
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"guided_json\": \"{\\\"type\\\": \\\"null\\\"}\"}", &sp));
    CHECK(sp.req.json_schema && !strcmp(sp.req.json_schema, "{\"type\":\"null\"}"));
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"guided_choice\": [\"yes\", \"no \\\"way\\\"\\n\"]}", &sp));
    CHECK(sp.req.grammar && !strcmp(sp.req.grammar, "root ::= \"yes\" | \"no \\\"way\\\"\\x0A\""));
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"structured_outputs\": {\"choice\": [\"x\"]}}", &sp));
    CHECK(sp.req.grammar && !strcmp(sp.req.grammar, "root ::= \"x\""));
    rm_request_spec_free(&sp);
    CHECK_OK(parse_text("{\"prompt\": \"a\", \"structured_outputs\": {\"json_object\": true}}", &sp));
    CHECK(sp.req.json_schema && !strcmp(sp.req.json_schema, "{\"type\":\"object\"}"));
    rm_request_spec_free(&sp);
    refused("{\"prompt\": \"a\", \"guided_choice\": []}", "field \"guided_choice\" must be a non-empty array");
    refused("{\"prompt\": \"a\", \"guided_json\": \"{\"}", "field \"guided_json\": not valid JSON");
    refused("{\"prompt\": \"a\", \"guided_choice\": [\"a\"], \"guided_json\": {}}",
            "fields \"guided_json\" and \"guided_choice\" both constrain the answer");
    refused("{\"prompt\": \"a\", \"structured_outputs\": {\"regex\": \"a+\"}}",
            "field \"structured_outputs.regex\" is not supported");
    refused("{\"prompt\": \"a\", \"guided_grammar\": \"root ::= (\"}", "field \"guided_grammar\": grammar at line 1");
}
