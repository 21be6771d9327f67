#!/usr/bin/env bash
# Command-line tests of the adapter registry: init over a tiny model with a
# trained tokenizer; adapter add (PEFT and GGUF) prints ids and is
# retrievable at once (`retrieve -p` prints NAME<TAB>SCORE, best first);
# list / list --json / show; disable, enable, rm leave and rejoin retrieval;
# tenants, private adapters and keys (shown once, last line); approval;
# the KL probe's hold and recheck; audit --since; registry check finds a
# damaged blob; the URL rules (RAMOLE_REGISTRY, XDG_DATA_HOME, an unreachable postgresql://);
# every bad input of the issue gives a clear error and changes nothing; the
# task-file form of `retrieve --pool` still works.
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

printf '%s\n' "reverse the word apple" "reverse the word stone" "write river backwards" "add 3 and 4" \
  "what is 12 plus 9" "translate to german: the house" "in german, say cloud" >"$TMP/corpus.txt"
for i in 1 2 3 4 5 6; do cat "$TMP/corpus.txt"; done >"$TMP/corpus6.txt"
mkdir -p "$TMP/tk"
$R tokenizer train --vocab-size 300 -o "$TMP/tk/tokenizer.json" "$TMP/corpus6.txt" >/dev/null 2>&1
$R random-model --arch llama --preset tiny --tokenizer "$TMP/tk" -o "$TMP/m" --seed 3 >/dev/null 2>&1
$R random-model --arch llama --preset tiny -o "$TMP/m_no_tok" --seed 3 >/dev/null 2>&1
$R random-model --arch qwen2 --preset tiny --tokenizer "$TMP/tk" -o "$TMP/other" --seed 3 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 4 -o "$TMP/a1" --seed 1 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 8 -o "$TMP/a2.gguf" --format gguf --seed 2 >/dev/null 2>&1
$R random-adapter -m "$TMP/other" --rank 4 -o "$TMP/foreign" --seed 1 >/dev/null 2>&1
printf '{"input": "reverse the word apple", "output": "elppa"}\n{"input": "reverse the word stone"}\n' >"$TMP/rev.jsonl"
printf '{"input": "add 3 and 4"}\n{"input": "what is 12 plus 9"}\n' >"$TMP/add.jsonl"
printf '{"input": "translate to german: the house"}\n' >"$TMP/de.jsonl"
export RAMOLE_REGISTRY="sqlite:$TMP/reg.db"

expect_ok registry_init $R registry init -m "$TMP/m"
grep -q "^initialised sqlite:$TMP/reg.db" "$TMP/out" && pass registry_init_says_where || fail registry_init_says_where "$(cat "$TMP/out")"
expect_error registry_init_twice_refused "already holds a registry" $R registry init -m "$TMP/m"

# adds print the new id alone; the very next retrieve finds them
$R adapter add "$TMP/a1" --name rev --samples "$TMP/rev.jsonl" --description "reverses words" >"$TMP/id1" 2>"$TMP/err" \
  && $R adapter add "$TMP/a2.gguf" --name add --samples "$TMP/add.jsonl" >"$TMP/id2" 2>>"$TMP/err" \
  && [ "$(cat "$TMP/id1")" = 1 ] && [ "$(cat "$TMP/id2")" = 2 ] \
  && pass registry_add_prints_ids || fail registry_add_prints_ids "$(cat "$TMP/id1" "$TMP/id2" "$TMP/err")"
$R retrieve -p "reverse the word cloud" -k 2 >"$TMP/ret" 2>"$TMP/err"
[ "$(wc -l <"$TMP/ret")" = 2 ] && head -1 "$TMP/ret" | grep -qP '^rev\t0\.[0-9]{6}$' && sed -n 2p "$TMP/ret" | grep -qP '^add\t' \
  && pass registry_retrieve_name_tab_score || fail registry_retrieve_name_tab_score "$(cat "$TMP/ret" "$TMP/err")"
