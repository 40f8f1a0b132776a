// Gradient-check helpers for the model tests: a module's hand-written backward against tfjs
// autograd (tf.grads) of the same forward, with the parameters substituted by the tf.grads
// arguments (tfjs-notes §7: VJP with explicit dy = gradient of sum(y·dy)).
import { tf, assertClose } from './support/backends.ts';
import { GradStore, type ParamStore } from '../src/model/module.ts';
import { SavedActivations } from '../src/model/saved.ts';

/** Run fn with params.get(name) returning the given tensors instead of the variables. */
export function withParams<T>(params: ParamStore, names: string[], values: tf.Tensor[], fn: () => T): T {
  const saved = names.map((n) => params.vars.get(n)!);
  names.forEach((n, i) => params.vars.set(n, values[i] as tf.Variable));
  try { return fn(); } finally { names.forEach((n, i) => params.vars.set(n, saved[i])); }
}

export interface GradCheckResult { dx: Float32Array | null; refDx: Float32Array | null; grads: Map<string, Float32Array>; ref: Map<string, Float32Array> }

/**
 * y = fwd(x, rec); my grads = bwd(dy, rec, grads); oracle = tf.grads of sum(fwd(x)·dy) w.r.t.
 * [x (if float), ...params]. Returns both as host arrays; all tensors created are freed.
 */
export function gradCheck(params: ParamStore, x: tf.Tensor,
  fwd: (x: tf.Tensor, rec: SavedActivations) => tf.Tensor,
  bwd: (dy: tf.Tensor, rec: SavedActivations, grads: GradStore) => tf.Tensor | null,
  seed = 3): GradCheckResult {
  const names = params.names();
  const rec = new SavedActivations('mine'), grads = new GradStore();
  const y = tf.tidy(() => fwd(x, rec));
  const dy = tf.randomNormal(y.shape, 0, 1, 'float32', seed);
  const dxT = tf.tidy(() => bwd(dy, rec, grads) ?? tf.zeros([0])) as tf.Tensor;
  rec.dispose();
  const xFloat = x.dtype === 'float32';
  const oracleRecs: SavedActivations[] = [];
  const f = (...args: tf.Tensor[]) => {
    const xx = xFloat ? args[0] : x;
    const ws = xFloat ? args.slice(1) : args;
    const r = new SavedActivations('oracle'); oracleRecs.push(r);
    return withParams(params, names, ws, () => fwd(xx, r));
  };
  const args = xFloat ? [x, ...names.map((n) => params.get(n))] : names.map((n) => params.get(n));
  const g = tf.grads(f)(args, dy);
  oracleRecs.forEach((r) => r.dispose());
  const ref = new Map<string, Float32Array>(), mine = new Map<string, Float32Array>();
  const off = xFloat ? 1 : 0;
  names.forEach((n, i) => {
    ref.set(n, g[i + off].dataSync() as Float32Array);
    const gm = grads.get(n);
    mine.set(n, gm ? (gm.dataSync() as Float32Array) : new Float32Array(params.get(n).size));
  });
  const res: GradCheckResult = {
    dx: xFloat && dxT ? (dxT.dataSync() as Float32Array) : null,
    refDx: xFloat ? (g[0].dataSync() as Float32Array) : null,
    grads: mine, ref,
  };
  g.forEach((t) => t.dispose()); grads.dispose(); dy.dispose(); y.dispose(); dxT?.dispose();
  return res;
}

/** Assert every gradient (and dx) of a gradCheck within rtol. */
export function assertGrads(r: GradCheckResult, rtol: number, what: string): void {
  if (r.dx && r.refDx) assertClose(r.dx, r.refDx, rtol, `${what} dx`);
  for (const [n, ref] of r.ref) assertClose(r.grads.get(n)!, ref, rtol, `${what} d${n}`);
}

/** Deterministic input. */
export function randn(shape: number[], seed: number, std = 1): tf.Tensor {
  return tf.randomNormal(shape, 0, std, 'float32', seed);
}
