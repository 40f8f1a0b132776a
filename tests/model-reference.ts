// A pure-tfjs functional forward of the whole model, written from the formulas (not from the
// module classes), for the gradient oracle tests: tf.grads of this total loss w.r.t. every
// parameter must equal what MoEGPT.forwardBackward accumulates.
import { tf } from './support/backends.ts';
import { isMoELayer, type ModelConfig } from '../src/model/config.ts';
import type { ParamStore } from '../src/model/module.ts';

export type P = (name: string) => tf.Tensor;
/** Reference MoE FFN on [T, H]: output and the aux+z loss terms it adds to the total. */
export type MoERef = (cfg: ModelConfig, p: P, prefix: string, x: tf.Tensor2D) => { y: tf.Tensor; aux: tf.Scalar };

export function rms(x: tf.Tensor, g: tf.Tensor, eps: number): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), g);
}

/** Rotate-half RoPE on [B, S, n, d], written independently of src/model/rope.ts. */
export function refRope(x: tf.Tensor, theta: number): tf.Tensor {
  const [, S, , d] = x.shape as number[];
  const pos = tf.reshape(tf.range(0, S), [S, 1]);
  const inv = tf.reshape(tf.pow(theta, tf.div(tf.mul(tf.range(0, d / 2), -2), d)), [1, d / 2]);
  const ang = tf.reshape(tf.tile(tf.mul(pos, inv), [1, 2]), [1, S, 1, d]);
  const x1 = tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, d / 2]), x2 = tf.slice(x, [0, 0, 0, d / 2], [-1, -1, -1, d / 2]);
  return tf.add(tf.mul(x, tf.cos(ang)), tf.mul(tf.concat([tf.neg(x2), x1], -1), tf.sin(ang)));
}

function head(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): tf.Tensor {
  const S = q.shape[1]!, d = q.shape[2]!;
  const mask = tf.linalg.bandPart(tf.ones([S, S]), -1, 0);
  const sc = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(d)), tf.mul(tf.sub(1, mask), -1e9));
  return tf.matMul(tf.softmax(sc), v);
}
const part = (x: tf.Tensor, off: number, n: number) => tf.slice(x, [0, 0, off], [-1, -1, n]);

export function refAttention(cfg: ModelConfig, p: P, pre: string, x: tf.Tensor): tf.Tensor {
  const [B, S, H] = x.shape as number[];
  const x2 = tf.reshape(x, [B * S, H]), a = cfg.numHeads;
  const heads: tf.Tensor[] = [];
  let dvOut: number;
  if (cfg.attention === 'gqa') {
    const g = cfg.numKvHeads, d = cfg.headDim; dvOut = d;
    const proj = (w: string, n: number, rope: boolean) => {
      const t = tf.reshape(tf.matMul(x2, p(`${pre}.${w}`)), [B, S, n, d]);
      return tf.reshape(rope ? refRope(t, cfg.ropeTheta) : t, [B, S, n * d]);
    };
    const q = proj('wq', a, true), k = proj('wk', g, true), v = proj('wv', g, false);
    for (let i = 0; i < a; i++) { const j = Math.floor(i / (a / g)); heads.push(head(part(q, i * d, d), part(k, j * d, d), part(v, j * d, d))); }
  } else {
    const m = cfg.mla!, dn = m.qkNopeHeadDim, dr = m.qkRopeHeadDim, dv = m.vHeadDim; dvOut = dv;
    const q = tf.reshape(m.qLoraRank === null ? tf.matMul(x2, p(`${pre}.wq`))
      : tf.matMul(rms(tf.matMul(x2, p(`${pre}.wqA`)), p(`${pre}.qANorm.weight`), cfg.normEps), p(`${pre}.wqB`)), [B, S, a * (dn + dr)]);
    const kvA = tf.matMul(x2, p(`${pre}.wkvA`));
    const latent = tf.slice(kvA, [0, 0], [-1, m.kvLoraRank]);
    const kRope = tf.reshape(refRope(tf.reshape(tf.slice(kvA, [0, m.kvLoraRank], [-1, dr]), [B, S, 1, dr]), cfg.ropeTheta), [B, S, dr]);
    const kv = tf.reshape(tf.matMul(rms(latent, p(`${pre}.kvANorm.weight`), cfg.normEps), p(`${pre}.wkvB`)), [B, S, a * (dn + dv)]);
    for (let i = 0; i < a; i++) {
      const qi = part(q, i * (dn + dr), dn + dr), kvi = part(kv, i * (dn + dv), dn + dv);
      const qRope = tf.reshape(refRope(tf.reshape(part(qi, dn, dr), [B, S, 1, dr]), cfg.ropeTheta), [B, S, dr]);
      heads.push(head(tf.concat([part(qi, 0, dn), qRope], -1), tf.concat([part(kvi, 0, dn), kRope], -1), part(kvi, dn, dv)));
    }
  }
  return tf.reshape(tf.matMul(tf.reshape(tf.concat(heads, -1), [B * S, a * dvOut]), p(`${pre}.wo`)), [B, S, H]);
}

