#!/usr/bin/env node
// bench/llamacpp/json_schema.mjs — llama.cpp's constrained decoding, the
// peer of ramole's response formats: sampled answers of one sequence with
// and without a grammar from a JSON Schema (node-llama-cpp's
// createGrammarForJsonSchema, llama.cpp's grammar sampler underneath).
//
//   node bench/llamacpp/json_schema.mjs -m MODEL.gguf --schema FILE [-t THREADS]
//        [--prompt TEXT] [-n MAX_TOKENS | --lengths N1,N2,...] [--seeds 1,2,3] [--grammar 1|0]
//
// Prints one JSON line: {"peer": "llama.cpp", "grammar": bool, "tokens": N,
// "seconds": S, "tps": N/S, "lengths": [...], "texts": [...]}; seconds count the token loop of
// each answer after its prompt was evaluated, as ramole's "generated" rate
// does. Without a grammar every answer runs to -n tokens (end tokens do not
// stop it; --lengths caps each seed's answer apart); with one an answer
// ends at an end token (llama.cpp allows it only where the value is
// complete) or at -n.
import fs from "node:fs";
import { openPeer } from "./peer.mjs";

const o = { model: null, schema: null, threads: 2, prompt: "A person, as JSON:", n: 256, seeds: [1, 2, 3], grammar: 1 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const a = argv[i], next = () => argv[++i];
    if (a === "-m") o.model = next();
    else if (a === "--schema") o.schema = next();
    else if (a === "-t") o.threads = parseInt(next(), 10);
    else if (a === "--prompt") o.prompt = next();
    else if (a === "-n") o.n = parseInt(next(), 10);
    else if (a === "--seeds") o.seeds = next().split(",").map(Number);
    else if (a === "--lengths") o.lengths = next().split(",").map(Number);
    else if (a === "--grammar") o.grammar = parseInt(next(), 10);
    else { console.error(`json_schema.mjs: unknown argument ${a}`); process.exit(2); }
}
if (!o.model || !o.schema) { console.error("json_schema.mjs: -m MODEL.gguf and --schema FILE are required"); process.exit(2); }

const { llama, lib } = await openPeer("json_schema.mjs", o.threads);
const { LlamaGrammarEvaluationState } = lib;
const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 1024, sequences: 1, threads: o.threads });
const sequence = context.getSequence();
const grammar = o.grammar ? await llama.createGrammarForJsonSchema(JSON.parse(fs.readFileSync(o.schema, "utf8"))) : null;
const promptTokens = model.tokenize(o.prompt, true);

let tokens = 0, seconds = 0;
const texts = [], lengths = [];
for (const [i, seed] of o.seeds.entries()) {
    const cap = o.lengths ? o.lengths[i] : o.n;
    await sequence.clearHistory();
    const state = grammar ? new LlamaGrammarEvaluationState({ model, grammar }) : undefined;
    const out = [];
    let t0 = 0;
    for await (const tok of sequence.evaluate(promptTokens, { temperature: 1, topK: 0, topP: 1, minP: 0, seed,
                                                              grammarEvaluationState: state })) {
        if (!t0) t0 = performance.now(); // the first token came with the prompt's evaluation
        if (grammar && model.isEogToken(tok)) break;
        out.push(tok);
        if (out.length >= cap) break;
    }
    seconds += (performance.now() - t0) / 1000;
    tokens += out.length - 1; // the loop's time runs from the first token on
    lengths.push(out.length);
    texts.push(model.detokenize(out));
}
console.log(JSON.stringify({ peer: "llama.cpp", grammar: !!grammar, tokens, seconds, tps: tokens / seconds, lengths, texts }));
await context.dispose();
await model.dispose();
