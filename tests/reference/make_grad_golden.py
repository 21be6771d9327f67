#!/usr/bin/python3
"""Write golden training gradients to tests/golden/grads/grads.json, for
ramole's backward pass (tests/test_train_golden.c).

For the bases tests/golden/models/llama_tiny and qwen2_tiny and one fixed
batch (2 sequences x 8 positions, padding and a loss mask), it computes in
float64 with torch autograd on tests/reference/llama_ref.py:

  full    d loss / d every base parameter
  lora    d loss / d (A, B) of adapter tests/golden/lora/BASE/a2
          (y = W0 x + s B A x, base frozen)
  router  d loss / d (A_r, B_r) of tests/golden/lora/BASE/router with the
          experts a1, a2, a3 frozen; sequence 0 uses experts [a1, a2, a3],
          sequence 1 uses [a3, a1] (RouterLoRA as lora_ref.Composition
          "router" defines it: experts lacking a module keep score 0)

loss = mean over masked-in positions of -log softmax(logits)[target].

Per tensor it stores the shape, the gradient's L2 norm, and the values at
the first 64 flat indices plus 8 random ones (numpy RandomState, fixed
seed), so the file stays small. Deterministic: a second run gives the same
bytes.

    /usr/bin/python3 tests/reference/make_grad_golden.py
"""

import json
import math
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_ref  # noqa: E402
import lora_ref  # noqa: E402

GOLDEN = os.path.join(HERE, "..", "golden")
OUT = os.path.join(GOLDEN, "grads", "grads.json")
B, T = 2, 8
N_FIRST, N_RANDOM = 64, 8
ROUTER_LISTS = [[0, 1, 2], [2, 0]]  # indices into EXPERTS, per sequence
EXPERTS = ["a1", "a2", "a3"]


def make_batch(vocab):
    rs = np.random.RandomState(4242)
    tokens = rs.randint(0, vocab, size=(B, T)).tolist()
    targets = rs.randint(0, vocab, size=(B, T)).tolist()
    mask = [[1 if 1 <= t < T else 0 for t in range(T)],      # first position out
            [1 if t < 5 else 0 for t in range(T)]]           # padding after 5
    return tokens, targets, mask


def batch_loss(model, tokens, targets, mask, per_seq_hook=None):
    total, count = None, 0
    for b in range(B):
        if per_seq_hook is not None:
            model.linear_hooks = [per_seq_hook(b)]
        logits = model.forward(tokens[b])                     # [T, V]
        lp = torch.log_softmax(logits, dim=-1)
        for t in range(T):
            if mask[b][t]:
                term = -lp[t, targets[b][t]]
                total = term if total is None else total + term
                count += 1
    model.linear_hooks = []
    return total / count


def summarise(name, grad, rs):
    g = grad.detach().reshape(-1).numpy()
    n = g.size
    first = list(range(min(N_FIRST, n)))
    extra = sorted(set(rs.randint(0, n, size=N_RANDOM).tolist()) - set(first)) if n > N_FIRST else []
    idx = first + extra
    shape = list(grad.shape) if grad.dim() == 2 else [1, int(grad.shape[0])]
    return {"name": name, "shape": shape, "norm": float(np.linalg.norm(g)),
            "idx": idx, "val": [float(g[i]) for i in idx]}


