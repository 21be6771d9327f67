#!/usr/bin/env node
// llama.cpp peer benchmark for ramole, via node-llama-cpp's prebuilt CPU binaries.
//
// Install the peer first: scripts/peers.sh  (puts node-llama-cpp in .cache/npm)
//
// Usage:
//   node bench/llamacpp/bench.mjs -m MODEL.gguf [-t THREADS] [--prompt N] [--decode M]
//        [--reps R] [--warmup 0|1] [--flash-attn auto|on|off] [--llama-timings]
//   node bench/llamacpp/bench.mjs -m MODEL.gguf --logits 1,2,3 [--top K] [-t THREADS]
//   node bench/llamacpp/bench.mjs --info        (loader check: which binary / CPU variant loads)
//
// Bench mode prints ONE JSON line on stdout:
//   {"peer":"llama.cpp","variant":"haswell","model":"...","threads":T,
//    "prefill_tps":...,"decode_tps":...,"prompt":N,"decode":M,...}
// prefill: N prompt token ids (1 = BOS, then deterministic pseudo-random ids) are fed as ONE batch
//          (batchSize = ubatch >= N) with evaluateWithoutGeneratingNewTokens (no logits requested);
// decode:  M single-token steps right after the prompt (positions N..N+M-1), greedy (temperature 0),
//          each step = llama_decode of 1 token + greedy sampling over the full vocab; EOS does not stop.
// Both are wall-clock times measured around the node-llama-cpp calls; with R reps the best rep is
// reported (the context is cleared between reps; a short warm-up runs first unless --warmup 0).
//
// Logits mode evaluates the given token ids from an empty context and prints one JSON line with the
// raw logits (llama_get_logits_ith of the last position, as float32 widened to double) of the LAST
// position for the whole vocab: {"peer":"llama.cpp","tokens":[...],"n_vocab":V,"argmax":id,"logits":[...]}
// (--top K prints only the K largest as [[id,logit],...] instead).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");

// Never let node-llama-cpp download or build llama.cpp: prebuilt npm binaries only.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= "true";
process.env.NODE_LLAMA_CPP_GPU ??= "false";

function usage(msg) {
    if (msg) console.error(`bench.mjs: ${msg}`);
    console.error("usage: bench.mjs -m MODEL.gguf [-t THREADS] [--prompt N] [--decode M] [--reps R] [--warmup 0|1]\n" +
        "                 [--flash-attn auto|on|off] [--llama-timings] [--logits ID,ID,... [--top K]]");
    process.exit(2);
}

function parseArgs(argv) {
    const o = { model: null, threads: 1, prompt: 512, decode: 64, reps: 1, warmup: 1, flashAttn: "auto",
        logits: null, top: 0, llamaTimings: false, ctx: 0, info: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const next = () => { if (i + 1 >= argv.length) usage(`missing value for ${a}`); return argv[++i]; };
        switch (a) {
            case "-m": case "--model": o.model = next(); break;
            case "-t": case "--threads": o.threads = parseInt(next(), 10); break;
            case "-p": case "--prompt": o.prompt = parseInt(next(), 10); break;
            case "-n": case "--decode": o.decode = parseInt(next(), 10); break;
            case "--reps": o.reps = parseInt(next(), 10); break;
            case "--warmup": o.warmup = parseInt(next(), 10); break;
            case "--ctx": o.ctx = parseInt(next(), 10); break;
            case "--flash-attn": o.flashAttn = next(); break;
            case "--logits": o.logits = next().split(",").filter(s => s.length).map(s => parseInt(s, 10)); break;
            case "--top": o.top = parseInt(next(), 10); break;
            case "--llama-timings": o.llamaTimings = true; break;
            case "--info": o.info = true; break;
            case "-h": case "--help": usage();
            default:
                if (!o.model && !a.startsWith("-")) o.model = a;
                else usage(`unknown argument ${a}`);
        }
    }
    if (o.info) return o;
    if (!o.model) usage("no model given");
    if (!fs.existsSync(o.model)) usage(`model not found: ${o.model}`);
    if (!(o.threads >= 1) || !(o.prompt >= 1) || !(o.decode >= 0) || !(o.reps >= 1)) usage("bad numeric argument");
    if (o.logits && (o.logits.length === 0 || o.logits.some(x => !Number.isInteger(x) || x < 0))) usage("bad --logits list");
    if (!["auto", "on", "off"].includes(o.flashAttn)) usage("--flash-attn must be auto|on|off");
    return o;
}

