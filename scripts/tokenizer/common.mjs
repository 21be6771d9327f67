// common.mjs — shared helpers of the tokenizer scripts: where the npm cache
// lives, how each family's tokenizer files are found, and how a
// @lenml/tokenizers reference tokenizer is built for a family.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const NPM = process.env.RAMOLE_NPM_CACHE || path.join(ROOT, ".cache/npm");
export const NM = path.join(NPM, "node_modules");
export const EXPORT_DIR = path.join(NPM, "ramole-tokenizers"); // exported files
const require = createRequire(path.join(NM, "x.js"));

export function lenml() {
  return require("@lenml/tokenizers");
}

/* family -> { json, config } paths (tokenizer.json, tokenizer_config.json) */
export function familyFiles(family) {
  switch (family) {
    case "qwen3":
    case "llama3":
    case "mistral": {
      const pkg = { qwen3: "tokenizer-qwen3", llama3: "tokenizer-llama3", mistral: "tokenizer-llama2" }[family];
      const dir = path.join(NM, "@lenml", pkg, "models");
      return { json: path.join(dir, "tokenizer.json"), config: path.join(dir, "tokenizer_config.json") };
    }
    case "gpt2":
    case "llama2":
    case "synth-sp":
    case "synth-bl": {
      const dir = path.join(EXPORT_DIR, family);
      return { json: path.join(dir, "tokenizer.json"), config: path.join(dir, "tokenizer_config.json") };
    }
  }
  throw new Error(`unknown family ${family}`);
}

export function loadReference(jsonPath, configPath) {
  const { TokenizerLoader } = lenml();
  const tokenizerJSON = JSON.parse(fs.readFileSync(jsonPath, "utf8"));
  const tokenizerConfig = configPath && fs.existsSync(configPath)
    ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {};
  return TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
}

export function readJsonl(file) {
  return fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
}

/* A corpus entry is {"text": s} or {"hex": bytes}; the reference sees the
 * bytes decoded with U+FFFD replacement (WHATWG), as ramole does. */
export function entryText(e) {
  if (e.text !== undefined) return e.text;
  return new TextDecoder("utf-8").decode(Buffer.from(e.hex, "hex"));
}
