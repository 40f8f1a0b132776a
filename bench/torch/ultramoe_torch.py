#!/usr/bin/env python3
"""PyTorch twin of ultramoe's MoEGPT and trainer (src/model, src/train), for bench/vs-torch.ts.

Written independently from the paper/reference semantics (docs/model.md, docs/moe.md,
moe-semantics.md) with torch autograd doing every backward, so it doubles as a correctness check
of ultramoe's hand-written backward passes.

  /usr/bin/python3 bench/torch/ultramoe_torch.py --run-dir DIR [--experts loop|bmm] [--torch-threads N]

DIR (written by bench/vs-torch.ts) holds
  config.json         {"model": <ultramoe ModelConfig>, "train": {...}, "flopsPerToken": F, "decay": {name: bool}}
  weights.safetensors initial weights, ultramoe names and layouts ([in, out] linears, router [E, H],
                      experts w1/w3 [E, H, F] and w2 [E, F, H], embedding [V, H], lmHead [H, V])
  batches.safetensors tokens, targets: int32 [steps, B, S] (token t = b*S + s, batch-major)
and this prints one JSON line on stdout: per-step losses, grad norms, step times, tokens/s,
GFLOP/s, peak RSS, torch/BLAS configuration.

Semantics mirrored (what ultramoe does, see the TS sources named in brackets):
  * RMSNorm x*rsqrt(mean(x^2)+eps)*g [norm.ts]; pre-norm or depth-scaled sandwich norm [block.ts]
  * MLA with q-LoRA, kv-LoRA, shared rope key, softmax scale 1/sqrt(dn+dr) applied to q [attention-mla.ts]
    or GQA [attention-gqa.ts]; causal mask -1e9; RoPE rotate-half on the last r dims, theta^(-2i/r) [rope.ts]
  * dense SwiGLU with fc1 = [gate | up] [mlp.ts]
  * router logits x.W^T in fp32; routing decisions in float64 [routing/*.ts]: sigmoid or softmax
    (pre/post), top-k with ties to the lower index (stable sort), optional group-limited top-k,
    sigmoid weights normalised by (sum + 1e-20) when k > 1, times topkScalingFactor; expert bias
    (selection only); dropless or capacity (probs/position policy, optional padding)
  * experts: act = silu(x W1_e) * (x W3_e), y = (act * p) W2_e, scatter-add; shared SwiGLU expert
    with optional sigmoid gate [moe/*.ts]
  * aux losses (switch, seq, and global/ep-group for one rank and one micro-batch, where they
    equal switch), z-loss = coeff * mean lse^2 [routing/aux-*.ts]; loss = lm + mtpCoeff*mean(mtp)
    + sum aux + sum z [gpt.ts]
  * MTP depths [mtp.ts]
  * AdamW (torch.optim.AdamW, decoupled decay, two groups), clip_grad_norm_ (max/(norm+1e-6),
    the same rule as ultramoe), nanoGPT LR schedule [train/optimizer.ts, train/trainer.ts]
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the TS side checks for this first; keep a clear message anyway
    print(json.dumps({"error": f"torch not importable from {sys.executable}: {e}. "
                      "Install Debian's: apt-get install python3-torch libopenblas0-pthread, "
                      "and run it with /usr/bin/python3"}))
    sys.exit(2)


# ---------------------------------------------------------------- safetensors (no package needed)

def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    base = 8 + n
    dtypes = {"F32": torch.float32, "I32": torch.int32, "F64": torch.float64, "I64": torch.int64}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        dt = dtypes[e["dtype"]]
        if b == a:
            out[name] = torch.zeros(e["shape"], dtype=dt)
        else:
            out[name] = torch.frombuffer(bytearray(buf[base + a:base + b]), dtype=dt).reshape(e["shape"])
    return out


def write_safetensors(path, tensors):
    names = sorted(tensors)
    header, off, blobs = {}, 0, []
    for n in names:
        t = tensors[n].detach().contiguous().float()
        b = t.numpy().astype("<f4").tobytes()
        header[n] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header)
    h += " " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h.encode("utf-8"))
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- model pieces

def rmsnorm(x, g, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


def silu_mul(gate, up):
    return gate * torch.sigmoid(gate) * up


_rope_cache = {}


def rope_tables(S, d, r, theta):
    key = (S, d, r, theta)
    if key not in _rope_cache:
        half, off = r // 2, d - r
        pos = torch.arange(S, dtype=torch.float64)[:, None]
        inv = torch.pow(torch.tensor(theta, dtype=torch.float64), -2.0 * torch.arange(half, dtype=torch.float64) / r)
        ang = pos * inv[None, :]                                   # [S, half]
        cos = torch.ones(S, d, dtype=torch.float64)
        sin = torch.zeros(S, d, dtype=torch.float64)
        cos[:, off:off + half] = torch.cos(ang); cos[:, off + half:] = torch.cos(ang)
        sin[:, off:off + half] = torch.sin(ang); sin[:, off + half:] = torch.sin(ang)
        _rope_cache[key] = (cos.float().view(1, S, 1, d), sin.float().view(1, S, 1, d))
    return _rope_cache[key]


def apply_rope(x, theta, r=None):
    """x [B, S, n, d]: rotate-half RoPE on the last r dims (default all)."""
    B, S, n, d = x.shape
    r = d if r is None else r
    cos, sin = rope_tables(S, d, r, theta)
    off, half = d - r, r // 2
    x1, x2 = x[..., off:off + half], x[..., off + half:]
    rot = torch.cat([torch.zeros_like(x[..., :off]), -x2, x1], -1) if off else torch.cat([-x2, x1], -1)
    return x * cos + rot * sin


_mask_cache = {}


def causal_mask(S):
    if S not in _mask_cache:
        _mask_cache[S] = torch.triu(torch.full((S, S), -1e9, dtype=torch.float32), diagonal=1)
    return _mask_cache[S]


def attention_core(q, k, v, scale):
    """q, k [B, n, S, dk], v [B, n, S, dv] -> [B, n, S, dv]."""
    S = q.shape[2]
    probs = torch.softmax(torch.matmul(q * scale, k.transpose(-1, -2)) + causal_mask(S), -1)
    return torch.matmul(probs, v)


class Model:
    def __init__(self, cfg, params):
        self.cfg = cfg
        self.P = params
        self.expert_mode = "loop"
        self.record = False            # accumulate tokens-per-expert for the expert-bias update (training steps)
        self.expert_bias = {}          # MoE prefix -> float32 [E] (selection only)
        self.counts = {}               # MoE prefix -> float64 [E], final map counts of the global batch

    def update_expert_bias(self):
        """End of a global batch (train/trainer.ts): b += u * sign(mean(c) - c) (routing/expert-bias.ts), reset counts."""
        moe = self.cfg["moe"]
        for p, c in self.counts.items():
            if moe["expertBias"]:
                b = self.expert_bias.get(p, torch.zeros(moe["numExperts"], dtype=torch.float32)).double()
                self.expert_bias[p] = (b + moe["biasUpdateRate"] * torch.sign(c.mean() - c)).float()
            c.zero_()

    # -- attention
    def mla(self, x, p):
        c, m = self.cfg, self.cfg["mla"]
        P = self.P
        B, S, H = x.shape
        a, dn, dr, dv, rkv = c["numHeads"], m["qkNopeHeadDim"], m["qkRopeHeadDim"], m["vHeadDim"], m["kvLoraRank"]
        T = B * S
        x2 = x.reshape(T, H)
        if m["qLoraRank"] is None:
            qf = x2 @ P[p + ".wq"]
        else:
            qf = rmsnorm(x2 @ P[p + ".wqA"], P[p + ".qANorm.weight"], c["normEps"]) @ P[p + ".wqB"]
        q = apply_rope(qf.view(B, S, a, dn + dr), c["ropeTheta"], dr).transpose(1, 2)       # [B, a, S, dn+dr]
        kva = x2 @ P[p + ".wkvA"]
        latent, k_rope_raw = kva[:, :rkv], kva[:, rkv:]
        kv_up = (rmsnorm(latent, P[p + ".kvANorm.weight"], c["normEps"]) @ P[p + ".wkvB"]).view(B, S, a, dn + dv)
        k_rope = apply_rope(k_rope_raw.reshape(B, S, 1, dr), c["ropeTheta"])
        k = torch.cat([kv_up[..., :dn], k_rope.expand(B, S, a, dr)], -1).transpose(1, 2)
        v = kv_up[..., dn:].transpose(1, 2)
        ctx = attention_core(q, k, v, 1.0 / math.sqrt(dn + dr))                            # [B, a, S, dv]
        return (ctx.transpose(1, 2).reshape(T, a * dv) @ P[p + ".wo"]).view(B, S, H)

    def gqa(self, x, p):
        c, P = self.cfg, self.P
        B, S, H = x.shape
        a, g, d = c["numHeads"], c["numKvHeads"], c["headDim"]
        x2 = x.reshape(B * S, H)
        q = apply_rope((x2 @ P[p + ".wq"]).view(B, S, a, d), c["ropeTheta"]).transpose(1, 2)
        k = apply_rope((x2 @ P[p + ".wk"]).view(B, S, g, d), c["ropeTheta"]).transpose(1, 2)
        v = (x2 @ P[p + ".wv"]).view(B, S, g, d).transpose(1, 2)
        if a != g:  # query head i uses kv head i // (a/g)
            k = k.repeat_interleave(a // g, dim=1)
            v = v.repeat_interleave(a // g, dim=1)
        ctx = attention_core(q, k, v, 1.0 / math.sqrt(d))
        return (ctx.transpose(1, 2).reshape(B * S, a * d) @ P[p + ".wo"]).view(B, S, H)

    # -- feed-forward
    def dense_mlp(self, x2, p):
        P = self.P
        h = x2 @ P[p + ".fc1"]
        Fd = h.shape[1] // 2
        return silu_mul(h[:, :Fd], h[:, Fd:]) @ P[p + ".fc2"]

    def route(self, logits, seq_len, p):
        """logits [T, E] fp32 -> (topk idx [T, k] long, weights [T, k] float64 differentiable, aux dict)."""
        moe = self.cfg["moe"]
        T, E = logits.shape
        k = moe["topk"]
        L = logits.double()
        if moe["scoreFunction"] == "sigmoid":
            scores = torch.sigmoid(L)
        elif moe["preSoftmax"]:
            scores = torch.softmax(L, -1)
        else:
            scores = L
        sel = scores.detach()
        if moe["scoreFunction"] == "sigmoid" and moe["expertBias"]:
            if p in self.expert_bias:
                sel = sel + self.expert_bias[p].double()
        if moe["numGroups"] is not None:
            idx = group_limited_topk(sel, k, moe["numGroups"], moe["groupTopk"])
        else:
            idx = stable_topk(sel, k)
        w = scores.gather(1, idx)
        if moe["scoreFunction"] == "softmax" and not moe["preSoftmax"]:
            w = torch.softmax(w, -1)
        elif moe["scoreFunction"] == "sigmoid" and k > 1:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        w = w * (moe["topkScalingFactor"] if moe["topkScalingFactor"] is not None else 1.0)
        losses = {}
        aux_terms = [a for a in moe["auxLoss"] if a["coeff"] > 0]
        if aux_terms:
            # aux scores: sigma/sum(sigma) or softmax over all E; aux map = plain top-k of the router scores
            if moe["scoreFunction"] == "sigmoid":
                aux_s = scores / scores.sum(-1, keepdim=True)
            elif moe["preSoftmax"]:
                aux_s = scores
            else:
                aux_s = torch.softmax(L, -1)
            modified = moe["numGroups"] is not None or (moe["scoreFunction"] == "sigmoid" and moe["expertBias"])
            aux_idx = stable_topk(scores.detach(), k) if modified else idx
            amap = torch.zeros(T, E, dtype=torch.float64).scatter_(1, aux_idx, 1.0)
            for a in aux_terms:
                if a["type"] in ("switch", "global", "ep-group"):
                    # global (one micro-batch per step, DP group of one) and ep-group (group of one) equal switch
                    counts = amap.sum(0)
                    v = a["coeff"] * E / (k * T * T) * (aux_s.sum(0) * counts).sum()
                elif a["type"] == "seq":
                    Bn = T // seq_len
                    v = 0.0
                    for b in range(Bn):
                        sl = slice(b * seq_len, (b + 1) * seq_len)
                        v = v + (a["coeff"] / Bn) * E / (k * seq_len * seq_len) * (aux_s[sl].sum(0) * amap[sl].sum(0)).sum()
                else:
                    raise ValueError(a["type"])
                losses[a["type"]] = losses.get(a["type"], 0.0) + v
        if moe["zLossCoeff"] > 0:
            lse = torch.logsumexp(L, -1)
            losses["z"] = moe["zLossCoeff"] * (lse * lse).mean()
        return idx, w, scores, losses

    def moe(self, x2, p, seq_len):
        moe, P = self.cfg["moe"], self.P
        T, H = x2.shape
        E, k = moe["numExperts"], moe["topk"]
        logits = x2 @ P[p + ".router"].t()
        idx, w, scores, losses = self.route(logits, seq_len, p)
        probs_dense = torch.zeros(T, E, dtype=torch.float64).scatter(1, idx, w)       # differentiable in w
        rmap = torch.zeros(T, E, dtype=torch.bool).scatter_(1, idx, True)
        if moe["capacityFactor"] is not None:
            rmap, probs_dense = apply_capacity(rmap, probs_dense, k, moe)
        # permutation plan: rows expert-major, token-ascending
        e_idx, t_idx = rmap.t().nonzero(as_tuple=True)                                  # sorted by (e, t)
        cnt = torch.bincount(e_idx, minlength=E)
        counts = cnt.tolist()
        if self.record:
            self.counts.setdefault(p, torch.zeros(E, dtype=torch.float64)).add_(cnt.double())
        perm_probs = probs_dense[t_idx, e_idx].float()                                  # [N]
        xs = x2.index_select(0, t_idx)                                                  # [N, H]
        y = self.experts(xs, perm_probs, counts, p)
        out = torch.zeros(T, H, dtype=x2.dtype).index_add(0, t_idx, y)
        if moe["numSharedExperts"] > 0:
            s = silu_mul(x2 @ P[p + ".shared.w1"], x2 @ P[p + ".shared.w3"]) @ P[p + ".shared.w2"]
            if moe["sharedExpertGate"]:
                s = s * torch.sigmoid(x2 @ P[p + ".shared.gate"])
            out = out + s
        return out, losses, counts

    def experts(self, xs, pp, counts, p):
        w1, w3, w2 = self.P[p + ".experts.w1"], self.P[p + ".experts.w3"], self.P[p + ".experts.w2"]
        if xs.shape[0] == 0:
            return xs
        if self.expert_mode == "bmm":
            # pad every expert to the largest count; one bmm per weight
            E, H = w1.shape[0], xs.shape[1]
            C = max(counts)
            starts = [0]
            for c in counts[:-1]:
                starts.append(starts[-1] + c)
            src = torch.full((E, C), xs.shape[0], dtype=torch.long)
            for e, c in enumerate(counts):
                if c:
                    src[e, :c] = torch.arange(starts[e], starts[e] + c)
            xp = torch.cat([xs, xs.new_zeros(1, H)])[src.view(-1)].view(E, C, H)
            pp_p = torch.cat([pp, pp.new_zeros(1)])[src.view(-1)].view(E, C, 1)
            act = silu_mul(torch.bmm(xp, w1), torch.bmm(xp, w3))
            yp = torch.bmm(act * pp_p, w2).view(E * C, H)
            valid = (src.view(-1) < xs.shape[0]).nonzero(as_tuple=True)[0]
            return yp.index_select(0, valid)
        # loop: one GEMM per non-empty expert; unbind keeps the weight-grad backward to one stack
        W1, W3, W2 = w1.unbind(0), w3.unbind(0), w2.unbind(0)
        outs = []
        for e, (xe, pe) in enumerate(zip(torch.split(xs, counts), torch.split(pp, counts))):
            if counts[e] == 0:
                continue
            act = silu_mul(xe @ W1[e], xe @ W3[e])
            outs.append((act * pe[:, None]) @ W2[e])
        return torch.cat(outs)

    # -- blocks, head, model
    def block(self, h, p, moe_layer):
        c, P = self.cfg, self.P
        B, S, H = h.shape
        eps = c["normEps"]
        n = rmsnorm(h, P[p + ".attnNorm.weight"], eps)
        a = self.mla(n, p + ".attn") if c["attention"] == "mla" else self.gqa(n, p + ".attn")
        if c["norm"] == "sandwich":
            a = rmsnorm(a, P[p + ".attnPostNorm.weight"], eps)
        h1 = h + a
        n2 = rmsnorm(h1, P[p + ".mlpNorm.weight"], eps).reshape(B * S, H)
        losses, counts = {}, None
        if moe_layer:
            m, losses, counts = self.moe(n2, p + ".moe", S)
        else:
            m = self.dense_mlp(n2, p + ".mlp")
        m = m.view(B, S, H)
        if c["norm"] == "sandwich":
            m = rmsnorm(m, P[p + ".mlpPostNorm.weight"], eps)
        return h1 + m, losses

    def head_loss(self, h, targets, norm_name):
        c, P = self.cfg, self.P
        x = rmsnorm(h, P[norm_name], c["normEps"]).reshape(-1, c["hiddenSize"])
        logits = x @ P["embedding.weight"].t() if c["tieEmbeddings"] else x @ P["lmHead.weight"]
        return F.cross_entropy(logits, targets.reshape(-1).long(), ignore_index=-1)

    def loss(self, tokens, targets):
        """tokens, targets int [B, S] -> (total loss tensor, parts dict of floats)."""
        c, P = self.cfg, self.P
        B, S = tokens.shape
        h = F.embedding(tokens.long(), P["embedding.weight"])
        aux = {}
        for l in range(c["numLayers"]):
            h, ls = self.block(h, f"layers.{l}", l >= c["numDenseLayers"])
            for kk, v in ls.items():
                aux[kk] = aux.get(kk, 0.0) + v
        lm = self.head_loss(h, targets, "finalNorm.weight")
        total = lm
        mtp_total = 0.0
        D = c["numMtpLayers"]
        h_prev = h
        last_moe = (c["numLayers"] - 1) >= c["numDenseLayers"]
        for d in range(D):
            ids_k, tg_k = mtp_shift(targets, d + 1)
            p = f"mtp.{d}"
            e = F.embedding(ids_k.long(), P["embedding.weight"])
            cat = torch.cat([rmsnorm(h_prev, P[p + ".hNorm.weight"], c["normEps"]),
                             rmsnorm(e, P[p + ".embNorm.weight"], c["normEps"])], -1).reshape(B * S, -1)
            hk, ls = self.block((cat @ P[p + ".proj"]).view(B, S, -1), p + ".layer", last_moe)
            for kk, v in ls.items():
                aux[kk] = aux.get(kk, 0.0) + v
            lk = self.head_loss(hk, tg_k, p + ".finalNorm.weight")
            mtp_total = mtp_total + lk / D
            h_prev = hk
        if D:
            total = total + c["mtpLossCoeff"] * mtp_total
        aux_sum = sum((v for kk, v in aux.items() if kk != "z"), 0.0)
        z_sum = aux.get("z", 0.0)
        total = total + aux_sum + z_sum
        f = lambda v: float(v) if not torch.is_tensor(v) else float(v.detach())
        return total, {"loss": f(total), "lmLoss": f(lm), "mtpLoss": f(mtp_total), "auxLoss": f(aux_sum), "zLoss": f(z_sum)}


def stable_topk(x, k):
    """Indices of the k largest per row, largest first, ties to the lower index (ultramoe/tfjs rule)."""
    return torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :k]


def group_limited_topk(scores, k, G, g):
    T, E = scores.shape
    per = E // G
    kg = k // g
    grp = stable_topk(scores.view(T * G, per), kg)
    gs = scores.view(T * G, per).gather(1, grp).sum(-1).view(T, G)
    top_g = stable_topk(gs, g)
    allowed = torch.zeros(T, G, dtype=torch.bool).scatter_(1, top_g, True)
    allowed = allowed[:, :, None].expand(T, G, per).reshape(T, E)
    masked = scores.masked_fill(~allowed, -math.inf)
    return stable_topk(masked, k)


def apply_capacity(rmap, probs, k, moe):
    """Megatron token dropping per expert column (routing/capacity.ts)."""
    T, E = rmap.shape
    cap = math.ceil(T * k / E * moe["capacityFactor"])
    if cap > T:
        keep = torch.ones(T, E, dtype=torch.bool)
    else:
        keep = torch.zeros(T, E, dtype=torch.bool)
        pd = probs.detach()
        for e in range(E):
            if moe["dropPolicy"] == "probs":
                routed = [t for t in range(T) if rmap[t, e] and pd[t, e] > 0]
                routed.sort(key=lambda t: (-float(pd[t, e]), t))
            else:
                routed = [t for t in range(T) if rmap[t, e]]
            chosen = routed[:cap]
            chosen_set = set(chosen)
            for t in range(T):
                if len(chosen) >= cap:
                    break
                ranked = bool(rmap[t, e]) if moe["dropPolicy"] == "position" else bool(pd[t, e] > 0)
                if t in chosen_set or ranked:
                    continue
                chosen.append(t)
            keep[chosen, e] = True
    final = keep if moe["padToCapacity"] else (rmap & keep)
    return final, probs * final.double()


def mtp_shift(targets, k):
    """ids_k[b,s] = tokens[b,s+k] = targets[b,s+k-1], targets_k[b,s] = targets[b,s+k]; off the end: id 0, target -1."""
    B, S = targets.shape
    ids = torch.zeros(B, S, dtype=torch.int64)
    tg = torch.full((B, S), -1, dtype=torch.int64)
    if S - (k - 1) > 0:
        ids[:, :S - (k - 1)] = targets[:, k - 1:].long().clamp(min=0)
    if S - k > 0:
        tg[:, :S - k] = targets[:, k:].long()
    return ids, tg


def get_lr(it, lr, min_lr, warmup, decay):
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / max(1, decay - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - min_lr)


def expected_decay(name, shape):
    """ultramoe's decay groups: matrices decay; norm gains and the embedding table do not."""
    return len(shape) >= 2 and name != "embedding.weight"


