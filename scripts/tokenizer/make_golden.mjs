// make_golden.mjs — encode tests/golden/tokenizer/corpus.jsonl with Hugging
// Face's own `tokenizers` (its Rust core, the npm package's node binding)
// for each family and write tests/golden/tokenizer/<family>.jsonl:
//   {"ids": [...], "ids_special": [...], "decoded": "..."}   one line per corpus entry
// ids: encode(text) without special tokens; ids_special: with the
// post-processor's; decoded: decode(ids) as transformers does it (the Rust
// decoder, then clean_up_tokenization_spaces when the config asks for it).
// Usage: node scripts/tokenizer/make_golden.mjs [family...]
// (run scripts/tokenizer/export_tokenizers.mjs first for gpt2, llama2 and the synth-* files).
import fs from "node:fs";
import path from "node:path";
import { ROOT, familyFiles, readConfig, readJsonl, entryText, hfTokenizer, hfEncodeBatch, hfDecode } from "./common.mjs";

const families = process.argv.length > 2 ? process.argv.slice(2)
  : ["qwen3", "llama3", "mistral", "gpt2", "llama2", "synth-sp", "synth-bl", "synth-split"];
const dir = path.join(ROOT, "tests/golden/tokenizer");
const corpus = readJsonl(path.join(dir, "corpus.jsonl"));
const texts = corpus.map(entryText);

for (const fam of families) {
  const f = familyFiles(fam);
  const tok = hfTokenizer(f.json);
  const config = readConfig(f.config);
  const ids = await hfEncodeBatch(tok, texts, false);
  const special = await hfEncodeBatch(tok, texts, true);
  const lines = [];
  for (let i = 0; i < texts.length; i++) {
    const decoded = ids[i].length ? await hfDecode(tok, ids[i], config) : "";
    lines.push(JSON.stringify({ ids: ids[i], ids_special: special[i], decoded }));
  }
  fs.writeFileSync(path.join(dir, `${fam}.jsonl`), lines.join("\n") + "\n");
  console.log(`${fam}: ${lines.length} lines, ${ids.reduce((a, x) => a + x.length, 0)} tokens`);
}
