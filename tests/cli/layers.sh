#!/usr/bin/env bash
# The module layering of the design guide: a module under src/ includes
# only modules before it in the order
#   core, kernels, formats, tokenizer, model, lora, train, retrieval,
#   engine | registry (never each other), serve, eval, api
# (and itself). Every `#include "X/..."` in src/Y/*.c and src/Y/*.h is
# checked (and `#include <X/...>` when X is a module: -Isrc makes both
# work); a violation is a FAIL naming the file, the line and both modules.
# The command line (tools/) is an outside program of the library: it
# includes the public header "ramole.h" and its own headers only, and
# cli.h, which every command includes, only "ramole.h" and system headers.
# The checkers first run on small trees with bad includes, so that a
# checker that can no longer see a violation fails too.
# Usage: tests/cli/layers.sh [TREE] (default: this checkout; TREE is a
# folder holding src/, e.g. an exported older commit).
tree=$(readlink -f "${1:-$(dirname "$0")/../..}")
cd "$(dirname "$0")/../.."
. tests/cli/lib.bash

declare -A RANK=([core]=0 [kernels]=1 [formats]=2 [tokenizer]=3 [model]=4 [lora]=5 [train]=6
                 [retrieval]=7 [engine]=8 [registry]=8 [serve]=9 [eval]=10 [api]=11)

# check_layers ROOT: print one line "file:line: why" per bad include under
# ROOT/src/*/; nothing when the layering holds.
check_layers() {
  local root=$1 f y x line text
  for f in "$root"/src/*/*.c "$root"/src/*/*.h; do
    [ -e "$f" ] || continue
    y=$(basename "$(dirname "$f")")
    if [ -z "${RANK[$y]+set}" ]; then
      echo "${f#"$root"/}: module '$y' is not in the layering order (add it to tests/cli/layers.sh)"
      continue
    fi
    while IFS=: read -r line text; do
      x=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]([^/">]+)\/.*/\1/' <<<"$text")
      [ "$x" = "$y" ] && continue
      if [ -z "${RANK[$x]+set}" ]; then
        [[ $text == *'<'* ]] && continue # a system header such as <sys/stat.h>
        echo "${f#"$root"/}:$line: includes '$x', which is not a module of the layering order"
      elif [ "${RANK[$x]}" -ge "${RANK[$y]}" ]; then
        echo "${f#"$root"/}:$line: $y includes $x ($(sed -E 's/.*include[[:space:]]*//' <<<"$text")), which comes after it (or beside it) in the layering order"
      fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*("[^/"]+/|<[^/>]+/)' "$f")
  done
}

# check_tools ROOT: print one line "file:line: why" per include of a tools/
# file that reaches past the public header; nothing when there is none.
check_tools() {
  local root=$1 f line text name
  for f in "$root"/tools/*.c "$root"/tools/*.h; do
    [ -e "$f" ] || continue
    while IFS=: read -r line text; do
      name=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]([^">]+)[">].*/\1/' <<<"$text")
      if [[ $text == *'<'* ]]; then
        # a system header, unless it names a library module (-Isrc would find it)
        [ -n "${RANK[${name%%/*}]+set}" ] && [[ $name == */* ]] &&
          echo "${f#"$root"/}:$line: includes <$name>, an internal header of the library (use ramole.h)"
      elif [ "$name" = ramole.h ]; then
        :
      elif [ "$(basename "$f")" = cli.h ]; then
        echo "${f#"$root"/}:$line: cli.h includes \"$name\"; it may include only ramole.h and system headers"
      elif [[ $name == */* ]] || [ ! -e "$root/tools/$name" ]; then
        echo "${f#"$root"/}:$line: includes \"$name\", which is neither ramole.h nor a header of tools/"
      fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include' "$f")
  done
}

# The checker sees a violation: model including lora, as forward.c once did;
# and it accepts includes that go down the order.
probe="$TMP/probe"
mkdir -p "$probe/src/model" "$probe/src/lora" "$probe/src/engine"
printf '#include "core/core.h"\n#include "model/model.h"\n' >"$probe/src/lora/compose.h"
printf '#include <string.h>\n\n#include "lora/compose.h"\n#include "model/model.h"\n' >"$probe/src/model/forward.c"
printf '#include <sys/stat.h>\n#include <registry/registry.h>\n' >"$probe/src/engine/engine.c"
out=$(check_layers "$probe")
if grep -q '^src/model/forward.c:3: model includes lora' <<<"$out" &&
   grep -q '^src/engine/engine.c:2: engine includes registry' <<<"$out" &&
   [ "$(wc -l <<<"$out")" -eq 2 ]; then
  pass layers_checker_finds_violations
else
  fail layers_checker_finds_violations "on a tree with two bad includes it printed: $out"
fi

out=$(check_layers "$tree")
if [ -z "$out" ]; then
  pass layers_src_includes_flow_one_way
else
  while IFS= read -r l; do fail layers_src_includes_flow_one_way "$l"; done <<<"$out"
fi

# The tools checker sees a command including src/ (quoted and bracketed)
# and a cli.h including a tools header; it accepts ramole.h, the tools'
# own headers and system headers.
probe="$TMP/probe_tools"
mkdir -p "$probe/tools"
printf '#include <stdio.h>\n#include "ramole.h"\n#include "own.h"\n' >"$probe/tools/cli.h"
printf '#include "cli.h"\n#include "own.h"\n#include "core/core.h"\n#include <registry/registry.h>\n' >"$probe/tools/cmd_x.c"
printf '#include "ramole.h"\n' >"$probe/tools/own.h"
out=$(check_tools "$probe")
if grep -q '^tools/cli.h:3: cli.h includes "own.h"' <<<"$out" &&
   grep -q '^tools/cmd_x.c:3: includes "core/core.h"' <<<"$out" &&
   grep -q '^tools/cmd_x.c:4: includes <registry/registry.h>' <<<"$out" &&
   [ "$(wc -l <<<"$out")" -eq 3 ]; then
  pass layers_tools_checker_finds_violations
else
  fail layers_tools_checker_finds_violations "on a tree with three bad includes it printed: $out"
fi

out=$(check_tools "$tree")
if [ -z "$out" ]; then
  pass layers_tools_include_only_the_public_header
else
  while IFS= read -r l; do fail layers_tools_include_only_the_public_header "$l"; done <<<"$out"
fi
