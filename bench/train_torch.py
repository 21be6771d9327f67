#!/usr/bin/python3
"""train_torch.py — the PyTorch peer of build/bench/bench_train: training
tokens/s of the same Llama-family model, batch shape and optimiser.

    /usr/bin/python3 bench/train_torch.py --size 5m|12m --mode full|lora
        [--threads 2] [--batch 8] [--seq 128] [--warmup 2] [--steps 5] [--rank 16]

Prints one JSON line {"peer":"torch", "size", "mode", "tokens_per_s", ...};
exit status 3 (and a message on stderr) when torch cannot be imported.

The model is written out the way a plain PyTorch training script writes a
Llama block (no fused kernels; torch 1.13 has no scaled_dot_product_attention
nor torch.compile): RMSNorm (eps 1e-5, weight), q/k/v/o without bias, RoPE
(rotate-half, theta 10000) on q and k, GQA by repeat_interleave of k and v,
causal mask, softmax in float32, SwiGLU (silu(gate) * up, down), residuals,
final RMSNorm, untied head, cross-entropy over every position. float32
throughout. The same shapes as bench_train.c (SIZES below must stay equal).

full: every parameter trains. lora: the base is frozen (requires_grad
False) and rank-r A, B pairs on q, k, v, o, gate, up, down train, written
out as PEFT computes them: y = x W^T + s (x A^T) B^T, s = alpha / r.

One step: zero grads, forward, loss.backward(), clip_grad_norm_(1.0),
AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01).
tokens/s = B*T / (mean wall time of the timed steps), after warm-up steps.
"""
import argparse
import json
import math
import sys
import time

SIZES = {
    # vocab, hidden, ffn, layers, heads, kv heads (head_dim = hidden / heads)
    "5m": dict(vocab=4096, hidden=256, ffn=688, layers=4, heads=4, kv=2),
    "12m": dict(vocab=4096, hidden=384, ffn=1024, layers=6, heads=6, kv=2),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="5m", choices=sorted(SIZES))
    ap.add_argument("--mode", default="full", choices=["full", "lora"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    a = ap.parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"train_torch.py: torch not available ({e})", file=sys.stderr)
        sys.exit(3)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = SIZES[a.size]
    V, d, f, L, H, KV = c["vocab"], c["hidden"], c["ffn"], c["layers"], c["heads"], c["kv"]
    hd = d // H
    B, T = a.batch, a.seq
    lora = a.mode == "lora"
    r, s_lora = a.rank, a.alpha / a.rank

    class Linear(nn.Module):
        """nn.Linear without bias, plus an optional LoRA pair (PEFT math)."""

        def __init__(self, din, dout):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(dout, din) * 0.02)
            if lora:
                self.weight.requires_grad_(False)
                self.A = nn.Parameter(torch.randn(r, din) / math.sqrt(din))
                self.B = nn.Parameter(torch.randn(dout, r) * 0.01)  # PEFT inits B = 0; nonzero costs the same

        def forward(self, x):
            y = F.linear(x, self.weight)
            if lora:
                y = y + s_lora * F.linear(F.linear(x, self.A), self.B)
            return y

    class RMSNorm(nn.Module):
        def __init__(self, n, eps=1e-5):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))
            self.eps = eps
            if lora:
                self.weight.requires_grad_(False)

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)  # [T][hd]
    sin = torch.cat([ang.sin(), ang.sin()], -1)

    def rot_half(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat([-x2, x1], -1)

    def rope(x):  # [B][h][T][hd]
        return x * cos + rot_half(x) * sin

    mask = torch.full((T, T), float("-inf")).triu(1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
            self.q, self.k, self.v = Linear(d, H * hd), Linear(d, KV * hd), Linear(d, KV * hd)
            self.o = Linear(H * hd, d)
            self.gate, self.up, self.down = Linear(d, f), Linear(d, f), Linear(f, d)

        def forward(self, x):
            h = self.n1(x)
            q = self.q(h).view(B, T, H, hd).transpose(1, 2)
            k = self.k(h).view(B, T, KV, hd).transpose(1, 2)
            v = self.v(h).view(B, T, KV, hd).transpose(1, 2)
            q, k = rope(q), rope(k)
            if KV != H:
                k = k.repeat_interleave(H // KV, dim=1)
                v = v.repeat_interleave(H // KV, dim=1)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd)) + mask
            att = att.softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
            x = x + self.o(y)
            h = self.n2(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, d)
            self.layers = nn.ModuleList([Block() for _ in range(L)])
            self.norm = RMSNorm(d)
            self.head = nn.Linear(d, V, bias=False)
            if lora:
                self.embed.weight.requires_grad_(False)
                self.head.weight.requires_grad_(False)

        def forward(self, tok):
            x = self.embed(tok)
            for blk in self.layers:
                x = blk(x)
            return self.head(self.norm(x))

    model = Model()
    n_total = sum(p.numel() for p in model.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    decay = [p for p in params if p.dim() == 2]
    nodecay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    tok = torch.randint(0, V, (B, T), generator=g)
    tgt = torch.randint(0, V, (B, T), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(tok)
        loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    loss = 0.0
    for _ in range(a.steps):
        t0 = time.perf_counter()
        c0 = time.process_time()
        loss = step()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    wall = sum(t for t, _ in times)
    cpu = sum(c for _, c in times)
    best = min(t for t, _ in times)
    print(json.dumps({
        "peer": "torch", "torch": torch.__version__, "size": a.size, "mode": a.mode, "threads": a.threads,
        "batch": B, "seq": T, "params": n_total, "trainable": n_train, "steps": a.steps,
        "tokens_per_s": round(B * T * a.steps / wall, 1), "best_step_tokens_per_s": round(B * T / best, 1),
        "step_s": round(wall / a.steps, 5), "cpu_util": round(cpu / (wall * a.threads), 2), "loss": round(loss, 4),
    }))


if __name__ == "__main__":
    main()
