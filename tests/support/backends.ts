// Shared test helpers: one uvu suite per available backend (like tfjs's describeWithFlags),
// numeric closeness with a stated tolerance, and a tensor-leak guard.
import { suite, type Test } from 'uvu';
import * as assert from 'uvu/assert';
import { tf, initBackend, type BackendName } from '../../src/backend/tf.ts';

/** Backends every suite runs on. ULTRAMOE_TEST_BACKENDS=wasm narrows it. */
export const TEST_BACKENDS: BackendName[] = (process.env.ULTRAMOE_TEST_BACKENDS?.split(',') as BackendName[]) ?? ['cpu', 'wasm'];

/** Define `body` once per backend as a uvu suite named `${name} [${backend}]` and run it. */
export function forEachBackend(name: string, body: (test: Test, backend: BackendName) => void, backends = TEST_BACKENDS): void {
  for (const b of backends) {
    const s = suite(`${name} [${b}]`);
    s.before(async () => { await initBackend(b); });
    body(s, b);
    s.run();
  }
}

/** max |a-b| / max(|b|, floor) over all entries; throws with context when over `rtol`. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, what = 'value', floor = 1e-6): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  let worst = 0, at = -1;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    let err = Math.abs(actual[i] - expected[i]) / Math.max(scale, floor);
    if (Number.isNaN(err)) err = Infinity; // a NaN anywhere fails
    if (err > worst) { worst = err; at = i; }
  }
  if (!(worst <= rtol)) assert.unreachable(`${what}: relative error ${worst.toExponential(2)} > ${rtol} at [${at}] (got ${actual[at]}, want ${expected[at]})`);
}

/** Run fn twice and assert the live tensor count does not grow between the runs. */
export async function assertNoLeak(fn: () => unknown | Promise<unknown>, what = 'fn'): Promise<void> {
  await fn();
  const before = tf.memory().numTensors;
  await fn();
  await fn();
  const after = tf.memory().numTensors;
  assert.is(after, before, `${what} leaked ${after - before} tensors over two calls`);
}

export { tf, assert };
