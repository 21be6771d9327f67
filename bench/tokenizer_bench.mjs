// tokenizer_bench.mjs — encode throughput of the reference JS tokenizer
// (@lenml/tokenizers), on the same documents and in the same way as
// build/bench/tokenizer_bench: one document at a time, no special tokens,
// a warm-up pass, then passes until MIN_SECONDS.
// Usage: node bench/tokenizer_bench.mjs TOKENIZER_DIR_OR_JSON DOCS.jsonl [MIN_SECONDS]
import fs from "node:fs";
import path from "node:path";
import { loadReference } from "../scripts/tokenizer/common.mjs";

const [tpath, docsPath, minArg] = process.argv.slice(2);
const minS = Number(minArg ?? 2);
const dir = fs.statSync(tpath).isDirectory();
const json = dir ? path.join(tpath, "tokenizer.json") : tpath;
const cfg = path.join(dir ? tpath : path.dirname(tpath), "tokenizer_config.json");
const tok = loadReference(json, cfg);
const docs = fs.readFileSync(docsPath, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const bytes = docs.reduce((a, d) => a + Buffer.byteLength(d, "utf8"), 0);
for (const d of docs) tok.encode(d, { add_special_tokens: false }); // warm-up
let tokens = 0, passes = 0, el = 0;
const t0 = process.hrtime.bigint();
do {
  for (const d of docs) tokens += tok.encode(d, { add_special_tokens: false }).length;
  passes++;
  el = Number(process.hrtime.bigint() - t0) / 1e9;
} while (el < minS);
console.log(JSON.stringify({ impl: "js", docs: docs.length, bytes, tokens: tokens / passes, passes,
  seconds: +el.toFixed(3), mb_per_s: +(bytes * passes / el / 1e6).toFixed(3), tokens_per_s: Math.round(tokens / el) }));
