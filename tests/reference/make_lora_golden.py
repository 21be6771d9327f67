#!/usr/bin/python3
"""Write the LoRA composition fixtures under tests/golden/lora/BASE/ for the
bases tests/golden/models/llama_tiny and qwen2_tiny:

  a1/ a2/ a3/ router/   PEFT adapter folders (adapter_config.json,
                        adapter_model.safetensors)
  golden.json           tokens, scales, logits of every composition, router gates

    /usr/bin/python3 tests/reference/make_lora_golden.py

Run from anywhere; paths are relative to this file.  Deterministic (numpy
RandomState with fixed seeds): a second run gives byte-identical files.
See README.md in this folder ("LoRA composition fixtures") for the layout.
"""

import json
import math
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ in tests/reference
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402
import lora_ref  # noqa: E402
from make_golden import write_safetensors, fmt, logits_json  # noqa: E402

ALL7 = lora_ref.MODULES

# name, r, lora_alpha, use_rslora, targets, rank_pattern, alpha_pattern, std of B
ADAPTERS = [
    ("a1", 4, 8, False, ["q_proj", "v_proj"], {}, {}, 0.009),
    ("a2", 8, 16, False, ALL7, {}, {}, 0.00375),
    ("a3", 2, 4, True, ALL7, {"down_proj": 4}, {"down_proj": 2}, 0.006),
]
ROUTER = ("router", 4, 4, False, ALL7, {}, {}, None)  # B std set per base below
EXPERTS = ["a1", "a2", "a3"]
EXPLICIT_W = [0.5, 1.0, -0.3]
COMPOSITIONS = ["none", "single_a2", "explicit", "mixture", "selection", "fusion", "router"]
ROUTER_SITE = {"seq": 0, "pos": 2, "layer": 0, "modules": ["q_proj", "down_proj"]}

# base name, seed, std of the router's B (large: the expert outputs v_j are
# small, and the scores <A_r x, B_r^T v_j> must spread the softmax clearly)
BASES = [("llama_tiny", 2001, 14.0), ("qwen2_tiny", 2002, 14.0)]


def peft_config(base, r, alpha, rslora, targets, rank_pattern, alpha_pattern):
    """adapter_config.json as PEFT's LoraConfig.save_pretrained writes it
    (json.dumps(indent=2, sort_keys=True), no trailing newline)."""
    return {
        "alpha_pattern": alpha_pattern,
        "base_model_name_or_path": base,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": rank_pattern,
        "revision": None,
        "target_modules": list(targets),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": rslora,
    }