export function refSwiGLU(p: P, pre: string, x: tf.Tensor): tf.Tensor {
  const h = tf.matMul(x as tf.Tensor2D, p(`${pre}.fc1`) as tf.Tensor2D);
  const F = h.shape[1]! / 2;
  const gate = tf.slice(h, [0, 0], [-1, F]), up = tf.slice(h, [0, F], [-1, F]);
  return tf.matMul(tf.mul(tf.mul(gate, tf.sigmoid(gate)), up), p(`${pre}.fc2`) as tf.Tensor2D);
}

/** One block; returns the new residual and the MoE aux terms. */
export function refBlock(cfg: ModelConfig, p: P, pre: string, h: tf.Tensor, moeLayer: boolean, moe: MoERef): { h: tf.Tensor; aux: tf.Scalar } {
  const [B, S, H] = h.shape as number[], eps = cfg.normEps, sw = cfg.norm === 'sandwich';
  let a = refAttention(cfg, p, `${pre}.attn`, rms(h, p(`${pre}.attnNorm.weight`), eps));
  if (sw) a = rms(a, p(`${pre}.attnPostNorm.weight`), eps);
  const h1 = tf.add(h, a);
  const xn = tf.reshape(rms(h1, p(`${pre}.mlpNorm.weight`), eps), [B * S, H]) as tf.Tensor2D;
  let aux = tf.scalar(0), m: tf.Tensor;
  if (moeLayer) { const r = moe(cfg, p, `${pre}.moe`, xn); m = r.y; aux = r.aux; } else m = refSwiGLU(p, `${pre}.mlp`, xn);
  m = tf.reshape(m, [B, S, H]);
  if (sw) m = rms(m, p(`${pre}.mlpPostNorm.weight`), eps);
  return { h: tf.add(h1, m), aux };
}

/** Mean CE over targets ≠ −1 (mask and one-hot built on the host). */
export function refCE(logits: tf.Tensor, targets: Int32Array): tf.Scalar {
  const [T, V] = logits.shape as number[];
  const oh = new Float32Array(T * V); let n = 0;
  targets.forEach((y, t) => { if (y >= 0) { oh[t * V + y] = 1; n++; } });
  return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.tensor2d(oh, [T, V])))), Math.max(n, 1)) as tf.Scalar;
}

/** MTP depth k inputs/targets, from targets (targets[b,s] = tokens[b,s+1]): ids_k[b,s] = tokens[b,s+k],
 *  targets_k[b,s] = tokens[b,s+k+1]; id 0 / target −1 past the end of the sequence. */
