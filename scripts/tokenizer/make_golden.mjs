// make_golden.mjs — encode tests/golden/tokenizer/corpus.jsonl with the
// reference tokenizer (@lenml/tokenizers, a port of Hugging Face tokenizers)
// for each family and write tests/golden/tokenizer/<family>.jsonl:
//   {"ids": [...], "ids_special": [...], "decoded": "..."}   one line per corpus entry
// ids: encode(text, {add_special_tokens: false}); ids_special: with
// add_special_tokens: true; decoded: decode(ids) with the family's defaults.
// Usage: node scripts/tokenizer/make_golden.mjs [family...]
// (run scripts/tokenizer/export_tokenizers.mjs first for gpt2 and llama2).
import fs from "node:fs";
import path from "node:path";
import { ROOT, familyFiles, loadReference, readJsonl, entryText } from "./common.mjs";

const families = process.argv.length > 2 ? process.argv.slice(2) : ["qwen3", "llama3", "mistral", "gpt2", "llama2"];
const dir = path.join(ROOT, "tests/golden/tokenizer");
const corpus = readJsonl(path.join(dir, "corpus.jsonl"));

for (const fam of families) {
  const f = familyFiles(fam);
  const tok = loadReference(f.json, f.config);
  const lines = corpus.map((e) => {
    const text = entryText(e);
    const ids = tok.encode(text, { add_special_tokens: false });
    const ids_special = tok.encode(text, { add_special_tokens: true });
    const decoded = ids.length ? tok.decode(ids) : "";
    return JSON.stringify({ ids, ids_special, decoded });
  });
  fs.writeFileSync(path.join(dir, `${fam}.jsonl`), lines.join("\n") + "\n");
  const n = lines.reduce((a, l) => a + JSON.parse(l).ids.length, 0);
  console.log(`${fam}: ${lines.length} lines, ${n} tokens`);
}
