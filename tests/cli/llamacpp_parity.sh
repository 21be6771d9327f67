#!/usr/bin/env bash
# Parity with llama.cpp (the prebuilt node-llama-cpp that scripts/peers.sh
# installs): the same GGUF files, base and LoRA, give the same last-position
# logits. llama.cpp keeps its KV cache in f16, hence the f32 tolerance.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash
if ! bash scripts/peers.sh --check >/dev/null 2>&1; then
  echo "SKIP llama.cpp parity: node-llama-cpp not installed (bash scripts/peers.sh)"
  exit 0
fi
TOK=1,300,500,77,900,12,1000,4
# normalised max difference of two logit files, "ok" when below tol
close() { paste "$1" "$2" | awk -v tol="$3" '{d=$1-$2; if (d<0) d=-d; if (d>m) m=d; a=$2<0?-$2:$2; if (a>mx) mx=a}
  END {r = mx > 0 ? m/mx : 1; print (NR > 0 && r < tol) ? "ok" : "normalised difference " r " over " NR " logits"}'; }
peer() { node tests/peer/llamacpp_logits.mjs "$@" 2>"$TMP/peer.err"; }

for case in "llama f32 2e-3" "llama f16 2e-3" "llama q8_0 4e-2" "qwen2 f32 2e-3" "mistral q8_0 4e-2"; do
  set -- $case
  arch=$1 type=$2 tol=$3
  m="$TMP/$arch-$type.gguf"
  $R random-model --arch $arch --preset small --type $type --std 0.05 -o "$m" 2>/dev/null
  $R logits -m "$m" --tokens $TOK >"$TMP/r" 2>/dev/null
  peer -m "$m" --tokens $TOK >"$TMP/l"
  r=$(close "$TMP/r" "$TMP/l" $tol)
  [ "$r" = ok ] && pass "llamacpp_logits_${arch}_$type" || fail "llamacpp_logits_${arch}_$type" "$r $(head -c 200 "$TMP/peer.err")"
done

# explicit weighted GGUF LoRA adapters (llama.cpp's own composition)
m="$TMP/llama-f32.gguf"
$R random-adapter -m "$m" --rank 8 --std 0.05 -o "$TMP/la.gguf" --seed 1 2>/dev/null
$R random-adapter -m "$m" --rank 4 --targets q,k,v,down --std 0.05 -o "$TMP/lb.gguf" --seed 2 2>/dev/null
$R logits -m "$m" --tokens $TOK --lora "$TMP/la.gguf:0.7" --lora "$TMP/lb.gguf:-0.5" >"$TMP/r" 2>/dev/null
peer -m "$m" --tokens $TOK --lora "$TMP/la.gguf:0.7" --lora "$TMP/lb.gguf:-0.5" >"$TMP/l"
r=$(close "$TMP/r" "$TMP/l" 2e-3)
[ "$r" = ok ] && pass llamacpp_logits_two_weighted_loras || fail llamacpp_logits_two_weighted_loras "$r"
$R logits -m "$m" --tokens $TOK >"$TMP/base" 2>/dev/null
r=$(close "$TMP/r" "$TMP/base" 2e-3)
[ "$r" != ok ] && pass llamacpp_loras_change_the_logits || fail llamacpp_loras_change_the_logits "no effect"
