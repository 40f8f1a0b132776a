// The GEMM primitive every wasm matmul override is built on: C[M,N] = op(A)·op(B) for row-major
// float32 operands addressed by byte offsets in the wasm heap. Two providers: pure wasm (XNNPACK,
// which only has a fast path for untransposed batch-1 operands, so transposes are materialised
// first, choosing the cheaper of op(A)·op(B) and (op(B)ᵀ·op(A)ᵀ)ᵀ) and OpenBLAS (one cblas_sgemm
// call, see openblas.ts). The active provider is a mutable module-level choice so that switching
// path at run time (tests, benchmarks) does not re-register kernels.
import { type WasmInternals, xnnMatMulAt, transposeAt, scratch, freeScratch, f32View } from './wasm-heap.ts';

export type GemmName = 'wasm' | 'openblas';

export interface HeapGemm {
  readonly name: GemmName;
  /** C[M,N] = op(A)·op(B); op(A) is [M,K] (A stored [K,M] when transA), op(B) is [K,N]. Overwrites C,
   *  or with `accumulate` adds to it (C += op(A)·op(B): BLAS beta = 1). */
  sgemm(b: WasmInternals, transA: boolean, transB: boolean, M: number, N: number, K: number, aOff: number, bOff: number, cOff: number, accumulate?: boolean): void;
  /** out[D] = Σ_r X[r,D] (the axis-0 sum behind bias gradients); null = use the JS loop. */
  colSum?(b: WasmInternals, R: number, D: number, xOff: number, outOff: number): void;
}

export const wasmGemm: HeapGemm = {
  name: 'wasm',
  sgemm(b, tA, tB, M, N, K, aOff, bOff, cOff, accumulate = false) {
    if (accumulate) { // XNNPACK has no beta: product into scratch, then C += it
      if (M * N === 0 || K === 0) return;
      const s = scratch(b, M * N);
      try {
        wasmGemm.sgemm(b, tA, tB, M, N, K, aOff, bOff, s);
        const c = f32View(b, cOff, M * N), p = f32View(b, s, M * N);
        for (let i = 0; i < c.length; i++) c[i] += p[i];
      } finally { freeScratch(b, s); }
      return;
    }
    if (!tA && !tB) return xnnMatMulAt(b, aOff, bOff, cOff, M, N, K);
    // Elements moved by transposes: direct = materialise op(A), op(B); swapped = compute Cᵀ = op(B)ᵀ·op(A)ᵀ
    // (free for the transposed operands) and transpose the [N,M] result.
    const direct = (tA ? M * K : 0) + (tB ? K * N : 0);
    const swapped = (tB ? 0 : K * N) + (tA ? 0 : M * K) + M * N;
    if (direct <= swapped) {
      const s = scratch(b, direct);
      try {
        let a2 = aOff, b2 = bOff, o = s;
        if (tA) { transposeAt(b, aOff, o, K, M); a2 = o; o += 4 * M * K; }
        if (tB) { transposeAt(b, bOff, o, N, K); b2 = o; }
        xnnMatMulAt(b, a2, b2, cOff, M, N, K);
      } finally { freeScratch(b, s); }
    } else {
      const s = scratch(b, swapped);
      try {
        let L = bOff, R = aOff, o = s;
        if (!tB) { transposeAt(b, bOff, o, K, N); L = o; o += 4 * K * N; }   // op(B)ᵀ: [N,K]
        if (!tA) { transposeAt(b, aOff, o, M, K); R = o; o += 4 * M * K; }   // op(A)ᵀ: [K,M]
        xnnMatMulAt(b, L, R, o, N, M, K);                                    // Cᵀ: [N,M]
        transposeAt(b, o, cOff, N, M);
      } finally { freeScratch(b, s); }
    }
  },
};

let active: HeapGemm = wasmGemm;
/** The provider the wasm overrides call now. */
export function activeGemm(): HeapGemm { return active; }
export function setActiveGemm(g: HeapGemm): void { active = g; }

/** Plain JS GEMM on typed arrays (cpu backend kernels): C = op(A)·op(B), loops ordered for stride-1 access. */
export function jsGemm(tA: boolean, tB: boolean, M: number, N: number, K: number,
  A: Float32Array, aOff: number, B: Float32Array, bOff: number, C: Float32Array, cOff: number): void {
  if (!tA && tB) { // dot products of rows
    for (let i = 0; i < M; i++) {
      const ai = aOff + i * K;
      for (let j = 0; j < N; j++) {
        const bj = bOff + j * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += A[ai + k] * B[bj + k];
        C[cOff + i * N + j] = s;
      }
    }
    return;
  }
  C.fill(0, cOff, cOff + M * N);
  for (let k = 0; k < K; k++) { // rank-1 updates: C[i,:] += op(A)[i,k] · op(B)[k,:]
    for (let i = 0; i < M; i++) {
      const aik = tA ? A[aOff + k * M + i] : A[aOff + i * K + k];
      if (aik === 0) continue;
      const ci = cOff + i * N;
      if (tB) for (let j = 0; j < N; j++) C[ci + j] += aik * B[bOff + j * K + k];
      else { const bk = bOff + k * N; for (let j = 0; j < N; j++) C[ci + j] += aik * B[bk + j]; }
    }
  }
}
