// llamacpp_tokenize.mjs — llama.cpp's own tokenizer (node-llama-cpp's prebuilt
// binaries, vocabulary-only load) on a GGUF written by ramole: reads one JSON
// string per line on standard input, prints the ids as a JSON array per line
// (special tokens parsed, no BOS), like `ramole tokenize --jsonl`.
// Usage: node scripts/tokenizer/llamacpp_tokenize.mjs VOCAB.gguf
// node-llama-cpp is looked for in $RAMOLE_PEER_NPM_DIR or .cache/npm-llamacpp
// (scripts/peers.sh installs it).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "./common.mjs";

const dir = process.env.RAMOLE_PEER_NPM_DIR || path.join(ROOT, ".cache/npm-llamacpp");
const entry = path.join(dir, "node_modules/node-llama-cpp/dist/index.js");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
  progressLogs: false, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: process.argv[2], vocabOnly: true });
const lines = fs.readFileSync(0, "utf8").split("\n").filter((l) => l.length);
const out = lines.map((l) => JSON.stringify(Array.from(model.tokenize(JSON.parse(l), true))));
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
await model.dispose();
await llama.dispose();
