#!/usr/bin/env python3
"""The router's training set, as the paper trains RouterLoRA: training
examples of the seen tasks, each with the adapters that retrieval picks for
its input (top-k over the seen adapters' pool), not its own adapter.

Each seen task's adapter is represented in the pool by the first `samples`
inputs of its train.jsonl (as the registry holds it); the router's examples
are the train inputs after those, so no query is its own evidence.
Prints JSONL {"input", "output", "adapters": [k names], "scores": [their
retrieval cosines]} on stdout (a router with a retrieval prior trains on
the scores; the paper's router ignores them) and the
share of examples whose own adapter is among their k on stderr.
"""
import argparse, json, os, random, subprocess, sys, tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default="world")
    ap.add_argument("--ramole", default="build/ramole")
    ap.add_argument("--per-task", type=int, default=150)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    meta = json.load(open(f"{a.world}/tasks.json"))
    m = meta["retrieval"]["samples"]
    seen = [t["name"] for t in meta["tasks"] if t["seen"]]
    pool, queries = [], []
    for t in seen:
        rows = [json.loads(l) for l in open(f"{a.world}/tasks/{t}/train.jsonl")]
        pool += [{"task": t, "input": r["input"]} for r in rows[:m]]
        queries += [dict(r, task=t) for r in rows[m:m + a.per_task]]
    random.Random(a.seed).shuffle(queries)
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/pool.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in pool)
        out = []
        for s in range(0, len(queries), 4000):  # `retrieve` takes at most 4096 texts a call
            chunk = queries[s:s + 4000]
            with open(f"{d}/q.jsonl", "w") as f:
                f.writelines(json.dumps({"input": q["input"]}) + "\n" for q in chunk)
            r = subprocess.run([a.ramole, "retrieve", "-m", f"{a.world}/base", "--projection",
                                f"{a.world}/projection.safetensors", "--pool", f"{d}/pool.jsonl", "--jsonl",
                                f"{d}/q.jsonl", "-k", str(a.k), "--samples", str(m)],
                               capture_output=True, text=True, check=True)
            out += [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    assert len(out) == len(queries), (len(out), len(queries))
    own = 0
    for q, r in zip(queries, out):
        names = [h["task"] for h in r["results"]]
        own += q["task"] in names
        scores = [round(h["score"], 6) for h in r["results"]]
        print(json.dumps({"input": q["input"], "output": q["output"], "adapters": names, "scores": scores},
                         ensure_ascii=False))
    print(f"router data: {len(queries)} examples of {len(seen)} seen tasks; own adapter in the retrieved "
          f"top-{a.k}: {own / len(queries):.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
