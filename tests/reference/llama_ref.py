#!/usr/bin/python3
"""Reference forward pass for Llama-family decoder-only models (llama,
mistral, qwen2), written in plain PyTorch and following Hugging Face
transformers' modeling_llama.py / modeling_mistral.py / modeling_qwen2.py
and modeling_rope_utils.py (v4.4x) operation by operation.

It is not a copy of that code: it is a minimal re-statement of the same maths,
used to produce golden logits for ramole's tests (see make_golden.py and
README.md in this folder).  Everything runs in float64 by default.

Structure (kept deliberately simple so that LoRA can be added later):
  * every projection goes through Model.linear(name, x) -- one place to hook
    adapters (see Model.linear_hooks);
  * weights live in one dict {HF tensor name: torch tensor};
  * Model.forward(tokens, cache, pos0) runs a chunk of tokens at absolute
    positions pos0.. with an optional KV cache, returning logits for every
    position of the chunk.

Also here: a safetensors reader (single file or HF sharded index) and a
second, independent numpy implementation (naive_forward_numpy) used only to
cross-check this one.

Run with Debian's interpreter: /usr/bin/python3 (needs python3-torch,
python3-numpy; no transformers, no safetensors package).
"""

import json
import math
import os
import struct

import numpy as np
import torch

# --------------------------------------------------------------------------
# safetensors reading (format: u64 LE header length N, N bytes of JSON header
# {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"?},
# then the data block; offsets are relative to the start of the data block).
# --------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8,
}


