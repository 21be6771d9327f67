// tokenizer_docs.mjs — write the tokenizer benchmark's documents, one JSON
// string a line, to the file named by the first argument: the paragraphs of
// Debian's license texts, ramole's own C sources, and the golden tokenizer
// corpus's text lines ten times (CJK, Arabic, emoji, code, numbers, exotic
// whitespace). Run from the repository root.
import fs from "node:fs";
import path from "node:path";

const out = [];
for (const f of fs.readdirSync("/usr/share/common-licenses").sort()) {
  const p = path.join("/usr/share/common-licenses", f);
  if (!fs.statSync(p).isFile()) continue;
  for (const para of fs.readFileSync(p, "utf8").split(/\n\s*\n/)) if (para.trim()) out.push(para);
}
const walk = (d) => {
  for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (/\.[ch]$/.test(e.name)) out.push(fs.readFileSync(p, "utf8"));
  }
};
walk("src");
const corpus = fs.readFileSync("tests/golden/tokenizer/corpus.jsonl", "utf8").split("\n").filter(Boolean)
  .map((l) => JSON.parse(l)).filter((e) => e.text !== undefined).map((e) => e.text);
for (let i = 0; i < 10; i++) out.push(...corpus);
fs.writeFileSync(process.argv[2], out.map((s) => JSON.stringify(s)).join("\n") + "\n");
