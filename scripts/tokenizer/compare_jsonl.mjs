// compare_jsonl.mjs — compare two JSON-lines files value by value (so that
// two spellings of one string compare equal). Prints "N of M lines differ"
// and the first differences with the line of the third file (the inputs),
// if given; exits 1 when any line differs or the counts differ.
// Usage: node scripts/tokenizer/compare_jsonl.mjs WANT GOT [INPUTS]
import fs from "node:fs";

const read = (f) => fs.readFileSync(f, "utf8").split("\n").filter((l) => l.length);
const [wantPath, gotPath, inPath] = process.argv.slice(2);
const want = read(wantPath), got = read(gotPath), inputs = inPath ? read(inPath) : [];
let differ = 0;
const n = Math.max(want.length, got.length);
for (let i = 0; i < n; i++) {
  const a = i < want.length ? JSON.stringify(JSON.parse(want[i])) : "(none)";
  const b = i < got.length ? JSON.stringify(JSON.parse(got[i])) : "(none)";
  if (a === b) continue;
  if (differ++ < 3) {
    const text = inputs[i] !== undefined ? inputs[i].slice(0, 120) : "";
    console.log(`line ${i + 1}: ${text}\n  want ${a.slice(0, 200)}\n  got  ${b.slice(0, 200)}`);
  }
}
console.log(`${differ} of ${n} lines differ`);
process.exit(differ || want.length !== got.length ? 1 : 0);
