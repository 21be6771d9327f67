// bench/embeddings_load.mjs URL — one /v1/embeddings request of 64 inputs (define_noun's
// first training prompts), three runs after a warm-up: wall seconds.
import fs from "node:fs";
const [url] = process.argv.slice(2);
const texts = fs.readFileSync(new URL("../world/tasks/define_noun/train.jsonl", import.meta.url).pathname, "utf8").trim().split("\n").slice(0, 64).map((l) => JSON.parse(l).input);
const post = (b) => fetch(url + "/v1/embeddings", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(b) }).then((r) => r.json());
await post({ input: texts.slice(0, 2) });
const out = [];
for (let run = 0; run < 3; run++) {
  const t0 = performance.now();
  const r = await post({ input: texts, encoding_format: "float" });
  out.push(+((performance.now() - t0) / 1000).toFixed(3));
  if (r.data.length !== 64) throw new Error(JSON.stringify(r).slice(0, 200));
}
console.log(JSON.stringify({ inputs: 64, seconds: out }));