def finite_json(o):
    """JSON with non-finite floats as null (JavaScript's JSON.parse rejects NaN/Infinity)."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(o))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def blas_info():
    try:
        cfg = torch.__config__.show()
    except Exception:
        cfg = ""
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                for lib in ("openblas", "libblas", "mkl"):
                    if lib in line:
                        path = line.split()[-1]
                        if path not in libs:
                            libs.append(path)
    except OSError:
        pass
    return {"blasLibraries": libs, "torchConfigBlas": [l.strip() for l in cfg.splitlines() if "BLAS" in l]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--experts", choices=["loop", "bmm"], default="loop")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="0 = all batches")
    ap.add_argument("--lockstep", action="store_true",
                    help="print {ready}, then wait for one stdin line before each step and before the evaluation; "
                         "print {stepDone} after each step (bench/vs-torch.ts interleaves processes step by step)")
    ap.add_argument("--dump-grads", action="store_true",
                    help="write the gradients of batch 0 at the initial weights to DIR/grads-torch.safetensors")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)

    with open(os.path.join(args.run_dir, "config.json")) as f:
        run = json.load(f)
    cfg, tr = run["model"], run["train"]
    if cfg.get("dropout", 0) > 0:
        raise SystemExit("dropout > 0 is not supported (ultramoe does not implement it either)")
    if tr.get("microBatches", 1) != 1:
        raise SystemExit("the torch twin trains one micro-batch per step (microBatches 1)")
    if cfg["moe"]["inputJitterEps"] > 0:
        raise SystemExit("router input jitter uses tfjs's RNG stream; not reproducible in torch: run with inputJitterEps 0")
    weights = read_safetensors(os.path.join(args.run_dir, "weights.safetensors"))
    batches = read_safetensors(os.path.join(args.run_dir, "batches.safetensors"))
    tokens_all, targets_all = batches["tokens"], batches["targets"]
    # the last batch is the evaluation batch (loss after the N updates)
    steps = tokens_all.shape[0] - 1 if args.steps <= 0 else min(args.steps, tokens_all.shape[0] - 1)
    B, S = tokens_all.shape[1], tokens_all.shape[2]

    params = {}
    for n, t in weights.items():
        if n.startswith("buffer."):
            continue
        params[n] = t.clone().float().requires_grad_(True)
    model = Model(cfg, params)
    model.expert_mode = args.experts

    decay_ts = run.get("decay", {})
    mismatch = [n for n in params if n in decay_ts and decay_ts[n] != expected_decay(n, params[n].shape)]
    if mismatch:
        raise SystemExit(f"decay groups differ from ultramoe's for: {mismatch[:5]}")
    dec = [params[n] for n in sorted(params) if expected_decay(n, params[n].shape)]
    nodec = [params[n] for n in sorted(params) if not expected_decay(n, params[n].shape)]
    ad = tr["adamw"]
    opt = torch.optim.AdamW([{"params": dec, "weight_decay": ad["weightDecay"]},
                             {"params": nodec, "weight_decay": 0.0}],
                            lr=tr["lr"], betas=(ad["beta1"], ad["beta2"]), eps=ad["eps"], foreach=False)
    all_params = [params[n] for n in sorted(params)]
    total_steps = tr["steps"]
    warm = min(tr["warmupSteps"], total_steps)

    if args.dump_grads:
        loss, _ = model.loss(tokens_all[0], targets_all[0])
        loss.backward()
        write_safetensors(os.path.join(args.run_dir, "grads-torch.safetensors"), {n: p.grad for n, p in params.items()})
        for p in params.values():
            p.grad = None

    def gate():
        if args.lockstep and not sys.stdin.readline():
            raise SystemExit("lockstep: stdin closed")

    def emit(obj):
        if args.lockstep:
            print(finite_json(obj), flush=True)

    rows = []
    emit({"ready": True})
    for it in range(steps):
        gate()
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=False)
        model.record = True
        loss, parts = model.loss(tokens_all[it], targets_all[it])
        model.record = False
        loss.backward()
        t_fb = time.perf_counter()
        norm = float(torch.nn.utils.clip_grad_norm_(all_params, tr["gradClip"])) if tr["gradClip"] > 0 else \
            float(torch.norm(torch.stack([p.grad.norm() for p in all_params])))
        lr = get_lr(it, tr["lr"], tr["minLr"], warm, total_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        t_opt = time.perf_counter()
        with torch.no_grad():
            opt.step()
        model.update_expert_bias()
        t1, c1 = time.perf_counter(), time.process_time()
        rows.append({**parts, "gradNorm": norm, "lr": lr, "stepMs": (t1 - t0) * 1e3,
                     "fwdBwdMs": (t_fb - t0) * 1e3, "optMs": (t1 - t_opt) * 1e3, "cpuMs": (c1 - c0) * 1e3})
        emit({"stepDone": rows[-1]})

    gate()
    with torch.no_grad():
        _, ev = model.loss(tokens_all[-1], targets_all[-1])
    timed = rows[1:] if len(rows) > 1 else rows
    med = sorted(r["stepMs"] for r in timed)[len(timed) // 2]
    tps = B * S / (med / 1e3)
    gflops = run["flopsPerToken"] * tps / 1e9
    out = {
        "impl": "torch", "torch": torch.__version__, "python": sys.executable,
        "torchThreads": torch.get_num_threads(), "openblasThreads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "experts": args.experts, **blas_info(),
        "batch": B, "seqLen": S, "steps": steps,
        "losses": [r["loss"] for r in rows], "rows": rows, "evalLmLoss": ev["lmLoss"],
        "medianStepMs": med, "tokensPerSec": tps, "gflops": gflops, "peakRssMb": peak_rss_mb(),
    }
    print(finite_json(out))


if __name__ == "__main__":
    main()
