// AdamW with two decay groups (ParamStore meta.decay), global-norm gradient clipping and the
// nanoGPT learning-rate schedule (linear warm-up, cosine decay to minLr, then minLr).
// On the wasm backend the update is one fused pass per parameter (src/backend/adamw.ts, bit-identical
// to the tfjs formulation below, which cpu/node keep), and the gradient norm is summed in float64.
import { tf } from '../backend/tf.ts';
import { fusedAdamWUpdate, sumSquaresF64 } from '../backend/adamw.ts';
import type { GradStore, ParamStore } from '../model/module.ts';

export interface AdamWConfig {
  beta1: number;       // 0.9
  beta2: number;       // 0.95 (nanoGPT)
  eps: number;         // 1e-8
  weightDecay: number; // 0.1, applied to the decay group only
}

export const DEFAULT_ADAMW: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

export interface LrSchedule { lr: number; minLr: number; warmupSteps: number; decaySteps: number }

/** nanoGPT get_lr(it): warm-up lr·(it+1)/(warmup+1), cosine to minLr by decaySteps, minLr after. */
export function getLr(it: number, s: LrSchedule): number {
  if (it < s.warmupSteps) return (s.lr * (it + 1)) / (s.warmupSteps + 1);
  if (it > s.decaySteps) return s.minLr;
  const ratio = (it - s.warmupSteps) / Math.max(1, s.decaySteps - s.warmupSteps);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio)); // 1 → 0
  return s.minLr + coeff * (s.lr - s.minLr);
}

/** sqrt(Σ‖g‖²) over all gradients, accumulated in float64: on wasm one pass per tensor on the heap
 *  (squares and sums in float64), on cpu over the host values, elsewhere float32 per-tensor partials
 *  (one host sync) summed in float64. */
export function globalGradNorm(grads: GradStore): number {
  const list = [...grads.grads.values()];
  if (list.length === 0) return 0;
  const backend = tf.getBackend();
  let sq = 0;
  if (backend === 'wasm') {
    for (const g of list) sq += sumSquaresF64(g);
  } else if (backend === 'cpu') {
    for (const g of list) { const x = g.dataSync(); let s = 0; for (let i = 0; i < x.length; i++) s += x[i] * x[i]; sq += s; }
  } else {
    const parts = tf.tidy(() => tf.stack(list.map((g) => tf.sum(tf.square(g)))));
    for (const x of parts.dataSync()) sq += x;
    parts.dispose();
  }
  return Math.sqrt(sq);
}

export class AdamW {
  /** Steps taken (the t in the bias corrections). */
  t = 0;
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();
  /** 'auto': fused kernel on wasm, tfjs ops elsewhere; 'tfjs': always the unfused tfjs ops (tests, benchmarks). */
  impl: 'auto' | 'tfjs' = 'auto';

  constructor(private readonly params: ParamStore, readonly cfg: AdamWConfig = DEFAULT_ADAMW) {
    const zeros = (p: tf.Tensor) => { const z = tf.zerosLike(p), v = tf.variable(z, false); z.dispose(); return v; };
    for (const [name, p] of params.vars) {
      this.m.set(name, zeros(p));
      this.v.set(name, zeros(p));
    }
  }

  /** One update with learning rate `lr`; gradients are multiplied by `gradScale` (clipping) first.
   *  Parameters without a gradient (e.g. experts that got no tokens) still decay and use their moments. */
  step(grads: GradStore, lr: number, gradScale = 1): void {
    this.t++;
    const { beta1: b1, beta2: b2, eps, weightDecay } = this.cfg;
    const bc1 = 1 - b1 ** this.t, bc2 = 1 - b2 ** this.t;
    if (this.impl === 'auto' && tf.getBackend() === 'wasm') {
      for (const [name, p] of this.params.vars) {
        const decay = this.params.meta.get(name)?.decay ? weightDecay : 0;
        fusedAdamWUpdate(p, grads.get(name), this.m.get(name)!, this.v.get(name)!, { beta1: b1, beta2: b2, eps, bc1, bc2, lr, weightDecay: decay, gradScale });
      }
      return;
    }
    for (const [name, p] of this.params.vars) {
      const m = this.m.get(name)!, v = this.v.get(name)!;
      const g0 = grads.get(name);
      const decay = this.params.meta.get(name)?.decay ? weightDecay : 0;
      tf.tidy(() => {
        const g = g0 ? (gradScale === 1 ? g0 : tf.mul(g0, gradScale)) : tf.zerosLike(p);
        const m1 = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const v1 = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        // PyTorch AdamW: p ← p·(1 − lr·wd) − lr · m̂ / (sqrt(v̂) + eps)
        const upd = tf.div(tf.div(m1, bc1), tf.add(tf.sqrt(tf.div(v1, bc2)), eps));
        const pDecayed = decay > 0 ? tf.mul(p, 1 - lr * decay) : p;
        p.assign(tf.sub(pDecayed, tf.mul(upd, lr)));
        m.assign(m1);
        v.assign(v1);
      });
    }
  }

  /** Moments as named tensors (for checkpoints): 'm.<param>' and 'v.<param>'. */
  stateTensors(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [n, t] of this.m) out.set(`m.${n}`, t);
    for (const [n, t] of this.v) out.set(`v.${n}`, t);
    return out;
  }

  /** Restore moments from host arrays (missing or mis-shaped entries throw). */
  loadState(t: number, arrays: Map<string, { shape: number[]; data: Float32Array }>): void {
    for (const [kind, map] of [['m', this.m], ['v', this.v]] as const) {
      for (const [name, variable] of map) {
        const a = arrays.get(`${kind}.${name}`);
        if (!a) throw new Error(`optimizer state has no '${kind}.${name}'`);
        if (a.shape.join(',') !== variable.shape.join(',')) throw new Error(`optimizer '${kind}.${name}' has shape [${a.shape}], parameter has [${variable.shape}]`);
        tf.tidy(() => variable.assign(tf.tensor(a.data, a.shape, 'float32')));
      }
    }
    this.t = t;
  }

  dispose(): void {
    for (const x of this.m.values()) x.dispose();
    for (const x of this.v.values()) x.dispose();
    this.m.clear(); this.v.clear();
  }
}
