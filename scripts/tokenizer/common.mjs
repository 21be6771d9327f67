// common.mjs — shared helpers of the tokenizer scripts: where the npm cache
// lives, how each family's tokenizer files are found, and how the reference
// tokenizers are built: Hugging Face's own `tokenizers` (its Rust core
// through the node binding, the golden reference of ids and decoding) and
// the JS port @lenml/tokenizers (kept for chat templates, which the Rust
// library does not render).
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

/* Hugging Face `tokenizers` (Rust core): a Tokenizer read from tokenizer.json. */
export function hfTokenizer(jsonPath) {
  return require("tokenizers").Tokenizer.fromFile(jsonPath);
}

/* Ids as Hugging Face gives them for text (a JS string), with or without the
 * post-processor's special tokens. */
export async function hfEncode(tok, text, addSpecial) {
  return (await tok.encode(text, null, { addSpecialTokens: addSpecial })).getIds();
}

/* Ids of many texts at once (the binding's encodeBatch, run on its own
 * thread pool; RAYON_NUM_THREADS caps it). */
export async function hfEncodeBatch(tok, texts, addSpecial) {
  return (await tok.encodeBatch(texts, { addSpecialTokens: addSpecial })).map((e) => e.getIds());
}

/* transformers' decode: the Rust decoder's text, then, when the config's
 * clean_up_tokenization_spaces is true, transformers' clean-up of spaces
 * before punctuation and contractions (done in Python, not in the Rust core). */
export async function hfDecode(tok, ids, config) {
  const text = await tok.decode(ids, false);
  if (!config || !config.clean_up_tokenization_spaces) return text;
  return text.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",")
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

export function readConfig(configPath) {
  return configPath && fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {};
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
    case "synth-bl":
    case "synth-split": {
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
