#!/usr/bin/env bash
# generate --registry: the top-k adapters retrieved for the prompt, composed
# with the registry's router (or the mode asked for), give what generate
# gives with the same adapter files named by hand; stderr names them with
# their scores; clear errors for what cannot run.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

printf '%s\n' "reverse the word apple" "reverse the word stone" "add 3 and 4" "what is 12 plus 9" \
  "translate to german: the house" >"$TMP/corpus.txt"
for i in 1 2 3 4 5 6; do cat "$TMP/corpus.txt"; done >"$TMP/corpus6.txt"
mkdir -p "$TMP/tk"
$R tokenizer train --vocab-size 300 -o "$TMP/tk/tokenizer.json" "$TMP/corpus6.txt" >/dev/null 2>&1
$R random-model --arch llama --preset tiny --tokenizer "$TMP/tk" -o "$TMP/m" --seed 3 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 4 --std 0.05 -o "$TMP/a1" --seed 1 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 8 --std 0.05 -o "$TMP/a2.gguf" --format gguf --seed 2 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 4 --std 0.05 -o "$TMP/router" --seed 9 >/dev/null 2>&1
printf '{"input": "reverse the word apple"}\n{"input": "reverse the word stone"}\n' >"$TMP/rev.jsonl"
printf '{"input": "add 3 and 4"}\n{"input": "what is 12 plus 9"}\n' >"$TMP/add.jsonl"
export RAMOLE_REGISTRY="sqlite:$TMP/reg.db"
$R registry init -m "$TMP/m" >/dev/null 2>&1
$R adapter add "$TMP/a1" --name rev --samples "$TMP/rev.jsonl" >/dev/null 2>&1
$R adapter add "$TMP/a2.gguf" --name add --samples "$TMP/add.jsonl" >/dev/null 2>&1
P="reverse the word cloud"
file_of() { [ "$1" = rev ] && echo "$TMP/a1" || echo "$TMP/a2.gguf"; }

expect_error registry_generate_needs_router "has no router" $R generate --registry "$RAMOLE_REGISTRY" -p "$P" -n 6 --mode router
if $R generate --registry "$RAMOLE_REGISTRY" -p "$P" -n 6 --temp 0 --ignore-eos -k 2 --mode mixture >"$TMP/mix" 2>"$TMP/err"; then
  read -r _ mode n1 s1 n2 s2 < <(grep '^retrieved' "$TMP/err")
  want=$($R generate -m "$TMP/m" -p "$P" -n 6 --temp 0 --ignore-eos --mode mixture --lora "$(file_of "$n1")" --lora "$(file_of "$n2")" 2>/dev/null)
  [ "$mode" = "(mixture):" ] && [ "$(printf "%s\n" "$n1" "$n2" | sort | paste -sd,)" = add,rev ] && [[ "$s1" =~ ^0\.[0-9]{4}$ ]] \
    && pass registry_generate_names_retrieved || fail registry_generate_names_retrieved "$(cat "$TMP/err")"
  [ "$(cat "$TMP/mix")" = "$want" ] && [ -n "$want" ] && pass registry_generate_mixture_equals_named \
    || fail registry_generate_mixture_equals_named "[$(cat "$TMP/mix")] vs [$want]"
else
  fail registry_generate_mixture "$(cat "$TMP/err")"
fi
$R registry set --router "$TMP/router" >/dev/null 2>&1
if $R generate --registry "$RAMOLE_REGISTRY" -p "$P" -n 6 --temp 0 --ignore-eos -k 2 >"$TMP/rt" 2>"$TMP/err"; then
  read -r _ mode n1 s1 n2 s2 < <(grep '^retrieved' "$TMP/err")
  want=$($R generate -m "$TMP/m" -p "$P" -n 6 --temp 0 --ignore-eos --mode router --router "$TMP/router" \
         --lora "$(file_of "$n1")" --lora "$(file_of "$n2")" 2>/dev/null)
  [ "$mode" = "(router):" ] && [ "$(cat "$TMP/rt")" = "$want" ] && pass registry_generate_router_by_default \
    || fail registry_generate_router_by_default "$mode [$(cat "$TMP/rt")] vs [$want]"
else
  fail registry_generate_router "$(cat "$TMP/err")"
fi
expect_error registry_generate_no_lora_flags "leave out --lora" $R generate --registry "$RAMOLE_REGISTRY" -p "$P" --lora "$TMP/a1"
expect_error registry_generate_needs_text "give -p TEXT" $R generate --registry "$RAMOLE_REGISTRY" --tokens 1,2
expect_error registry_generate_bad_mode "must be router, mixture" $R generate --registry "$RAMOLE_REGISTRY" -p "$P" --mode explicit

# a router with a retrieval prior gets each hit's cosine from generate --registry: with a prior of 1000
# (its own scores are small beside it) it answers as its top hit alone (weight 1), where the same
# router without the prior does not
python3 - "$TMP/router" "$TMP/prouter" <<'PY'
import json, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst)
p = dst + "/adapter_model.safetensors"
b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.setdefault("__metadata__", {})["ramole.retrieval_prior"] = "1000"
hj = json.dumps(h, separators=(",", ":")).encode(); hj += b" " * (-len(hj) % 8)
open(p, "wb").write(struct.pack("<Q", len(hj)) + hj + b[8 + n:])
PY
$R registry set --router "$TMP/prouter" >/dev/null 2>&1
if $R generate --registry "$RAMOLE_REGISTRY" -p "$P" -n 6 --temp 0 --ignore-eos -k 2 >"$TMP/pr" 2>"$TMP/err"; then
  read -r _ mode n1 s1 n2 s2 < <(grep '^retrieved' "$TMP/err")
  want=$($R generate -m "$TMP/m" -p "$P" -n 6 --temp 0 --ignore-eos --lora "$(file_of "$n1")" 2>/dev/null)
  [ "$mode" = "(router):" ] && [ "$(cat "$TMP/pr")" = "$want" ] && [ "$want" != "$(cat "$TMP/rt")" ] \
    && pass registry_generate_router_weighs_scores \
    || fail registry_generate_router_weighs_scores "$mode $n1 $s1 $n2 $s2: [$(cat "$TMP/pr")] vs top hit [$want], no prior [$(cat "$TMP/rt")]"
else
  fail registry_generate_router_weighs_scores "$(cat "$TMP/err")"
fi
