#!/usr/bin/python3
"""Write the tiny random model fixtures under tests/golden/models/NAME/:
config.json, model.safetensors (or two shards + index), golden.json.

    /usr/bin/python3 tests/reference/make_golden.py [--check] [OUT_DIR]

OUT_DIR defaults to tests/golden/models (relative to the repository root).
Deterministic: weights come from numpy's legacy RandomState with fixed seeds,
so re-running produces byte-identical files.  --check additionally runs the
slow independent numpy cross-check (llama_ref.naive_forward_numpy).

See README.md in this folder for the layout of golden.json.
"""

import copy
import json
import os
import struct
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ in tests/reference
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402

# ---------------------------------------------------------------------------
# sizes (kept small: every fixture folder < 300 KB, see README)
# ---------------------------------------------------------------------------
HIDDEN = 64
HEAD_DIM = 16
N_HEADS = 4
INTER = 32
LAYERS = 2
VOCAB = 64
TRANSFORMERS_VERSION = "4.46.0"

# token sequences: lengths per fixture; seq 0 starts with BOS (1)
LONG_LENGTHS = [7, 13, 40]   # > original_max_position_embeddings of llama3_tiny
SHORT_LENGTHS = [5, 9, 17]   # fixtures that also carry f16/bf16/q8_0 goldens


# ---------------------------------------------------------------------------
# safetensors writer (as the safetensors library writes: u64 LE header size,
# JSON header, data; tensors sorted by name (all F32 here), header padded with
# spaces to a multiple of 8, "__metadata__": {"format": "pt"} as torch saves).
# ---------------------------------------------------------------------------

def write_safetensors(path, tensors):
    names = sorted(tensors)
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    off = 0
    for n in names:
        a = np.ascontiguousarray(tensors[n], dtype="<f4")
        b = a.tobytes()
        header[n] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off  # bytes of tensor data


def write_json_hf(path, obj):
    """PretrainedConfig.to_json_file: json.dumps(indent=2, sort_keys=True) + newline."""
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------
# configs, as transformers 4.46 writes them (to_diff_dict + sort_keys)
# ---------------------------------------------------------------------------

def llama_config(n_kv, rope_theta, rope_scaling, tied, max_pos=512):
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "max_position_embeddings": max_pos,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": N_HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": n_kv,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": rope_scaling,
        "rope_theta": float(rope_theta),
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": VOCAB,
    }


def mistral_config():
    # MistralConfig (4.46) has no rope_scaling attribute, so HF writes none.
    return {
        "architectures": ["MistralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "max_position_embeddings": 512,
        "model_type": "mistral",
        "num_attention_heads": N_HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": 1,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": VOCAB,
    }


def qwen2_config():
    # Qwen2Config (4.46) has no head_dim attribute: head_dim = hidden/heads.
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "max_position_embeddings": 512,
        "max_window_layers": LAYERS,
        "model_type": "qwen2",
        "num_attention_heads": N_HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB,
    }


# ---------------------------------------------------------------------------
# random weights: std 1/sqrt(fan_in) for projections so activations stay
# O(1), embeddings std 0.3 so logits are O(1..10); norm weights around 1.
# ---------------------------------------------------------------------------