// where scripts/peers.sh installs node-llama-cpp (RAMOLE_PEER_NPM_DIR overrides), then .cache/npm
function npmDirs() {
    return [process.env.RAMOLE_PEER_NPM_DIR, path.join(root, ".cache", "npm-llamacpp"), path.join(root, ".cache", "npm")]
        .filter(Boolean).map(d => path.resolve(d));
}

async function importNodeLlamaCpp() {
    const dirs = npmDirs();
    for (const d of dirs) {
        const entry = path.join(d, "node_modules", "node-llama-cpp", "dist", "index.js");
        if (fs.existsSync(entry)) return { mod: await import(pathToFileURL(entry).href), dir: d };
    }
    console.error(`bench.mjs: node-llama-cpp not installed in ${dirs.join(" or ")}; run scripts/peers.sh`);
    process.exit(3);
}

// Which libggml-cpu-<variant>.so did ggml's backend loader pick? (read from our own memory maps)
function loadedCpuVariant() {
    try {
        const maps = fs.readFileSync("/proc/self/maps", "utf8");
        const m = maps.match(/libggml-cpu-([A-Za-z0-9_]+)\.so/);
        if (m) return m[1];
        if (/libggml-cpu\.so/.test(maps)) return "cpu";
    } catch { /* not linux */ }
    return "unknown";
}

// Deterministic pseudo-random prompt: BOS then ids in [259, n_vocab) (skips <unk>,<s>,</s> and byte tokens).
function makePrompt(n, nVocab) {
    const toks = [1];
    let x = 12345;
    while (toks.length < n) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        const lo = Math.min(259, nVocab - 1);
        toks.push(lo + ((x >>> 8) % Math.max(1, nVocab - lo)));
    }
    return toks.slice(0, n);
}