def module_dims(cfg, short):
    D, I = cfg["hidden_size"], cfg["intermediate_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = llama_ref.head_dim_of(cfg)
    return {"q_proj": (D, H * hd), "k_proj": (D, KV * hd), "v_proj": (D, KV * hd),
            "o_proj": (H * hd, D), "gate_proj": (D, I), "up_proj": (D, I),
            "down_proj": (I, D)}[short]          # (in, out)


def make_adapter_tensors(cfg, pcfg, seed, b_std):
    """A ~ N(0, 1/in), B ~ N(0, b_std^2), float32; drawn layer by layer,
    module by module in ALL7 order (A then B)."""
    rs = np.random.RandomState(seed)
    t = {}
    for L in range(cfg["num_hidden_layers"]):
        for short in ALL7:
            path = lora_ref.module_path(L, short)
            if not lora_ref.peft_targets(pcfg, path):
                continue
            r, _, _ = lora_ref.peft_r_alpha_scale(pcfg, path)
            din, dout = module_dims(cfg, short)
            A = (rs.standard_normal((r, din)) / math.sqrt(din)).astype(np.float32)
            B = (rs.standard_normal((dout, r)) * b_std).astype(np.float32)
            t[lora_ref.PEFT_PREFIX + path + ".lora_A.weight"] = A
            t[lora_ref.PEFT_PREFIX + path + ".lora_B.weight"] = B
    return t


def write_adapter(folder, pcfg, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        f.write(json.dumps(pcfg, indent=2, sort_keys=True))
    write_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors)
    back = lora_ref.Adapter.load(folder)
    got = llama_ref.read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    assert set(got) == set(tensors) and all(np.array_equal(got[k], tensors[k]) for k in got)
    return back


def run(cfg, w, tokens, comp, dtype=torch.float64):
    m = lora_ref.model_with(cfg, w, comp, dtype)
    return [m.forward(t).numpy() for t in tokens]


def maxdiff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def composition(mode, ex, router, dtype=torch.float64):
    experts = [ex[n] for n in EXPERTS]
    if mode == "none":
        return lora_ref.Composition("none", experts, dtype=dtype)
    if mode == "single_a2":
        return lora_ref.Composition("explicit", [ex["a2"]], [1.0], dtype=dtype)
    if mode == "explicit":
        return lora_ref.Composition("explicit", experts, EXPLICIT_W, dtype=dtype)
    if mode == "router":
        return lora_ref.Composition("router", experts, router=router, dtype=dtype)
    return lora_ref.Composition(mode, experts, dtype=dtype)


def self_checks(cfg, w, tokens, ex, router, out, base_golden, base_tokens):
    """Every check asserts; returns a dict of the measured differences."""
    res = {}
    a1, a2, a3 = ex["a1"], ex["a2"], ex["a3"]
    # (1) "none" equals the committed base golden (our seqs are prefixes of
    #     base golden sequences) and the hook-free model exactly.
    plain = run(cfg, w, tokens, None)
    res["none_vs_plain"] = maxdiff(plain, out["none"])
    assert res["none_vs_plain"] == 0.0
    d = 0.0
    for s, t in enumerate(tokens):
        for bs, bt in enumerate(base_tokens):
            if bt[:len(t)] == t or t[:len(bt)] == bt:
                n = min(len(t), len(bt))
                g = np.array(base_golden[bs][:n], dtype=np.float32)   # exact float32 values
                d = max(d, float(np.abs(out["none"][s][:n].astype(np.float32) - g).max()))
                break
        else:
            raise AssertionError("sequence %d is not a prefix of a base golden sequence" % s)
    res["none_vs_base_golden"] = d
    assert d < 1e-6, d
    # (2) explicit [0,1,0] == single_a2
    e010 = run(cfg, w, tokens, lora_ref.Composition("explicit", [a1, a2, a3], [0, 1, 0]))
    res["explicit010_vs_single_a2"] = maxdiff(e010, out["single_a2"])
    assert res["explicit010_vs_single_a2"] < 1e-12
    # (3) mixture == explicit 1/3
    e3 = run(cfg, w, tokens, lora_ref.Composition("explicit", [a1, a2, a3], [1 / 3.0] * 3))
    res["mixture_vs_explicit_third"] = maxdiff(e3, out["mixture"])
    assert res["mixture_vs_explicit_third"] < 1e-12
    # (4) router with a single expert == that expert alone (weight 1)
    worst = 0.0
    for e in (a1, a2, a3):
        r1 = run(cfg, w, tokens, lora_ref.Composition("router", [e], router=router))
        s1 = run(cfg, w, tokens, lora_ref.Composition("explicit", [e], [1.0]))
        worst = max(worst, maxdiff(r1, s1))
        if e is a2:
            worst = max(worst, maxdiff(r1, out["single_a2"]))
    res["router_single_vs_single"] = worst
    assert worst < 1e-12
    # (5) merge a2 into W (W + s B A), plain forward == single_a2
    mw = lora_ref.merged_weights(w, a2)
    mg = run(cfg, mw, tokens, None)
    res["merged_a2_vs_single_a2"] = maxdiff(mg, out["single_a2"])
    assert res["merged_a2_vs_single_a2"] < 1e-12
    # (6) selection == a1 alone; fusion of one expert == that expert
    s1 = run(cfg, w, tokens, lora_ref.Composition("explicit", [a1], [1.0]))
    res["selection_vs_single_a1"] = maxdiff(s1, out["selection"])
    assert res["selection_vs_single_a1"] < 1e-12
    f1 = run(cfg, w, tokens, lora_ref.Composition("fusion", [a3]))
    s3 = run(cfg, w, tokens, lora_ref.Composition("explicit", [a3], [1.0]))
    res["fusion_one_vs_single"] = maxdiff(f1, s3)
    assert res["fusion_one_vs_single"] < 1e-12
    # (7) fusion == merging the fused delta (mean sB)(mean A) into W, with the
    #     means written out independently (explicit zero-padding with np.pad)
    fw = {k: np.asarray(v, np.float64) for k, v in w.items()}
    for L in range(cfg["num_hidden_layers"]):
        for short in ALL7:
            path = lora_ref.module_path(L, short)
            have = [e for e in (a1, a2, a3) if e.has(path)]
            rmax = max(e.r[path] for e in have)
            din, dout = module_dims(cfg, short)
            Am = np.zeros((rmax, din))
            Bm = np.zeros((dout, rmax))
            for e in have:
                pad = rmax - e.r[path]
                Am += np.pad(e.A[path].astype(np.float64), ((0, pad), (0, 0)))
                Bm += np.pad(e.scale[path] * e.B[path].astype(np.float64), ((0, 0), (0, pad)))
            fw[path + ".weight"] = fw[path + ".weight"] + (Bm / 3.0) @ (Am / 3.0)
    fm = run(cfg, fw, tokens, None)
    res["fusion_vs_merged_fused"] = maxdiff(fm, out["fusion"])
    assert res["fusion_vs_merged_fused"] < 1e-12
    # (8) router, one token one module, written out with loops in numpy and
    #     the DESIGN identity key_j = s_j (B_r^T B_j) u_j
    rng = np.random.RandomState(7)
    for short in ("q_proj", "k_proj", "down_proj"):
        path = lora_ref.module_path(1, short)
        din, dout = module_dims(cfg, short)
        x = rng.standard_normal(din)
        comp = lora_ref.Composition("router", [a1, a2, a3], router=router)
        got = comp.delta(path, torch.as_tensor(x[None, :])).numpy()[0]
        q = router.A[path].astype(np.float64) @ x
        sc, vs = [], []
        for e in (a1, a2, a3):
            if not e.has(path):
                sc.append(0.0)
                vs.append(np.zeros(dout))
                continue
            u = e.A[path].astype(np.float64) @ x
            C = router.B[path].astype(np.float64).T @ e.B[path].astype(np.float64)
            key = e.scale[path] * (C @ u)
            sc.append(float(q @ key) / math.sqrt(router.r[path]))
            vs.append(e.scale[path] * (e.B[path].astype(np.float64) @ u))
        ex_ = np.exp(np.array(sc) - max(sc))
        g = ex_ / ex_.sum()
        ref = sum(gj * v for gj, v in zip(g, vs))
        assert np.abs(ref - got).max() < 1e-12, short
        assert np.abs(comp.gates[path].numpy()[0] - g).max() < 1e-14
    # (9) float32 run of every composition vs float64
    d32 = 0.0
    for mode in COMPOSITIONS:
        w32 = {k: np.asarray(v, np.float32) for k, v in w.items()}
        o32 = run(cfg, w32, tokens, composition(mode, ex, router, torch.float32), torch.float32)
        d32 = max(d32, maxdiff(o32, out[mode]))
    res["float32_vs_float64"] = d32
    assert d32 < 1e-3
    return res


def write_lora_fixture(root, models_root, base, seed, router_b_std):
    mdir = os.path.join(models_root, base)
    cfg = llama_ref.load_config(mdir)
    w = llama_ref.load_folder_weights(mdir)
    with open(os.path.join(mdir, "golden.json")) as f:
        bg = json.load(f)
    d = os.path.join(root, base)
    os.makedirs(d, exist_ok=True)

    ex = {}
    for i, (name, r, alpha, rsl, targets, rp, ap, b_std) in enumerate(ADAPTERS):
        pcfg = peft_config(base, r, alpha, rsl, targets, rp, ap)
        t = make_adapter_tensors(cfg, pcfg, seed * 10 + i, b_std)
        ex[name] = write_adapter(os.path.join(d, name), pcfg, t)
    name, r, alpha, rsl, targets, rp, ap, _ = ROUTER
    pcfg = peft_config(base, r, alpha, rsl, targets, rp, ap)
    router = write_adapter(os.path.join(d, name),
                           pcfg, make_adapter_tensors(cfg, pcfg, seed * 10 + 9, router_b_std))

    # tokens: prefixes / extensions of the base golden sequences, so that
    # "none" can be compared with the committed base golden
    rs = np.random.RandomState(seed)
    s0 = list(bg["tokens"][0]) + [int(v) for v in rs.randint(3, cfg["vocab_size"], size=2)]
    s1 = list(bg["tokens"][2][:13])
    tokens = [s0, s1]
    assert tokens[0][0] == 1

    out = {}
    gates = {}
    for mode in COMPOSITIONS:
        comp = composition(mode, ex, router)
        m = lora_ref.model_with(cfg, w, comp)
        res = []
        for s, t in enumerate(tokens):
            res.append(m.forward(t).numpy())
            if mode == "router" and s == ROUTER_SITE["seq"]:
                for short in ROUTER_SITE["modules"]:
                    path = lora_ref.module_path(ROUTER_SITE["layer"], short)
                    gates[short] = (comp.gates[path][ROUTER_SITE["pos"]].numpy().copy(),
                                    comp.scores[path][ROUTER_SITE["pos"]].numpy().copy())
        out[mode] = res

    checks = self_checks(cfg, w, tokens, ex, router, out, bg["logits"], bg["tokens"])

    # metadata
    scales, ranks, alphas = {}, {}, {}
    for n, a in list(ex.items()) + [("router", router)]:
        scales[n], ranks[n], alphas[n] = {}, {}, {}
        for short in ALL7:
            path = lora_ref.module_path(0, short)
            if a.has(path):
                scales[n][short] = a.scale[path]
                ranks[n][short] = a.r[path]
                alphas[n][short] = a.alpha[path]
                for L in range(cfg["num_hidden_layers"]):   # layer-independent here
                    assert a.scale[lora_ref.module_path(L, short)] == a.scale[path]
    comps = {
        "none": {"mode": "none", "adapters": []},
        "single_a2": {"mode": "explicit", "adapters": ["a2"], "weights": [1.0]},
        "explicit": {"mode": "explicit", "adapters": EXPERTS, "weights": EXPLICIT_W},
        "mixture": {"mode": "mixture", "adapters": EXPERTS, "weights": [1.0 / 3] * 3},
        "selection": {"mode": "selection", "adapters": EXPERTS,
                      "note": "top-1 of the ranked list: a1 alone with weight 1"},
        "fusion": {"mode": "fusion", "adapters": EXPERTS},
        "router": {"mode": "router", "adapters": EXPERTS, "router": "router"},
    }
    delta = {m: float(fmt(maxdiff(out[m], out["none"]))) for m in COMPOSITIONS if m != "none"}
    rw = {"seq": ROUTER_SITE["seq"], "pos": ROUTER_SITE["pos"], "layer": ROUTER_SITE["layer"],
          "token": tokens[ROUTER_SITE["seq"]][ROUTER_SITE["pos"]]}
    for short in ROUTER_SITE["modules"]:
        rw[short] = [float("%.17g" % v) for v in gates[short][0]]
    for short in ROUTER_SITE["modules"]:
        rw[short + "_scores"] = [float("%.17g" % v) for v in gates[short][1]]

    def j(o):
        return json.dumps(o, sort_keys=False)

    parts = ['"base": "%s"' % base,
             '"note": "logits computed in float64 by tests/reference/lora_ref.py, printed as float32 (9 significant digits); see tests/reference/README.md"',
             '"experts": ' + j(EXPERTS),
             '"router": "router"',
             '"tokens": ' + j(tokens),
             '"scales": ' + j(scales),
             '"ranks": ' + j(ranks),
             '"alphas": ' + j(alphas),
             '"compositions": ' + j(comps),
             '"max_abs_delta_vs_none": ' + j(delta),
             '"router_weights": ' + j(rw),
             '"logits": {\n' + ",\n".join('"%s": ' % m + logits_json(out[m]) for m in COMPOSITIONS)
             + "\n}"]
    with open(os.path.join(d, "golden.json"), "w") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")
    size = 0
    for dp, _, fs in os.walk(d):
        size += sum(os.path.getsize(os.path.join(dp, x)) for x in fs)
    print("%-12s %7d bytes  delta vs none: %s" % (base, size, delta))
    print("    router gates seq0 pos2 layer0: q_proj %s  down_proj %s" % (
        np.round(gates["q_proj"][0], 4), np.round(gates["down_proj"][0], 4)))
    print("    checks: " + "  ".join("%s %.1e" % kv for kv in checks.items()))
    return size, out, ex, router, cfg, w, tokens


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "golden", "lora"))
    models_root = os.path.normpath(os.path.join(here, "..", "golden", "models"))
    total = 0
    for base, seed, rstd in BASES:
        total += write_lora_fixture(root, models_root, base, seed, rstd)[0]
    print("total %d bytes in %s" % (total, root))


if __name__ == "__main__":
    main()
