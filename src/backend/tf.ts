// The project's tfjs entry point: `tf`, and `initBackend` which selects a backend, registers our
// kernel overrides once per backend and (wasm) picks the GEMM provider: OpenBLAS when available
// ('auto'), or forced with { gemm } / env ULTRAMOE_GEMM=wasm|openblas|auto.
import { tf, loadNodeBackend } from './tfjs.ts';
import { registerOverrides } from './register.ts';
import { setActiveGemm, activeGemm, wasmGemm, type GemmName } from './gemm.ts';
import { loadOpenBlas, openBlasGemm } from './openblas.ts';

export { tf };
export { groupedMatMul, groupedMatMulTransposed, groupedMatMulTransposedSum, groupedWeightGrad } from './grouped.ts';

export type BackendName = 'wasm' | 'cpu' | 'node';
export type GemmChoice = 'auto' | 'openblas' | 'wasm';
export interface InitOptions {
  /** wasm only: which GEMM runs matMuls. Default: env ULTRAMOE_GEMM, else 'auto'. */
  gemm?: GemmChoice;
  /** CLI start-up: print `backendDescription()` to stderr (once per distinct line). */
  announce?: boolean;
}

/** Thrown when a backend cannot be used here; the message is one line saying how to fix it. */
export class BackendUnavailableError extends Error {}

/** How to get the optional tfjs-node backend (its install script downloads libtensorflow). */
export const NODE_INSTALL = 'run `npm install @tensorflow/tfjs-node` on a machine that can reach storage.googleapis.com (its install script downloads libtensorflow)';
export const NODE_INSTALL_HINT = `backend 'node' needs @tensorflow/tfjs-node, which is not installed: ${NODE_INSTALL}; or use the wasm backend`;

let gemmNote = '';

/** Switch tfjs to `name` (tfjs 'tensorflow' for node) and wait until it is ready. */
export async function initBackend(name: BackendName = 'wasm', opts: InitOptions = {}): Promise<void> {
  if (name === 'node') {
    const err = await loadNodeBackend();
    const missing = err.includes('MODULE_NOT_FOUND');
    if (err) throw new BackendUnavailableError(missing ? NODE_INSTALL_HINT : `backend 'node': @tensorflow/tfjs-node failed to load (${err.trim()}); reinstall it or use the wasm backend`);
  } else if (name !== 'wasm' && name !== 'cpu') {
    throw new BackendUnavailableError(`unknown backend '${name}'; choose wasm, cpu or node`);
  }
  const tfName = name === 'node' ? 'tensorflow' : name;
  if (tf.getBackend() !== tfName) {
    const ok = await tf.setBackend(tfName);
    if (!ok) throw new BackendUnavailableError(`could not initialise tfjs backend '${tfName}'`);
  }
  await tf.ready();
  // cpu prints a "install tfjs-node" banner on first use; the CLI explains backends itself.
  if (tfName === 'cpu') (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
  registerOverrides(tfName);
  if (name === 'wasm') selectGemm(opts.gemm ?? gemmFromEnv(), !opts.announce);
  if (opts.announce) {
    const line = backendDescription();
    if (!announced.has(line)) { announced.add(line); console.error(`ultramoe: ${line}`); }
  }
}
const announced = new Set<string>();

function gemmFromEnv(): GemmChoice {
  const v = process.env.ULTRAMOE_GEMM;
  if (!v) return 'auto';
  if (v === 'auto' || v === 'openblas' || v === 'wasm') return v;
  throw new BackendUnavailableError(`ULTRAMOE_GEMM='${v}': expected auto, openblas or wasm`);
}

const warned = new Set<string>();
/** Choose the wasm GEMM provider. A forced 'openblas' that cannot load warns once and uses wasm. */
export function selectGemm(choice: GemmChoice, warn = true): GemmName {
  if (choice === 'wasm') { setActiveGemm(wasmGemm); gemmNote = 'pure wasm GEMM (forced)'; return 'wasm'; }
  const blas = loadOpenBlas();
  if (typeof blas === 'string') {
    setActiveGemm(wasmGemm);
    gemmNote = `pure wasm GEMM: OpenBLAS unavailable (${blas})`;
    if (choice === 'openblas' && warn && !warned.has(blas)) { warned.add(blas); console.warn(`ultramoe: ${gemmNote}`); }
    return 'wasm';
  }
  setActiveGemm(openBlasGemm(blas));
  gemmNote = `OpenBLAS GEMM (${blas.library}, ${blas.threads()} threads)`;
  return 'openblas';
}

/** What runs matMuls now: 'wasm+openblas', 'wasm', 'cpu', 'node'. */
export function backendLabel(): string {
  const b = tf.getBackend();
  if (b === 'wasm') return activeGemm().name === 'openblas' ? 'wasm+openblas' : 'wasm';
  return b === 'tensorflow' ? 'node' : b;
}

/** One line for CLI start-up logs, e.g. "backend wasm+openblas: OpenBLAS GEMM (libopenblas.so.0, 2 threads)". */
export function backendDescription(): string {
  const label = backendLabel();
  return label.startsWith('wasm') ? `backend ${label}: ${gemmNote}` : `backend ${label}`;
}

/**
 * For CLI `--backend` flags: accepts 'wasm', 'wasm+openblas' (forces OpenBLAS), 'cpu', 'node';
 * initialises it and prints the one-line description to stderr. Unknown names or a missing
 * tfjs-node throw BackendUnavailableError (one line; the CLI exits non-zero).
 */
export async function initBackendFromArg(arg = 'wasm', announce = true): Promise<void> {
  if (arg === 'wasm+openblas') return initBackend('wasm', { gemm: 'openblas', announce });
  if (arg !== 'wasm' && arg !== 'cpu' && arg !== 'node') {
    throw new BackendUnavailableError(`unknown backend '${arg}'; choose wasm, wasm+openblas, cpu or node`);
  }
  return initBackend(arg, { announce });
}