$R retrieve -p "what is 40 plus 2" -k 1 >"$TMP/ret" 2>&1
grep -qP '^add\t' "$TMP/ret" && pass registry_retrieve_best_first || fail registry_retrieve_best_first "$(cat "$TMP/ret")"
s1=$(head -1 "$TMP/ret" | cut -f2); expect_ok registry_retrieve_with_registry_flag $R retrieve --registry "$RAMOLE_REGISTRY" -p "what is 40 plus 2" -k 1
[ "$(cut -f2 "$TMP/out")" = "$s1" ] && pass registry_retrieve_flag_same_scores || fail registry_retrieve_flag_same_scores "$(cat "$TMP/out") vs $s1"

# list, list --json, show
$R adapter list >"$TMP/list" 2>&1
grep -qP '^1\trev\tdefault\tpublic\tactive\trank 4$' "$TMP/list" && grep -qP '^2\tadd\tdefault\tpublic\tactive\trank 8$' "$TMP/list" \
  && pass registry_list || fail registry_list "$(cat "$TMP/list")"
$R adapter list --json >"$TMP/list.json" 2>&1
node -e 'const a = JSON.parse(require("fs").readFileSync(process.argv[1])); if (!Array.isArray(a) || a.length != 2 || a[0].name != "rev" || a[1].name != "add" || a[0].description != "reverses words" || !/^[0-9a-f]{64}$/.test(a[0].hash)) process.exit(1)' "$TMP/list.json" \
  && pass registry_list_json || fail registry_list_json "$(head -c 300 "$TMP/list.json")"
$R adapter show rev >"$TMP/show" 2>&1
node -e 'const a = JSON.parse(require("fs").readFileSync(process.argv[1])); const s = a.screening;
  if (a.samples.length != 2 || a.samples[0] != "reverse the word apple" || a.embedder.dim != 64 || a.embedder.layer != -1
      || !/^[0-9a-f]{16}$/.test(a.embedder.base_fingerprint) || !(s.kl >= 0) || s.finite !== true || s.shapes_fit !== true
      || s.kl_held !== false || s.probes != 8 || a.targets.indexOf("q_proj") < 0) process.exit(1)' "$TMP/show" \
  && pass registry_show_fields_and_screening || fail registry_show_fields_and_screening "$(head -c 600 "$TMP/show")"
expect_ok registry_info $R registry info
grep -qP '^base_path\t.*/m$' "$TMP/out" && grep -qP '^kl_threshold\t1$' "$TMP/out" \
  && pass registry_info_meta || fail registry_info_meta "$(cat "$TMP/out")"

# disable / enable / rm
$R adapter disable rev 2>"$TMP/err" && $R retrieve -p "reverse the word cloud" -k 5 >"$TMP/ret" 2>>"$TMP/err" \
  && ! grep -q '^rev' "$TMP/ret" && [ "$(wc -l <"$TMP/ret")" = 1 ] \
  && pass registry_disable_leaves_retrieval || fail registry_disable_leaves_retrieval "$(cat "$TMP/ret" "$TMP/err")"
expect_error registry_approve_active_refused "is disabled: cannot approve" $R adapter approve rev
$R adapter enable rev 2>"$TMP/err" && $R retrieve -p "reverse the word cloud" -k 5 >"$TMP/ret" 2>>"$TMP/err" \
  && head -1 "$TMP/ret" | grep -q '^rev' && pass registry_enable_rejoins || fail registry_enable_rejoins "$(cat "$TMP/ret" "$TMP/err")"

# tenants, private adapters, keys
expect_error registry_unknown_tenant "unknown tenant 'acme'" $R adapter add "$TMP/a1" --name x --samples "$TMP/de.jsonl" --tenant acme
expect_ok registry_tenant_add $R tenant add acme
$R tenant list >"$TMP/tl" 2>&1
cut -f1 "$TMP/tl" | tr '\n' ' ' | grep -q '^default acme $' && pass registry_tenant_list || fail registry_tenant_list "$(cat "$TMP/tl")"
$R adapter add "$TMP/a1" --name de --samples "$TMP/de.jsonl" --tenant acme --private >/dev/null 2>"$TMP/err" \
  && pass registry_add_private || fail registry_add_private "$(cat "$TMP/err")"
$R retrieve -p "translate to german: a tree" -k 5 >"$TMP/ret0" 2>&1
$R retrieve -p "translate to german: a tree" -k 5 --tenant acme >"$TMP/ret1" 2>&1
! grep -q '^de' "$TMP/ret0" && [ "$(wc -l <"$TMP/ret0")" = 2 ] && grep -q '^de' "$TMP/ret1" && [ "$(wc -l <"$TMP/ret1")" = 3 ] \
  && pass registry_private_only_for_its_tenant || fail registry_private_only_for_its_tenant "$(cat "$TMP/ret0") / $(cat "$TMP/ret1")"
