// bench/serve_load.mjs — load generator for `ramole serve`: N concurrent
// streaming clients send mixed-task prompts, with routed adapters
// (retrieval + router, the server's default) and with none, and measure
// throughput (generated tokens/s over the run), time to first token and
// inter-token latency (p50, p99; the gaps between streamed tokens).
//   node bench/serve_load.mjs URL [--clients 1,8,32] [--requests 4] [--max-tokens 32] [--key KEY]
// Prints one JSON line per (mode, N) and a markdown table.
const args = process.argv.slice(2);
const base = args[0];
const opt = (name, dflt) => { const i = args.indexOf(name); return i > 0 ? args[i + 1] : dflt; };
const clients = opt("--clients", "1,8,32").split(",").map(Number);
const perClient = Number(opt("--requests", "4"));
const maxTokens = Number(opt("--max-tokens", "32"));
const key = opt("--key", null);
const prompts = ["reverse the word apple", "add 3 and 4", "translate to german: the house", "what is 12 plus 9",
  "write river backwards", "in german, say cloud", "reverse the word stone", "add 40 and 2"];

// one streaming request: time to first token, the gaps between tokens, tokens
async function one(prompt, lora) {
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const t0 = performance.now();
  const r = await fetch(base + "/v1/completions", { method: "POST", headers, body: JSON.stringify({
    prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, lora }) });
  if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
  const dec = new TextDecoder();
  let buf = "", last = null, ttft = null, tokens = 0;
  const gaps = [];
  for await (const piece of r.body) {
    buf += dec.decode(piece, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i); buf = buf.slice(i + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const c = JSON.parse(ev.slice(6));
      const now = performance.now();
      if (c.usage) { tokens = c.usage.completion_tokens; continue; }
      if (!c.choices[0].text) continue;
      if (ttft === null) ttft = now - t0; else gaps.push(now - last);
      last = now;
    }
  }
  return { ttft, gaps, tokens };
}

const pct = (v, p) => { if (!v.length) return null; const s = [...v].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
// warm-up: adapters loaded, router matrices built, threads awake
await Promise.all(prompts.map((p) => one(p, { top_k: 2 })));
await one(prompts[0], { mode: "none" });

const rows = [];
for (const mode of ["none", "routed"]) {
  for (const n of clients) {
    const lora = mode === "none" ? { mode: "none" } : { top_k: 2 };
    const ttfts = [], gaps = [];
    let tokens = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, async (_, c) => {
      for (let i = 0; i < perClient; i++) {
        const r = await one(prompts[(c + i) % prompts.length], lora);
        ttfts.push(r.ttft); gaps.push(...r.gaps); tokens += r.tokens;
      }
    }));
    const secs = (performance.now() - t0) / 1000;
    const row = { mode, clients: n, requests: n * perClient, tokens, seconds: +secs.toFixed(3),
      tokens_per_s: +(tokens / secs).toFixed(1), ttft_p50_ms: +pct(ttfts, 0.5).toFixed(2), ttft_p99_ms: +pct(ttfts, 0.99).toFixed(2),
      itl_p50_ms: +pct(gaps, 0.5).toFixed(2), itl_p99_ms: +pct(gaps, 0.99).toFixed(2) };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
console.log("\n| mode | clients | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |\n|---|---|---|---|---|---|---|");
for (const r of rows)
  console.log(`| ${r.mode} | ${r.clients} | ${r.tokens_per_s} | ${r.ttft_p50_ms} | ${r.ttft_p99_ms} | ${r.itl_p50_ms} | ${r.itl_p99_ms} |`);
for (const n of clients) {
  const a = rows.find((r) => r.mode === "routed" && r.clients === n), b = rows.find((r) => r.mode === "none" && r.clients === n);
  console.log(`N = ${n}: routed/none throughput ${(a.tokens_per_s / b.tokens_per_s).toFixed(2)}, routed ITL p99/p50 ${(a.itl_p99_ms / a.itl_p50_ms).toFixed(2)}`);
}
