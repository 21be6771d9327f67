// tests/serve_tools_client.mjs — tool calling through a live `ramole serve`
// (tests/cli/serve_tools.sh starts it on a model with Qwen3's template),
// with the official `openai` client; prints "PASS name" / "FAIL name: why".
//   node tests/serve_tools_client.mjs URL MODEL_NAME
import path from "node:path";

const [base, modelName] = process.argv.slice(2);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const { default: OpenAI } = await import(path.join(root, ".cache/npm/node_modules/openai/index.mjs"));
const ajvMod = await import(path.join(root, ".cache/npm/node_modules/ajv/dist/2020.js"));
const Ajv2020 = ajvMod.default.default || ajvMod.default;
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "unused", maxRetries: 0 });

const pass = (n) => console.log(`PASS ${n}`);
const fail = (n, why) => console.log(`FAIL ${n}: ${String(why).slice(0, 400)}`);
async function check(name, fn) {
  try { const r = await fn(); if (r === true) pass(name); else fail(name, r); } catch (e) { fail(name, e.stack || e); }
}
async function post(route, body) {
  const r = await fetch(base + route, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

const tools = [
  { type: "function", function: { name: "get_weather", description: "The weather in a city.", parameters: {
    type: "object", properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["celsius", "fahrenheit"] } },
    required: ["city"], additionalProperties: false } } },
  { type: "function", function: { name: "add", parameters: { type: "object", properties: {
    a: { type: "integer" }, b: { type: "number" } }, required: ["a", "b"], additionalProperties: false } } },
  { type: "function", function: { name: "now" } },
];
const ajv = new Ajv2020({ strict: false });
const validators = Object.fromEntries(tools.map(t => [t.function.name, ajv.compile(t.function.parameters ?? { type: "object" })]));
const messages = [{ role: "user", content: "What is the weather in Paris, and what is 2 + 3?" }];

// each call names an offered tool and its arguments validate against its parameters
function callsValid(calls, what, only) {
  if (!Array.isArray(calls) || !calls.length) return `${what}: no tool_calls`;
  for (const c of calls) {
    if (c.type !== "function" || typeof c.id !== "string" || !c.id || "index" in c) return `${what}: bad call ${JSON.stringify(c)}`;
    const v = validators[c.function.name];
    if (!v || (only && c.function.name !== only)) return `${what}: tool ${c.function.name}`;
    let args;
    try { args = JSON.parse(c.function.arguments); } catch { return `${what}: arguments not JSON: ${c.function.arguments}`; }
    if (!v(args)) return `${what}: ${JSON.stringify(v.errors)} for ${c.function.arguments}`;
  }
  if (new Set(calls.map(c => c.id)).size !== calls.length) return `${what}: ids repeat`;
  return true;
}

let first = null;
await check("serve_tools_required_calls_validate_with_ajv", async () => {
  for (let seed = 1; seed <= 6; seed++) {
    const r = await client.chat.completions.create({ model: modelName, messages, tools, tool_choice: "required",
      temperature: 1, seed, max_tokens: 240, parallel_tool_calls: seed > 3 ? false : undefined });
    const c = r.choices[0];
    if (seed > 3 && c.message.tool_calls?.length !== 1) return `seed ${seed}: not one call: ${JSON.stringify(c.message)}`;
    if (c.finish_reason !== "tool_calls") return `seed ${seed}: finish ${c.finish_reason}: ${JSON.stringify(c.message)}`;
    if (c.message.content !== null) return `seed ${seed}: content ${JSON.stringify(c.message.content)}`;
    const ok = callsValid(c.message.tool_calls, `seed ${seed}`);
    if (ok !== true) return ok;
    first ??= r;
  }
  return true;
});

await check("serve_tools_streamed_calls_match_whole", async () => {
  for (let seed = 1; seed <= 3; seed++) {
    const whole = await client.chat.completions.create({ model: modelName, messages, tools, tool_choice: "required",
      temperature: 1, seed, max_tokens: 240 });
    const calls = [];
    let finish = null, content = "";
    for await (const ch of await client.chat.completions.create({ model: modelName, messages, tools,
      tool_choice: "required", temperature: 1, seed, max_tokens: 240, stream: true })) {
      const d = ch.choices[0]?.delta ?? {};
      content += d.content ?? "";
      for (const t of d.tool_calls ?? []) {
        if (!Number.isInteger(t.index)) return `seed ${seed}: a delta's call without its index`;
        const c = (calls[t.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } });
        if (t.id) c.id = t.id;
        c.function.name += t.function?.name ?? "";
        c.function.arguments += t.function?.arguments ?? "";
      }
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    if (finish !== "tool_calls" || content !== "") return `seed ${seed}: finish ${finish}, content ${JSON.stringify(content)}`;
    const a = JSON.stringify(calls.map(c => c.function)), b = JSON.stringify(whole.choices[0].message.tool_calls.map(c => c.function));
    if (a !== b) return `seed ${seed}: streamed ${a} vs ${b}`;
  }
  return true;
});

await check("serve_tools_named_choice_one_call", async () => {
  for (let seed = 1; seed <= 4; seed++) {
    const r = await client.chat.completions.create({ model: modelName, messages, tools, temperature: 1, seed, max_tokens: 240,
      tool_choice: { type: "function", function: { name: "add" } }, parallel_tool_calls: false });
    const c = r.choices[0];
    const ok = callsValid(c.message.tool_calls, `seed ${seed}`, "add");
    if (ok !== true) return ok;
    if (c.message.tool_calls.length !== 1 || c.finish_reason !== "tool_calls") return `seed ${seed}: ${JSON.stringify(c)}`;
  }
  return true;
});

