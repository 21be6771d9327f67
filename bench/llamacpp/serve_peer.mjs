// bench/llamacpp/serve_peer.mjs — the serve bench's mixed workload through
// llama.cpp as its users run it. llama.cpp sets adapters per context, so
// requests with different adapter sets cannot share a batch: each request
// gets a context with its own adapters (scale 1/k, a mixture: llama.cpp has
// no router), evaluates its prompt and decodes greedily, one request after
// another (one adapter set at a time). Prompts are text, tokenized by
// llama.cpp from the same GGUF. Time to first token counts the context and
// adapter setup, as a user switching adapter sets pays it.
//
//   node bench/llamacpp/serve_peer.mjs -m MODEL.gguf --requests FILE.jsonl [-t 2]
//
// FILE: one {"prompt": text, "adapters": [GGUF LoRA paths], "max_tokens": n}
// per line. Prints one JSON line: requests, tokens, seconds, tokens_per_s,
// ttft and inter-token latency p50 and p99 in ms.
import fs from "node:fs";
import path from "node:path";
import { openPeer } from "./peer.mjs";

const a = process.argv.slice(2);
const o = { threads: 2 };
for (let i = 0; i < a.length; i++) {
    const v = a[i + 1];
    if (a[i] === "-m") o.model = v, i++;
    else if (a[i] === "--requests") o.requests = v, i++;
    else if (a[i] === "-t") o.threads = Number(v), i++;
    else { console.error(`serve_peer: unknown argument ${a[i]}`); process.exit(2); }
}
if (!o.model || !o.requests) { console.error("usage: serve_peer.mjs -m MODEL.gguf --requests FILE.jsonl [-t T]"); process.exit(2); }
const reqs = fs.readFileSync(o.requests, "utf8").split("\n").filter(Boolean).map((l, i) => {
    try { return JSON.parse(l); } catch (e) { console.error(`serve_peer: ${o.requests}:${i + 1}: ${e.message}`); process.exit(2); }
});
const { llama } = await openPeer("serve_peer", o.threads);
const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
const now = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (v, p) => { const s = [...v].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : null; };
const ttfts = [], gaps = [];
let tokens = 0, t0 = 0;
// the first request twice: once untimed, to warm up (as the ramole side does)
for (const [i, r] of [reqs[0], ...reqs].entries()) {
    if (i === 1) ttfts.length = gaps.length = tokens = 0, t0 = now();
    const ts = now();
    const k = r.adapters.length;
    const ctx = await model.createContext({ contextSize: 256, batchSize: 256, threads: o.threads, sequences: 1,
        lora: k ? { adapters: r.adapters.map(f => ({ filePath: path.resolve(f), scale: 1 / k })) } : undefined });
    const seq = ctx.getSequence();
    const prompt = model.tokenize(r.prompt);
    if (model.tokens.bos != null) prompt.unshift(model.tokens.bos);
    let n = 0, last = null;
    for await (const tok of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
        const t = now();
        if (last === null) ttfts.push(t - ts); else gaps.push(t - last);
        last = t;
        if (++n >= r.max_tokens) break;
    }
    tokens += n;
    await ctx.dispose();
}
const secs = (now() - t0) / 1000;
const f = (x) => +x.toFixed(2);
console.log(JSON.stringify({ peer: "llama.cpp", bench: "serve", requests: reqs.length, tokens, seconds: f(secs),
    tokens_per_s: +(tokens / secs).toFixed(1), ttft_p50_ms: f(pct(ttfts, 0.5)), ttft_p99_ms: f(pct(ttfts, 0.99)),
    itl_p50_ms: f(pct(gaps, 0.5)), itl_p99_ms: f(pct(gaps, 0.99)), threads: o.threads }));
await model.dispose(); await llama.dispose();