def make_weights(cfg, seed):
    rs = np.random.RandomState(seed)
    H, hd = cfg["num_attention_heads"], llama_ref.head_dim_of(cfg)
    KV = cfg["num_key_value_heads"]
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    qkv_bias = cfg["model_type"] == "qwen2"
    w = {}

    def mat(out_f, in_f, std=None):
        std = (1.0 / np.sqrt(in_f)) if std is None else std
        return (rs.standard_normal((out_f, in_f)) * std).astype(np.float32)

    def vec(n, mean, std):
        return (mean + rs.standard_normal(n) * std).astype(np.float32)

    w["model.embed_tokens.weight"] = mat(V, D, 0.3)
    for L in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % L
        w[p + "input_layernorm.weight"] = vec(D, 1.0, 0.2)
        w[p + "self_attn.q_proj.weight"] = mat(H * hd, D)
        w[p + "self_attn.k_proj.weight"] = mat(KV * hd, D)
        w[p + "self_attn.v_proj.weight"] = mat(KV * hd, D)
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = vec(H * hd, 0.0, 0.5)
            w[p + "self_attn.k_proj.bias"] = vec(KV * hd, 0.0, 0.5)
            w[p + "self_attn.v_proj.bias"] = vec(KV * hd, 0.0, 0.5)
        w[p + "self_attn.o_proj.weight"] = mat(D, H * hd)
        w[p + "post_attention_layernorm.weight"] = vec(D, 1.0, 0.2)
        w[p + "mlp.gate_proj.weight"] = mat(I, D)
        w[p + "mlp.up_proj.weight"] = mat(I, D)
        w[p + "mlp.down_proj.weight"] = mat(D, I)
    w["model.norm.weight"] = vec(D, 1.0, 0.2)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(V, D, 0.3)
    return w


def make_tokens(seed, lengths, vocab):
    rs = np.random.RandomState(seed)
    seqs = []
    for i, n in enumerate(lengths):
        s = [int(t) for t in rs.randint(3, vocab, size=n)]
        if i == 0:
            s[0] = 1  # BOS
        seqs.append(s)
    return seqs


# ---------------------------------------------------------------------------
# weight rounding for the f16 / bf16 / q8_0 goldens (2-D matrices only)
# ---------------------------------------------------------------------------

def round_f16(a):
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def round_bf16(a):
    # torch's float32 -> bfloat16 conversion is round-to-nearest-even
    return torch.from_numpy(np.asarray(a, np.float32)).to(torch.bfloat16).to(torch.float32).numpy()


