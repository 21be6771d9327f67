// bench/llamacpp/mixed_lora.mjs — the heterogeneous-LoRA workload on
// llama.cpp. llama.cpp sets adapters per context, so sequences with
// different adapter sets cannot share a batch: each sequence gets a context
// with its own k adapters (scale 1/k: a mixture), evaluates its prompt and
// decodes, one sequence after another. Prints one JSON line of tokens/s, to
// set beside `build/bench/bench_lora` (which batches all sequences at once).
//
//   node bench/llamacpp/mixed_lora.mjs -m MODEL.gguf --adapters A1.gguf,A2.gguf,... \
//        [--seqs 16] [--k 3] [--prompt 16] [--decode 8] [-t 2]
import path from "node:path";
import { openPeer } from "./peer.mjs";

const a = process.argv.slice(2);
const o = { seqs: 16, k: 3, prompt: 16, decode: 8, threads: 2, adapters: [] };
for (let i = 0; i < a.length; i++) {
    const v = a[i + 1];
    if (a[i] === "-m") o.model = v, i++;
    else if (a[i] === "--adapters") o.adapters = v.split(",").filter(Boolean), i++;
    else if (a[i] === "--seqs") o.seqs = Number(v), i++;
    else if (a[i] === "--k") o.k = Number(v), i++;
    else if (a[i] === "--prompt") o.prompt = Number(v), i++;
    else if (a[i] === "--decode") o.decode = Number(v), i++;
    else if (a[i] === "-t") o.threads = Number(v), i++;
    else { console.error(`mixed_lora: unknown argument ${a[i]}`); process.exit(2); }
}
if (!o.model || o.adapters.length < o.k) { console.error("usage: mixed_lora.mjs -m MODEL --adapters A,B,C,... (at least k)"); process.exit(2); }
const { llama } = await openPeer("mixed_lora", o.threads);
const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
let x = 42;
const rnd = n => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return (x >>> 8) % n; };
const now = () => Number(process.hrtime.bigint()) / 1e9;
let tPrefill = 0, tDecode = 0, tSetup = 0;
const t0 = now();
for (let s = 0; s < o.seqs; s++) {
    const pick = [];
    while (pick.length < o.k) { const i = rnd(o.adapters.length); if (!pick.includes(i)) pick.push(i); }
    const ts = now();
    const ctx = await model.createContext({ contextSize: 256, batchSize: 256, threads: o.threads, sequences: 1,
        lora: { adapters: pick.map(i => ({ filePath: path.resolve(o.adapters[i]), scale: 1 / o.k })) } });
    const seq = ctx.getSequence();
    const prompt = [1];
    while (prompt.length < o.prompt) prompt.push(259 + rnd(30000));
    const tp = now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    const td = now();
    let n = 0;
    for await (const tok of seq.evaluate([13], { temperature: 0, yieldEogToken: true })) { if (++n >= o.decode) break; }
    const te = now();
    tSetup += tp - ts; tPrefill += td - tp; tDecode += te - td;
    await ctx.dispose();
}
const total = now() - t0;
const tokens = o.seqs * (o.prompt + o.decode);
console.log(JSON.stringify({ peer: "llama.cpp", bench: "mixed_lora", seqs: o.seqs, k: o.k, pool: o.adapters.length,
    prompt: o.prompt, decode: o.decode, threads: o.threads, setup_s: +tSetup.toFixed(2),
    prefill_tps: +(o.seqs * o.prompt / tPrefill).toFixed(2), decode_tps: +(o.seqs * o.decode / tDecode).toFixed(2),
    overall_tps: +(tokens / total).toFixed(2), total_s: +total.toFixed(2) }));
await model.dispose(); await llama.dispose();
