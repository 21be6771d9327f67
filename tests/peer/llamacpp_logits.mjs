// tests/peer/llamacpp_logits.mjs — last-position logits from llama.cpp (the
// prebuilt node-llama-cpp installed by scripts/peers.sh), optionally with
// GGUF LoRA adapters, for parity checks against `ramole logits`.
//
//   node tests/peer/llamacpp_logits.mjs -m MODEL.gguf --tokens 1,2,3 [--lora A.gguf:0.7]... [-t 1]
//
// Prints the logits one value per line (the format of `ramole logits`).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = process.argv.slice(2);
let model = null, tokens = null, threads = 1;
const lora = [];
for (let i = 0; i < args.length; i++) {
    const a = args[i], v = args[i + 1];
    if (a === "-m") model = v, i++;
    else if (a === "--tokens") tokens = v.split(",").map(Number), i++;
    else if (a === "-t") threads = Number(v), i++;
    else if (a === "--lora") {
        const c = v.lastIndexOf(":");
        const scale = c > 0 ? Number(v.slice(c + 1)) : NaN;
        lora.push(Number.isFinite(scale) ? { filePath: path.resolve(v.slice(0, c)), scale } : { filePath: path.resolve(v), scale: 1 });
        i++;
    } else { console.error(`llamacpp_logits: unknown argument ${a}`); process.exit(2); }
}
if (!model || !tokens || tokens.some(t => !Number.isInteger(t) || t < 0)) {
    console.error("usage: llamacpp_logits.mjs -m MODEL.gguf --tokens 1,2,3 [--lora PATH[:SCALE]]... [-t T]");
    process.exit(2);
}
const dirs = [process.env.RAMOLE_PEER_NPM_DIR, path.join(root, ".cache", "npm-llamacpp")].filter(Boolean);
const entry = dirs.map(d => path.join(path.resolve(d), "node_modules", "node-llama-cpp", "dist", "index.js")).find(fs.existsSync);
if (!entry) { console.error("llamacpp_logits: node-llama-cpp is not installed (scripts/peers.sh)"); process.exit(3); }
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
                               progressLogs: false, logLevel: LlamaLogLevel.error });
const m = await llama.loadModel({ modelPath: model, gpuLayers: 0 });
const ctx = await m.createContext({ contextSize: 256, batchSize: 256, threads, sequences: 1,
                                    lora: lora.length ? { adapters: lora } : undefined });
const seq = ctx.getSequence();
const input = tokens.map((t, i) => i === tokens.length - 1 ? [t, { generateNext: { logits: true } }] : t);
const res = await seq.controlledEvaluate(input);
const logits = res[tokens.length - 1]?.next?.logits;
if (!logits) { console.error("llamacpp_logits: no logits returned"); process.exit(1); }
const out = new Array(logits.size);
for (const [id, v] of logits) out[id] = v;
process.stdout.write(out.map(v => Number(v).toPrecision(9)).join("\n") + "\n");
await ctx.dispose(); await m.dispose(); await llama.dispose();
