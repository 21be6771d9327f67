// scripts/demo.mjs — the client half of the main job (scripts/demo.sh starts
// the server and runs this): it uploads every task adapter of a world to a
// live `ramole serve`, sends one request per task for a dozen tasks of
// different clusters at once with the official `openai` client, and prints
// for each the instruction, the retrieved adapters with their scores and
// router weights, the answer against the expected one, then a summary.
//   node scripts/demo.mjs URL WORLD [--requests N] [--json OUT]
// --json OUT also writes every request's record and the summary as JSON.
// Exit status 0 when every request was answered (right or wrong).
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

class DemoError extends Error {}

function usage() {
  console.error("usage: node scripts/demo.mjs URL WORLD [--requests N] [--json OUT]");
  process.exit(2);
}

function parseArgs(argv) {
  const o = { url: null, world: null, requests: 12, json: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--requests" || a === "--json") {
      if (i + 1 >= argv.length) usage();
      const v = argv[++i];
      if (a === "--json") o.json = v;
      else if (!/^[1-9][0-9]*$/.test(v)) throw new DemoError(`--requests must be a positive integer, not '${v}'`);
      else o.requests = Number(v);
    } else if (a.startsWith("-")) usage();
    else if (!o.url) o.url = a.replace(/\/$/, "");
    else if (!o.world) o.world = a;
    else usage();
  }
  if (!o.url || !o.world) usage();
  return o;
}

// The lines of a JSONL file as objects, each checked by `check` (which
// names what is wrong); at most `limit` of them.
function readJsonl(file, limit, check) {
  if (!fs.existsSync(file)) throw new DemoError(`${file}: missing`);
  const out = [];
  const lines = fs.readFileSync(file, "utf8").split("\n");
  for (let i = 0; i < lines.length && out.length < limit; i++) {
    if (!lines[i].trim()) continue;
    let v;
    try { v = JSON.parse(lines[i]); } catch (e) { throw new DemoError(`${file}:${i + 1}: not JSON (${e.message})`); }
    const bad = check(v);
    if (bad) throw new DemoError(`${file}:${i + 1}: ${bad}`);
    out.push(v);
  }
  return out;
}

const PEFT_FILES = ["adapter_config.json", "adapter_model.safetensors"];

// The world's tasks as the demo needs them: name, cluster, first template,
// max_tokens, the first `retrieval.samples` train inputs, the first test
// example and the adapter's files. Every missing piece is named.
function readWorld(dir) {
  const file = path.join(dir, "tasks.json");
  let spec;
  try { spec = JSON.parse(fs.readFileSync(file, "utf8")); } catch (e) { throw new DemoError(`${file}: ${e.message}`); }
  const m = spec.retrieval && spec.retrieval.samples;
  if (!Number.isInteger(m) || m < 1) throw new DemoError(`${file}: "retrieval.samples" must be a positive integer`);
  if (!Array.isArray(spec.tasks) || spec.tasks.length === 0) throw new DemoError(`${file}: "tasks" must be a non-empty array`);
  const isText = (x) => typeof x === "string" && x.length > 0;
  return spec.tasks.map((t, i) => {
    const where = `${file}: task ${i + 1}`;
    if (!t || !isText(t.name) || !/^[A-Za-z0-9._-]+$/.test(t.name)) throw new DemoError(`${where}: "name" must be a folder name`);
    if (!isText(t.cluster)) throw new DemoError(`${where} (${t.name}): "cluster" must be a string`);
    if (!Array.isArray(t.templates) || !isText(t.templates[0])) throw new DemoError(`${where} (${t.name}): "templates" must list strings`);
    if (!Number.isInteger(t.max_tokens) || t.max_tokens < 1) throw new DemoError(`${where} (${t.name}): "max_tokens" must be a positive integer`);
    const tdir = path.join(dir, "tasks", t.name), adir = path.join(dir, "adapters", t.name);
    const samples = readJsonl(path.join(tdir, "train.jsonl"), m, (v) => (isText(v.input) ? null : "needs an \"input\" string"));
    if (samples.length === 0) throw new DemoError(`${path.join(tdir, "train.jsonl")}: no examples`);
    const [example] = readJsonl(path.join(tdir, "test.jsonl"), 1,
      (v) => (isText(v.input) && typeof v.output === "string" ? null : "needs \"input\" and \"output\" strings"));
    if (!example) throw new DemoError(`${path.join(tdir, "test.jsonl")}: no examples`);
    for (const f of PEFT_FILES)
      if (!fs.existsSync(path.join(adir, f))) throw new DemoError(`${path.join(adir, f)}: missing`);
    return { name: t.name, cluster: t.cluster, template: t.templates[0], maxTokens: t.max_tokens,
      samples: samples.map((s) => s.input), example, adapterDir: adir };
  });
}