def read_safetensors(path):
    """Return {name: np.ndarray} for one .safetensors file (BF16 -> float32)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(data[b:e], dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32).reshape(shape)
        else:
            dt = np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<")
            arr = np.frombuffer(data[b:e], dtype=dt).reshape(shape)
        out[name] = arr.copy()
    return out


def load_folder_weights(folder):
    """Load all tensors of an HF model folder (single file or sharded)."""
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(wm.values())):
            part = read_safetensors(os.path.join(folder, shard))
            for k, v in part.items():
                assert wm[k] == shard, (k, shard)
                tensors[k] = v
        assert set(tensors) == set(wm), "index and shards disagree"
        return tensors
    return read_safetensors(os.path.join(folder, "model.safetensors"))


def load_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f)


# --------------------------------------------------------------------------
# RoPE inverse frequencies (modeling_rope_utils.py)
# --------------------------------------------------------------------------

def head_dim_of(cfg):
    hd = cfg.get("head_dim")
    if hd is None:
        hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    return hd


def rope_inv_freq(cfg, dtype=torch.float64):
    """inv_freq[i], i < head_dim/2, plus the attention_factor that HF
    multiplies into cos/sin (1.0 for default, linear and llama3)."""
    dim = head_dim_of(cfg)          # partial_rotary_factor is 1 for these models
    base = float(cfg.get("rope_theta", 10000.0))
    # _compute_default_rope_parameters:
    #   inv_freq = 1 / base ** (arange(0, dim, 2) / dim)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype) / dim))
    attention_factor = 1.0
    rs = cfg.get("rope_scaling")
    if rs is None:
        return inv_freq, attention_factor
    rope_type = rs.get("rope_type", rs.get("type", "default"))
    if rope_type == "default":
        pass
    elif rope_type == "linear":
        # _compute_linear_scaling_rope_parameters: inv_freq /= factor
        # (same as dividing the position ids by factor)
        inv_freq = inv_freq / float(rs["factor"])
    elif rope_type == "llama3":
        # _compute_llama3_parameters
        factor = float(rs["factor"])
        low_freq_factor = float(rs["low_freq_factor"])
        high_freq_factor = float(rs["high_freq_factor"])
        old_context_len = float(rs["original_max_position_embeddings"])
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium = (~(wavelen < high_freq_wavelen)) & (~(wavelen > low_freq_wavelen))
        inv_freq = torch.where(is_medium, smoothed, inv_freq_llama)
    else:
        raise NotImplementedError("rope_type %r" % rope_type)
    return inv_freq, attention_factor


def rope_cos_sin(cfg, positions, dtype=torch.float64):
    """LlamaRotaryEmbedding.forward: freqs = pos (outer) inv_freq,
    emb = cat(freqs, freqs) -> cos, sin of shape [T, head_dim]."""
    inv_freq, attention_factor = rope_inv_freq(cfg, dtype)
    pos = torch.as_tensor(positions, dtype=dtype)
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * attention_factor, emb.sin() * attention_factor


def rotate_half(x):
    """Rotates half the hidden dims: [x1, x2] -> [-x2, x1] (HF)."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """HF apply_rotary_pos_emb with q,k [heads, T, head_dim], cos/sin [T, hd]."""
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------

class Model:
    """cfg: dict from config.json; weights: {HF name: array/tensor}."""

    def __init__(self, cfg, weights, dtype=torch.float64):
        self.cfg = cfg
        self.dtype = dtype
        self.w = {k: torch.as_tensor(np.asarray(v)).to(dtype) for k, v in weights.items()}
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads") or self.n_heads
        self.hd = head_dim_of(cfg)
        self.eps = float(cfg["rms_norm_eps"])
        assert cfg.get("hidden_act", "silu") == "silu"
        # Mistral: sliding_window (None = off). Qwen2: only if use_sliding_window.
        sw = cfg.get("sliding_window")
        if cfg.get("model_type") == "qwen2" and not cfg.get("use_sliding_window", False):
            sw = None
        self.sliding_window = sw
        # LoRA hook point: list of callables f(name, x, y) -> y, applied after
        # every base projection in linear().  Empty for now.
        self.linear_hooks = []

    # -- building blocks ---------------------------------------------------
    def linear(self, name, x):
        """nn.Linear: y = x W^T (+ b).  name is the HF module path, e.g.
        'model.layers.0.self_attn.q_proj' or 'lm_head'.  The ONLY place
        where a weight matrix is applied."""
        y = x @ self.w[name + ".weight"].t()
        b = self.w.get(name + ".bias")
        if b is not None:
            y = y + b
        for hook in self.linear_hooks:
            y = hook(name, x, y)
        return y

    def rms_norm(self, name, x):
        """LlamaRMSNorm / Qwen2RMSNorm / MistralRMSNorm:
        weight * (x * rsqrt(mean(x^2) + eps)).  (HF upcasts to fp32 first;
        here everything is already float64.)"""
        var = x.pow(2).mean(-1, keepdim=True)
        return self.w[name + ".weight"] * (x * torch.rsqrt(var + self.eps))

    def lm_head_name(self):
        if "lm_head.weight" in self.w:
            return "lm_head"
        # tie_word_embeddings: lm_head.weight IS model.embed_tokens.weight
        assert self.cfg.get("tie_word_embeddings", False), "no lm_head.weight and not tied"
        return "model.embed_tokens"

    # -- forward -----------------------------------------------------------
    def new_cache(self):
        return [None] * self.n_layers   # per layer: (k, v) [n_kv, T, hd]

    def forward(self, tokens, cache=None, pos0=0, return_hidden=False):
        """tokens: list of ids at absolute positions pos0..pos0+T-1.
        cache: from new_cache() (updated in place) or None (no past).
        Returns logits [T, vocab] (float64)."""
        T = len(tokens)
        H, KV, hd = self.n_heads, self.n_kv, self.hd
        ids = torch.as_tensor(tokens, dtype=torch.long)
        x = self.w["model.embed_tokens.weight"][ids]           # [T, hidden]
        positions = torch.arange(pos0, pos0 + T)
        cos, sin = rope_cos_sin(self.cfg, positions, self.dtype)
        scaling = hd ** -0.5                                    # LlamaAttention.scaling
        for L in range(self.n_layers):
            p = "model.layers.%d." % L
            # --- self attention block (pre-norm) ---
            residual = x
            h = self.rms_norm(p + "input_layernorm", x)
            q = self.linear(p + "self_attn.q_proj", h)            # [T, H*hd] (+bias qwen2)
            k = self.linear(p + "self_attn.k_proj", h)            # [T, KV*hd]
            v = self.linear(p + "self_attn.v_proj", h)
            q = q.view(T, H, hd).transpose(0, 1)                  # [H, T, hd]
            k = k.view(T, KV, hd).transpose(0, 1)                 # [KV, T, hd]
            v = v.view(T, KV, hd).transpose(0, 1)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)           # after bias, per head
            if cache is not None:
                if cache[L] is not None:
                    k = torch.cat((cache[L][0], k), dim=1)
                    v = torch.cat((cache[L][1], v), dim=1)
                cache[L] = (k, v)
            S = k.shape[1]                                        # total keys = pos0 + T
            assert S == pos0 + T, "cache length does not match pos0"
            # repeat_kv: kv head j serves query heads j*G .. j*G+G-1
            G = H // KV
            k_r = k.repeat_interleave(G, dim=0)                   # [H, S, hd]
            v_r = v.repeat_interleave(G, dim=0)
            att = (q @ k_r.transpose(1, 2)) * scaling             # [H, T, S]
            qpos = positions[:, None]
            kpos = torch.arange(S)[None, :]
            masked = kpos > qpos                                   # causal
            if self.sliding_window is not None:
                masked = masked | (kpos <= qpos - self.sliding_window)
            att = att.masked_fill(masked[None], float("-inf"))
            att = torch.softmax(att, dim=-1)
            o = att @ v_r                                          # [H, T, hd]
            o = o.transpose(0, 1).reshape(T, H * hd)
            o = self.linear(p + "self_attn.o_proj", o)             # no bias (all three archs)
            x = residual + o
            # --- MLP block (pre-norm, SwiGLU) ---
            residual = x
            h = self.rms_norm(p + "post_attention_layernorm", x)
            g = self.linear(p + "mlp.gate_proj", h)
            u = self.linear(p + "mlp.up_proj", h)
            m = self.linear(p + "mlp.down_proj", torch.nn.functional.silu(g) * u)
            x = residual + m
        x = self.rms_norm("model.norm", x)
        logits = self.linear(self.lm_head_name(), x)
        if return_hidden:
            return logits, x
        return logits


# --------------------------------------------------------------------------
# Independent cross-check: a second implementation in numpy, one token at a
# time with an explicit KV cache, loops over heads, and RoPE written as a
# rotation of the pairs (i, i + hd/2) with angles computed from scratch.
# --------------------------------------------------------------------------

def _inv_freq_numpy(cfg):
    hd = head_dim_of(cfg)
    base = float(cfg.get("rope_theta", 10000.0))
    inv = np.array([base ** (-(2.0 * i) / hd) for i in range(hd // 2)])
    rs = cfg.get("rope_scaling") or {}
    t = rs.get("rope_type", rs.get("type", "default"))
    if t == "linear":
        inv = inv / rs["factor"]
    elif t == "llama3":
        f, lo, hi, old = (rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"],
                          rs["original_max_position_embeddings"])
        out = []
        for fr in inv:
            wl = 2 * math.pi / fr
            if wl < old / hi:
                out.append(fr)
            elif wl > old / lo:
                out.append(fr / f)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * fr / f + s * fr)
        inv = np.array(out)
    return inv


def naive_forward_numpy(cfg, weights, tokens):
    W = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    hd = head_dim_of(cfg)
    half = hd // 2
    eps = float(cfg["rms_norm_eps"])
    inv = _inv_freq_numpy(cfg)
    nl = cfg["num_hidden_layers"]
    kc = [[] for _ in range(nl)]
    vc = [[] for _ in range(nl)]

    def lin(name, x):
        y = W[name + ".weight"].dot(x)
        if name + ".bias" in W:
            y = y + W[name + ".bias"]
        return y

    def norm(name, x):
        return W[name + ".weight"] * x / math.sqrt(float(np.mean(x * x)) + eps)

    def rope(vec, pos):           # vec: [hd] one head
        out = vec.copy()
        for i in range(half):
            a = pos * inv[i]
            c, s = math.cos(a), math.sin(a)
            x0, x1 = vec[i], vec[i + half]
            out[i] = x0 * c - x1 * s
            out[i + half] = x1 * c + x0 * s
        return out

    head = "lm_head" if "lm_head.weight" in W else "model.embed_tokens"
    result = []
    for pos, tok in enumerate(tokens):
        x = W["model.embed_tokens.weight"][tok].copy()
        for L in range(nl):
            p = "model.layers.%d." % L
            h = norm(p + "input_layernorm", x)
            q = lin(p + "self_attn.q_proj", h)
            k = lin(p + "self_attn.k_proj", h)
            v = lin(p + "self_attn.v_proj", h)
            ks = np.concatenate([rope(k[j * hd:(j + 1) * hd], pos) for j in range(KV)])
            kc[L].append(ks)
            vc[L].append(v)
            att_out = np.zeros(H * hd)
            for hh in range(H):
                j = hh // (H // KV)
                qh = rope(q[hh * hd:(hh + 1) * hd], pos)
                sc = np.array([qh.dot(kk[j * hd:(j + 1) * hd]) / math.sqrt(hd) for kk in kc[L]])
                sc = np.exp(sc - sc.max())
                sc /= sc.sum()
                for t, vv in enumerate(vc[L]):
                    att_out[hh * hd:(hh + 1) * hd] += sc[t] * vv[j * hd:(j + 1) * hd]
            x = x + lin(p + "self_attn.o_proj", att_out)
            h = norm(p + "post_attention_layernorm", x)
            g = lin(p + "mlp.gate_proj", h)
            u = lin(p + "mlp.up_proj", h)
            x = x + lin(p + "mlp.down_proj", g / (1.0 + np.exp(-g)) * u)
        x = norm("model.norm", x)
        result.append(W[head + ".weight"].dot(x))
    return np.array(result)


if __name__ == "__main__":
    import sys
    if len(sys.argv) < 3:
        print("usage: /usr/bin/python3 llama_ref.py MODEL_DIR TOKEN [TOKEN...]")
        sys.exit(2)
    folder = sys.argv[1]
    toks = [int(t) for t in sys.argv[2:]]
    m = Model(load_config(folder), load_folder_weights(folder))
    lg = m.forward(toks)
    for i, row in enumerate(lg):
        top = torch.topk(row, 5)
        print(i, toks[i], [(int(a), "%.6f" % float(b)) for b, a in zip(top.values, top.indices)])
