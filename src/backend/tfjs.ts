// The one place that imports `@tensorflow/*` (private to src/backend; everyone else imports
// `src/backend/tf.ts`). `@tensorflow/tfjs` (the union package) registers all gradients and chained
// ops under Node (tfjs-notes P1); the wasm backend registers itself on import.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

export type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
export type { KernelConfig, KernelFunc, TensorInfo, NamedAttrMap, NamedTensorInfoMap, DataId } from '@tensorflow/tfjs';

export { tf };

/** Import @tensorflow/tfjs-node (registers the 'tensorflow' backend); returns an error message or ''. */
export async function loadNodeBackend(): Promise<string> {
  const spec = '@tensorflow/tfjs-node'; // a variable: the package is optional and usually absent
  try {
    await import(spec);
    return '';
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return `${err.code ?? ''} ${String(err.message).split('\n')[0]}`;
  }
}
