#!/usr/bin/python3
"""LoRA adapters and their composition (selection, explicit weights, mixture,
fusion, RouterLoRA) on top of the reference model in llama_ref.py.

Float64 PyTorch, written for clarity, used to produce golden logits for
ramole's LoRA code (see make_lora_golden.py and README.md in this folder, and
/work/shared/DESIGN.md section 1 for the maths).

Nothing in llama_ref.py is changed: a composition is attached through the
existing hook list, Model.linear_hooks, as a callable f(name, x, y) -> y.
llama_ref.Model.linear calls it after the base projection (after the bias
for qwen2's q/k/v), with x the module input, so the LoRA term is added to
the base output exactly where HF PEFT adds it (lora.Linear.forward:
result = base_layer(x); result += lora_B(lora_A(x)) * scaling), i.e. before
RoPE, before the residual add, and to the input of down_proj (silu(g) * u).

PEFT adapter folder, as read here:
  adapter_config.json       r, lora_alpha, use_rslora, target_modules,
                            rank_pattern, alpha_pattern, ...
  adapter_model.safetensors base_model.model.<HF module path>.lora_A.weight
                            [r, in] and .lora_B.weight [out, r]
Scale of a module: alpha / r, or alpha / sqrt(r) with use_rslora, where r
and alpha come from rank_pattern / alpha_pattern when a pattern key matches
the module path (PEFT's get_pattern_key), otherwise from r / lora_alpha.

Run with Debian's interpreter: /usr/bin/python3.
"""

import json
import math
import os
import re
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402

# short target name -> path below model.layers.N.
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MODULE_PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
                 "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp",
                 "down_proj": "mlp"}
PEFT_PREFIX = "base_model.model."


def module_path(layer, short):
    """HF module path of a target, e.g. model.layers.0.self_attn.q_proj."""
    return "model.layers.%d.%s.%s" % (layer, MODULE_PARENT[short], short)


def short_name(path):
    return path.rsplit(".", 1)[-1]


def layer_of(path):
    m = re.match(r"model\.layers\.(\d+)\.", path)
    return int(m.group(1)) if m else None


def pattern_key(keys, path):
    """PEFT get_pattern_key: the first key K of rank_pattern / alpha_pattern
    whose regex matches the module path as r'(.*\\.)?K$'; None if none does."""
    for k in keys:
        if re.match(r"(.*\.)?%s$" % k, path):
            return k
    return None


def peft_r_alpha_scale(cfg, path):
    """(r, alpha, scale) of one module under a PEFT LoraConfig dict."""
    rp = cfg.get("rank_pattern") or {}
    ap = cfg.get("alpha_pattern") or {}
    kr = pattern_key(rp.keys(), path)
    ka = pattern_key(ap.keys(), path)
    r = rp[kr] if kr is not None else cfg["r"]
    alpha = ap[ka] if ka is not None else cfg["lora_alpha"]
    if cfg.get("use_rslora", False):
        scale = alpha / math.sqrt(r)
    else:
        scale = alpha / r
    return r, alpha, scale


def peft_targets(cfg, path):
    """PEFT check_target_module_exists for a list of target names (no regex
    string, no layers_to_transform in these fixtures)."""
    tm = cfg["target_modules"]
    if isinstance(tm, str):
        return re.fullmatch(tm, path) is not None
    ltt = cfg.get("layers_to_transform")
    if ltt is not None:
        if isinstance(ltt, int):
            ltt = [ltt]
        if layer_of(path) not in ltt:
            return False
    return any(path == t or path.endswith("." + t) for t in tm)


class Adapter:
    """One LoRA adapter: per HF module path, A [r, in], B [out, r], scale."""

    def __init__(self, name, cfg, tensors):
        self.name = name
        self.cfg = cfg
        self.A, self.B, self.scale, self.r, self.alpha = {}, {}, {}, {}, {}
        for key, arr in tensors.items():
            assert key.startswith(PEFT_PREFIX), key
            m = re.match(r"(.*)\.lora_([AB])\.weight$", key[len(PEFT_PREFIX):])
            assert m, key
            path, which = m.group(1), m.group(2)
            (self.A if which == "A" else self.B)[path] = np.asarray(arr)
        assert set(self.A) == set(self.B), "lora_A / lora_B sets differ"
        for path in self.A:
            assert peft_targets(cfg, path), "%s not targeted by config" % path
            r, alpha, s = peft_r_alpha_scale(cfg, path)
            assert self.A[path].shape[0] == r and self.B[path].shape[1] == r, \
                "%s: rank in file != rank in config" % path
            self.r[path], self.alpha[path], self.scale[path] = r, alpha, s

    @classmethod
    def load(cls, folder, name=None):
        with open(os.path.join(folder, "adapter_config.json")) as f:
            cfg = json.load(f)
        assert cfg["peft_type"] == "LORA"
        t = llama_ref.read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
        return cls(name or os.path.basename(os.path.normpath(folder)), cfg, t)

    def has(self, path):
        return path in self.A

    def delta_weight(self, path):
        """s B A  [out, in] float64 (what merge_and_unload adds to W)."""
        return self.scale[path] * (self.B[path].astype(np.float64) @ self.A[path].astype(np.float64))


def merged_weights(base_weights, adapter, weight=1.0):
    """Base weights (float64) with w * s B A added to every adapted W."""
    out = {k: np.asarray(v, dtype=np.float64) for k, v in base_weights.items()}
    for path in adapter.A:
        out[path + ".weight"] = out[path + ".weight"] + weight * adapter.delta_weight(path)
    return out


