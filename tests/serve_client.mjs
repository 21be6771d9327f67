// tests/serve_client.mjs — drives a live `ramole serve` (tests/cli/serve.sh
// starts it) with the official `openai` npm client and with fetch, and
// prints "PASS name" / "FAIL name: why" lines.
//   node tests/serve_client.mjs open URL MODEL_NAME EXPECTED.json
//   node tests/serve_client.mjs keys URL MODEL_NAME KEYS.json
import fs from "node:fs";
import path from "node:path";

const [mode, base, modelName, extra] = process.argv.slice(2);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const { default: OpenAI } = await import(path.join(root, ".cache/npm/node_modules/openai/index.mjs"));

let failures = 0;
const pass = (n) => console.log(`PASS ${n}`);
const fail = (n, why) => { failures++; console.log(`FAIL ${n}: ${String(why).slice(0, 400)}`); };
async function check(name, fn) {
  try { const r = await fn(); if (r === true) pass(name); else fail(name, r); } catch (e) { fail(name, e.stack || e); }
}

async function post(route, body, key, raw) {
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const r = await fetch(base + route, { method: "POST", headers, body: raw ?? JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text, headers: r.headers };
}
async function get(route, key) {
  const r = await fetch(base + route, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}
// an OpenAI-style error object with that status, naming `needle`
function isError(r, status, needle) {
  const e = r.json && r.json.error;
  if (r.status !== status) return `status ${r.status}, expected ${status}: ${r.text}`;
  if (!e || typeof e.message !== "string" || typeof e.type !== "string" || !("param" in e) || !("code" in e))
    return `not an OpenAI error object: ${r.text}`;
  if (needle && !e.message.includes(needle)) return `message lacks '${needle}': ${e.message}`;
  return true;
}

const greedy = { temperature: 0, max_tokens: 8, ignore_eos: true };

if (mode === "open") {
  const expected = JSON.parse(fs.readFileSync(extra, "utf8"));
  const client = new OpenAI({ baseURL: base + "/v1", apiKey: "unused", maxRetries: 0 });

  await check("serve_openai_completion", async () => {
    const r = await client.completions.create({ model: modelName, prompt: expected.prompt, ...greedy });
    const c = r.choices[0];
    if (r.object !== "text_completion" || typeof c.text !== "string") return JSON.stringify(r);
    if (r.usage.completion_tokens !== 8 || r.usage.prompt_tokens < 1 || r.usage.total_tokens !== r.usage.prompt_tokens + 8)
      return "usage " + JSON.stringify(r.usage);
    if (c.finish_reason !== "length") return "finish " + c.finish_reason;
    if (!r.lora || typeof r.lora.mode !== "string" || !Array.isArray(r.lora.adapters)) return "no lora object";
    return true;
  });

  await check("serve_openai_completion_equals_generate", async () => {
    const r = await client.completions.create({ model: modelName, prompt: expected.prompt, ...greedy, lora: { mode: "none" } });
    return r.choices[0].text === expected.base_text || `${JSON.stringify(r.choices[0].text)} vs ${JSON.stringify(expected.base_text)}`;
  });

  await check("serve_openai_lora_extension", async () => {
    const r = await client.completions.create({ model: modelName, prompt: expected.prompt, ...greedy,
      lora: { adapters: [{ name: "rev", weight: 0.5 }] } });
    const l = r.lora;
    if (l.mode !== "explicit" || l.adapters.length !== 1 || l.adapters[0].name !== "rev" || l.adapters[0].weight !== 0.5)
      return JSON.stringify(l);
    return r.choices[0].text === expected.rev_text || `${JSON.stringify(r.choices[0].text)} vs ${JSON.stringify(expected.rev_text)}`;
  });

  await check("serve_model_names_adapter", async () => {
    const r = await client.completions.create({ model: "rev", prompt: expected.prompt, ...greedy });
    if (r.lora.mode !== "explicit" || r.lora.adapters[0].name !== "rev" || r.lora.adapters[0].weight !== 1) return JSON.stringify(r.lora);
    return r.choices[0].text === expected.rev1_text || `${JSON.stringify(r.choices[0].text)} vs ${JSON.stringify(expected.rev1_text)}`;
  });

  await check("serve_retrieval_by_default", async () => {
    const r = await client.completions.create({ model: modelName, prompt: "add 3 and 4", ...greedy, lora: { top_k: 1 } });
    const l = r.lora;
    if (l.adapters.length !== 1 || l.adapters[0].name !== "add" || !(l.adapters[0].score > 0)) return JSON.stringify(l);
    if (l.mode !== "mixture" || !/no router/.test(l.note || "")) return "no router fallback said: " + JSON.stringify(l);
    return true;
  });

  await check("serve_openai_chat", async () => {
    const r = await client.chat.completions.create({ model: modelName, messages: [{ role: "user", content: "hello there" }], ...greedy });
    const m = r.choices[0].message;
    if (r.object !== "chat.completion" || m.role !== "assistant" || typeof m.content !== "string") return JSON.stringify(r);
    return r.usage.completion_tokens === 8 || JSON.stringify(r.usage);
  });

  await check("serve_openai_stream_equals_whole", async () => {
    const req = { model: modelName, messages: [{ role: "user", content: "reverse the word stone" }], ...greedy };
    const whole = await client.chat.completions.create(req);
    const stream = await client.chat.completions.create({ ...req, stream: true });
    let text = "", chunks = 0, finish = null, usage = null;
    for await (const ch of stream) {
      chunks++;
      if (ch.object !== "chat.completion.chunk") return "chunk object " + ch.object;
      text += ch.choices[0].delta.content || "";
      if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason, usage = ch.usage;
    }
    if (chunks < 2 || finish !== "length" || !usage || usage.completion_tokens !== 8) return `chunks ${chunks} finish ${finish}`;
    return text === whole.choices[0].message.content || `${JSON.stringify(text)} vs ${JSON.stringify(whole.choices[0].message.content)}`;
  });

  await check("serve_sse_ends_with_done", async () => {
    const r = await post("/v1/completions", { prompt: "abc", ...greedy, stream: true });
    if (r.status !== 200 || !/^text\/event-stream/.test(r.headers.get("content-type"))) return r.status + " " + r.text;
    return r.text.trimEnd().endsWith("data: [DONE]") || r.text.slice(-200);
  });

  await check("serve_stop_string", async () => {
    const full = (await post("/v1/completions", { prompt: expected.prompt, ...greedy, lora: { mode: "none" } })).json.choices[0].text;
    const stop = full.slice(4, 7);
    const r = await post("/v1/completions", { prompt: expected.prompt, ...greedy, stop: [stop], lora: { mode: "none" } });
    const want = full.slice(0, full.indexOf(stop));
    if (r.json.choices[0].finish_reason !== "stop") return "finish " + r.json.choices[0].finish_reason;
    return r.json.choices[0].text === want || `${JSON.stringify(r.json.choices[0].text)} vs ${JSON.stringify(want)} (stop ${JSON.stringify(stop)})`;
  });

  // what OpenAI's clients send beyond the basics
  await check("serve_openai_penalties_as_generate", async () => {
    const r = await client.completions.create({ model: modelName, prompt: expected.prompt, ...greedy, presence_penalty: -2, lora: { mode: "none" } });
    const t = r.choices[0].text;
    if (t === expected.base_text) return "the penalty changed nothing: " + JSON.stringify(t);
    return t === expected.presence_text || `${JSON.stringify(t)} vs ${JSON.stringify(expected.presence_text)}`;
  });

  await check("serve_chat_without_max_tokens_runs_on", async () => {
    // OpenAI's chat has no 16-token default: it runs until it ends or the context is full
    const msgs = [{ role: "user", content: "hello there" }];
    const r = await client.chat.completions.create({ model: modelName, messages: msgs, temperature: 0, ignore_eos: true, lora: { mode: "none" } });
    const u = r.usage;
    if (r.choices[0].finish_reason !== "length" || u.completion_tokens <= 16 || u.prompt_tokens + u.completion_tokens !== expected.ctx)
      return JSON.stringify(u) + " finish " + r.choices[0].finish_reason + " ctx " + expected.ctx;
    const c = await client.chat.completions.create({ model: modelName, messages: msgs, temperature: 0, ignore_eos: true, max_completion_tokens: 5 });
    if (c.usage.completion_tokens !== 5) return "max_completion_tokens: " + JSON.stringify(c.usage);
    return isError(await post("/v1/chat/completions", { messages: msgs, max_tokens: 4, max_completion_tokens: 5 }), 400, "disagree");
  });

  await check("serve_chat_content_parts_and_developer_role", async () => {
    const asString = await client.chat.completions.create({ model: modelName, ...greedy,
      messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "one\ntwo" }] });
    const asParts = await client.chat.completions.create({ model: modelName, ...greedy,
      messages: [{ role: "developer", content: [{ type: "text", text: "Be brief." }] },
                 { role: "user", content: [{ type: "text", text: "one" }, { type: "text", text: "two" }] }] });
    const a = asString.choices[0].message.content, b = asParts.choices[0].message.content;
    if (a !== b) return `${JSON.stringify(a)} vs ${JSON.stringify(b)}`;
    return isError(await post("/v1/chat/completions", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:," } }] }] }),
                   400, "image_url");
  });

  await check("serve_stream_include_usage", async () => {
    const req = { model: modelName, messages: [{ role: "user", content: "reverse the word stone" }], ...greedy };
    const chunks = [];
    for await (const ch of await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }))
      chunks.push(ch);
    const last = chunks[chunks.length - 1], before = chunks[chunks.length - 2];
    // OpenAI's shape: the finish chunk, then one with no choices and the usage
    if (!last || last.choices.length !== 0 || !last.usage || last.usage.completion_tokens !== 8 || last.object !== "chat.completion.chunk")
      return "last chunk " + JSON.stringify(last);
    if (!before || before.choices[0].finish_reason !== "length") return "finish chunk " + JSON.stringify(before);
    const plain = await post("/v1/completions", { prompt: "abc", ...greedy, stream: true, stream_options: { include_usage: false } });
    if (plain.status !== 200 || /"choices":\[\]/.test(plain.text)) return "include_usage false: " + plain.text.slice(-300);
    const r = await post("/v1/completions", { prompt: "abc", ...greedy, stream_options: { include_usage: true } });
    return isError(r, 400, "only allowed when \"stream\" is true");
  });

  await check("serve_logprobs_as_batch_and_streamed", async () => {
    // completions: the same log-probabilities as `ramole batch` gives for the same body
    const body = { model: modelName, prompt: expected.prompt, ...greedy, logprobs: 3, lora: { mode: "none" } };
    const c = await client.completions.create(body);
    const lp = c.choices[0].logprobs;
    if (!lp || lp.token_logprobs.length !== 8 || lp.tokens.length !== 8 || lp.text_offset.length !== 8) return JSON.stringify(lp);
    for (let i = 0; i < 8; i++) {
      if (Math.abs(lp.token_logprobs[i] - expected.batch_logprobs[i]) > 1e-5) return `token ${i}: ${lp.token_logprobs[i]} vs batch ${expected.batch_logprobs[i]}`;
      const alts = Object.values(lp.top_logprobs[i]);
      if (alts.length < 1 || alts.length > 4 || Math.max(...alts) !== lp.token_logprobs[i]) return `top ${i}: ` + JSON.stringify(lp.top_logprobs[i]);
    }
    // chat: each token with its 3 alternatives, most likely first; greedy picks the first
    const req = { model: modelName, messages: [{ role: "user", content: "reverse the word stone" }], ...greedy, logprobs: true, top_logprobs: 3 };
    const whole = await client.chat.completions.create(req);
    const content = whole.choices[0].logprobs.content;
    if (content.length !== whole.usage.completion_tokens) return `${content.length} entries for ${whole.usage.completion_tokens} tokens`;
    for (const e of content) {
      const t = e.top_logprobs;
      if (t.length !== 3 || t[0].token !== e.token || t[0].logprob !== e.logprob || !(t[0].logprob >= t[1].logprob && t[1].logprob >= t[2].logprob) || !(e.logprob <= 0))
        return "entry " + JSON.stringify(e);
      if (!Array.isArray(e.bytes) || (!e.token.startsWith("bytes:") && Buffer.from(e.bytes).toString("utf8") !== e.token)) return "bytes " + JSON.stringify(e);
    }
    // streamed: the chunks' entries together are the whole answer's
    const streamed = [];
    for await (const ch of await client.chat.completions.create({ ...req, stream: true }))
      if (ch.choices[0] && ch.choices[0].logprobs) streamed.push(...ch.choices[0].logprobs.content);
    if (JSON.stringify(streamed) !== JSON.stringify(content)) return "streamed " + JSON.stringify(streamed).slice(0, 200);
    if (whole.choices[0].logprobs === undefined || (await client.chat.completions.create({ ...req, logprobs: false, top_logprobs: 0 })).choices[0].logprobs !== null)
      return "logprobs off is not null";
    return isError(await post("/v1/chat/completions", { messages: req.messages, top_logprobs: 2 }), 400, "needs \"logprobs\": true");
  });

  await check("serve_echo_scores_a_continuation_as_lm_eval", async () => {
    // lm-evaluation-harness's loglikelihood body: the prompt's tokens carry their log-probabilities.
    // The prompt here is the base's own greedy answer after expected.prompt (from `ramole batch`), so
    // each of its tokens must score as it did when it was generated.
    const ids = (await post("/tokenize", { prompt: expected.prompt })).json.tokens, gen = expected.batch_tokens;
    const body = { model: modelName, prompt: [ids.concat(gen.slice(0, 7))], temperature: 0, max_tokens: 1, logprobs: 1,
      seed: 1234, echo: true, lora: { mode: "none" } };
    const r = await post("/v1/completions", body);
    const c = r.json && r.json.choices[0], lp = c && c.logprobs;
    if (r.status !== 200 || !lp || lp.token_logprobs.length !== ids.length + 8) return "echo " + r.text.slice(0, 300);
    if (lp.token_logprobs[0] !== null || lp.top_logprobs[0] !== null) return "the first token has a log-probability";
    for (let j = 0; j < 8; j++) { // 7 prompt tokens, then the one generated
      const got = lp.token_logprobs[ids.length + j];
      if (Math.abs(got - expected.batch_logprobs[j]) > 1e-4) return `token ${j}: ${got} vs generated ${expected.batch_logprobs[j]}`;
      const top = lp.top_logprobs[ids.length + j]; // greedy: each was the most likely
      if (Math.max(...Object.values(top)) !== got) return `token ${j} not the most likely: ` + JSON.stringify(top);
    }
    for (let i = 1; i < ids.length; i++) if (!(lp.token_logprobs[i] <= 0)) return `prompt token ${i}: ${lp.token_logprobs[i]}`;
    const whole = (await post("/v1/completions", { prompt: ids.concat(gen.slice(0, 7)), ...greedy, max_tokens: 1, lora: { mode: "none" } })).json;
    if (!c.text.endsWith(whole.choices[0].text) || c.text.length <= whole.choices[0].text.length) return "echoed text " + JSON.stringify(c.text);
    // max_tokens 0, as OpenAI's: the prompt alone, with the same log-probabilities
    const only = (await post("/v1/completions", { ...body, max_tokens: 0 })).json;
    const olp = only.choices[0].logprobs;
    if (only.usage.completion_tokens !== 0 || olp.token_logprobs.length !== ids.length + 7 || only.choices[0].finish_reason !== "length")
      return "max_tokens 0: " + JSON.stringify(only).slice(0, 300);
    for (let i = 1; i < ids.length + 7; i++)
      if (Math.abs(olp.token_logprobs[i] - lp.token_logprobs[i]) > 1e-5) return `max_tokens 0, token ${i}: ${olp.token_logprobs[i]} vs ${lp.token_logprobs[i]}`;
    // a text prompt echoes as given; streamed, the prompt opens the first chunk
    const s = await post("/v1/completions", { prompt: expected.prompt, ...greedy, echo: true, stream: true, lora: { mode: "none" } });
    const first = JSON.parse(s.text.split("\n\n")[0].slice(6));
    if (!first.choices[0].text.startsWith(expected.prompt)) return "streamed echo " + s.text.slice(0, 200);
    // an answer holding NUL bytes (the <0x00> byte token, forced) is echoed whole, after the prompt
    const nul = (await post("/v1/completions", { prompt: "ab", ...greedy, max_tokens: 2, logit_bias: { "3": 100 }, echo: true, lora: { mode: "none" } })).json;
    if (nul.choices[0].text !== "ab\u0000\u0000") return "NUL answer echoed as " + JSON.stringify(nul.choices[0].text);
    const plain = (await post("/v1/completions", { prompt: expected.prompt, ...greedy, echo: true, lora: { mode: "none" } })).json;
    return plain.choices[0].text === expected.prompt + expected.base_text || JSON.stringify(plain.choices[0].text);
  });

  await check("serve_400_unsupported_fields_named", async () => {
    for (const [body, needle] of [[{ prompt: "a", logprobs: 21 }, "\"logprobs\""], [{ prompt: "a", suffix: "z" }, "\"suffix\""],
      [{ messages: [{ role: "user", content: "a" }], tools: [{ type: "function", function: { name: "f" } }] }, "tools"],
      [{ messages: [{ role: "user", content: "a" }], response_format: { type: "json_schema", json_schema: { name: "p",
        schema: { type: "object", properties: { s: { type: "string", pattern: "^a" } } } } } }, "keyword \"pattern\" is not supported"],
      [{ messages: [{ role: "user", content: "a" }], response_format: { type: "xml" } }, "response_format"]]) {
      const route = body.messages ? "/v1/chat/completions" : "/v1/completions";
      const e = isError(await post(route, body), 400, needle);
      if (e !== true) return e;
    }
    // and their "off" values, as clients send them, are fine
    const ok = await post("/v1/chat/completions", { messages: [{ role: "user", content: "a" }], ...greedy, tools: [], n: 1, response_format: { type: "text" } });
    return ok.status === 200 || ok.text;
  });

  // structured outputs: every answer to a response_format validates against
  // its schema under ajv (JSON Schema 2020-12), streamed or not, on both routes
  await check("serve_response_format_answers_validate_with_ajv", async () => {
    const mod = await import(path.join(root, ".cache/npm/node_modules/ajv/dist/2020.js"));
    const Ajv2020 = mod.default.default || mod.default;
    const ajv = new Ajv2020({ strict: false });
    const schema = { type: "object", properties: {
        name: { type: "string", maxLength: 12 }, age: { type: "integer" }, score: { type: "number" },
        pets: { type: "array", items: { enum: ["cat", "dog", "fish"] }, maxItems: 3 },
        home: { anyOf: [{ type: "null" }, { $ref: "#/$defs/Addr" }] } },
      required: ["name", "age", "home"], additionalProperties: false,
      $defs: { Addr: { type: "object", properties: { city: { type: "string", maxLength: 10 },
        zip: { type: "string", minLength: 5, maxLength: 5 } }, required: ["city", "zip"], additionalProperties: false } } };
    const validate = ajv.compile(schema);
    const response_format = { type: "json_schema", json_schema: { name: "person", strict: true, schema } };
    const messages = [{ role: "user", content: "Describe a person as JSON." }];
    const valid = (text, what) => {
      let v;
      try { v = JSON.parse(text); } catch { return `${what}: not JSON: ${JSON.stringify(text)}`; }
      return validate(v) || `${what}: ${JSON.stringify(validate.errors)} for ${text}`;
    };
    for (let seed = 1; seed <= 6; seed++) {
      const r = await client.chat.completions.create({ model: modelName, messages, temperature: 1, seed, max_tokens: 400,
        response_format });
      const c = r.choices[0];
      if (c.finish_reason !== "stop") return `seed ${seed}: finish ${c.finish_reason}: ${c.message.content}`;
      const ok = valid(c.message.content, `seed ${seed}`);
      if (ok !== true) return ok;
      if (seed > 2) continue;
      let streamed = "";
      for await (const ch of await client.chat.completions.create({ model: modelName, messages, temperature: 1, seed,
        max_tokens: 400, response_format, stream: true }))
        streamed += ch.choices[0]?.delta?.content ?? "";
      if (streamed !== c.message.content) return `seed ${seed}: streamed ${streamed} vs ${c.message.content}`;
    }
    const comp = await client.completions.create({ model: modelName, prompt: "JSON:", temperature: 1, seed: 3, max_tokens: 400,
      response_format });
    if (comp.choices[0].finish_reason !== "stop") return "completions: finish " + comp.choices[0].finish_reason;
    const ok = valid(comp.choices[0].text, "completions");
    if (ok !== true) return ok;
    // llama.cpp's "grammar" field (GBNF): the answer is in the language, read by a RegExp
    const re = /^[a-z]{2,4}(-[0-9]{1,2}){1,3}$/u;
    for (let seed = 1; seed <= 3; seed++) {
      const r = await post("/v1/chat/completions", { model: modelName, messages, temperature: 1, seed, max_tokens: 64,
        grammar: 'root ::= word ("-" num){1,3}\nword ::= [a-z]{2,4}\nnum ::= [0-9] [0-9]?' });
      const t = r.json?.choices?.[0]?.message?.content;
      if (r.status !== 200 || !re.test(t) || r.json.choices[0].finish_reason !== "stop")
        return `grammar, seed ${seed}: ${r.status} ${r.text}`;
    }
    // vLLM's guided_choice: exactly one of the strings
    const choices = ["positive", "negative", "neutral", "mixed \"feelings\""];
    for (let seed = 1; seed <= 4; seed++) {
      const r = await post("/v1/chat/completions", { model: modelName, messages, temperature: 1, seed, max_tokens: 16,
        guided_choice: choices });
      const t = r.json?.choices?.[0]?.message?.content;
      if (r.status !== 200 || !choices.includes(t)) return `guided_choice, seed ${seed}: ${r.status} ${r.text}`;
    }
    // json_object: an object (greedy; with ignore_eos its text cannot end inside a string, so bound it)
    const obj = await client.chat.completions.create({ model: modelName, messages, temperature: 1, seed: 9, max_tokens: 400,
      response_format: { type: "json_object" } });
    const t = obj.choices[0].message.content;
    if (!t.trimStart().startsWith("{")) return "json_object: " + t;
    if (obj.choices[0].finish_reason === "stop") {
      let v;
      try { v = JSON.parse(t); } catch { return "json_object: not JSON: " + t; }
      if (typeof v !== "object" || v === null || Array.isArray(v)) return "json_object: " + t;
    }
    return true;
  });

  // 64 greedy requests with mixed adapter sets: one by one, then all at once
  await check("serve_64_parallel_equal_one_by_one", async () => {
    const loras = [{ mode: "none" }, { adapters: [{ name: "rev" }] }, { adapters: [{ name: "add", weight: 0.7 }] },
      { mode: "mixture", adapters: [{ name: "rev" }, { name: "add" }] }, { mode: "fusion", adapters: [{ name: "rev" }, { name: "add" }] },
      { top_k: 2 }];
    const reqs = [];
    for (let i = 0; i < 64; i++)
      reqs.push({ prompt: `request ${i}: ${["reverse the word apple", "add 3 and 4", "hello"][i % 3]}`, temperature: 0,
        max_tokens: 4 + (i % 5), ignore_eos: true, lora: loras[i % loras.length] });
    const one = [];
    for (const q of reqs) one.push(await post("/v1/completions", q));
    const stepMax = async () => {
      const t = (await get("/metrics")).text;
      const m = /^ramole_step_sequences_max (\d+)$/m.exec(t), a = /^ramole_step_adapters_max (\d+)$/m.exec(t);
      return m && a ? [Number(m[1]), Number(a[1])] : "metrics lack the step maxima";
    };
    // every request so far ran alone; the most adapters in one: the mixture of rev and add
    const alone = await stepMax();
    if (alone[0] !== 1 || alone[1] !== 2) return `steps alone: ${alone} sequences, adapters (expected 1, 2)`;
    const all = await Promise.all(reqs.map((q) => post("/v1/completions", q)));
    for (let i = 0; i < 64; i++) {
      if (one[i].status !== 200 || all[i].status !== 200) return `request ${i}: ${one[i].status} ${all[i].status} ${all[i].text}`;
      const a = one[i].json.choices[0].text, b = all[i].json.choices[0].text;
      if (a !== b) return `request ${i} (${JSON.stringify(reqs[i].lora)}): ${JSON.stringify(a)} alone vs ${JSON.stringify(b)} batched`;
    }
    // this server runs 8 at once (--max-seqs 8)
    const together = await stepMax();
    return (together[0] > 1 && together[0] <= 8 && together[1] === 2) || `steps together: ${together} sequences, adapters`;
  });

  await check("serve_feedback_stored_per_adapter", async () => {
    const r = await post("/v1/completions", { prompt: "abc", max_tokens: 2, lora: { adapters: [{ name: "rev" }] } });
    const f = await post("/v1/feedback", { id: r.json.id, rating: 1, comment: "nice" });
    if (f.status !== 200 || f.json.adapters !== 1) return f.text;
    const bad = isError(await post("/v1/feedback", { id: r.json.id, rating: 5 }), 400, "rating");
    if (bad !== true) return bad;
    const unknown = isError(await post("/v1/feedback", { id: "cmpl-nope", rating: 1 }), 404, "cmpl-nope");
    if (unknown !== true) return unknown;
    const t = (await get("/metrics")).text;
    return /ramole_feedback_total\{adapter="rev",hash="[0-9a-f]{12}",rating="up"\} 1\n/.test(t) || "metrics lack the rating";
  });

  // 32 clients generate while an upload, a retrieval and a delete run alongside
  await check("serve_32_clients_with_upload_retrieve_delete", async () => {
    let acked = false, failed = null, routedAfter = 0;
    const client = async (c) => {
      for (let i = 0; i < 3; i++) {
        const after = acked;
        const r = await post("/v1/completions", { prompt: "the secret recipe of grandmother", max_tokens: 4 + (c % 3),
          ignore_eos: true, stream: c % 2 === 1, lora: { top_k: 3 } });
        if (r.status !== 200) { failed = `client ${c}: ${r.status} ${r.text.slice(0, 200)}`; return; }
        if (c % 2 === 0 && after && r.json.lora.adapters.some((a) => a.name === "live")) routedAfter++;
      }
    };
    const admin = async () => {
      const fd = new FormData();
      fd.append("name", "live");
      fd.append("samples", new Blob([fs.readFileSync(expected.dir + "/secret.jsonl")]), "samples.jsonl");
      fd.append("file", new Blob([fs.readFileSync(expected.dir + "/up/adapter_config.json")]), "adapter_config.json");
      fd.append("file", new Blob([fs.readFileSync(expected.dir + "/up/adapter_model.safetensors")]), "adapter_model.safetensors");
      const up = await fetch(base + "/v1/adapters", { method: "POST", body: fd });
      const row = await up.json();
      if (up.status !== 201) { failed = "upload: " + JSON.stringify(row); return; }
      acked = true;
      const r = await post("/v1/retrieve", { text: "the secret recipe of grandmother", top_k: 1 });
      if (r.json.data[0].name !== "live") { failed = "retrieve after upload: " + r.text; return; }
      // a request that starts after the acknowledgement is routed to it
      const q = await post("/v1/completions", { prompt: "the secret recipe of grandmother", max_tokens: 2, lora: { top_k: 1 } });
      if (q.json.lora.adapters[0].name !== "live") { failed = "not routed after upload: " + q.text; return; }
      routedAfter++;
      const d = await fetch(`${base}/v1/adapters/${row.id}`, { method: "DELETE" });
      if (d.status !== 200) failed = "delete: " + d.status;
      acked = false;
    };
    await Promise.all([...Array.from({ length: 32 }, (_, c) => client(c)), admin()]);
    if (failed) return failed;
    const left = (await get("/v1/adapters")).json.data.map((a) => a.name);
    return (routedAfter >= 1 && !left.includes("live")) || `routed ${routedAfter}, left ${left}`;
  });

  // the prefix cache: a prompt run before, or begun before, starts after
  // the kept rows, reports them as OpenAI's cached_tokens, and answers as
  // `generate` does alone
  await check("serve_prefix_cache_reports_cached_tokens", async () => {
    const body = { model: modelName, ...greedy, lora: { mode: "none" } };
    const hits = async () => Number((/^ramole_prefix_cache_hits_total (\d+)$/m.exec((await get("/metrics")).text) || [])[1]);
    const before = await hits();
    const first = await client.completions.create({ ...body, prompt: expected.long_prompt });
    const again = await client.completions.create({ ...body, prompt: expected.long_prompt });
    const cached = (r) => r.usage.prompt_tokens_details && r.usage.prompt_tokens_details.cached_tokens;
    if (cached(first) !== 0) return "first: " + JSON.stringify(first.usage);
    // all but the last token, which runs for its logits
    if (cached(again) !== again.usage.prompt_tokens - 1 || again.choices[0].text !== first.choices[0].text)
      return `again: ${JSON.stringify(again.usage)} ${JSON.stringify(again.choices[0].text)} vs ${JSON.stringify(first.choices[0].text)}`;
    const next = await client.completions.create({ ...body, prompt: expected.long_prompt2 });
    if (!(cached(next) >= 16 && cached(next) < next.usage.prompt_tokens) || next.choices[0].text !== expected.long_text)
      return `next: ${JSON.stringify(next.usage)} ${JSON.stringify(next.choices[0].text)} vs generate's ${JSON.stringify(expected.long_text)}`;
    const after = await hits();
    if (after - before !== 2) return `prefix cache hits ${before} -> ${after}`;
    // the chat route carries the same field through the client
    const chat = await client.chat.completions.create({ ...body, messages: [{ role: "user", content: expected.long_prompt }] });
    return (chat.usage.prompt_tokens_details && chat.usage.prompt_tokens_details.cached_tokens >= 0) || "chat usage " + JSON.stringify(chat.usage);
  });

  // scoring several continuations of one context, as lm-evaluation-harness
  // sends a multiple-choice question: the context's rows and their
  // log-probabilities are computed once, and score as when computed alone
  await check("serve_prefix_cache_scores_continuations_of_one_context", async () => {
    const body = { model: modelName, echo: true, logprobs: 1, max_tokens: 0, temperature: 0, lora: { mode: "none" } };
    const ctx = expected.long_prompt;
    const alone = (await post("/v1/completions", { ...body, prompt: ctx + " Yes." })).json;
    if (!alone || alone.usage.prompt_tokens_details.cached_tokens !== 0) return "alone: " + JSON.stringify(alone && alone.usage);
    const list = (await post("/v1/completions", { ...body, prompt: [ctx + " Yes.", ctx + " No, never."] })).json;
    if (!list || list.choices.length !== 2) return "list: " + JSON.stringify(list).slice(0, 300);
    const shared = list.usage.prompt_tokens_details.cached_tokens;
    if (!(shared >= 2 * 16 && shared < list.usage.prompt_tokens)) return "list usage " + JSON.stringify(list.usage);
    const a = alone.choices[0].logprobs, b = list.choices[0].logprobs, c = list.choices[1].logprobs;
    let common = 0;
    while (common < a.tokens.length && a.tokens[common] === c.tokens[common]) common++;
    if (common < 16 || JSON.stringify(a.tokens) !== JSON.stringify(b.tokens)) return `tokens: ${common} shared`;
    for (let i = 1; i < a.tokens.length; i++) {
      if (Math.abs(a.token_logprobs[i] - b.token_logprobs[i]) > 1e-5) return `choice 0, token ${i}: ${b.token_logprobs[i]} vs ${a.token_logprobs[i]}`;
      if (i < common && Math.abs(a.token_logprobs[i] - c.token_logprobs[i]) > 1e-5) return `choice 1, token ${i}: ${c.token_logprobs[i]} vs ${a.token_logprobs[i]}`;
    }
    if (c.token_logprobs[0] !== null || c.token_logprobs.slice(1).some((x) => typeof x !== "number")) return "choice 1: " + JSON.stringify(c.token_logprobs);
    return true;
  });

  // several choices run together: after the checks of requests that ran alone
  await check("serve_n_samples_and_prompt_lists", async () => {
    // n samples of one prompt: choice j is the one-sample answer with seed + j
    const body = { model: modelName, prompt: expected.prompt, max_tokens: 8, ignore_eos: true, temperature: 1, seed: 7, lora: { mode: "none" } };
    const twins = async () => Number((/^ramole_twin_prompts_total (\d+)$/m.exec((await get("/metrics")).text) || [])[1]);
    const before = await twins();
    const r = await client.completions.create({ ...body, n: 3 });
    const after = await twins(); // samples 1 and 2 copy sample 0's prompt
    if (!(after - before === 2)) return `twin prompts ${before} -> ${after}`;
    if (r.choices.length !== 3 || r.choices.some((c, i) => c.index !== i)) return "choices " + JSON.stringify(r.choices);
    const single = await client.completions.create(body);
    if (r.usage.completion_tokens !== 24 || r.usage.prompt_tokens !== single.usage.prompt_tokens) return "usage " + JSON.stringify(r.usage);
    for (let j = 0; j < 3; j++) {
      const one = await client.completions.create({ ...body, seed: 7 + j });
      if (one.choices[0].text !== r.choices[j].text) return `sample ${j}: ${JSON.stringify(r.choices[j].text)} vs ${JSON.stringify(one.choices[0].text)}`;
    }
    if (new Set(r.choices.map((c) => c.text)).size < 2) return "the samples are all alike: " + JSON.stringify(r.choices.map((c) => c.text));
    // a list of prompts (text and token ids), 2 greedy samples each: choice p * 2 + j
    const ids = [1, 450, 4996, 338];
    const list = await post("/v1/completions", { prompt: [expected.prompt, ids], n: 2, ...greedy, lora: { mode: "none" } });
    const ch = list.json && list.json.choices;
    if (list.status !== 200 || ch.length !== 4) return "list " + list.text.slice(0, 300);
    const alone = [(await post("/v1/completions", { prompt: expected.prompt, ...greedy, lora: { mode: "none" } })).json,
                   (await post("/v1/completions", { prompt: ids, ...greedy, lora: { mode: "none" } })).json];
    for (let c = 0; c < 4; c++)
      if (ch[c].index !== c || ch[c].text !== alone[c >> 1].choices[0].text || !ch[c].lora) return `choice ${c}: ` + JSON.stringify(ch[c]);
    const prompts = alone[0].usage.prompt_tokens + alone[1].usage.prompt_tokens;
    if (list.json.usage.prompt_tokens !== prompts || list.json.usage.completion_tokens !== 32) return "list usage " + JSON.stringify(list.json.usage);
    // a one-prompt list, as evaluation harnesses send it, is that prompt
    const one = await post("/v1/completions", { prompt: [expected.prompt], ...greedy, lora: { mode: "none" } });
    if (one.json.choices.length !== 1 || one.json.choices[0].text !== alone[0].choices[0].text) return "one-prompt list " + one.text.slice(0, 200);
    // streamed: each choice's chunks by index add up to the whole answer's
    const creq = { model: modelName, messages: [{ role: "user", content: "hello there" }], max_tokens: 8, ignore_eos: true, temperature: 1, seed: 3, n: 2 };
    const whole = await client.chat.completions.create(creq);
    const parts = ["", ""], fins = [null, null];
    for await (const chunk of await client.chat.completions.create({ ...creq, stream: true }))
      for (const c of chunk.choices) { parts[c.index] += c.delta.content || ""; if (c.finish_reason) fins[c.index] = c.finish_reason; }
    for (let i = 0; i < 2; i++)
      if (parts[i] !== whole.choices[i].message.content || fins[i] !== "length") return `streamed ${i}: ${JSON.stringify(parts[i])} vs ${JSON.stringify(whole.choices[i].message.content)} (${fins[i]})`;
    return true;
  });

  // errors
  await check("serve_400_malformed_json", async () => isError(await post("/v1/completions", null, null, '{"prompt": '), 400, "JSON"));
  await check("serve_400_bad_temperature", async () => isError(await post("/v1/completions", { prompt: "a", temperature: 7 }), 400, "temperature"));
  await check("serve_400_bad_n_and_too_many_choices", async () => {
    for (const [body, needle] of [[{ prompt: "a", n: 0 }, "\"n\""], [{ prompt: "a", n: 65 }, "\"n\""],
      [{ prompt: "a", n: 1.5 }, "\"n\""], [{ prompt: Array(33).fill("a"), n: 2 }, "at most 64"],
      [{ prompt: ["a", 7] }, "prompt 1:"], [{ prompt: ["a", []] }, "prompt 1:"]]) {
      const e = isError(await post("/v1/completions", body), 400, needle);
      if (e !== true) return JSON.stringify(body).slice(0, 80) + ": " + e;
    }
    return true;
  });
  await check("serve_400_prompt_too_long", async () =>
    isError(await post("/v1/completions", { prompt: "word ".repeat(3000), max_tokens: 4 }), 400, ""));
  await check("serve_404_unknown_model", async () => isError(await post("/v1/completions", { prompt: "a", model: "nope" }), 404, "nope"));
  await check("serve_404_unknown_adapter", async () =>
    isError(await post("/v1/completions", { prompt: "a", lora: { adapters: [{ name: "ghost" }] } }), 404, "ghost"));
  await check("serve_404_unknown_route", async () => isError(await get("/v1/nothing"), 404, "/v1/nothing"));
  await check("serve_413_oversized_body", async () =>
    isError(await post("/v1/completions", null, null, JSON.stringify({ prompt: "x".repeat(70000) })), 413, "bytes"));

  await check("serve_models_base_first", async () => {
    const r = await get("/v1/models");
    const ids = r.json.data.map((m) => m.id);
    return (ids[0] === modelName && ids.includes("rev") && ids.includes("add")) || JSON.stringify(ids);
  });
  await check("serve_models_retrieve_one", async () => {
    const base = await client.models.retrieve(modelName), rev = await client.models.retrieve("rev");
    if (base.id !== modelName || base.object !== "model" || rev.id !== "rev" || rev.parent !== modelName)
      return JSON.stringify([base, rev]);
    return isError(await get("/v1/models/ghost"), 404, "ghost");
  });

  await check("serve_tokenizer_routes_as_vllm", async () => {
    // what evaluation harnesses check before tokenizing through the server
    const info = await get("/tokenizer_info");
    if (info.status !== 200 || info.json.eos_token !== "</s>" || info.json.bos_token !== "<s>" || !(info.json.model_max_length > 0))
      return "tokenizer_info " + info.text.slice(0, 200);
    const t = await post("/tokenize", { prompt: expected.prompt });
    const plain = await post("/tokenize", { prompt: expected.prompt, add_special_tokens: false, return_token_strs: true });
    if (t.status !== 200 || t.json.count !== t.json.tokens.length || t.json.tokens[0] !== 1) return "tokenize " + t.text;
    if (JSON.stringify(plain.json.tokens) !== JSON.stringify(t.json.tokens.slice(1)) || plain.json.token_strs.length !== plain.json.count)
      return "add_special_tokens false " + plain.text;
    // the ids are what a generation of that prompt runs
    const asText = (await post("/v1/completions", { prompt: expected.prompt, ...greedy, lora: { mode: "none" } })).json;
    const asIds = (await post("/v1/completions", { prompt: t.json.tokens, ...greedy, lora: { mode: "none" } })).json;
    if (asText.choices[0].text !== asIds.choices[0].text || asText.usage.prompt_tokens !== t.json.count) return "ids run differently";
    const msgs = [{ role: "user", content: "hello there" }];
    const chat = await client.chat.completions.create({ model: modelName, messages: msgs, ...greedy });
    const tm = await post("/tokenize", { messages: msgs });
    if (tm.json.count !== chat.usage.prompt_tokens) return `messages: ${tm.json.count} tokens, the chat ran ${chat.usage.prompt_tokens}`;
    const d = await post("/detokenize", { tokens: plain.json.tokens });
    if (d.status !== 200 || d.json.prompt !== expected.prompt) return "detokenize " + d.text;
    const e1 = isError(await post("/detokenize", { tokens: [1, 99999999] }), 400, "token 1");
    if (e1 !== true) return e1;
    const e2 = isError(await post("/tokenize", { prompt: "a", add_special_tokens: null, return_token_strs: "yes" }), 400,
                       "\"return_token_strs\" must be true or false");
    if (e2 !== true) return e2;
    return isError(await post("/tokenize", { add_special_tokens: true }), 400, "prompt");
  });

  await check("serve_embeddings_are_the_retrieval_space", async () => {
    // the official client asks for base64 by default and decodes it
    const texts = ["reverse the word apple", "reverse the word stone", "what is 12 plus 9"];
    const r = await client.embeddings.create({ model: modelName, input: texts });
    const E = r.data.map((d) => Array.from(d.embedding));
    if (r.data.length !== 3 || r.data.some((d, i) => d.index !== i) || !(E[0].length > 0) || r.usage.prompt_tokens < 3)
      return JSON.stringify(r).slice(0, 300);
    const dot = (a, b) => a.reduce((acc, x, i) => acc + x * b[i], 0);
    for (const e of E) if (Math.abs(dot(e, e) - 1) > 1e-4) return "not unit length: " + dot(e, e);
    const f = await post("/v1/embeddings", { input: texts[0], encoding_format: "float" });
    if (f.json.data[0].embedding.some((x, i) => Math.abs(x - E[0][i]) > 1e-6)) return "float and base64 differ";
    // rev's adapter is represented by the mean of its two samples' embeddings: retrieval's cosine for a
    // text is its embedding against that mean
    const mean = E[0].map((x, i) => x + E[1][i]), norm = Math.sqrt(dot(mean, mean));
    const hits = (await post("/v1/retrieve", { text: texts[2], top_k: 5 })).json.data;
    const rev = hits.find((h) => h.name === "rev");
    const want = dot(E[2], mean) / norm;
    if (!rev || Math.abs(rev.score - want) > 1e-4) return `rev scores ${rev && rev.score}, the embeddings say ${want}`;
    for (const [body, needle] of [[{ input: [1, 2, 3] }, "not token ids"], [{ input: "a", encoding_format: "hex" }, "encoding_format"],
      [{ input: "a", dimensions: 7 }, "dimensions"], [{ input: "a", model: "rev" }, "base"], [{ input: [] }, "input"]]) {
      const e = isError(await post("/v1/embeddings", body), body.model ? 404 : 400, needle);
      if (e !== true) return JSON.stringify(body) + ": " + e;
    }
    return true;
  });

  await check("serve_retrieve_route", async () => {
    const r = await post("/v1/retrieve", { text: "add 3 and 4", top_k: 2 });
    return (r.status === 200 && r.json.data.length === 2 && r.json.data[0].name === "add") || r.text;
  });
  await check("serve_health", async () => { const r = await get("/health"); return (r.status === 200 && r.json.status === "ok") || r.text; });
  await check("serve_metrics", async () => {
    const t = (await get("/metrics")).text;
    for (const k of ['ramole_requests_total{route="/v1/completions",status="200"}', 'status="404"', 'status="413"',
      "ramole_generated_tokens_total", "ramole_time_to_first_token_seconds_bucket", "ramole_inter_token_latency_seconds_count",
      "ramole_request_latency_seconds_sum", "ramole_retrieval_latency_seconds_count", "ramole_kv_blocks_used 0",
      "ramole_running_sequences 0", "ramole_adapter_cache_hits_total", "ramole_queue_length 0"])
      if (!t.includes(k)) return "metrics lack " + k;
    const gen = Number(/ramole_generated_tokens_total (\d+)/.exec(t)[1]);
    return gen >= 64 * 4 || "generated " + gen;
  });

  // a client that goes away cancels its request: blocks come back at once
  await check("serve_disconnect_cancels", async () => {
    const tokens = async () => Number(/ramole_generated_tokens_total (\d+)/.exec((await get("/metrics")).text)[1]);
    const before = await tokens();
    const ac = new AbortController();
    const r = await fetch(base + "/v1/completions", { method: "POST", signal: ac.signal,
      body: JSON.stringify({ prompt: "go on", max_tokens: 1000, ignore_eos: true, stream: true }) });
    const reader = r.body.getReader();
    await reader.read();
    ac.abort();
    for (let i = 0; i < 40; i++) {
      await new Promise((res) => setTimeout(res, 50));
      const t = (await get("/metrics")).text;
      if (t.includes("ramole_running_sequences 0") && t.includes("ramole_kv_blocks_used 0")) {
        const ran = (await tokens()) - before;
        if (ran >= 1000) return `the request ran to its end (${ran} tokens) before the cancel`;
        const gen = await post("/v1/completions", { prompt: "go on", max_tokens: 2 });
        return gen.status === 200 || gen.text;
      }
    }
    return "the request still runs 2 s after the client went away";
  });
} else if (mode === "keys") {
  const K = JSON.parse(fs.readFileSync(extra, "utf8"));
  await check("serve_401_missing_key", async () => isError(await post("/v1/completions", { prompt: "a" }), 401, "key"));
  await check("serve_401_wrong_key", async () => isError(await post("/v1/completions", { prompt: "a" }, "rmk_" + "0".repeat(64)), 401, "key"));
  await check("serve_health_without_key", async () => (await get("/health")).status === 200);
  await check("serve_openai_client_with_key", async () => {
    const client = new OpenAI({ baseURL: base + "/v1", apiKey: K.acme, maxRetries: 0 });
    const r = await client.completions.create({ model: "secret", prompt: "a", max_tokens: 2, temperature: 0 });
    return (r.lora.adapters[0].name === "secret") || JSON.stringify(r.lora);
  });

  await check("serve_403_role_admin_route", async () =>
    isError(await post("/v1/load_lora_adapter", { lora_name: "x", lora_path: "/etc" }, K.beta), 403, "admin"));
  await check("serve_403_metrics_need_admin", async () => isError(await get("/metrics", K.beta), 403, "admin"));
  await check("serve_403_role_upload", async () => {
    const r = await fetch(base + "/v1/adapters", { method: "POST", headers: { Authorization: `Bearer ${K.beta}` },
      body: new FormData() });
    return isError({ status: r.status, json: await r.json(), text: "" }, 403, "upload");
  });

  // the prefix cache per tenant: beta's request does not start after
  // acme's rows (usage and speed would tell beta how acme's prompts
  // began), nor acme's with another cache_salt
  await check("serve_prefix_cache_per_tenant_and_salt", async () => {
    const prompt = "The harbour master counted the boats every morning, wrote their names in a green ledger, and sent it to the town hall.";
    const body = { prompt, max_tokens: 2, temperature: 0, lora: { mode: "none" } };
    const cached = async (key, extra) => {
      const r = await post("/v1/completions", { ...body, ...extra }, key);
      return r.json && r.json.usage ? r.json.usage.prompt_tokens_details.cached_tokens : r.text;
    };
    const a1 = await cached(K.acme), a2 = await cached(K.acme), b1 = await cached(K.beta), b2 = await cached(K.beta);
    const s1 = await cached(K.acme, { cache_salt: "user-1" }), s2 = await cached(K.acme, { cache_salt: "user-1" });
    return (a1 === 0 && a2 >= 16 && b1 === 0 && b2 === a2 && s1 === 0 && s2 === a2) || JSON.stringify({ a1, a2, b1, b2, s1, s2 });
  });

  // tenant isolation: beta never sees acme's private adapter, in any route
  const secretText = K.secret_sample;
  let seed = 7;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  await check("serve_tenant_isolation_randomised", async () => {
    for (let i = 0; i < 24; i++) {
      const who = rnd(2) ? "beta" : "acme", key = K[who];
      const sees = who === "acme";
      switch (rnd(6)) {
        case 5: {
          const r = await get(`/v1/adapters/${K.secret_id}`, key);
          if ((r.status === 200) !== sees) return `${who} adapter by id: ${r.status}`;
          break;
        }
        case 0: {
          const ids = (await get("/v1/models", key)).json.data.map((m) => m.id);
          if (ids.includes("secret") !== sees) return `${who} models: ${ids}`;
          break;
        }
        case 1: {
          const names = (await get("/v1/adapters", key)).json.data.map((a) => a.name);
          if (names.includes("secret") !== sees) return `${who} adapters: ${names}`;
          break;
        }
        case 2: {
          const r = await post("/v1/retrieve", { text: secretText, top_k: 4 }, key);
          if (r.status !== 200 || r.json.data.some((h) => h.name === "secret") !== sees) return `${who} retrieve: ${r.text}`;
          break;
        }
        case 3: {
          const r = await post("/v1/completions", { prompt: "a", max_tokens: 1, model: "secret" }, key);
          if ((r.status === 200) !== sees || (!sees && isError(r, 404, "secret") !== true)) return `${who} model secret: ${r.status} ${r.text}`;
          break;
        }
        default: {
          const r = await post("/v1/completions", { prompt: secretText, max_tokens: 1, lora: { top_k: 4 } }, key);
          if (r.status !== 200 || r.json.lora.adapters.some((a) => a.name === "secret") !== sees) return `${who} retrieval: ${r.text}`;
          const q = await post("/v1/completions", { prompt: "a", max_tokens: 1, lora: { adapters: [{ name: "secret" }] } }, key);
          if ((q.status === 200) !== sees) return `${who} named secret: ${q.status}`;
        }
      }
    }
    return true;
  });

  await check("serve_feedback_only_own_responses", async () => {
    const r = await post("/v1/completions", { prompt: "a", max_tokens: 1 }, K.acme);
    const other = isError(await post("/v1/feedback", { id: r.json.id, rating: -1 }, K.beta), 404, r.json.id);
    if (other !== true) return other;
    return (await post("/v1/feedback", { id: r.json.id, rating: -1 }, K.acme)).status === 200;
  });

  await check("serve_router_weights_over_the_answer", async () => {
    const r = await post("/v1/completions", { prompt: "reverse the word apple", max_tokens: 6, ignore_eos: true,
      lora: { top_k: 2 } }, K.beta);
    const l = r.json && r.json.lora;
    if (!l || l.mode !== "router" || l.note || l.adapters.length !== 2) return r.text;
    const w = l.adapters.map((a) => a.weight), sum = w.reduce((x, y) => x + y, 0);
    if (w.some((x) => typeof x !== "number" || x < 0 || x > 1) || Math.abs(sum - 1) > 1e-3) return JSON.stringify(l);
    // two copies of one adapter: the router cannot tell them apart
    const t = await post("/v1/completions", { prompt: "a b c", max_tokens: 4, ignore_eos: true,
      lora: { mode: "router", adapters: [{ name: "rev" }, { name: "rev" }] } }, K.beta);
    const tw = t.json.lora.adapters.map((a) => a.weight);
    return (Math.abs(tw[0] - 0.5) < 1e-4 && Math.abs(tw[1] - 0.5) < 1e-4) || JSON.stringify(t.json.lora);
  });

  // an adapter named with its retrieval score (for a router with a retrieval prior): echoed back; a score
  // that is not a cosine is refused, naming the field
  await check("serve_adapter_scores_echo_and_bad_score", async () => {
    const t = await post("/v1/completions", { prompt: "a b c", max_tokens: 2,
      lora: { mode: "router", adapters: [{ name: "rev", score: 0.75 }, { name: "rev" }] } }, K.beta);
    const a = t.json && t.json.lora && t.json.lora.adapters;
    if (t.status !== 200 || !a || a[0].score !== 0.75 || a[1].score !== null) return t.text;
    return isError(await post("/v1/completions", { prompt: "a", max_tokens: 1,
      lora: { mode: "router", adapters: [{ name: "rev", score: 2 }] } }, K.beta), 400, "\"score\" must be a retrieval score");
  });

  // the queue is bounded (this server: one running, one waiting)
  await check("serve_429_queue_full", async () => {
    const rs = await Promise.all(Array.from({ length: 8 }, () =>
      post("/v1/completions", { prompt: "long one", max_tokens: 200, ignore_eos: true }, K.beta)));
    const full = rs.filter((r) => r.status === 429), ok = rs.filter((r) => r.status === 200);
    if (!full.length || !ok.length) return rs.map((r) => r.status).join(",");
    if (full[0].headers.get("retry-after") === null) return "no Retry-After";
    return isError(full[0], 429, "queue");
  });
}
process.exit(failures ? 1 : 0);