async function jsonOf(r, what) {
  const text = await r.text();
  let v = null;
  try { v = JSON.parse(text); } catch { /* reported below */ }
  if (!r.ok || !v) {
    const msg = v && v.error && v.error.message ? v.error.message : text.slice(0, 300);
    throw new DemoError(`${what}: HTTP ${r.status}: ${msg}`);
  }
  return v;
}

// Upload one task's adapter (POST /v1/adapters, multipart) as a public
// adapter named after the task; approve it when the registry holds uploads
// for approval. Returns whether it had to approve it.
async function upload(url, task) {
  const fd = new FormData();
  fd.append("name", task.name);
  fd.append("description", `${task.cluster}: ${task.template}`);
  fd.append("visibility", "public");
  const jsonl = task.samples.map((s) => JSON.stringify({ input: s })).join("\n") + "\n";
  fd.append("samples", new Blob([jsonl]), "samples.jsonl");
  for (const f of PEFT_FILES) fd.append("file", new Blob([fs.readFileSync(path.join(task.adapterDir, f))]), f);
  let row = await jsonOf(await fetch(`${url}/v1/adapters`, { method: "POST", body: fd }), `upload of ${task.name}`);
  const pending = row.status === "pending";
  if (pending)
    row = await jsonOf(await fetch(`${url}/v1/adapters/${row.id}/approve`, { method: "POST" }), `approval of ${task.name}`);
  if (row.status !== "active") throw new DemoError(`upload of ${task.name}: the registry left it ${row.status}`);
  return pending;
}

// n tasks, one per cluster in turn (clusters in the order they first
// appear), so that the requests need different adapters.
function pickTasks(tasks, n) {
  const clusters = new Map();
  for (const t of tasks) {
    if (!clusters.has(t.cluster)) clusters.set(t.cluster, []);
    clusters.get(t.cluster).push(t);
  }
  const queues = [...clusters.values()], picked = [];
  for (let round = 0; picked.length < n && picked.length < tasks.length; round++)
    for (const q of queues) if (round < q.length && picked.length < n) picked.push(q[round]);
  return picked;
}

// The line after "### Instruction:" of an Alpaca prompt; else the first
// non-empty line.
function instructionOf(prompt) {
  const lines = prompt.split("\n");
  const at = lines.findIndex((l) => l.trim() === "### Instruction:");
  const rest = at >= 0 ? lines.slice(at + 1) : lines;
  return (rest.find((l) => l.trim()) || "").trim();
}

const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);
const fmt = (x, d) => (typeof x === "number" ? x.toFixed(d) : "-");

