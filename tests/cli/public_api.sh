#!/usr/bin/env bash
# An outside program against include/ramole.h alone (no src/ header on its
# include path): its requests, run together through the public engine,
# give the tokens `ramole generate` gives for each alone.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash
LIB=$(dirname "$R")/libramole.a
# SAN: the sanitizer flags of `make asan`, whose library needs them to link
if ! cc -std=c11 -Wall -Wextra -Werror ${SAN:-} -Iinclude tests/public/api_client.c "$LIB" -lopenblas -ljansson -lpcre2-8 \
     -lutf8proc -lm -lpthread -o "$TMP/api_client" 2>"$TMP/err"; then
  fail public_api_builds_with_include_only "$(head -c 400 "$TMP/err")"
  exit 0
fi
pass public_api_builds_with_include_only
$R random-model --arch llama --preset tiny -o "$TMP/base" --seed 9 2>/dev/null
$R random-adapter -m "$TMP/base" --rank 8 --std 0.05 -o "$TMP/a" --seed 4 2>/dev/null
P=("1,7,30,99" "5,6,7,8,9,10,11,12,13,14,15" "42")
: >"$TMP/want"
for p in "${P[@]}"; do
  for lora in "" "--lora $TMP/a"; do
    echo "length $($R generate -m "$TMP/base" --tokens "$p" -n 6 --temp 0 --ignore-eos $lora 2>/dev/null)" >>"$TMP/want"
  done
done
echo "length $($R generate -m "$TMP/base" --tokens 1,7 -n 6 --temp 0 --ignore-eos --lora "$TMP/a" 2>/dev/null)" >>"$TMP/want"
if "$TMP/api_client" "$TMP/base" "$TMP/a" "${P[@]}" >"$TMP/got" 2>"$TMP/err"; then
  head -n 7 "$TMP/got" | cmp -s - "$TMP/want" && pass public_api_matches_generate \
    || fail public_api_matches_generate "$(diff <(head -n 7 "$TMP/got") "$TMP/want" | head -6)"
  last=$(tail -n 1 "$TMP/got")
  [[ "$last" == cancelled* ]] && pass public_api_cancel || fail public_api_cancel "$last"
  # "a" misses once (then 3 hits), "nope" misses and fails to load
  grep -q "adapter loads 2, hits 3" "$TMP/err" && pass public_api_adapter_loaded_once || fail public_api_adapter_loaded_once "$(cat "$TMP/err")"
else
  fail public_api_runs "$(head -c 400 "$TMP/err")"
fi

# Model files and adapters through the public calls alone.
if ! cc -std=c11 -Wall -Wextra -Werror ${SAN:-} -Iinclude tests/public/files_client.c "$LIB" -lopenblas -ljansson \
     -lpcre2-8 -lutf8proc -lsqlite3 -lpq -lcrypto -lmicrohttpd -lm -lpthread -o "$TMP/files_client" 2>"$TMP/err"; then
  fail public_files_builds_with_include_only "$(head -c 400 "$TMP/err")"
  exit 0
fi
pass public_files_builds_with_include_only
mkdir -p "$TMP/files"
if "$TMP/files_client" "$TMP/files" >"$TMP/got" 2>"$TMP/err"; then
  for c in shape adapter_sniffed adapter_info rows adapter_changes_logits merged_equals_runtime missing_adapter_named; do
    grep -qx "ok $c" "$TMP/got" && pass "public_files_$c" || fail "public_files_$c" "$(grep "$c" "$TMP/got")"
  done
else
  fail public_files_runs "$(cat "$TMP/got") $(head -c 400 "$TMP/err")"
fi
