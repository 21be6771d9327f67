// encode_jsonl.mjs — the reference side of ramole's command-line checks:
// reads one JSON string per line on standard input and prints the ids that
// @lenml/tokenizers gives for it (no special tokens), one JSON array a line,
// exactly as `ramole tokenize --jsonl` does.
// Usage: node scripts/tokenizer/encode_jsonl.mjs tokenizer.json [tokenizer_config.json]
import fs from "node:fs";
import { loadReference } from "./common.mjs";

const [jsonPath, configPath] = process.argv.slice(2);
const tok = loadReference(jsonPath, configPath);
const lines = fs.readFileSync(0, "utf8").split("\n").filter((l) => l.length);
const out = lines.map((l) => JSON.stringify(tok.encode(JSON.parse(l), { add_special_tokens: false })));
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
