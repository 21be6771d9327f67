// tests/peer/llamacpp_grammar.mjs — answers sampled by llama.cpp (the
// prebuilt node-llama-cpp of scripts/peers.sh) under a GBNF grammar, for
// checking that ramole's reading of the grammar takes what llama.cpp's
// produces.
//
//   node tests/peer/llamacpp_grammar.mjs -m MODEL.gguf --grammar-file G.gbnf --out DIR [--seeds 1,2,3] [-n 64]
//
// Writes each answer to DIR/SEED.txt (its bytes as llama.cpp detokenized
// them) and prints how many it wrote.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = process.argv.slice(2);
let model = null, gfile = null, out = null, seeds = [1, 2, 3], n = 64;
for (let i = 0; i < args.length; i++) {
    const a = args[i], v = args[i + 1];
    if (a === "-m") model = v, i++;
    else if (a === "--grammar-file") gfile = v, i++;
    else if (a === "--out") out = v, i++;
    else if (a === "--seeds") seeds = v.split(",").map(Number), i++;
    else if (a === "-n") n = Number(v), i++;
    else { console.error(`llamacpp_grammar: unknown argument ${a}`); process.exit(2); }
}
if (!model || !gfile || !out) { console.error("usage: llamacpp_grammar.mjs -m MODEL.gguf --grammar-file G --out DIR"); process.exit(2); }
const dirs = [process.env.RAMOLE_PEER_NPM_DIR, path.join(root, ".cache", "npm-llamacpp")].filter(Boolean);
const entry = dirs.map(d => path.join(path.resolve(d), "node_modules", "node-llama-cpp", "dist", "index.js")).find(fs.existsSync);
if (!entry) { console.error("llamacpp_grammar: node-llama-cpp is not installed (scripts/peers.sh)"); process.exit(3); }
const lib = await import(pathToFileURL(entry).href);
const llama = await lib.getLlama({ gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
                                   progressLogs: false, logLevel: lib.LlamaLogLevel.error });
const m = await llama.loadModel({ modelPath: model, gpuLayers: 0 });
const ctx = await m.createContext({ contextSize: 256, sequences: 1, threads: 1 });
const seq = ctx.getSequence();
const grammar = await llama.createGrammar({ grammar: fs.readFileSync(gfile, "utf8") });
const prompt = m.tokenize("Say it:", true);
fs.mkdirSync(out, { recursive: true });
let wrote = 0;
for (const seed of seeds) {
    await seq.clearHistory();
    const state = new lib.LlamaGrammarEvaluationState({ model: m, grammar });
    const toks = [];
    for await (const t of seq.evaluate(prompt, { temperature: 1, topK: 0, topP: 1, minP: 0, seed, grammarEvaluationState: state })) {
        if (m.isEogToken(t)) break;
        toks.push(t);
        if (toks.length >= n) break;
    }
    fs.writeFileSync(path.join(out, `${seed}.txt`), Buffer.from(m.detokenize(toks), "utf8"));
    wrote++;
}
console.log(`llamacpp_grammar: ${wrote} answers`);
await ctx.dispose();
await m.dispose();
