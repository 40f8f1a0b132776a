// Memory limits that bite at toy scale: an NPU with its HBM scaled down to 3 MiB runs the forward
// pass of 6 layers and keeps every layer's activations for the backward pass. Without swapping the
// 5th layer fails with an out-of-memory error that names the largest holders; with swapping, each
// layer's input is moved to host memory (host-copy stream, overlapping the next layer's compute)
// and brought back for the backward pass.
//   npx tsx examples/cluster-memory.ts
import { tf, initBackend } from '../src/backend/tf.ts';
import { Cluster, OutOfMemoryError, formatBytes, getSpec, withMemory, type SimEvent, type SwapHandle } from '../src/device/index.ts';

const LAYERS = 6, T = 512, H = 256; // activations of one layer: 512 x 256 x 4 B = 512 KiB

function forward(swap: boolean): void {
  const cluster = new Cluster({ spec: withMemory(getSpec('ascend-910b'), { hbmBytes: 3 * 2 ** 20 }), nodes: 1, devicesPerNode: 1 });
  const npu = cluster.device(0);
  const w = npu.hold(tf.randomNormal([H, H], 0, 0.05, 'float32', 1) as tf.Tensor2D, 'weights', 'w (shared by all layers)');
  let x: tf.Tensor = npu.hold(tf.randomNormal([T, H], 0, 1, 'float32', 2), 'activations', 'input');
  const saved: Array<tf.Tensor | SwapHandle> = [];
  let last: SimEvent | undefined;
  try {
    for (let l = 0; l < LAYERS; l++) {
      const { result, event } = npu.run(`layer${l}`, { gemm: [T, H, H] }, () => tf.tidy(() => tf.relu(tf.matMul(x, w))), { after: last ? [last] : [] });
      let y: tf.Tensor;
      try { y = npu.hold(result, 'activations', `layer${l}.output`); } catch (e) { result.dispose(); throw e; }
      // keep the layer input for the backward pass: on the device, or on the host
      saved.push(swap ? npu.swapOut(x, { after: [event] }) : x);
      x = y; last = event;
    }
    console.log(`${swap ? 'with' : 'without'} swapping: forward done; HBM peak ${formatBytes(npu.hbm.peak)}, host peak ${formatBytes(cluster.hosts[0].peak)}`);
    // backward pass needs the inputs again, newest first
    for (const s of saved.reverse()) {
      const t = s instanceof tf.Tensor ? s : npu.swapIn(s).tensor;
      npu.charge('layer backward', { gemm: [T, H, 2 * H] });
      npu.free(t);
    }
    console.log(cluster.timeline.summaryText());
  } catch (e) {
    if (!(e instanceof OutOfMemoryError)) throw e;
    console.log(`${swap ? 'with' : 'without'} swapping: ${e.message}\n`);
    for (const s of saved) if (s instanceof tf.Tensor) npu.free(s);
  } finally {
    npu.freeAll();
  }
}

async function main(): Promise<void> {
  await initBackend('wasm');
  forward(false);
  forward(true);
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
