// bench/llamacpp/batched.mjs — many sequences decoding at once on llama.cpp,
// as its server runs parallel slots: one context with --seqs sequences, each
// evaluating its own prompt and then decoding greedily, all at the same time
// (node-llama-cpp gathers the sequences' pending tokens into one llama_decode
// per step). Prints one JSON line, measured as `ramole batch` measures (from
// the first prompt token to the last answer, the model and context made
// before and warmed up by one prompt), to set beside `ramole batch` on the same requests
// (bench/batch_decode_bench.sh).
//
//   node bench/llamacpp/batched.mjs -m MODEL.gguf --prompts FILE.json [--decode 64] [-t 2]
//
// FILE.json: an array of prompts, each an array of token ids.
import fs from "node:fs";
import { openPeer } from "./peer.mjs";

const a = process.argv.slice(2);
const o = { decode: 64, threads: 2 };
for (let i = 0; i < a.length; i++) {
    const v = a[i + 1];
    if (a[i] === "-m") o.model = v, i++;
    else if (a[i] === "--prompts") o.prompts = v, i++;
    else if (a[i] === "--decode") o.decode = Number(v), i++;
    else if (a[i] === "-t") o.threads = Number(v), i++;
    else { console.error(`batched: unknown argument ${a[i]}`); process.exit(2); }
}
if (!o.model || !o.prompts) { console.error("usage: batched.mjs -m MODEL --prompts FILE.json [--decode N] [-t T]"); process.exit(2); }
const prompts = JSON.parse(fs.readFileSync(o.prompts, "utf8"));
const longest = Math.max(...prompts.map(p => p.length));
const { llama } = await openPeer("batched", o.threads);
const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
const ctxPer = longest + o.decode + 8;
const ctx = await model.createContext({ contextSize: ctxPer * prompts.length, batchSize: 512, threads: o.threads,
                                        sequences: prompts.length });
const seqs = prompts.map(() => ctx.getSequence());
// a warm-up, as `ramole bench` has: llama.cpp's first decode sets up its graph
await seqs[0].evaluateWithoutGeneratingNewTokens(prompts[0]);
await seqs[0].clearHistory();
const now = () => Number(process.hrtime.bigint()) / 1e9;
let generated = 0;
// one sequence: its prompt, then greedy tokens until --decode (end tokens do not stop it, as ignore_eos)
async function run(seq, prompt) {
    let n = 0;
    for await (const tok of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
        void tok;
        if (++n >= o.decode) break;
    }
    generated += n;
}
const t0 = now();
await Promise.all(seqs.map((s, i) => run(s, prompts[i])));
const secs = now() - t0;
const promptTokens = prompts.reduce((s, p) => s + p.length, 0);
console.log(JSON.stringify({ peer: "llama.cpp", bench: "batched", seqs: prompts.length, prompt_tokens: promptTokens,
    generated, threads: o.threads, seconds: +secs.toFixed(3), generated_tps: +(generated / secs).toFixed(2),
    overall_tps: +((generated + promptTokens) / secs).toFixed(2) }));
await ctx.dispose(); await model.dispose(); await llama.dispose();
