// initBackend: backend selection, the one-line error for a missing tfjs-node, idempotent
// registration of our kernels, and the GEMM provider switch on wasm.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tf, initBackend, backendLabel, backendDescription, BackendUnavailableError, selectGemm } from '../src/backend/tf.ts';
import { loadOpenBlas } from '../src/backend/openblas.ts';

test('wasm and cpu initialise; the label names the GEMM path', async () => {
  await initBackend('cpu');
  assert.is(tf.getBackend(), 'cpu');
  assert.is(backendLabel(), 'cpu');
  await initBackend('wasm', { gemm: 'wasm' });
  assert.is(backendLabel(), 'wasm');
  assert.match(backendDescription(), /^backend wasm: pure wasm GEMM/);
});

test("initBackend('node') without tfjs-node throws one line saying how to install it", async () => {
  let installed = true;
  try { await import(['@tensorflow', 'tfjs-node'].join('/')); } catch { installed = false; }
  if (installed) return; // nothing to check here
  try {
    await initBackend('node');
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, BackendUnavailableError);
    const msg = (e as Error).message;
    assert.not.match(msg, /\n/);
    assert.match(msg, /npm install @tensorflow\/tfjs-node/);
  }
  assert.is(tf.getBackend(), 'wasm', 'the active backend is unchanged (no silent fallback)');
});

test('re-initialising does not re-register (kernels stay the same objects)', async () => {
  await initBackend('wasm');
  const k = tf.getKernel('BatchMatMul', 'wasm');
  await initBackend('cpu');
  await initBackend('wasm');
  assert.ok(tf.getKernel('BatchMatMul', 'wasm') === k);
  assert.ok(tf.getKernel('UnsortedSegmentSum', 'wasm'), 'wasm UnsortedSegmentSum registered');
});

test('gemm choice: forced wasm, and openblas when the library loads', async () => {
  await initBackend('wasm');
  assert.is(selectGemm('wasm'), 'wasm');
  const blas = loadOpenBlas();
  assert.is(selectGemm('auto'), typeof blas === 'string' ? 'wasm' : 'openblas');
  selectGemm('wasm');
});

test.run();