def t64(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def lora_hook(adapter, params):
    def hook(name, x, y):
        if name not in params:
            return y
        A, Bm = params[name]
        return y + adapter.scale[name] * ((x @ A.t()) @ Bm.t())
    return hook


def router_hook(experts, router, rparams):
    """RouterLoRA exactly as lora_ref.Composition('router') computes it, but
    with the router's A_r, B_r as autograd leaves."""
    def hook(name, x, y):
        if name not in rparams or not any(e.has(name) for e in experts):
            return y
        Ar, Br = rparams[name]
        rr = router.r[name]
        q = x @ Ar.t()
        vs, scores = [], []
        for e in experts:
            if not e.has(name):
                vs.append(None)
                scores.append(torch.zeros(x.shape[0], dtype=x.dtype))
                continue
            v = e.scale[name] * ((x @ t64(e.A[name]).t()) @ t64(e.B[name]).t())
            vs.append(v)
            scores.append((q * (v @ Br)).sum(-1) / math.sqrt(rr))
        g = torch.softmax(torch.stack(scores, dim=-1), dim=-1)
        for j, v in enumerate(vs):
            if v is not None:
                y = y + g[:, j:j + 1] * v
        return y
    return hook


def main():
    torch.set_grad_enabled(True)
    cases = []
    batch = None
    for base in ["llama_tiny", "qwen2_tiny"]:
        folder = os.path.join(GOLDEN, "models", base)
        cfg = llama_ref.load_config(folder)
        weights = llama_ref.load_folder_weights(folder)
        tokens, targets, mask = make_batch(cfg["vocab_size"])
        if batch is None:
            batch = {"B": B, "T": T, "tokens": sum(tokens, []), "targets": sum(targets, []),
                     "mask": sum(mask, [])}
        # full
        model = llama_ref.Model(cfg, weights)
        for k in model.w:
            model.w[k].requires_grad_(True)
        loss = batch_loss(model, tokens, targets, mask)
        loss.backward()
        rs = np.random.RandomState(7)
        tens = [summarise(k, model.w[k].grad, rs) for k in sorted(model.w)]
        cases.append({"name": base + "_full", "kind": "full", "model": "models/" + base,
                      "loss": float(loss), "tensors": tens})
        # lora a2
        model = llama_ref.Model(cfg, weights)
        ad = lora_ref.Adapter.load(os.path.join(GOLDEN, "lora", base, "a2"))
        params = {p: (t64(ad.A[p]).requires_grad_(True), t64(ad.B[p]).requires_grad_(True)) for p in sorted(ad.A)}
        model.linear_hooks = [lora_hook(ad, params)]
        loss = batch_loss(model, tokens, targets, mask)
        loss.backward()
        rs = np.random.RandomState(8)
        tens = []
        for p in sorted(params):
            tens.append(summarise(p + ".lora_A.weight", params[p][0].grad, rs))
            tens.append(summarise(p + ".lora_B.weight", params[p][1].grad, rs))
        cases.append({"name": base + "_lora_a2", "kind": "lora", "model": "models/" + base,
                      "adapter": "lora/%s/a2" % base, "loss": float(loss), "tensors": tens})
        # router
        model = llama_ref.Model(cfg, weights)
        exps = [lora_ref.Adapter.load(os.path.join(GOLDEN, "lora", base, e)) for e in EXPERTS]
        router = lora_ref.Adapter.load(os.path.join(GOLDEN, "lora", base, "router"))
        rparams = {p: (t64(router.A[p]).requires_grad_(True), t64(router.B[p]).requires_grad_(True))
                   for p in sorted(router.A)}
        loss = batch_loss(model, tokens, targets, mask,
                          per_seq_hook=lambda b: router_hook([exps[j] for j in ROUTER_LISTS[b]], router, rparams))
        loss.backward()
        rs = np.random.RandomState(9)
        tens = []
        for p in sorted(rparams):
            for which, i in (("A", 0), ("B", 1)):
                g = rparams[p][i].grad
                if g is None:  # a module no expert adapts: no gradient path
                    g = torch.zeros_like(rparams[p][i])
                tens.append(summarise(p + ".lora_%s.weight" % which, g, rs))
        cases.append({"name": base + "_router", "kind": "router", "model": "models/" + base,
                      "experts": ["lora/%s/%s" % (base, e) for e in EXPERTS],
                      "router": "lora/%s/router" % base, "expert_lists": ROUTER_LISTS,
                      "loss": float(loss), "tensors": tens})
    out = {"version": 1, "generator": "tests/reference/make_grad_golden.py (torch %s, float64)" % torch.__version__,
           "batch": batch, "cases": cases}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote %s (%d bytes)" % (os.path.relpath(OUT), os.path.getsize(OUT)))
    for c in cases:
        print("  %-20s loss %.10f, %d tensors" % (c["name"], c["loss"], len(c["tensors"])))


if __name__ == "__main__":
    main()
