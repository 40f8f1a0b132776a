// wasm BatchMatMul override (tfjs-notes §8.1, P9): stock wasm only has a fast (XNNPACK) path for
// untransposed batch-1 operands; every transposed or batched product (all of backprop) falls to a
// naive loop at ~1 GFLOP/s. Here every case goes through the GEMM primitive (gemm.ts): batch dims
// are looped on heap offsets (no copies), a shared right operand folds the batch into M, and the
// batch dims broadcast like numpy (any rank; size-1 dims repeat). Also _FusedMatMul on wasm and a cpu
// fix for per-dim batch broadcasting.
import { tf, type KernelConfig, type KernelFunc, type TensorInfo } from './tfjs.ts';
import { activeGemm, jsGemm } from './gemm.ts';
import { internals, offsetOf, f32View } from './wasm-heap.ts';

interface MatMulPlan { M: number; N: number; K: number; batchA: number[]; batchB: number[]; outBatch: number[] }

export function matMulPlan(a: TensorInfo, b: TensorInfo, tA: boolean, tB: boolean): MatMulPlan {
  const ra = a.shape.length, rb = b.shape.length;
  if (ra < 2 || rb < 2) throw new Error(`matMul needs rank ≥ 2, got [${a.shape}] and [${b.shape}]`);
  const M = tA ? a.shape[ra - 1] : a.shape[ra - 2], Ka = tA ? a.shape[ra - 2] : a.shape[ra - 1];
  const N = tB ? b.shape[rb - 2] : b.shape[rb - 1], Kb = tB ? b.shape[rb - 1] : b.shape[rb - 2];
  if (Ka !== Kb) throw new Error(`Error in matMul: inner shapes (${Ka}) and (${Kb}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${tA} and transposeB=${tB} must match.`);
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
  return { M, N, K: Ka, batchA, batchB, outBatch };
}

/** For each output batch index, the (flat) batch index into a and into b under broadcasting. */
export function batchIndexMap(batchA: number[], batchB: number[], outBatch: number[]): [number[], number[]] {
  const n = outBatch.reduce((x, y) => x * y, 1);
  const ia: number[] = new Array(n), ib: number[] = new Array(n);
  const r = outBatch.length;
  const pa = Array(r - batchA.length).fill(1).concat(batchA), pb = Array(r - batchB.length).fill(1).concat(batchB);
  for (let o = 0; o < n; o++) {
    let rem = o, fa = 0, fb = 0, sa = 1, sb = 1;
    for (let d = r - 1; d >= 0; d--) {
      const idx = rem % outBatch[d]; rem = (rem - idx) / outBatch[d];
      fa += (pa[d] === 1 ? 0 : idx) * sa; sa *= pa[d];
      fb += (pb[d] === 1 ? 0 : idx) * sb; sb *= pb[d];
    }
    ia[o] = fa; ib[o] = fb;
  }
  return [ia, ib];
}

/** The override. `orig` keeps XNNPACK's weight-packing cache for the plain 2-D case on the wasm path. */
export function batchMatMulWasm(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (!enabled() || a.dtype !== 'float32' || b.dtype !== 'float32') return orig.kernelFunc(args);
    const g = activeGemm();
    const p = matMulPlan(a, b, transposeA, transposeB);
    const nBatch = p.outBatch.reduce((x, y) => x * y, 1);
    if (g.name === 'wasm' && !transposeA && !transposeB && nBatch === 1) return orig.kernelFunc(args);
    return batchMatMulOnHeap(args.backend, a, b, transposeA, transposeB, p);
  };
  return { ...orig, kernelFunc };
}

