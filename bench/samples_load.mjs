// bench/samples_load.mjs URL — one request for 8 samples of a prompt (n: 8; the
// engine's twins share its prefill) against 8 concurrent requests of prompts of
// the same length that differ in their first word (each computes its own),
// 16 tokens each, three runs; the first run warms the server up.
import fs from "node:fs";
const [url] = process.argv.slice(2);
const text = fs.readFileSync(new URL("../world/tasks/define_noun/train.jsonl", import.meta.url).pathname, "utf8").trim().split("\n").slice(0, 12).map((l) => JSON.parse(l).output).join(" ");
const post = (b) => fetch(url + "/v1/completions", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(b) }).then((r) => r.json());
const base = { max_tokens: 16, temperature: 1, ignore_eos: true };
async function timeit(f) { const t0 = performance.now(); const r = await f(); return [(performance.now() - t0) / 1000, r]; }
for (let run = 0; run < 3; run++) {
  const [tn, rn] = await timeit(() => post({ ...base, prompt: text, n: 8 }));
  const [ts] = await timeit(() => Promise.all([...Array(8).keys()].map((i) => post({ ...base, prompt: `${i} ${text}` }))));
  console.log(JSON.stringify({ prompt_tokens: rn.usage.prompt_tokens, n8_s: +tn.toFixed(3), eight_distinct_s: +ts.toFixed(3), ratio: +(ts / tn).toFixed(2) }));
}
