#!/usr/bin/env bash
# make_metrics_golden.sh — regenerate tests/golden/metrics/pairs.jsonl: pairs
# scored by the references themselves (nltk 3.8's sentence_bleu, SQuAD-style F1,
# js-rouge's ROUGE-L; see src/eval/metrics.h). The C suite (tests/test_metrics.c)
# checks src/eval/metrics.c against the committed file to 1e-9.
# Needs Debian's python3-nltk and npm's js-rouge (bash scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
/usr/bin/python3 tests/reference/metrics_pairs.py | node tests/reference/metrics_rouge.mjs \
  > tests/golden/metrics/pairs.jsonl.tmp
mv tests/golden/metrics/pairs.jsonl.tmp tests/golden/metrics/pairs.jsonl
echo "wrote tests/golden/metrics/pairs.jsonl ($(wc -l < tests/golden/metrics/pairs.jsonl) pairs)"
