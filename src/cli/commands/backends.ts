// `ultramoe backends`: which tensor backends work here, and a short matMul GFLOP/s probe for each.
import { parse } from '../args.ts';
import { tf, initBackend, selectGemm, BackendUnavailableError, NODE_INSTALL, type BackendName } from '../../backend/tf.ts';
import { loadOpenBlas } from '../../backend/openblas.ts';

export const summary = 'list the tensor backends (wasm, wasm+openblas, cpu, node) with a matMul GFLOP/s probe each';

const usage = 'ultramoe backends [--seconds 1] [--json]';

interface Row { name: string; available: boolean; note: string; probe?: string; gflops?: number }

/** Square matMul of size n repeated for about `seconds`; GFLOP/s. */
function probe(n: number, seconds: number): number {
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1), b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  const step = () => { const c = tf.matMul(a, b); c.dataSync(); c.dispose(); };
  step(); // warm-up (XNNPACK packing, BLAS threads)
  let iters = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) { step(); iters++; }
  const ms = performance.now() - t0;
  tf.dispose([a, b]);
  return (2 * n ** 3 * iters) / ms / 1e6;
}

async function measure(name: BackendName, label: string, n: number, seconds: number, gemm?: 'wasm' | 'openblas'): Promise<Row> {
  try {
    await initBackend(name, gemm ? { gemm } : {});
    if (gemm) selectGemm(gemm);
    return { name: label, available: true, note: '', probe: `matMul ${n}³`, gflops: +probe(n, seconds).toFixed(2) };
  } catch (e) {
    if (!(e instanceof BackendUnavailableError)) throw e;
    return { name: label, available: false, note: e.message };
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    seconds: { type: 'string', default: '1' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
  }, usage);
  if (values.help) { console.log(`usage: ${usage}\n\n${summary}`); return 0; }
  const seconds = Number(values.seconds);
  if (!(seconds > 0)) { console.error(`ultramoe backends: --seconds must be a positive number\nusage: ${usage}`); return 2; }

  const rows: Row[] = [];
  rows.push(await measure('wasm', 'wasm', 256, seconds, 'wasm'));
  const blas = loadOpenBlas();
  if (typeof blas === 'string') rows.push({ name: 'wasm+openblas', available: false, note: `not available: ${blas}` });
  else {
    const r = await measure('wasm', 'wasm+openblas', 256, seconds, 'openblas');
    rows.push({ ...r, note: `${blas.library}, ${blas.threads()} BLAS threads` });
  }
  rows.push(await measure('cpu', 'cpu', 128, seconds)); // pure JS: ~0.5 GFLOP/s, so a smaller size
  rows.push(await measure('node', 'node', 256, seconds));
  const node = rows[rows.length - 1];
  if (!node.available && node.note.includes('not installed')) node.note = `not installed: ${NODE_INSTALL}`;
  await initBackend('wasm'); // leave the default active (auto GEMM)

  if (values.json) { console.log(JSON.stringify({ backends: rows })); return 0; }
  const w = Math.max(...rows.map((r) => r.name.length));
  for (const r of rows) {
    const perf = r.available ? `${r.gflops!.toFixed(2).padStart(8)} GFLOP/s (${r.probe})` : '       -';
    console.log(`${r.name.padEnd(w)}  ${perf}${r.note ? `  ${r.note}` : ''}`);
  }
  return 0;
}
