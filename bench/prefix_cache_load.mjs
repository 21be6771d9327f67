// bench/prefix_cache_load.mjs URL — two workloads whose prompts begin as
// earlier ones did, against one `ramole serve`; prints one JSON line each.
//   fewshot: 4 clients, 12 requests each in turn: the same 8 solved
//     examples of a world task (noun_plural), then a question of its own;
//   chat: 4 conversations of 6 turns at once, each turn the whole history
//     (earlier questions and the server's answers) and a new question;
//   choices: scoring as lm-evaluation-harness does a multiple-choice task:
//     4 clients, 8 requests each in turn, each a list of 4 prompts (the
//     same 4 solved examples of noun_plural, a question, one candidate
//     answer each) with echo, logprobs 1 and max_tokens 0.
// 8 and 24 tokens per answer, greedy. The figures: seconds, and the share
// of prompt tokens the server reported as cached (OpenAI's
// usage.prompt_tokens_details.cached_tokens).
import fs from "node:fs";
const [url] = process.argv.slice(2);
const rows = (task) => fs.readFileSync(new URL(`../world/tasks/${task}/train.jsonl`, import.meta.url).pathname, "utf8")
  .trim().split("\n").map((l) => JSON.parse(l));
const post = (b) => fetch(url + "/v1/completions", { method: "POST", headers: { "Content-Type": "application/json" },
  body: JSON.stringify(b) }).then((r) => r.json());
const tally = { prompt: 0, cached: 0 };
async function ask(prompt, max_tokens, extra) {
  const r = await post({ prompt, max_tokens, temperature: 0, ignore_eos: true, ...extra });
  if (!r.usage) throw new Error(JSON.stringify(r));
  tally.prompt += r.usage.prompt_tokens;
  tally.cached += (r.usage.prompt_tokens_details || {}).cached_tokens || 0;
  if (extra && r.choices.some((c) => !c.logprobs || c.logprobs.token_logprobs.length < 2)) throw new Error("no scores");
  return r.choices[0].text;
}
async function timed(name, f) {
  tally.prompt = tally.cached = 0;
  const t0 = performance.now();
  await f();
  const s = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ workload: name, seconds: +s.toFixed(3), prompt_tokens: tally.prompt,
    cached_share: +(tally.cached / tally.prompt).toFixed(3) }));
}

const plural = rows("noun_plural");
const shots = plural.slice(0, 8).map((r) => r.input + r.output + "\n\n").join("");
await timed("fewshot", () => Promise.all([0, 1, 2, 3].map(async (c) => {
  for (let i = 0; i < 12; i++) await ask(shots + plural[100 + c * 12 + i].input, 8);
})));

const qs = rows("define_noun");
await timed("chat", () => Promise.all([0, 1, 2, 3].map(async (c) => {
  let history = "";
  for (let t = 0; t < 6; t++) {
    history += qs[200 + c * 6 + t].input;
    history += (await ask(history, 24)) + "\n\n";
  }
})));

const shots4 = plural.slice(0, 4).map((r) => r.input + r.output + "\n\n").join("");
await timed("choices", () => Promise.all([0, 1, 2, 3].map(async (c) => {
  for (let i = 0; i < 8; i++) {
    const q = plural[200 + c * 8 + i];
    const cands = [q.output, q.output + "s", q.output.slice(0, -1), q.output + "es"];
    await ask(cands.map((a) => shots4 + q.input + a), 0, { echo: true, logprobs: 1 });
  }
})));