expect_ok registry_adapter_show_in_tenant $R adapter show de --tenant acme
expect_error registry_show_other_tenant "no adapter named 'de'" $R adapter show de
$R key create --tenant acme --role upload >"$TMP/key" 2>"$TMP/err"
key=$(tail -1 "$TMP/key")
[[ "$key" =~ ^rmk_[0-9a-f]{64}$ ]] && pass registry_key_create_last_line || fail registry_key_create_last_line "$(cat "$TMP/key" "$TMP/err")"
! grep -rqa "${key:4:40}" "$TMP/reg.db" "$TMP/reg.db-wal" 2>/dev/null && pass registry_key_not_stored_in_clear \
  || fail registry_key_not_stored_in_clear "the key is in the database"
expect_error registry_key_bad_role "unknown role 'root'" $R key create --tenant acme --role root
expect_error registry_key_unknown_tenant "unknown tenant 'nobody'" $R key create --tenant nobody --role admin
expect_ok registry_key_revoke $R key revoke "$key"
expect_error registry_key_revoke_twice "no live key matches" $R key revoke "$key"

# approval and the KL probe
export RAMOLE_REGISTRY="sqlite:$TMP/approve.db"
$R registry init -m "$TMP/m" --require-approval --kl-threshold 0.5 >/dev/null 2>&1
$R random-adapter -m "$TMP/m" --rank 4 -o "$TMP/loud" --seed 9 >/dev/null 2>&1
$R adapter add "$TMP/a1" --name rev --samples "$TMP/rev.jsonl" >/dev/null 2>"$TMP/err"
grep -q "rev is pending" "$TMP/err" && [ -z "$($R retrieve -p "reverse the word cloud" 2>/dev/null)" ] \
  && pass registry_pending_not_retrievable || fail registry_pending_not_retrievable "$(cat "$TMP/err")"
$R adapter approve rev 2>"$TMP/err" && $R retrieve -p "reverse the word cloud" 2>&1 | grep -q '^rev' \
  && pass registry_approve_makes_retrievable || fail registry_approve_makes_retrievable "$(cat "$TMP/err")"
$R adapter add "$TMP/a2.gguf" --name add --samples "$TMP/add.jsonl" >/dev/null 2>&1
expect_ok registry_reject $R adapter reject add
$R adapter list | grep -qP '^2\tadd\tdefault\tpublic\trejected' && pass registry_rejected_listed || fail registry_rejected_listed "$($R adapter list 2>&1)"
expect_ok registry_set_approval_off $R registry set --require-approval off --kl-threshold 1e-9
$R adapter add "$TMP/a1" --name held --samples "$TMP/rev.jsonl" >/dev/null 2>&1
$R adapter show held | grep -q '"kl_held": true' && $R adapter list | grep -qP '^3\theld\t.*\tpending' \
  && pass registry_kl_probe_holds || fail registry_kl_probe_holds "$($R adapter show held 2>&1 | head -c 600)"
expect_ok registry_recheck_all $R adapter recheck --all
grep -q '^3 rechecked, 1 held for review$' "$TMP/out" && pass registry_recheck_counts || fail registry_recheck_counts "$(cat "$TMP/out")"
$R adapter list | grep -qP '^1\trev\t.*\tpending' && pass registry_recheck_holds_active || fail registry_recheck_holds_active "$($R adapter list 2>&1)"
expect_ok registry_recheck_one $R adapter recheck rev
$R audit >"$TMP/audit" 2>&1
for a in init add approve add reject set add recheck; do grep -qP "\t$a\t" "$TMP/audit" || { fail registry_audit_actions "no $a: $(cat "$TMP/audit")"; break; }; done \
  && pass registry_audit_actions
grep -P '\tadd\trev\t' "$TMP/audit" | grep -qP '\t[0-9a-f]{64}\t' && grep -qP '\tcli:' "$TMP/audit" \
  && pass registry_audit_hash_and_who || fail registry_audit_hash_and_who "$(head -3 "$TMP/audit")"