class Composition:
    """A LoRA composition over an ordered expert list, used as a
    llama_ref.Model linear hook.

    mode:
      "none"      no adapter term.
      "explicit"  y = W0 x + sum_j w_j s_j B_j A_j x    (weights given)
      "mixture"   explicit with w_j = 1/k
      "selection" explicit with only experts[0] (top-1 of the ranked list), w = 1
      "fusion"    y = W0 x + (mean_j s_j B_j)(mean_j A_j) x; mean over all k
                  experts, an expert without the module counts as zeros;
                  ranks zero-padded at the end to the largest rank r_max
                  present for that module (A: extra zero rows, B: extra
                  zero columns)
      "router"    RouterLoRA per token: u_j = A_j x, v_j = s_j B_j u_j
                  (v_j = 0 if expert j lacks the module), q = A_r x,
                  key_j = B_r^T v_j, score_j = <q, key_j> / sqrt(r_r),
                  w = softmax_j(score) over ALL k experts (an expert lacking
                  the module keeps score 0 and a share of the softmax),
                  y = W0 x + sum_j w_j v_j.
    Modules that no expert adapts are left alone (for "router": no term,
    no gates).  lm_head / embed_tokens are never adapted.
    After a forward, self.gates[path] / self.scores[path] hold the router's
    [T, k] softmax weights / scores of the last call for that module."""

    def __init__(self, mode, experts, weights=None, router=None, dtype=torch.float64):
        self.mode = mode
        self.experts = list(experts)
        self.router = router
        self.dtype = dtype
        k = len(self.experts)
        if mode == "explicit":
            assert weights is not None and len(weights) == k
            self.weights = [float(w) for w in weights]
        elif mode == "mixture":
            self.weights = [1.0 / k] * k
        elif mode == "selection":
            self.weights = [1.0] + [0.0] * (k - 1)
        else:
            self.weights = None
        if mode == "router":
            assert router is not None
        self.gates, self.scores = {}, {}
        T = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64)).to(dtype)  # noqa: E731
        self._T = T
        paths = set()
        for e in self.experts:
            paths |= set(e.A)
        if mode == "selection":
            paths = set(self.experts[0].A)
        self.paths = paths if mode != "none" else set()
        self.fused = {}
        if mode == "fusion":
            for path in sorted(self.paths):
                rmax = max(e.r[path] for e in self.experts if e.has(path))
                din = next(e.A[path].shape[1] for e in self.experts if e.has(path))
                dout = next(e.B[path].shape[0] for e in self.experts if e.has(path))
                Af = np.zeros((rmax, din))
                Bf = np.zeros((dout, rmax))
                for e in self.experts:
                    if e.has(path):
                        r = e.r[path]
                        Af[:r] += e.A[path].astype(np.float64)
                        Bf[:, :r] += e.scale[path] * e.B[path].astype(np.float64)
                self.fused[path] = (T(Af / k), T(Bf / k))

    def expert_outputs(self, path, x):
        """[v_j] for every expert (None where the expert lacks the module)."""
        out = []
        for e in self.experts:
            if not e.has(path):
                out.append(None)
                continue
            u = x @ self._T(e.A[path]).t()                      # u_j = A_j x   [T, r_j]
            out.append(e.scale[path] * (u @ self._T(e.B[path]).t()))  # v_j = s_j B_j u_j
        return out

    def delta(self, path, x):
        if self.mode in ("explicit", "mixture", "selection"):
            d = None
            for w, v in zip(self.weights, self.expert_outputs(path, x)):
                if v is None or w == 0.0:
                    continue
                d = w * v if d is None else d + w * v
            return d
        if self.mode == "fusion":
            Af, Bf = self.fused[path]
            return (x @ Af.t()) @ Bf.t()
        if self.mode == "router":
            vs = self.expert_outputs(path, x)
            R = self.router
            Ar, Br = self._T(R.A[path]), self._T(R.B[path])
            rr = R.r[path]
            q = x @ Ar.t()                                       # [T, r_r]
            scores = []
            for v in vs:
                if v is None:
                    scores.append(torch.zeros(x.shape[0], dtype=x.dtype))
                else:
                    key = v @ Br                                 # B_r^T v_j  -> [T, r_r]
                    scores.append((q * key).sum(-1) / math.sqrt(rr))
            sc = torch.stack(scores, dim=-1)                     # [T, k]
            g = torch.softmax(sc, dim=-1)
            self.scores[path], self.gates[path] = sc, g
            d = torch.zeros(x.shape[0], vs[[v is not None for v in vs].index(True)].shape[1],
                            dtype=x.dtype)
            for j, v in enumerate(vs):
                if v is not None:
                    d = d + g[:, j:j + 1] * v
            return d
        raise ValueError(self.mode)

    def hook(self, name, x, y):
        if name not in self.paths:
            return y
        d = self.delta(name, x)
        return y if d is None else y + d


def model_with(cfg, weights, comp=None, dtype=torch.float64):
    m = llama_ref.Model(cfg, weights, dtype=dtype)
    if comp is not None:
        m.linear_hooks.append(comp.hook)
    return m


if __name__ == "__main__":
    if len(sys.argv) < 4:
        print("usage: /usr/bin/python3 lora_ref.py MODEL_DIR ADAPTER_DIR TOKEN [TOKEN...]")
        sys.exit(2)
    folder, adir = sys.argv[1], sys.argv[2]
    toks = [int(t) for t in sys.argv[3:]]
    ad = Adapter.load(adir)
    m = model_with(llama_ref.load_config(folder), llama_ref.load_folder_weights(folder),
                   Composition("explicit", [ad], [1.0]))
    lg = m.forward(toks)
    for i, row in enumerate(lg):
        top = torch.topk(row, 5)
        print(i, toks[i], [(int(a), "%.6f" % float(b)) for b, a in zip(top.values, top.indices)])
