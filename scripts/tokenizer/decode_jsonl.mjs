// decode_jsonl.mjs — the reference side of ramole's decoding checks: reads
// one JSON array of ids per line on standard input and prints, one JSON
// string a line, the text Hugging Face's `tokenizers` (Rust core) decodes
// them to, with transformers' clean_up_tokenization_spaces when the config
// asks for it — what `ramole detokenize --jsonl` prints.
// Usage: node scripts/tokenizer/decode_jsonl.mjs tokenizer.json [tokenizer_config.json]
import fs from "node:fs";
import { hfTokenizer, hfDecode, readConfig } from "./common.mjs";

const [jsonPath, configPath] = process.argv.slice(2);
const tok = hfTokenizer(jsonPath);
const config = readConfig(configPath);
const lines = fs.readFileSync(0, "utf8").split("\n").filter((l) => l.length);
const out = [];
for (const l of lines) out.push(JSON.stringify(await hfDecode(tok, JSON.parse(l), config)));
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