function printRecord(i, r) {
  console.log(`\n${String(i + 1).padStart(2)}. ${r.task} (${r.cluster})`);
  console.log(`    ${clip(r.instruction, 110)}`);
  if (r.error) {
    console.log(`    error     ${r.error}  ✗`);
    return;
  }
  const ads = r.lora.adapters.map((a) => `${a.name}${a.name === r.task ? "*" : ""} ${fmt(a.score, 3)} w ${fmt(a.weight, 2)}`);
  console.log(`    ${r.lora.mode.padEnd(9)} ${ads.join("  ·  ") || "(no adapters)"}${r.lora.note ? `  (${r.lora.note})` : ""}`);
  console.log(`    answer    ${JSON.stringify(r.answer)}`);
  console.log(`    expected  ${JSON.stringify(r.expected)}  ${r.right ? "✓" : "✗"}`);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const tasks = readWorld(o.world);
  const { default: OpenAI } = await import(path.join(root, ".cache/npm/node_modules/openai/index.mjs"));
  const client = new OpenAI({ baseURL: `${o.url}/v1`, apiKey: "demo", maxRetries: 0, timeout: 600000 });

  let t0 = performance.now(), approved = 0;
  for (const t of tasks) approved += (await upload(o.url, t)) ? 1 : 0;
  const uploadSeconds = (performance.now() - t0) / 1000;
  console.log(`uploaded ${tasks.length} adapters of ${new Set(tasks.map((t) => t.cluster)).size} clusters over HTTP ` +
    `in ${uploadSeconds.toFixed(1)} s (each with its first ${tasks[0].samples.length} train inputs as samples` +
    (approved ? `; ${approved} held for approval and approved` : "") + ")");

  const model = (await client.models.list()).data[0].id;
  const picked = pickTasks(tasks, o.requests);
  console.log(`${picked.length} requests at once, one per task, greedy; retrieved adapters as ` +
    `name score w router-weight (* the task's own)`);
  t0 = performance.now();
  const records = await Promise.all(picked.map(async (t) => {
    const rec = { task: t.name, cluster: t.cluster, instruction: instructionOf(t.example.input), prompt: t.example.input,
      expected: t.example.output.trim() };
    try {
      const r = await client.completions.create({ model, prompt: t.example.input, max_tokens: t.maxTokens, temperature: 0,
        lora: { mode: "router", top_k: 3 } });
      rec.answer = r.choices[0].text.trim();
      rec.finish_reason = r.choices[0].finish_reason;
      rec.usage = r.usage;
      rec.lora = r.lora;
      if (!rec.lora || !Array.isArray(rec.lora.adapters)) throw new DemoError("the response has no lora object");
      rec.right = rec.answer === rec.expected;
    } catch (e) {
      rec.error = e instanceof DemoError ? e.message : String(e.message || e);
      rec.right = false;
    }
    return rec;
  }));
  const seconds = (performance.now() - t0) / 1000;
  records.forEach((r, i) => printRecord(i, r));

  const answered = records.filter((r) => !r.error);
  const right = records.filter((r) => r.right).length;
  const ownFirst = answered.filter((r) => r.lora.adapters.length && r.lora.adapters[0].name === r.task).length;
  const tokens = answered.reduce((s, r) => s + r.usage.completion_tokens, 0);
  const metrics = await (await fetch(`${o.url}/metrics`)).text();
  const gauge = (name) => { const g = new RegExp(`^${name} (\\d+)$`, "m").exec(metrics); return g ? Number(g[1]) : null; };
  const stepSeqs = gauge("ramole_step_sequences_max"), stepAdapters = gauge("ramole_step_adapters_max");
  const summary = { requests: records.length, answered: answered.length, right, own_adapter_first: ownFirst,
    seconds: Number(seconds.toFixed(3)), completion_tokens: tokens, upload_seconds: Number(uploadSeconds.toFixed(3)),
    adapters: tasks.length, step_sequences_max: stepSeqs, step_adapters_max: stepAdapters };
  console.log(`\n${right}/${records.length} right; own adapter retrieved first for ${ownFirst}/${answered.length}; ` +
    `${records.length} requests answered together in ${seconds.toFixed(2)} s, ${tokens} tokens` +
    (stepSeqs !== null ? `; one engine step ran up to ${stepSeqs} requests with ${stepAdapters} distinct adapters` : "") +
    (answered.length < records.length ? `; ${records.length - answered.length} failed` : ""));
  if (o.json) fs.writeFileSync(o.json, JSON.stringify({ summary, requests: records }, null, 1) + "\n");
  return answered.length === records.length ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (e) {
  console.error(`demo: ${e instanceof DemoError ? e.message : e.stack || e}`);
  process.exitCode = 1;
}
