// bench/llamacpp/peer.mjs — opens node-llama-cpp (a prebuilt llama.cpp, the
// speed peer) from $RAMOLE_PEER_NPM_DIR or .cache/npm-llamacpp, CPU only,
// for the benches in this folder.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

// { llama, lib (node-llama-cpp's exports) } with `threads` threads; exits 3 naming the problem when node-llama-cpp is missing
export async function openPeer(who, threads) {
    const dirs = [process.env.RAMOLE_PEER_NPM_DIR, path.join(root, ".cache", "npm-llamacpp")].filter(Boolean);
    const entry = dirs.map(d => path.join(path.resolve(d), "node_modules", "node-llama-cpp", "dist", "index.js")).find(fs.existsSync);
    if (!entry) { console.error(`${who}: node-llama-cpp is not installed (scripts/peers.sh)`); process.exit(3); }
    const lib = await import(pathToFileURL(entry).href);
    const { getLlama, LlamaLogLevel } = lib;
    const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
                                   progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: threads });
    return { llama, lib };
}