function shift(targets: Int32Array, B: number, S: number, k: number): { ids: Int32Array; targets: Int32Array } {
  const ids = new Int32Array(B * S), tg = new Int32Array(B * S);
  for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) {
    const src = s + k - 1;
    ids[b * S + s] = src < S ? Math.max(0, targets[b * S + src]) : 0;
    tg[b * S + s] = src + 1 < S ? targets[b * S + src + 1] : -1;
  }
  return { ids, targets: tg };
}

/** Total loss = lm + mtpLossCoeff·mean_k mtp_k + Σ aux (as MoEGPT.forwardBackward defines it). */
export function refModelLoss(cfg: ModelConfig, p: P, tokens: Int32Array, targets: Int32Array, B: number, S: number, moe: MoERef): tf.Scalar {
  const H = cfg.hiddenSize;
  const emb = (ids: Int32Array) => tf.reshape(tf.gather(p('embedding.weight'), tf.tensor1d(ids, 'int32')), [B, S, H]);
  const headW = cfg.tieEmbeddings ? tf.transpose(p('embedding.weight')) : p('lmHead.weight');
  const logits = (h: tf.Tensor, norm: string) => tf.matMul(tf.reshape(rms(h, p(norm), cfg.normEps), [B * S, H]), headW);
  let h = emb(tokens), aux = tf.scalar(0);
  for (let l = 0; l < cfg.numLayers; l++) {
    const r = refBlock(cfg, p, `layers.${l}`, h, isMoELayer(cfg, l), moe); h = r.h; aux = tf.add(aux, r.aux);
  }
  let loss = tf.add(refCE(logits(h, 'finalNorm.weight'), targets), aux);
  for (let k = 1; k <= cfg.numMtpLayers; k++) {
    const pre = `mtp.${k - 1}`, sh = shift(targets, B, S, k);
    const cat = tf.concat([rms(h, p(`${pre}.hNorm.weight`), cfg.normEps), rms(emb(sh.ids), p(`${pre}.embNorm.weight`), cfg.normEps)], -1);
    const hp = tf.reshape(tf.matMul(tf.reshape(cat, [B * S, 2 * H]), p(`${pre}.proj`)), [B, S, H]);
    const r = refBlock(cfg, p, `${pre}.layer`, hp, isMoELayer(cfg, cfg.numLayers - 1), moe);
    h = r.h;
    loss = tf.add(loss, tf.add(r.aux, tf.mul(refCE(logits(h, `${pre}.finalNorm.weight`), sh.targets), cfg.mtpLossCoeff / cfg.numMtpLayers)));
  }
  return loss as tf.Scalar;
}

/** The dense stand-in's reference (a SwiGLU named `<prefix>.fc1/fc2`, no aux). */
export const standInMoERef: MoERef = (_cfg, p, prefix, x) => ({ y: refSwiGLU(p, prefix, x), aux: tf.scalar(0) });

/** tf.grads of refModelLoss w.r.t. every parameter, as host arrays by name. */
export function refGrads(cfg: ModelConfig, params: ParamStore, tokens: Int32Array, targets: Int32Array, B: number, S: number, moe: MoERef, lossScale = 1): { loss: number; grads: Map<string, Float32Array> } {
  const names = params.names();
  const f = (...ws: tf.Tensor[]) => {
    const byName = new Map(names.map((n, i) => [n, ws[i]]));
    const p: P = (n) => { const t = byName.get(n); if (!t) throw new Error(`reference: no parameter ${n}`); return t; };
    return tf.mul(refModelLoss(cfg, p, tokens, targets, B, S, moe), lossScale) as tf.Scalar;
  };
  const out = new Map<string, Float32Array>();
  let loss = 0;
  tf.tidy(() => {
    const { value, grads } = tf.valueAndGrads(f)(names.map((n) => params.get(n)));
    names.forEach((n, i) => out.set(n, grads[i].dataSync() as Float32Array));
    loss = value.dataSync()[0] / lossScale;
  });
  return { loss, grads: out };
}