await check("serve_tools_results_go_back_in", async () => {
  if (!first) return "no earlier call";
  const call = first.choices[0].message;
  const follow = [...messages, call, ...call.tool_calls.map(t => ({ role: "tool", tool_call_id: t.id, content: "18 C" }))];
  const r = await client.chat.completions.create({ model: modelName, messages: follow, tools, temperature: 0, max_tokens: 4 });
  if (!(r.usage.prompt_tokens > first.usage.prompt_tokens)) return `prompt ${r.usage.prompt_tokens} vs ${first.usage.prompt_tokens}`;
  // the same history sent with arguments as an object renders the same prompt
  const asObj = follow.map(m => m.tool_calls ? { ...m, tool_calls: m.tool_calls.map(t => ({ ...t,
    function: { name: t.function.name, arguments: JSON.parse(t.function.arguments) } })) } : m);
  const r2 = await post("/v1/chat/completions", { model: modelName, messages: asObj, tools, temperature: 0, max_tokens: 4 });
  if (r2.status !== 200 || r2.json.usage.prompt_tokens !== r.usage.prompt_tokens) return `object arguments: ${r2.text}`;
  return true;
});

await check("serve_tools_auto_and_none_answer", async () => {
  for (const tool_choice of ["auto", "none", undefined]) {
    const r = await client.chat.completions.create({ model: modelName, messages, tools, tool_choice, temperature: 0,
      max_tokens: 8, ignore_eos: true });
    const c = r.choices[0];
    if (c.finish_reason === "tool_calls" ? callsValid(c.message.tool_calls, "auto") !== true : typeof c.message.content !== "string")
      return `${tool_choice}: ${JSON.stringify(c)}`;
    if (tool_choice === "none" && c.message.tool_calls) return "none: tool_calls";
  }
  return true;
});

// "auto": once the model writes <tool_call> (here pushed by logit_bias on
// that token, id 151657 in Qwen3's vocabulary), the rest follows the
// grammar of calls, so the call is whole and its arguments validate
await check("serve_tools_auto_call_follows_grammar_once_begun", async () => {
  for (let seed = 1; seed <= 4; seed++) {
    // the tools whose strings are bounded: the bias would fill an open-ended one with <tool_call> text
    const r = await client.chat.completions.create({ model: modelName, messages, tools: tools.slice(0, 2), temperature: 1,
      seed, max_tokens: 240, logit_bias: { "151657": 100 }, parallel_tool_calls: false });
    const c = r.choices[0];
    if (c.finish_reason !== "tool_calls") return `seed ${seed}: finish ${c.finish_reason}: ${JSON.stringify(c.message)}`;
    const ok = callsValid(c.message.tool_calls, `seed ${seed}`);
    if (ok !== true) return ok;
  }
  return true;
});

// vLLM's chat_template_kwargs {"enable_thinking": false}: Qwen3's template
// opens the answer with an empty think block, four tokens more of prompt
await check("serve_chat_template_kwargs_enable_thinking", async () => {
  const on = await post("/v1/chat/completions", { model: modelName, messages, max_tokens: 1 });
  const off = await post("/v1/chat/completions", { model: modelName, messages, max_tokens: 1,
    chat_template_kwargs: { enable_thinking: false } });
  if (on.status !== 200 || off.status !== 200) return `${on.text} ${off.text}`;
  if (off.json.usage.prompt_tokens - on.json.usage.prompt_tokens !== 4)
    return `prompt tokens ${on.json.usage.prompt_tokens} -> ${off.json.usage.prompt_tokens}`;
  return true;
});

await check("serve_tools_errors_name_the_field", async () => {
  const cases = [
    [{ messages, tools, tool_choice: { type: "function", function: { name: "fly" } } }, "\"fly\", which \"tools\" does not offer"],
    [{ messages, tool_choice: "required" }, "\"tools\" offers none"],
    [{ messages, tools, tool_choice: "required", response_format: { type: "json_object" } }, "both constrain the answer"],
    [{ messages, tools: [{ type: "function", function: { name: "f" } }, { type: "function", function: { name: "f" } }] }, "both named \"f\""],
    [{ messages, tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: {
      n: { type: "integer", minimum: 0 } } } } }], tool_choice: "required" }, "keyword \"minimum\" is not supported"],
    [{ messages, tools: [{ type: "code_interpreter" }] }, "tool 0 must be"],
    [{ messages: [{ role: "assistant", tool_calls: [{ type: "function", function: { name: 3 } }] }], tools }, "\"tool_calls\" must be"],
  ];
  for (const [body, needle] of cases) {
    const r = await post("/v1/chat/completions", { model: modelName, max_tokens: 4, ...body });
    if (r.status !== 400 || !r.json?.error?.message?.includes(needle)) return `${needle}: ${r.status} ${r.text}`;
  }
  const comp = await post("/v1/completions", { model: modelName, prompt: "x", tools, max_tokens: 2 });
  if (comp.status !== 400 || !comp.json.error.message.includes("needs \"messages\"")) return `completions: ${comp.text}`;
  return true;
});
