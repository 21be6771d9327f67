// class_tokenizers.mjs — write, into the directory given as argument, one
// tokenizer.json per regex class (\s \S \p{L} \P{L} \p{N} \d \w and the
// Digits and WhitespaceSplit pre-tokenizers, Lowercase, NFKC, Strip): a
// GPT-2 byte vocabulary without merges, the class's Split with behaviour
// Removed, then ByteLevel without its regex. A code point the class matches
// vanishes from the ids and the others come out as their bytes, so
// comparing two tokenizers' ids on every code point compares the class
// itself (tests/cli/tokenizer_hf.sh).
import fs from "node:fs";
import path from "node:path";

const out = process.argv[2];
const vocab = {};
const printable = (b) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
let k = 0;
for (let b = 0; b < 256; b++) vocab[String.fromCodePoint(printable(b) ? b : 256 + k++)] = b;
const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false };
const split = (re) => ({ type: "Split", pattern: { Regex: re }, behavior: "Removed", invert: false });
const classes = {
  s: [null, split("\\s")], S: [null, split("\\S")], L: [null, split("\\p{L}")], notL: [null, split("\\P{L}")],
  N: [null, split("\\p{N}")], d: [null, split("\\d")], w: [null, split("\\w")],
  digits: [null, { type: "Digits", individual_digits: false }], wssplit: [null, { type: "WhitespaceSplit" }],
  lower: [{ type: "Lowercase" }, null], nfkc: [{ type: "NFKC" }, null], nfd: [{ type: "NFD" }, null],
  strip: [{ type: "Strip", strip_left: true, strip_right: true }, null],
};
for (const [name, [normalizer, pre]] of Object.entries(classes)) {
  const tok = { version: "1.0", truncation: null, padding: null, added_tokens: [], normalizer,
    pre_tokenizer: { type: "Sequence", pretokenizers: pre ? [pre, byteLevel] : [byteLevel] },
    post_processor: null, decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: false, byte_fallback: false, vocab, merges: [] } };
  fs.mkdirSync(path.join(out, name), { recursive: true });
  fs.writeFileSync(path.join(out, name, "tokenizer.json"), JSON.stringify(tok));
}
