// Registers our kernel overrides once per backend (tfjs-notes §8): each wraps the stock kernel
// (kept as the fallback for cases it does not handle) and can be switched off at run time to
// measure stock tfjs (bench/gemm.ts).
import { tf, type KernelConfig } from './tfjs.ts';
import { batchMatMulWasm, batchMatMulCpu, fusedMatMulWasm } from './matmul.ts';
import { sliceWasm, splitVWasm } from './slice.ts';
import { gatherV2Wasm, gatherV2Cpu } from './gather.ts';
import { oneHotWasm, sumWasm, unsortedSegmentSumWasm, unsortedSegmentSumCpu } from './reduce.ts';
import { groupedGemmWasm, groupedGemmCpu } from './grouped.ts';
import { rmsNormKernels } from './fused-norm.ts';
import { swigluKernels } from './fused-swiglu.ts';
import { softmaxKernels } from './fused-softmax.ts';
import { ropeKernels } from './fused-rope.ts';
import { scatterKernels } from './fused-scatter.ts';

/** Fused element-wise kernels, registered on the backends they have a config for. */
const fused = [...rmsNormKernels, ...swigluKernels, ...softmaxKernels, ...ropeKernels, ...scatterKernels];

let on = true;
const enabled = () => on;
/** Turn the wrapping overrides off (stock tfjs kernels) or on; added kernels stay registered. */
export function setOverridesEnabled(value: boolean): void { on = value; }
export function overridesEnabled(): boolean { return on; }

const done = new Set<string>();

function replace(name: string, backend: string, wrap: (orig: KernelConfig, enabled: () => boolean) => KernelConfig): void {
  const orig = tf.getKernel(name, backend);
  if (!orig) throw new Error(`no stock '${name}' kernel on ${backend} to override`);
  tf.unregisterKernel(name, backend);
  tf.registerKernel(wrap(orig, enabled));
}
function add(config: KernelConfig): void {
  if (tf.getKernel(config.kernelName, config.backendName)) tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}

/** Idempotent: registers the overrides for `backend` ('wasm' or 'cpu'; others have none). */
export function registerOverrides(backend: string): void {
  if (done.has(backend)) return;
  if (backend === 'wasm') {
    replace('BatchMatMul', 'wasm', batchMatMulWasm);
    replace('_FusedMatMul', 'wasm', fusedMatMulWasm);
    replace('Slice', 'wasm', sliceWasm);
    replace('SplitV', 'wasm', splitVWasm);
    replace('GatherV2', 'wasm', gatherV2Wasm);
    replace('OneHot', 'wasm', oneHotWasm);
    replace('Sum', 'wasm', sumWasm);
    add(unsortedSegmentSumWasm);
    add(groupedGemmWasm);
    fused.filter((k) => k.backendName === 'wasm').forEach(add);
  } else if (backend === 'cpu') {
    replace('BatchMatMul', 'cpu', batchMatMulCpu);
    replace('GatherV2', 'cpu', gatherV2Cpu);
    add(unsortedSegmentSumCpu);
    add(groupedGemmCpu);
    fused.filter((k) => k.backendName === 'cpu').forEach(add);
  }
  done.add(backend);
}
