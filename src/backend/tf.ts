// The single tfjs import of the project. Everything else imports `tf` from here.
// `@tensorflow/tfjs` (the union package) registers all gradients and chained ops under Node
// (tfjs-notes P1); the wasm backend registers itself on import.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

export { tf };

export type BackendName = 'wasm' | 'cpu' | 'node';

/** Switch tfjs to `name` and wait until it is ready. */
export async function initBackend(name: BackendName = 'wasm'): Promise<void> {
  if (name === 'node') throw new Error("backend 'node' is not wired yet");
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`could not initialise tfjs backend '${name}'`);
  await tf.ready();
}