export function batchMatMulOnHeap(backend: object, a: TensorInfo, b: TensorInfo, tA: boolean, tB: boolean, p: MatMulPlan): TensorInfo {
  const w = internals(backend);
  const { M, N, K } = p;
  const out = w.makeOutput([...p.outBatch, M, N], 'float32'); // allocate before reading offsets
  const nOut = p.outBatch.reduce((x, y) => x * y, 1);
  if (nOut * M * N === 0) return out;
  const aOff = offsetOf(w, a), bOff = offsetOf(w, b), oOff = offsetOf(w, out);
  if (K === 0) { f32View(w, oOff, nOut * M * N).fill(0); return out; }
  const g = activeGemm();
  const nA = p.batchA.reduce((x, y) => x * y, 1), nB = p.batchB.reduce((x, y) => x * y, 1);
  if (nB === 1 && nA === nOut && !tA) { // shared right operand: one GEMM with the batch folded into M
    g.sgemm(w, false, tB, nA * M, N, K, aOff, bOff, oOff);
    return out;
  }
  const [ia, ib] = batchIndexMap(p.batchA, p.batchB, p.outBatch);
  for (let o = 0; o < nOut; o++) {
    g.sgemm(w, tA, tB, M, N, K, aOff + 4 * ia[o] * M * K, bOff + 4 * ib[o] * K * N, oOff + 4 * o * M * N);
  }
  return out;
}

/**
 * _FusedMatMul (tf.fused.matMul) override: the GEMM provider, then bias and relu/linear in one pass
 * over the output. Other activations, prelu weights or non-trailing bias shapes use the stock kernel.
 */
export function fusedMatMulWasm(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo | undefined> & { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation: string };
    const g = activeGemm();
    const p = a.dtype === 'float32' && b.dtype === 'float32' ? matMulPlan(a, b, transposeA, transposeB) : null;
    const nBatch = p ? p.outBatch.reduce((x, y) => x * y, 1) : 0;
    const plainOnXnn = g.name === 'wasm' && !transposeA && !transposeB && nBatch === 1;
    const biasSize = bias ? bias.shape.reduce((x, y) => x * y, 1) : 0;
    const biasOk = !bias || (bias.dtype === 'float32' && (biasSize === 1 || (biasSize === p?.N && bias.shape[bias.shape.length - 1] === p.N)));
    if (!enabled() || !p || plainOnXnn || preluActivationWeights || !biasOk || (activation !== 'linear' && activation !== 'relu')) {
      return orig.kernelFunc(args);
    }
    const out = batchMatMulOnHeap(args.backend, a, b, transposeA, transposeB, p);
    const w = internals(args.backend);
    const n = out.shape.reduce((x, y) => x * y, 1);
    if (n === 0) return out;
    const o = f32View(w, offsetOf(w, out), n);
    const bv = bias ? f32View(w, offsetOf(w, bias), biasSize) : null;
    const relu = activation === 'relu';
    for (let i = 0; i < n; i++) {
      let v = o[i];
      if (bv) v += bv[biasSize === 1 ? 0 : i % biasSize];
      o[i] = relu && v < 0 ? 0 : v;
    }
    return out;
  };
  return { ...orig, kernelFunc };
}

/**
 * cpu BatchMatMul: stock flattens the batch dims, which is wrong when they broadcast per dim
 * (e.g. [2,1,…]×[3,…]). Those cases are computed here with the JS GEMM; the rest stay stock.
 */
export function batchMatMulCpu(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA: tA, transposeB: tB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (!enabled() || a.dtype !== 'float32' || b.dtype !== 'float32') return orig.kernelFunc(args);
    const p = matMulPlan(a, b, tA, tB);
    const nA = p.batchA.reduce((x, y) => x * y, 1), nB = p.batchB.reduce((x, y) => x * y, 1);
    const sameBatch = p.batchA.length === p.batchB.length && p.batchA.every((d, i) => d === p.batchB[i]);
    if (sameBatch || nA === 1 || nB === 1) return orig.kernelFunc(args);
    const cpu = args.backend as unknown as { data: { get(id: object): { values: Float32Array } }; makeTensorInfo(s: number[], d: string, v: Float32Array): TensorInfo };
    const A = cpu.data.get(a.dataId).values, B = cpu.data.get(b.dataId).values;
    const { M, N, K } = p;
    const [ia, ib] = batchIndexMap(p.batchA, p.batchB, p.outBatch);
    const C = new Float32Array(ia.length * M * N);
    for (let o = 0; o < ia.length; o++) jsGemm(tA, tB, M, N, K, A, ia[o] * M * K, B, ib[o] * K * N, C, o * M * N);
    return cpu.makeTensorInfo([...p.outBatch, M, N], 'float32', C);
  };
  return { ...orig, kernelFunc };
}