function vocabSize(model) {
    const md = model.fileInfo?.metadata ?? {};
    const embd = (model.fileInfo?.fullTensorInfo ?? model.fileInfo?.tensorInfo ?? []).find(t => t.name === "token_embd.weight");
    const v = embd?.dimensions?.[1] ?? md.tokenizer?.ggml?.tokens?.length ?? md[md.general?.architecture]?.vocab_size;
    return Number(v) > 0 ? Number(v) : 32000;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const { mod, dir: npmDir } = await importNodeLlamaCpp();
    const { getLlama, LlamaLogLevel } = mod;

    const logLines = [];
    const llama = await getLlama({
        gpu: false,
        build: "never",          // never compile llama.cpp from source
        skipDownload: true,      // never download llama.cpp sources
        usePrebuiltBinaries: true,
        progressLogs: false,
        maxThreads: o.threads,
        logLevel: o.llamaTimings ? LlamaLogLevel.info : LlamaLogLevel.warn,
        logger: (level, message) => {
            logLines.push(message);
            if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal || level === LlamaLogLevel.warn) process.stderr.write(`[llama.cpp] ${message}\n`);
        }
    });

    if (o.info) {
        // loader check for scripts/peers.sh: no model needed
        console.log(JSON.stringify({ peer: "llama.cpp", node_llama_cpp: readNlcVersion(), npm_dir: npmDir,
            buildType: llama.buildType, gpu: llama.gpu, variant: loadedCpuVariant(), systemInfo: llama.systemInfo.trim() }));
        await llama.dispose();
        return;
    }

    const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0, useMmap: true });
    const V = vocabSize(model);

    const needCtx = o.logits ? o.logits.length : o.prompt + o.decode + 8;
    const contextSize = Math.max(o.ctx || 0, Math.ceil(needCtx / 256) * 256);
    const batchSize = Math.max(512, o.logits ? o.logits.length : o.prompt);
    const context = await model.createContext({
        contextSize,
        batchSize,
        threads: o.threads,
        sequences: 1,
        flashAttention: o.flashAttn === "auto" ? undefined : o.flashAttn === "on",
        performanceTracking: o.llamaTimings,
        ignoreMemorySafetyChecks: true,
    });
    const sequence = context.getSequence();
    const variant = loadedCpuVariant();

    if (o.logits) {
        const toks = o.logits;
        const input = toks.map((t, i) => i === toks.length - 1 ? [t, { generateNext: { logits: true } }] : t);
        const res = await sequence.controlledEvaluate(input);
        const logitsMap = res[toks.length - 1]?.next?.logits;
        if (!logitsMap) throw new Error("no logits returned");
        let out;
        if (o.top > 0) {
            out = { peer: "llama.cpp", variant, model: o.model, tokens: toks, n_vocab: logitsMap.size,
                top: [...logitsMap.entries()].slice(0, o.top) };
        } else {
            const arr = new Array(logitsMap.size);
            for (const [id, v] of logitsMap) arr[id] = v;
            let am = 0;
            for (let i = 1; i < arr.length; i++) if (arr[i] > arr[am]) am = i;
            out = { peer: "llama.cpp", variant, model: o.model, tokens: toks, n_vocab: arr.length, argmax: am, logits: arr };
        }
        process.stdout.write(JSON.stringify(out) + "\n");
        await context.dispose(); await model.dispose(); await llama.dispose();
        return;
    }

    const prompt = makePrompt(o.prompt, V);

    const median = (v) => { const a = [...v].sort((p, q) => p - q); return a[a.length >> 1]; };

    async function runOnce(nPrompt, nDecode) {
        await sequence.clearHistory();
        const p = prompt.slice(0, nPrompt);
        const c0 = process.cpuUsage();
        const t0 = now();
        await sequence.evaluateWithoutGeneratingNewTokens(p);
        const t1 = now();
        const c1 = process.cpuUsage(c0);
        let n = 0;
        let td = 0;
        let c2 = { user: 0, system: 0 };
        const steps = []; // seconds per decoded token
        if (nDecode > 0) {
            const c = process.cpuUsage();
            // first decode step feeds token id 13 after the prompt; then feed back the greedy token.
            const gen = sequence.evaluate([13], { temperature: 0, yieldEogToken: true });
            const t2 = now();
            let tp = t2;
            for await (const tok of gen) {
                void tok;
                const tn = now();
                steps.push(tn - tp);
                tp = tn;
                if (++n >= nDecode) break;
            }
            td = now() - t2;
            c2 = process.cpuUsage(c);
        }
        // share of the T requested cores this process actually got (CPU time / (wall * T)):
        // well below 1 means other processes took the CPU and the figure is not trustworthy.
        const util = (c, wall) => wall > 0 ? +((c.user + c.system) / 1e6 / (wall * o.threads)).toFixed(2) : null;
        return { prefill: t1 - t0, decode: td, n, prefillUtil: util(c1, t1 - t0), decodeUtil: util(c2, td), steps };
    }

    if (o.warmup) await runOnce(Math.min(32, o.prompt), Math.min(4, o.decode));
    let best = null;
    const all = [];
    for (let r = 0; r < o.reps; r++) {
        const res = await runOnce(o.prompt, o.decode);
        all.push(res);
        if (!best) best = { ...res };
        else {
            if (res.prefill < best.prefill) { best.prefill = res.prefill; best.prefillUtil = res.prefillUtil; }
            if (res.decode < best.decode) { best.decode = res.decode; best.decodeUtil = res.decodeUtil; best.steps = res.steps; }
        }
    }
    if (o.llamaTimings) await context.printTimings();

    const out = {
        peer: "llama.cpp",
        variant,
        model: o.model,
        threads: o.threads,
        prefill_tps: +(o.prompt / best.prefill).toFixed(3),
        decode_tps: o.decode > 0 ? +(best.n / best.decode).toFixed(3) : null,
        prompt: o.prompt,
        decode: best.n,
        reps: o.reps,
        prefill_s: +best.prefill.toFixed(4),
        decode_s: +best.decode.toFixed(4),
        prefill_cpu_util: best.prefillUtil,
        decode_cpu_util: best.decodeUtil,
        // tokens/s of the fastest and of the median decode step: on a shared machine the fastest
        // step is the one least disturbed by other processes
        decode_best_tps: best.steps.length ? +(1 / Math.min(...best.steps)).toFixed(3) : null,
        decode_median_tps: best.steps.length ? +(1 / median(best.steps)).toFixed(3) : null,
        flash_attn: context.flashAttention,
        batch: context.batchSize,
        ctx: context.contextSize,
        node_llama_cpp: mod.version ?? readNlcVersion(),
    };
    if (o.llamaTimings) out.llama_timings = logLines.filter(l => /eval time|load time|total time/.test(l)).map(l => l.trim());
    process.stdout.write(JSON.stringify(out) + "\n");
    await context.dispose();
    await model.dispose();
    await llama.dispose();
}

function readNlcVersion() {
    for (const d of npmDirs()) {
        try { return JSON.parse(fs.readFileSync(path.join(d, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version; } catch { /* next */ }
    }
    return null;
}

main().catch(e => { console.error(`bench.mjs: ${e?.stack ?? e}`); process.exit(1); });
