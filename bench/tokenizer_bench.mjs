// tokenizer_bench.mjs — encode throughput of the reference tokenizers, on
// the same documents and in the same way as build/bench/tokenizer_bench: no
// special tokens, a warm-up pass, then passes until MIN_SECONDS.
//   --impl hf  Hugging Face's tokenizers (Rust core) through its node
//              binding's encodeBatch over all documents (run with
//              RAYON_NUM_THREADS=1 for one thread)
//   --impl js  the JS port @lenml/tokenizers, one document at a time
// Usage: node bench/tokenizer_bench.mjs [--impl hf|js] TOKENIZER_DIR_OR_JSON DOCS.jsonl [MIN_SECONDS]
import fs from "node:fs";
import path from "node:path";
import { loadReference, hfTokenizer, hfEncodeBatch } from "../scripts/tokenizer/common.mjs";

let args = process.argv.slice(2);
let impl = "js";
if (args[0] === "--impl") { impl = args[1]; args = args.slice(2); }
const [tpath, docsPath, minArg] = args;
const minS = Number(minArg ?? 2);
const dir = fs.statSync(tpath).isDirectory();
const json = dir ? path.join(tpath, "tokenizer.json") : tpath;
const cfg = path.join(dir ? tpath : path.dirname(tpath), "tokenizer_config.json");
const docs = fs.readFileSync(docsPath, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const bytes = docs.reduce((a, d) => a + Buffer.byteLength(d, "utf8"), 0);
let pass;
if (impl === "hf") {
  const tok = hfTokenizer(json);
  pass = async () => (await hfEncodeBatch(tok, docs, false)).reduce((a, x) => a + x.length, 0);
} else if (impl === "js") {
  const tok = loadReference(json, cfg);
  pass = async () => docs.reduce((a, d) => a + tok.encode(d, { add_special_tokens: false }).length, 0);
} else {
  throw new Error(`--impl must be hf or js, not ${impl}`);
}
await pass(); // warm-up
let tokens = 0, passes = 0, el = 0;
const t0 = process.hrtime.bigint();
do {
  tokens += await pass();
  passes++;
  el = Number(process.hrtime.bigint() - t0) / 1e9;
} while (el < minS);
console.log(JSON.stringify({ impl, docs: docs.length, bytes, tokens: tokens / passes, passes,
  seconds: +el.toFixed(3), mb_per_s: +(bytes * passes / el / 1e6).toFixed(3), tokens_per_s: Math.round(tokens / el) }));
