// encode_jsonl.mjs — the reference side of ramole's command-line checks:
// reads one JSON string per line on standard input and prints the ids that
// Hugging Face's `tokenizers` (its Rust core) gives for it (no special
// tokens), one JSON array a line, exactly as `ramole tokenize --jsonl` does.
// --js uses the JS port @lenml/tokenizers instead (for comparisons).
// Usage: node scripts/tokenizer/encode_jsonl.mjs [--js] tokenizer.json [tokenizer_config.json]
import fs from "node:fs";
import { loadReference, hfTokenizer, hfEncodeBatch } from "./common.mjs";

const args = process.argv.slice(2);
const js = args[0] === "--js";
const [jsonPath, configPath] = js ? args.slice(1) : args;
const texts = fs.readFileSync(0, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
let ids;
if (js) {
  const tok = loadReference(jsonPath, configPath);
  ids = texts.map((t) => tok.encode(t, { add_special_tokens: false }));
} else {
  ids = await hfEncodeBatch(hfTokenizer(jsonPath), texts, false);
}
const out = ids.map((x) => JSON.stringify(x));
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
