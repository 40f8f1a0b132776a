#!/usr/bin/env python3
"""Golden vectors for tests/routing-golden.test.ts, from an independent NumPy reading of
/work/shared/reference/moe-semantics.md §1-§7 (Megatron-LM moe_utils/router semantics).

Gradients are central finite differences (float64) of the surrogate
    L(logits) = sum(dprobs * final_probs(logits)) + sum(aux losses) + z
with the routing decisions (top-k indices, capacity mask, aux map) held fixed, as in autograd.
Run: python3 tests/golden/gen_routing.py  (writes tests/golden/routing-cases.json)
"""
import json, math, os
import numpy as np

def topk_idx(x, k, allowed=None):
    """Indices of the k largest per row, largest first, ties -> lower index."""
    x = np.where(allowed, x, -1e9) if allowed is not None else x
    return np.argsort(-x, axis=-1, kind="stable")[..., :k]

def softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True)); return z / z.sum(-1, keepdims=True)

def sigmoid(x): return 1.0 / (1.0 + np.exp(-x))

def select(logits, cfg, bias):
    T, E = logits.shape; k = cfg["topk"]
    if cfg["scoreFunction"] == "sigmoid":
        sel = sigmoid(logits) + (bias if bias is not None else 0)
    elif cfg["preSoftmax"]:
        sel = softmax(logits)
    else:
        sel = logits.copy()
    if cfg["numGroups"]:
        G, g = cfg["numGroups"], cfg["groupTopk"]
        grp = sel.reshape(T, G, E // G)
        gs = np.sort(grp, axis=-1)[..., ::-1][..., : k // g].sum(-1)          # [T, G]
        gi = np.argsort(-gs, axis=-1, kind="stable")[:, :g]
        allowed = np.zeros((T, G), bool); np.put_along_axis(allowed, gi, True, 1)
        allowed = np.repeat(allowed, E // G, axis=1)
        return topk_idx(sel, k, allowed)
    return topk_idx(sel, k)

def probs_of(logits, idx, cfg):
    T, E = logits.shape; k = cfg["topk"]
    if cfg["scoreFunction"] == "sigmoid":
        g = np.take_along_axis(sigmoid(logits), idx, 1)
        w = g / (g.sum(-1, keepdims=True) + 1e-20) if k > 1 else g
    elif cfg["preSoftmax"]:
        w = np.take_along_axis(softmax(logits), idx, 1)
    else:
        w = softmax(np.take_along_axis(logits, idx, 1))
    w = w * (cfg["topkScalingFactor"] or 1.0)
    probs = np.zeros((T, E)); np.put_along_axis(probs, idx, w, 1)
    return probs

def capacity_mask_of(probs, rmap, cfg):
    T, E = probs.shape
    cap = math.ceil((T * cfg["topk"] / E) * cfg["capacityFactor"])
    if cap > T: return cap, np.ones((T, E), bool)
    key = probs if cfg["dropPolicy"] == "probs" else rmap.astype(float)
    mask = np.zeros((T, E), bool)
    for e in range(E):
        order = np.lexsort((np.arange(T), -key[:, e]))   # by key desc, then token asc
        mask[order[:cap], e] = True
    return cap, mask

def aux_terms(logits, cfg, seq_len):
    """sum of aux losses (fixed aux map) + z, as a function of logits; also the per-type values."""
    T, E = logits.shape; k = cfg["topk"]
    def scores(l):
        if cfg["scoreFunction"] == "softmax": return softmax(l)
        s = sigmoid(l); return s / s.sum(-1, keepdims=True)
    s0 = scores(logits)
    m = np.zeros((T, E)); np.put_along_axis(m, topk_idx(s0, k), 1.0, 1)
    def f(l):
        s = scores(l); vals = {}
        for a in cfg["auxLoss"]:
            c = a["coeff"]
            if a["type"] == "switch":
                v = c * E / (k * T * T) * (s.sum(0) * m.sum(0)).sum()
            elif a["type"] == "seq":
                B = T // seq_len; v = 0.0
                for b in range(B):
                    sb, mb = s[b*seq_len:(b+1)*seq_len], m[b*seq_len:(b+1)*seq_len]
                    v += c * E / (k * seq_len * seq_len) * (sb.sum(0) * mb.sum(0)).sum() / B
            else: raise ValueError(a["type"])
            vals[a["type"]] = vals.get(a["type"], 0.0) + v
        if cfg["zLossCoeff"] > 0:
            mx = l.max(-1, keepdims=True)
            lse = (mx + np.log(np.exp(l - mx).sum(-1, keepdims=True)))[:, 0]
            vals["z"] = cfg["zLossCoeff"] * (lse ** 2).mean()
        return vals
    return f

def case(name, T, E, cfg, seed, seq_len=None, quantize=False, bias=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(T, E))
    if quantize: logits = np.round(logits * 2) / 2          # many exact ties
    logits = logits.astype(np.float32).astype(np.float64)
    b = (rng.normal(size=E) * 0.1).astype(np.float32).astype(np.float64) if bias else None
    idx = select(logits, cfg, b)
    probs = probs_of(logits, idx, cfg)
    rmap = np.zeros((T, E), bool); np.put_along_axis(rmap, idx, True, 1)
    cap, dropped = None, 0
    if cfg["capacityFactor"] is not None:
        cap, cmask = capacity_mask_of(probs, rmap, cfg)
        dropped = int((rmap & ~cmask).sum())
        final_map = cmask if cfg["padToCapacity"] else (rmap & cmask)
    else:
        cmask = np.ones((T, E), bool); final_map = rmap
    final_probs = probs * final_map
    sorted_idx = [int(t) for e in range(E) for t in range(T) if final_map[t, e]]
    permuted_probs = [float(final_probs[t, e]) for e in range(E) for t in range(T) if final_map[t, e]]
    dprobs = rng.normal(size=(T, E))
    seq = seq_len or T
    aux_f = aux_terms(logits, cfg, seq)
    def surrogate(l):
        p = probs_of(l, idx, cfg) * final_map
        return (dprobs * p).sum() + sum(aux_f(l).values())
    g = np.zeros((T, E)); h = 1e-6
    for i in range(T):
        for j in range(E):
            lp = logits.copy(); lp[i, j] += h; lm = logits.copy(); lm[i, j] -= h
            g[i, j] = (surrogate(lp) - surrogate(lm)) / (2 * h)
    return dict(name=name, T=T, E=E, seqLen=seq, moe=cfg, logits=logits.ravel().tolist(),
                expertBias=None if b is None else b.tolist(), topkIdx=idx.ravel().tolist(),
                capacity=cap, droppedAssignments=dropped, probs=final_probs.ravel().tolist(),
                routingMap=final_map.astype(int).ravel().tolist(), sortedIndices=sorted_idx,
                tokensPerExpert=final_map.sum(0).astype(int).tolist(), permutedProbs=permuted_probs,
                auxLosses=aux_f(logits), dprobs=dprobs.ravel().tolist(), dlogits=g.ravel().tolist())

BASE = dict(topk=2, scoreFunction="softmax", preSoftmax=False, topkScalingFactor=None, numGroups=None, groupTopk=None,
            capacityFactor=None, dropPolicy="probs", padToCapacity=False, auxLoss=[], zLossCoeff=0.0)
def cfg(**kw): c = dict(BASE); c.update(kw); return c

cases = [
    case("softmax-post k2 dropless +switch+z", 6, 4, cfg(auxLoss=[dict(type="switch", coeff=0.1)], zLossCoeff=0.01), 1),
    case("softmax-pre k2 +seq(S=3)", 6, 4, cfg(preSoftmax=True, auxLoss=[dict(type="seq", coeff=0.1)]), 2, seq_len=3),
    case("sigmoid k4 bias groups(4,2) scale2.5 +switch", 5, 8, cfg(topk=4, scoreFunction="sigmoid", topkScalingFactor=2.5,
         numGroups=4, groupTopk=2, auxLoss=[dict(type="switch", coeff=0.05)]), 3, bias=True),
    case("softmax-post groups(2,1) k2", 5, 8, cfg(numGroups=2, groupTopk=1, zLossCoeff=0.02), 4),
    case("sigmoid k1 (no renorm)", 5, 4, cfg(topk=1, scoreFunction="sigmoid", auxLoss=[dict(type="switch", coeff=0.1)]), 5),
    case("ties: softmax-post quantized logits", 8, 6, cfg(topk=3), 6, quantize=True),
    case("ties: sigmoid groups quantized", 6, 8, cfg(topk=2, scoreFunction="sigmoid", numGroups=4, groupTopk=2), 7, quantize=True),
    case("capacity probs drop cf1.0", 8, 4, cfg(capacityFactor=1.0, auxLoss=[dict(type="switch", coeff=0.1)]), 8),
    case("capacity position drop cf0.75", 8, 4, cfg(capacityFactor=0.75, dropPolicy="position"), 9),
    case("capacity probs pad cf0.5", 8, 4, cfg(capacityFactor=0.5, padToCapacity=True), 10),
    case("capacity position pad cf1.0 sigmoid", 8, 4, cfg(capacityFactor=1.0, dropPolicy="position", padToCapacity=True,
         scoreFunction="sigmoid", topkScalingFactor=2.0), 11),
    case("capacity > T: nothing dropped (pad)", 4, 4, cfg(capacityFactor=4.0, padToCapacity=True), 12),
    case("capacity probs drop quantized ties", 10, 4, cfg(capacityFactor=0.8), 13, quantize=True),
    case("seq aux B=2 + switch + z, sigmoid", 8, 4, cfg(scoreFunction="sigmoid", auxLoss=[dict(type="seq", coeff=0.1),
         dict(type="switch", coeff=0.02)], zLossCoeff=0.001), 14, seq_len=4),
]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "routing-cases.json")
with open(out, "w") as f: json.dump(cases, f)
print(f"wrote {len(cases)} cases to {out}")
