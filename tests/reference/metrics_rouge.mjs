// metrics_rouge.mjs — adds js-rouge's ROUGE-L F ("rougeL") to each JSONL line
// of stdin (fields "pred", "ref"), writing the lines to stdout.
// The tokens are Python's str.split() tokens (the tokenisation every metric of
// src/eval/metrics.h shares) and the whole answer is one sentence; js-rouge
// computes the LCS and its F-measure (beta 1) itself. js-rouge refuses an empty
// side: there the score is 1 when both are empty, else 0 (metrics.h).
// Usage: node tests/reference/metrics_rouge.mjs < pairs.jsonl (js-rouge in .cache/npm).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(path.resolve('.cache/npm/node_modules/'));
const rouge = require('js-rouge');
const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
const tokenize = (s) => s.split(PY_SPACE).filter((t) => t.length > 0);

for (const line of readFileSync(0, 'utf8').split('\n')) {
  if (!line) continue;
  const rec = JSON.parse(line);
  const p = tokenize(rec.pred), r = tokenize(rec.ref);
  rec.rougeL = !p.length || !r.length ? (p.length === r.length ? 1 : 0)
    : rouge.l(p.join(' '), r.join(' '), { tokenizer: tokenize, segmenter: (s) => [s] });
  process.stdout.write(JSON.stringify(rec) + '\n');
}
