// bench/scoring_load.mjs URL N [TASK] — lm-evaluation-harness's loglikelihood bodies
// (a one-prompt list, echo, logprobs 1, max_tokens 1) against the same prompts
// without echo and logprobs: N concurrent requests each way, the prompts being
// world/tasks/TASK's first N training examples with their answers (what a
// harness scores). Prints wall seconds and their ratio; plain runs before and
// after the scored one, and the ratio takes the faster.
import fs from "node:fs";
const [url, nStr, task = "define_noun"] = process.argv.slice(2);
const N = +nStr;
const root = new URL("..", import.meta.url).pathname;
const lines = fs.readFileSync(`${root}world/tasks/${task}/train.jsonl`, "utf8").trim().split("\n").slice(0, N).map(JSON.parse);
async function run(extra) {
  const t0 = performance.now();
  const rs = await Promise.all(lines.map((l) => fetch(url + "/v1/completions", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: [l.input + l.output], max_tokens: 1, temperature: 0, seed: 1234, ...extra }) }).then((r) => r.json())));
  const dt = (performance.now() - t0) / 1000;
  const toks = rs.reduce((a, r) => a + r.usage.prompt_tokens, 0);
  return { dt, toks, ok: rs.every((r) => r.choices) };
}
const plain = await run({});
const scored = await run({ echo: true, logprobs: 1 });
const plain2 = await run({});
console.log(JSON.stringify({ N, prompt_tokens: plain.toks, plain_s: +plain.dt.toFixed(2), plain2_s: +plain2.dt.toFixed(2), scored_s: +scored.dt.toFixed(2), ratio: +(scored.dt / Math.min(plain.dt, plain2.dt)).toFixed(2) }));