[ -z "$($R audit --since 2099-01-01)" ] && [ "$($R audit --since 2000-01-01T00:00:00 | wc -l)" = "$(wc -l <"$TMP/audit")" ] \
  && pass registry_audit_since || fail registry_audit_since "filter"
expect_error registry_audit_bad_since "--since yesterday: expected" $R audit --since yesterday

# check: clean, then a damaged blob
export RAMOLE_REGISTRY="sqlite:$TMP/reg.db"
expect_ok registry_check_clean $R registry check
grep -q '^3 adapters checked, 0 bad, 0 orphan blobs$' "$TMP/out" && pass registry_check_counts || fail registry_check_counts "$(cat "$TMP/out")"
h=$($R adapter list --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[1].hash))')
cp "$TMP/reg.db.blobs/${h:0:2}/$h" "$TMP/blob.bak"
printf 'X' | dd of="$TMP/reg.db.blobs/${h:0:2}/$h" bs=1 seek=200 conv=notrunc 2>/dev/null
expect_error registry_check_finds_damage "adapter 'add': blob $h does not match" $R registry check
cp "$TMP/blob.bak" "$TMP/reg.db.blobs/${h:0:2}/$h"
$R adapter rm add 2>/dev/null
$R registry check >"$TMP/out" 2>&1
grep -q '^2 adapters checked, 0 bad, 1 orphan blobs$' "$TMP/out" && pass registry_rm_leaves_orphan || fail registry_rm_leaves_orphan "$(cat "$TMP/out")"

# bad input: a clear error and nothing changed
before=$($R adapter list --json; $R audit | wc -l; find "$TMP/reg.db.blobs" -type f | sort)
printf '' >"$TMP/empty.jsonl"
printf '{"input": "ok"}\n{"output": "no input here"}\n' >"$TMP/noinput.jsonl"
printf '{"input": "%s"}\n' "$(head -c 20000 /dev/zero | tr '\0' a)" >"$TMP/huge.jsonl"
echo "not an adapter" >"$TMP/fake.gguf"
expect_error registry_bad_other_base "" $R adapter add "$TMP/foreign" --name f --samples "$TMP/rev.jsonl"
grep -q "foreign" "$TMP/err" && pass registry_bad_other_base_names_file || fail registry_bad_other_base_names_file "$(cat "$TMP/err")"
expect_error registry_bad_not_an_adapter "fake.gguf" $R adapter add "$TMP/fake.gguf" --name f --samples "$TMP/rev.jsonl"
expect_error registry_bad_empty_samples "no sample inputs" $R adapter add "$TMP/a1" --name f --samples "$TMP/empty.jsonl"
expect_error registry_bad_sample_line "noinput.jsonl:2" $R adapter add "$TMP/a1" --name f --samples "$TMP/noinput.jsonl"
expect_error registry_bad_oversized_sample "bytes (at most 16384)" $R adapter add "$TMP/a1" --name f --samples "$TMP/huge.jsonl"
expect_error registry_bad_too_many_samples "--n-samples" $R adapter add "$TMP/a1" --name f --samples "$TMP/rev.jsonl" --n-samples 5000
expect_error registry_bad_name_separator "holds a path separator" $R adapter add "$TMP/a1" --name ../x --samples "$TMP/rev.jsonl"
expect_error registry_bad_name_control "control character" $R adapter add "$TMP/a1" --name $'a\tb' --samples "$TMP/rev.jsonl"
expect_error registry_bad_duplicate "adapter 'rev' already exists in tenant 'default'" $R adapter add "$TMP/a1" --name rev --samples "$TMP/rev.jsonl"
expect_error registry_bad_missing_file "nothere" $R adapter add "$TMP/nothere" --name f --samples "$TMP/rev.jsonl"
expect_error registry_bad_tenant_name "path separator" $R tenant add a/b
after=$($R adapter list --json; $R audit | wc -l; find "$TMP/reg.db.blobs" -type f | sort)
[ "$before" = "$after" ] && pass registry_bad_input_changes_nothing || fail registry_bad_input_changes_nothing "state differs"
expect_error registry_bad_other_base_model "made for another base" $R retrieve -m "$TMP/other" -p "hello"
expect_error registry_bad_init_no_tokenizer "has no tokenizer" $R registry init -m "$TMP/m_no_tok" --registry "sqlite:$TMP/nt.db"
sqlite3 "$TMP/reg.db" 'PRAGMA user_version = 99' 2>/dev/null
expect_error registry_bad_newer_schema "schema version 99 is newer than this ramole understands" $R adapter list
[ "$(sqlite3 "$TMP/reg.db" 'PRAGMA user_version')" = 99 ] && pass registry_newer_schema_untouched || fail registry_newer_schema_untouched "changed"
sqlite3 "$TMP/reg.db" "PRAGMA user_version = $(sqlite3 "$TMP/approve.db" 'PRAGMA user_version')"

