// The pure cost functions equal the alpha-beta and roofline formulas written out by hand.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import * as cost from '../src/device/cost.ts';
import { getSpec, type LinkSpec } from '../src/device/specs.ts';

const test = suite('device cost model');
const link: LinkSpec = { name: 'test', bandwidth: 100e9, latency: 2e-6, efficiency: 0.5 }; // bus bandwidth 50 GB/s
const S = 64e6, B = 50e9, a = 2e-6;

test('collective times: alpha-beta formulas', () => {
  for (const n of [2, 3, 8, 16]) {
    assertClose([cost.allReduceTime(S, n, link)], [2 * (n - 1) * a + 2 * (n - 1) / n * S / B], 1e-12, `allReduce n=${n}`);
    assertClose([cost.reduceScatterTime(S, n, link)], [(n - 1) * a + (n - 1) / n * S / B], 1e-12, `reduceScatter n=${n}`);
    assertClose([cost.allGatherTime(S, n, link)], [(n - 1) * a + (n - 1) / n * S / B], 1e-12, `allGather n=${n}`);
    assertClose([cost.allToAllTime(S, n, link)], [(n - 1) * a + (n - 1) / n * S / B], 1e-12, `allToAll n=${n}`);
    assertClose([cost.broadcastTime(S, n, link)], [(n - 1) * a + S / B], 1e-12, `broadcast n=${n}`);
  }
  assertClose([cost.sendRecvTime(S, link)], [a + S / B], 1e-12, 'sendRecv');
  for (const f of [cost.allReduceTime, cost.reduceScatterTime, cost.allGatherTime, cost.allToAllTime, cost.broadcastTime]) assert.is(f(S, 1, link), 0);
  assert.is(cost.sendRecvTime(0, link), 0);
});

test('two-tier and hierarchical all-to-all', () => {
  const inter: LinkSpec = { name: 'inter', bandwidth: 25e9, latency: 5e-6, efficiency: 1 };
  const t = cost.twoTierAllToAllTime({ maxIntraBytes: 7e6, maxInterBytes: 8e6, ranksPerNode: 8, nodes: 2 }, link, inter);
  assertClose([t], [Math.max(7 * a + 7e6 / B, 8 * 5e-6 + 8e6 / 25e9)], 1e-12, 'twoTier');
  const h = cost.hierarchicalAllToAllTime(1e6, 7e6, 2, 8, link, inter);
  assertClose([h.interNode, h.intraNode, h.total], [5e-6 + 1e6 / 25e9, 7 * a + 7e6 / B, 5e-6 + 1e6 / 25e9 + 7 * a + 7e6 / B], 1e-12, 'hierarchical');
});

test('GEMM and memory-bound ops: FLOPs / (peak x efficiency(shape)) + launch', () => {
  const s = getSpec('ascend-910b');
  const big = cost.gemmTime(8192, 8192, 8192, s, 'bf16'); // 1100 GFLOP -> top of the curve (0.87)
  assertClose([big], [2 * 8192 ** 3 / (256e12 * 0.87) + 10e-6], 1e-12, 'big gemm');
  assertClose([cost.gemmEfficiency(64, 64, 64, s)], [0.09], 0, 'tiny gemm efficiency');
  assertClose([cost.gemmEfficiency(8192, 8192, 8200, s)], [0.87 * 8200 / 8208], 1e-12, 'k = 8200 pads to 8208 on 16-wide tiles');
  assertClose([cost.tileUtilization(17, 16, 16, 16)], [17 / 32], 1e-12, 'tile utilization');
  assert.is(cost.tileUtilization(17, 3, 5), 1);
  assert.ok(cost.gemmEfficiency(1024, 1024, 1024, s) < cost.gemmEfficiency(8192, 8192, 8192, s), 'efficiency grows with size');
  assertClose([cost.memoryTime(200e6, s)], [200e6 / (1.6e12 * 0.9) + 10e-6], 1e-12, 'memory op');
  assertClose([cost.computeTime(1e12, s, 'bf16', 0.5)], [1e12 / (256e12 * 0.5) + 10e-6], 1e-12, 'computeTime');
  assertClose([cost.hostCopyTime(32e6, s)], [1e-6 + 32e6 / (32e9 * 0.8)], 1e-12, 'host copy');
  assert.throws(() => cost.gemmTime(8, 8, 8, getSpec('a100-sxm-80gb'), 'fp8'), /has no fp8 peak/);
  assert.is(cost.curveEfficiency([[0, 0.1], [1, 0.6], [16, 0.9]], 16), 0.9);
  assert.is(cost.curveEfficiency([[0, 0.1], [1, 0.6], [16, 0.9]], 15.9), 0.6);
});

test('smooth, shape-aware GEMM efficiency: anchors kept, no jumps, thin GEMMs memory-bound', () => {
  const curve: Array<[number, number]> = [[0, 0.1], [1, 0.6], [16, 0.9], [128, 0.95]];
  // equal to the step curve at the anchors, log-linear in between, flat outside
  assertClose([cost.smoothCurveEfficiency(curve, 1), cost.smoothCurveEfficiency(curve, 16), cost.smoothCurveEfficiency(curve, 500)], [0.6, 0.9, 0.95], 1e-12, 'anchors');
  assertClose([cost.smoothCurveEfficiency(curve, 4)], [0.6 + 0.3 * 0.5], 1e-12, 'halfway in log between 1 and 16');
  assert.is(cost.smoothCurveEfficiency(curve, 1 / 64), 0.1);
  // continuity: no step larger than 1% across the old jumps at 16 and 128 GFLOP
  for (const x of [1, 16, 128]) assert.ok(Math.abs(cost.smoothCurveEfficiency(curve, x * 1.001) - cost.smoothCurveEfficiency(curve, x * 0.999)) < 0.01, `${x}`);
  // roofline: 128 tokens x 7168 x 2048 on H100 in bf16 has intensity ~ 113 FLOP/B < ridge 295 -> memory-bound
  const h100 = getSpec('h100-sxm');
  const r = cost.rooflineEfficiency(128, 2048, 7168, h100);
  assertClose([r], [(2 * 128 * 2048 * 7168) / (2 * (128 * 7168 + 7168 * 2048 + 128 * 2048)) * 3.35e12 / 989e12], 1e-12, 'roofline');
  assert.ok(cost.gemmEfficiency(128, 2048, 7168, h100) <= r + 1e-12);
  assert.is(cost.rooflineEfficiency(8192, 8192, 8192, h100), 1);
});

test('fixed kernel costs: launch per kernel, host-bound only when dispatch outruns the device, host sync', () => {
  const spec = getSpec('ascend-910b'); // launch 10 us, host dispatch 20 us per kernel
  const lo = spec.efficiency.launchOverhead, hd = spec.efficiency.hostDispatch!;
  // long device work: the host keeps ahead, only the launches show
  assertClose([cost.kernelFixedTime(78, 0.1, spec)], [78 * lo], 1e-12, 'device-bound');
  // no device work: dispatching 78 kernels takes 78 x 20 us, of which the launches are already counted
  assertClose([cost.kernelFixedTime(78, 0, spec)], [78 * hd], 1e-12, 'host-bound');
  assert.is(cost.kernelFixedTime(0, 1, spec), 0);
  assertClose([cost.hostSyncTime(spec)], [spec.hostLink.latency + hd], 1e-12, 'sync');
});

test.run();
