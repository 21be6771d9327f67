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

# 4-6 bit files that ramole writes (convert --type), llama.cpp on the same
# file: the same top token and top-token probability within 5e-2 relative.
# Both quantise activations to 8 bits; rounding ties fall differently, so a
# top token may differ only where llama.cpp's own two best logits are closer
# than 1% of the largest logit. Logits: normalised difference below 4e-2,
# as for q8_0.
# top_check RAMOLE LLAMA -> "ok" or what differs
top_check() { paste "$1" "$2" | awk '{r[NR]=$1; l[NR]=$2}
  END {mr=-1e30; ml=-1e30; for (i=1;i<=NR;i++) {if (r[i]>mr) {mr=r[i]; ir=i} if (l[i]>ml) {ml=l[i]; il=i}}
       sr=0; sl=0; md=0; mx=0
       for (i=1;i<=NR;i++) {sr+=exp(r[i]-mr); sl+=exp(l[i]-ml); d=r[i]-l[i]; if (d<0) d=-d; if (d>md) md=d
                           a=l[i]<0?-l[i]:l[i]; if (a>mx) mx=a}
       pr=1/sr; pl=1/sl; rel=(pr-pl)/pl; if (rel<0) rel=-rel
       same = ir==il || l[il]-l[ir] < 0.01*mx
       if (NR>0 && same && rel<5e-2 && md/mx<4e-2) print "ok"
       else printf "top %d vs %d, p %.5g vs %.5g (rel %.3g), normalised difference %.3g\n", ir-1, il-1, pr, pl, rel, md/mx}'; }
$R random-model --arch llama --preset small --std 0.05 -o "$TMP/q-src.gguf" 2>/dev/null
for type in q4_0 q4_1 q4_k q5_k q6_k q4_k_m; do
  m="$TMP/q-$type.gguf"
  $R convert "$TMP/q-src.gguf" "$m" --type $type 2>/dev/null
  $R logits -m "$m" --tokens $TOK >"$TMP/r" 2>/dev/null
  peer -m "$m" --tokens $TOK >"$TMP/l"
  r=$(top_check "$TMP/r" "$TMP/l")
  [ "$r" = ok ] && pass "llamacpp_top_token_$type" || fail "llamacpp_top_token_$type" "$r $(head -c 200 "$TMP/peer.err")"
done
# a qwen2 q4_k_m (tied embeddings: token_embd takes q6_k) and a LoRA adapter
# over a q4_k_m base: the composition is unchanged, llama.cpp applies the
# same f32 adapter over its quantised weights
$R random-model --arch qwen2 --preset small --std 0.05 -o "$TMP/qq-src.gguf" 2>/dev/null
$R convert "$TMP/qq-src.gguf" "$TMP/qq.gguf" --type q4_k_m 2>/dev/null
$R logits -m "$TMP/qq.gguf" --tokens $TOK >"$TMP/r" 2>/dev/null
peer -m "$TMP/qq.gguf" --tokens $TOK >"$TMP/l"
r=$(top_check "$TMP/r" "$TMP/l")
[ "$r" = ok ] && pass llamacpp_top_token_qwen2_q4_k_m || fail llamacpp_top_token_qwen2_q4_k_m "$r"
m="$TMP/q-q4_k_m.gguf"
$R random-adapter -m "$m" --rank 8 --std 0.05 -o "$TMP/qa.gguf" --seed 3 2>/dev/null
$R logits -m "$m" --tokens $TOK --lora "$TMP/qa.gguf:0.8" >"$TMP/r" 2>/dev/null
peer -m "$m" --tokens $TOK --lora "$TMP/qa.gguf:0.8" >"$TMP/l"
r=$(top_check "$TMP/r" "$TMP/l")
[ "$r" = ok ] && pass llamacpp_top_token_lora_over_q4_k_m || fail llamacpp_top_token_lora_over_q4_k_m "$r"
$R logits -m "$m" --tokens $TOK >"$TMP/base" 2>/dev/null
r=$(close "$TMP/r" "$TMP/base" 2e-3)
[ "$r" != ok ] && pass llamacpp_lora_over_q4_k_m_changes_the_logits || fail llamacpp_lora_over_q4_k_m_changes_the_logits "no effect"
