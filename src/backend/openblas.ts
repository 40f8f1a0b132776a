// Optional native GEMM (issue 9, native-gemm.md): the system OpenBLAS (`libopenblas.so.0`, Debian
// `libopenblas0-pthread`) called through `koffi` (an optionalDependency with prebuilt binaries).
// cblas_sgemm runs directly on views of the wasm heap: no copies. Absent koffi or library → an
// error string, and the caller stays on pure wasm.
import { createRequire } from 'node:module';
import type { HeapGemm } from './gemm.ts';
import { f32View } from './wasm-heap.ts';
import { BlasThreadTuner, MIN_PARALLEL_WORK } from './blas-threads.ts';

const RowMajor = 101, NoTrans = 111, Trans = 112;

export interface Blas {
  /** The library file that was loaded. */
  readonly library: string;
  /** C = op(A)·op(B) + beta·C (beta 0: C is overwritten, its old contents ignored; 1: accumulate). */
  sgemm(tA: boolean, tB: boolean, M: number, N: number, K: number, A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number, beta?: number): void;
  /** y[D] = Xᵀ[D,R]·x[R] for row-major X[R,D]. */
  sgemvT(R: number, D: number, X: Float32Array, x: Float32Array, y: Float32Array): void;
  setThreads(n: number): void;
  threads(): number;
}

export const OPENBLAS_INSTALL_HINT = 'install it with `apt-get install libopenblas0-pthread` (and `npm install koffi`)';

let loaded: Blas | string | undefined;

/** Load OpenBLAS once; returns the bindings or a one-line reason why not. Sets 2 BLAS threads (process-wide). */
export function loadOpenBlas(): Blas | string {
  if (loaded !== undefined) return loaded;
  let koffi: { load(path: string): { func(sig: string): (...a: unknown[]) => unknown } };
  try {
    koffi = createRequire(import.meta.url)('koffi');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return (loaded = code === 'MODULE_NOT_FOUND' ? 'the koffi package is not installed (`npm install koffi`)'
      : `koffi failed to load (${String((e as Error).message).split('\n')[0]})`);
  }
  const candidates = process.env.ULTRAMOE_OPENBLAS ? [process.env.ULTRAMOE_OPENBLAS] : ['libopenblas.so.0', 'libopenblas.so', 'libopenblas.dylib', 'libopenblas.dll'];
  let lib: ReturnType<typeof koffi.load> | undefined, library = '';
  for (const c of candidates) {
    try { lib = koffi.load(c); library = c; break; } catch { /* try the next name */ }
  }
  if (!lib) return (loaded = `${process.env.ULTRAMOE_OPENBLAS ?? 'libopenblas.so.0'} not found; ${OPENBLAS_INSTALL_HINT}`);
  try {
    const sgemm = lib.func('void cblas_sgemm(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int)');
    const sgemv = lib.func('void cblas_sgemv(int, int, int, int, float, const float *, int, const float *, int, float, float *, int)');
    const setThreads = lib.func('void openblas_set_num_threads(int)');
    const getThreads = lib.func('int openblas_get_num_threads()');
    const blas: Blas = {
      library,
      sgemm: (tA, tB, M, N, K, A, lda, B, ldb, C, ldc, beta = 0) => { sgemm(RowMajor, tA ? Trans : NoTrans, tB ? Trans : NoTrans, M, N, K, 1, A, lda, B, ldb, beta, C, ldc); },
      sgemvT: (R, D, X, x, y) => { sgemv(RowMajor, Trans, R, D, 1, X, D, x, 1, 0, y, 1); },
      setThreads: (n) => { setThreads(n); },
      threads: () => getThreads() as number,
    };
    // Process-wide; 2 threads suit the 2-core target (native-gemm.md §2.2). Override: OPENBLAS_NUM_THREADS.
    blas.setThreads(Number(process.env.OPENBLAS_NUM_THREADS) || 2);
    return (loaded = blas);
  } catch (e) {
    return (loaded = `${library} has no cblas_sgemm (${(e as Error).message.split('\n')[0]})`);
  }
}

let ones = new Float32Array(0);

/** The thread policy of the active OpenBLAS provider (for benchmark reports). */
export let blasThreadTuner: BlasThreadTuner | null = null;

/**
 * The HeapGemm provider over OpenBLAS: views are made right before each call (heap may have grown).
 * Threads per call: a pure function of the GEMM's size (max threads from MIN_PARALLEL_WORK multiply-adds up,
 * or from ULTRAMOE_BLAS_THREAD_MIN=W), because OpenBLAS's result depends on the thread count once K exceeds
 * its K block (measured: every K > 320 here, docs/backend.md), and a seed must fix the loss trajectory.
 * ULTRAMOE_BLAS_TUNE=1 chooses threads per size class from measured speed instead (blas-threads.ts): faster
 * on a loaded machine, but runs are then not bit-reproducible.
 */
export function openBlasGemm(blas: Blas): HeapGemm {
  const maxThreads = blas.threads();
  const fixed = process.env.ULTRAMOE_BLAS_THREAD_MIN ? Number(process.env.ULTRAMOE_BLAS_THREAD_MIN)
    : process.env.ULTRAMOE_BLAS_TUNE === '1' ? null : MIN_PARALLEL_WORK;
  const tuner = new BlasThreadTuner(maxThreads, fixed);
  blasThreadTuner = tuner;
  let current = maxThreads;
  const use = (n: number) => { if (n !== current) { blas.setThreads(n); current = n; } };
  const gemm = (tA: boolean, tB: boolean, M: number, N: number, K: number, A: Float32Array, B: Float32Array, C: Float32Array, beta: number) => {
    const work = M * N * K;
    const choice = tuner.pick(work);
    use(choice.threads);
    if (!choice.timed) { blas.sgemm(tA, tB, M, N, K, A, tA ? M : K, B, tB ? K : N, C, N, beta); return; }
    const t0 = performance.now();
    blas.sgemm(tA, tB, M, N, K, A, tA ? M : K, B, tB ? K : N, C, N, beta);
    tuner.report(choice, work, performance.now() - t0);
  };
  return {
    name: 'openblas',
    sgemm(b, tA, tB, M, N, K, aOff, bOff, cOff, accumulate = false) {
      if (M * N === 0) return;
      const C = f32View(b, cOff, M * N);
      if (K === 0) { if (!accumulate) C.fill(0); return; }
      gemm(tA, tB, M, N, K, f32View(b, aOff, M * K), f32View(b, bOff, K * N), C, accumulate ? 1 : 0);
    },
    colSum(b, R, D, xOff, outOff) {
      use(1); // memory-bound: one thread
      if (ones.length < R) ones = new Float32Array(R).fill(1);
      blas.sgemvT(R, D, f32View(b, xOff, R * D), ones, f32View(b, outOff, D));
    },
  };
}
