// The one place that imports `@tensorflow/*` (private to src/backend; everyone else imports
// `src/backend/tf.ts`). `@tensorflow/tfjs` (the union package) registers all gradients and chained
// ops under Node (tfjs-notes P1); the wasm backend registers itself on import.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

export type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
export type { KernelConfig, KernelFunc, TensorInfo, NamedAttrMap, NamedTensorInfoMap, DataId } from '@tensorflow/tfjs';

export { tf };