# URLs
expect_error registry_postgres_unreachable "cannot connect" $R adapter list --registry "postgresql:///ramole?host=$TMP/nosocket"
expect_error registry_unknown_url "expected sqlite:PATH" $R adapter list --registry mysql://x
expect_error registry_missing "no registry there" $R adapter list --registry "sqlite:$TMP/none.db"
(unset RAMOLE_REGISTRY; export XDG_DATA_HOME="$TMP/xdg"; $R registry init -m "$TMP/m" >/dev/null 2>&1 && [ -f "$TMP/xdg/ramole/registry.db" ]) \
  && pass registry_default_under_xdg || fail registry_default_under_xdg "no $TMP/xdg/ramole/registry.db"

# the task-file form of retrieve still works
printf '{"task": "rev", "input": "reverse the word apple"}\n{"task": "add", "input": "add 3 and 4"}\n' >"$TMP/tasks.jsonl"
expect_ok registry_retrieve_pool_still_works $R retrieve -m "$TMP/m" --pool "$TMP/tasks.jsonl" -p "reverse the word cloud" -k 1
grep -q '"results":\[{"task":"rev"' "$TMP/out" && pass registry_retrieve_pool_output || fail registry_retrieve_pool_output "$(cat "$TMP/out")"

# replacing the projection re-embeds every adapter and says so; the router is stored as an artifact
export RAMOLE_REGISTRY="sqlite:$TMP/reg.db"
printf '{"task": "rev", "input": "reverse the word apple"}\n{"task": "rev", "input": "reverse the word stone"}\n{"task": "add", "input": "add 3 and 4"}\n{"task": "add", "input": "what is 12 plus 9"}\n{"task": "de", "input": "in german, say cloud"}\n{"task": "de", "input": "translate to german: the house"}\n' >"$TMP/train.jsonl"
$R train retriever -m "$TMP/m" --data "$TMP/train.jsonl" -o "$TMP/p.safetensors" --dim 16 --steps 5 --held-out-tasks 0 --held-out-inputs 0 --quiet >/dev/null 2>&1
expect_ok registry_set_projection $R registry set --projection "$TMP/p.safetensors"
grep -q '^re-embedding adapter 1/2 (rev)' "$TMP/err" && pass registry_set_projection_says_so || fail registry_set_projection_says_so "$(cat "$TMP/err")"
ph=$(sha256sum "$TMP/p.safetensors" | cut -c1-64)
$R adapter show rev | grep -q "\"projection\": \"$ph\"" && $R adapter show rev | grep -q '"dim": 16' \
  && pass registry_set_projection_identity || fail registry_set_projection_identity "$($R adapter show rev 2>&1 | grep -A4 embedder)"
$R retrieve -p "reverse the word cloud" -k 5 >"$TMP/ret" 2>"$TMP/err"
$R retrieve -p "reverse the word cloud" -k 5 --tenant acme >"$TMP/ret1" 2>>"$TMP/err"
[ "$(wc -l <"$TMP/ret")" = 1 ] && grep -q '^rev' "$TMP/ret" && [ "$(wc -l <"$TMP/ret1")" = 2 ] && pass registry_retrieve_after_projection || fail registry_retrieve_after_projection "$(cat "$TMP/ret" "$TMP/err")"
expect_ok registry_set_router $R registry set --router "$TMP/a2.gguf"
$R registry info | grep -qP '^router\t[0-9a-f]{64}$' && pass registry_router_artifact || fail registry_router_artifact "$($R registry info 2>&1)"
expect_error registry_set_router_other_base "another base" $R registry set --router "$TMP/foreign"
expect_ok registry_check_after_set $R registry check