def round_q8_0(a):
    """ggml quantize_row_q8_0_ref on every row (blocks of 32 along the last,
    i.e. input, dimension), then dequantise: fp16(d) * q.
        amax = max|x|; d = amax / 127 (f32); id = d ? 1/d : 0 (f32);
        q = roundf(x * id) (f32 product, round half away from zero);
        stored d = fp16(d)."""
    a = np.asarray(a, np.float32)
    rows, k = a.shape
    assert k % 32 == 0
    b = a.reshape(rows, k // 32, 32)
    amax = np.abs(b).max(axis=-1, keepdims=True).astype(np.float32)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    x0 = (b * idv).astype(np.float32)                       # f32 product
    x64 = x0.astype(np.float64)
    q = np.sign(x64) * np.floor(np.abs(x64) + 0.5)          # roundf, exact in f64
    assert np.all(np.abs(q) <= 127)
    d16 = d.astype(np.float16).astype(np.float32)
    return (d16 * q.astype(np.float32)).astype(np.float32).reshape(rows, k)


ROUNDERS = {"f16": round_f16, "bf16": round_bf16, "q8_0": round_q8_0}


def rounded_weights(w, how):
    out = {}
    for k, v in w.items():
        out[k] = ROUNDERS[how](v) if v.ndim == 2 else v
    return out


# ---------------------------------------------------------------------------
# golden computation and output
# ---------------------------------------------------------------------------

def fmt(x):
    return "%.9g" % float(np.float32(x))


def logits_json(all_logits):
    """[[[...vocab...] per position] per sequence] -> text, one position per line."""
    seqs = []
    for lg in all_logits:
        rows = ["[" + ",".join(fmt(v) for v in row) + "]" for row in lg]
        seqs.append("[\n" + ",\n".join(rows) + "\n]")
    return "[\n" + ",\n".join(seqs) + "\n]"


def run_all(cfg, w, tokens):
    m = llama_ref.Model(cfg, w)
    return [m.forward(t).numpy() for t in tokens]


def self_check(cfg, w, tokens, full, slow):
    """Cross-checks of the reference against itself / an independent copy."""
    m = llama_ref.Model(cfg, w)
    worst = 0.0
    for t, ref in zip(tokens, full):
        # (1) incremental decoding with a KV cache, in uneven chunks
        cache = m.new_cache()
        parts, pos = [], 0
        for n in [3, 1, 2] + [1] * len(t):
            if pos >= len(t):
                break
            chunk = t[pos:pos + n]
            parts.append(m.forward(chunk, cache, pos).numpy())
            pos += len(chunk)
        inc = np.concatenate(parts)
        worst = max(worst, float(np.abs(inc - ref).max()))
        # (2) prefix consistency: causal => logits of a prefix do not change
        pre = m.forward(t[:4]).numpy()
        worst = max(worst, float(np.abs(pre - ref[:4]).max()))
    assert worst < 1e-10, "KV-cache / prefix check failed: %g" % worst
    # (3) float32 run agrees loosely with float64
    m32 = llama_ref.Model(cfg, w, dtype=torch.float32)
    d32 = max(float(np.abs(m32.forward(t).numpy() - r).max()) for t, r in zip(tokens, full))
    assert d32 < 1e-3, "float32 vs float64: %g" % d32
    # (4) independent numpy implementation (pairwise-rotation RoPE, per-token)
    dn = None
    if slow:
        dn = max(float(np.abs(llama_ref.naive_forward_numpy(cfg, w, t) - r).max())
                 for t, r in zip(tokens, full))
        assert dn < 1e-9, "numpy cross-check: %g" % dn
    return worst, d32, dn


def check_rope_rotate_half():
    """rotate_half formulation == rotating pairs (i, i+hd/2) as complex numbers."""
    torch.manual_seed(0)
    for cfg in [{"rope_theta": 10000.0, "hidden_size": 64, "num_attention_heads": 4},
                {"rope_theta": 500000.0, "hidden_size": 64, "num_attention_heads": 4,
                 "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
                {"rope_theta": 10000.0, "hidden_size": 64, "num_attention_heads": 4,
                 "rope_scaling": {"type": "linear", "factor": 2.0}}]:
        pos = torch.arange(0, 50)
        cos, sin = llama_ref.rope_cos_sin(cfg, pos)
        q = torch.randn(3, 50, 16, dtype=torch.float64)
        qr, _ = llama_ref.apply_rotary_pos_emb(q, q, cos, sin)
        inv = torch.as_tensor(llama_ref._inv_freq_numpy(cfg))
        z = torch.complex(q[..., :8], q[..., 8:]) * torch.polar(torch.ones(50, 8, dtype=torch.float64),
                                                              pos[:, None].double() * inv[None, :])
        ref = torch.cat((z.real, z.imag), dim=-1)
        assert float((qr - ref).abs().max()) < 1e-12
        # linear scaling == dividing the positions by the factor
        rsc = cfg.get("rope_scaling") or {}
        if rsc.get("type") == "linear":
            c0, s0 = llama_ref.rope_cos_sin({k: v for k, v in cfg.items() if k != "rope_scaling"},
                                            pos.double() / 2.0)
            assert float((c0 - cos).abs().max()) < 1e-12 and float((s0 - sin).abs().max()) < 1e-12


def fixtures():
    llama3_scaling = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 64, "rope_type": "llama3"}
    return [
        # name, config, weight seed, token lengths, quantised variants?
        ("llama_tiny", llama_config(2, 10000.0, None, False), 1001, SHORT_LENGTHS, True),
        ("llama3_tiny", llama_config(2, 500000.0, llama3_scaling, True), 1002, LONG_LENGTHS, False),
        ("llama_linear_tiny", llama_config(4, 10000.0, {"factor": 2.0, "type": "linear"}, False),
         1003, LONG_LENGTHS, False),
        ("mistral_tiny", mistral_config(), 1004, LONG_LENGTHS, False),
        ("qwen2_tiny", qwen2_config(), 1005, SHORT_LENGTHS, True),
        # same config, weights and tokens as llama_tiny, but stored as 2 shards
        ("llama_sharded_tiny", llama_config(2, 10000.0, None, False), 1001, LONG_LENGTHS, False),
    ]


def write_fixture(root, name, cfg, seed, lengths, quant, slow):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    for stale in ("model.safetensors", "model.safetensors.index.json",
                  "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        if os.path.exists(os.path.join(d, stale)):
            os.remove(os.path.join(d, stale))
    w = make_weights(cfg, seed)
    tokens = make_tokens(seed + 7, lengths, cfg["vocab_size"])
    write_json_hf(os.path.join(d, "config.json"), cfg)
    if name.endswith("sharded_tiny"):
        # HF save_pretrained: shards filled in state_dict order, index maps
        # every name to its file, total_size = sum of tensor bytes.
        first = {k: v for k, v in w.items()
                 if k.startswith("model.embed_tokens") or k.startswith("model.layers.0.")}
        second = {k: v for k, v in w.items() if k not in first}
        files = [("model-00001-of-00002.safetensors", first),
                 ("model-00002-of-00002.safetensors", second)]
        total, wmap = 0, {}
        for fn, part in files:
            total += write_safetensors(os.path.join(d, fn), part)
            for k in part:
                wmap[k] = fn
        write_json_hf(os.path.join(d, "model.safetensors.index.json"),
                      {"metadata": {"total_size": total}, "weight_map": wmap})
    else:
        write_safetensors(os.path.join(d, "model.safetensors"), w)

    # Golden values are computed from the weights as read back from disk,
    # which also checks the writer/reader pair.
    w_disk = llama_ref.load_folder_weights(d)
    assert set(w_disk) == set(w) and all(np.array_equal(w_disk[k], w[k]) for k in w)
    cfg_disk = llama_ref.load_config(d)
    full = run_all(cfg_disk, w_disk, tokens)
    checks = self_check(cfg_disk, w_disk, tokens, full, slow)

    parts = ['"model": "%s"' % name,
             '"note": "logits computed in float64 by tests/reference/llama_ref.py, printed as float32 (9 significant digits)"',
             '"tokens": ' + json.dumps(tokens),
             '"max_abs_logit": ' + json.dumps([float(fmt(np.abs(l).max())) for l in full]),
             '"logits": ' + logits_json(full)]
    variants = {}
    if quant:
        for how in ("f16", "bf16", "q8_0"):
            lq = run_all(cfg_disk, rounded_weights(w_disk, how), tokens)
            variants[how] = max(float(np.abs(a - b).max()) for a, b in zip(lq, full))
            parts.append('"max_abs_logit_%s": ' % how
                         + json.dumps([float(fmt(np.abs(l).max())) for l in lq]))
            parts.append('"logits_%s": ' % how + logits_json(lq))
    with open(os.path.join(d, "golden.json"), "w") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print("%-20s %7d bytes  max|logit| %s  kv-cache %.1e  f32 %.1e  numpy %s  %s" % (
        name, size, [round(float(np.abs(l).max()), 2) for l in full], checks[0], checks[1],
        "%.1e" % checks[2] if checks[2] is not None else "-",
        " ".join("%s:%.3g" % kv for kv in variants.items())))
    return size


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    slow = "--check" in sys.argv
    here = os.path.dirname(os.path.abspath(__file__))
    root = args[0] if args else os.path.join(here, "..", "golden", "models")
    root = os.path.normpath(root)
    check_rope_rotate_half()
    total = 0
    for name, cfg, seed, lengths, quant in fixtures():
        total += write_fixture(root, name, copy.deepcopy(cfg), seed, lengths, quant, slow)
    print("total %d bytes in %s" % (total, root))


if __name__ == "__main__":
    main()
