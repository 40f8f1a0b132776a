// Hardware specs of simulated accelerators: types, the built-in catalog (every number cited) and
// validation of user-supplied specs. Pure data and functions: no tfjs import, so the analytical
// simulator (src/sim) can use it without tensors.
//
// Units everywhere: bytes, bytes/s, FLOP/s, seconds. Link bandwidths are per device, per direction.
// Citation tags (see /work/shared/reference): [P] paper/vendor primary, [H] Huawei-official other doc,
// [S] secondary/third party, [D] derived from cited numbers, [U] unconfirmed modelling assumption.

export type Dtype = 'fp32' | 'bf16' | 'fp16' | 'fp8';

export const DTYPE_BYTES: Record<Dtype, number> = { fp32: 4, bf16: 2, fp16: 2, fp8: 1 };

/** One link class (HCCS/NVLink inside a node, RoCE/InfiniBand between nodes, PCIe to the host). */
export interface LinkSpec {
  name: string;
  /** Unidirectional bandwidth per device, bytes/s. */
  bandwidth: number;
  /** Per-message (per algorithm step) latency alpha, seconds. */
  latency: number;
  /** Achievable fraction of `bandwidth` for collectives (bus-bandwidth efficiency), in (0, 1]. */
  efficiency: number;
}

/** Step curve `[[threshold, efficiency], ...]`: the efficiency of the largest threshold <= size (Calculon style). */
export type EfficiencyCurve = Array<[number, number]>;

export interface EfficiencySpec {
  /** GEMM efficiency versus the GEMM's size in GFLOP (2mnk / 1e9). */
  gemm: EfficiencyCurve;
  /** Memory-bound op efficiency versus bytes touched in MB (1e6 bytes). */
  memory: EfficiencyCurve;
  /**
   * Fixed cost of every kernel on the device timeline (launch, task scheduling, ramp-up), seconds. The executed
   * cluster charges it per op; simulate() per kernel of the layer structure (src/sim/kernels.ts).
   */
  launchOverhead: number;
  /**
   * Host time to dispatch one kernel, seconds (framework + runtime, asynchronous to the device). Optional: when
   * set, simulate() makes a layer host-bound when its kernels take longer to dispatch than to run.
   */
  hostDispatch?: number;
  /** Matrix-unit tile edge: GEMM dims are padded up to multiples of it, wasting the padding (optional). */
  gemmTile?: number;
  /**
   * Fused (flash) attention kernel efficiency, forward + backward, as a fraction of the BF16 peak under the
   * Megatron accounting (backward = 2 × forward FLOPs). Optional: without it fused attention runs at the GEMM curve.
   */
  attention?: number;
  /**
   * Ceiling on FP8 GEMM efficiency as a fraction of the FP8 peak (fine-grained scaling, promotion of the
   * accumulation to CUDA cores). Optional: without it FP8 GEMMs follow the GEMM curve.
   */
  fp8Gemm?: number;
}

export interface DeviceSpec {
  name: string;
  description: string;
  /** Dense (no sparsity) peak FLOP/s by dtype; a missing dtype is unsupported. */
  peakFlops: Partial<Record<Dtype, number>>;
  hbmBytes: number;
  hbmBandwidth: number;
  intraNode: LinkSpec;
  interNode: LinkSpec;
  hostLink: LinkSpec;
  devicesPerNode: number;
  /** Host DRAM per node, bytes (shared by the node's devices). */
  hostMemoryBytes: number;
  efficiency: EfficiencySpec;
  /** Field path -> citation (source and status tag). */
  sources: Record<string, string>;
}

const T = 1e12, G = 1e9, GiB = 2 ** 30, TiB = 2 ** 40, US = 1e-6;

// --- shared efficiency curves and links -------------------------------------------------------

// Calculon systems/a100_80g.json and h100_80g_nvl8.json (calculon-ai/calculon): matrix efficiency by GFLOP
// [[128,.95],[16,.9],[1,.6],[0,.1]], mem1 efficiency by MB [[100,.9],[10,.75],[1,.6],[0,.3]].
const CALCULON_GEMM: EfficiencyCurve = [[0, 0.1], [1, 0.6], [16, 0.9], [128, 0.95]];
const CALCULON_MEM: EfficiencyCurve = [[0, 0.3], [1, 0.6], [10, 0.75], [100, 0.9]];
// Ascend: same shape, top anchored at the one measured 910B BF16 GEMM (328 of 376 TFLOPS = 0.87, perf-model.md §4 [S]).
const ASCEND_GEMM: EfficiencyCurve = [[0, 0.09], [1, 0.55], [16, 0.82], [128, 0.87]];

const SRC_CALCULON_EFF = 'Calculon systems/*.json efficiency curves (calculon-ai/calculon) [S]';
const SRC_ASCEND_GEMM = 'Calculon curve shape, top = measured 328/376 TFLOPS BF16 GEMM on 910B (perf-model.md §4) [D]';
const SRC_LAUNCH_GPU = 'per-kernel fixed cost 5 us: the low end of the CPU-side launch time "usually between 5-20 microseconds" (facebookresearch/HolisticTraceAnalysis docs, cuda_kernel_launch_stats); meta-pytorch/autoparallel PR #146 fits a kernel_launch_overhead so that every op costs at least 7 us on H100 [S]';
const SRC_HOST_GPU = 'host dispatch 20 us per kernel: the high end of the CPU-side launch time 5-20 us (HolisticTraceAnalysis docs) [S], a conservative host-bound check';
const SRC_TILE_NPU = 'DaVinci cube unit = 16x16x16 fp16 MACs per cycle (4096 MAC = 8192 FLOP/cycle, perf-model.md §4: 24 cores x 1.8 GHz x 8192) [D]';
const SRC_TILE_GPU = 'tensor-core MMA tiles are multiples of 16 in m, n, k for bf16 (NVIDIA matmul performance guide) [S]';
// Fused attention on Hopper (FlashAttention-3 paper, arXiv 2407.08608, Fig. 5-6, H100 80GB SXM5, head dim 128,
// seq 4k): cuDNN 518 TFLOPS forward (causal), 499 TFLOPS backward; FA counts the backward as 2.5 x forward, so
// under Megatron's 3 x accounting: 3 / (1/518 + 2.5/499) = 432 TFLOPS = 0.437 of 989.
const HOPPER_ATTENTION = 3 / (1 / 518 + 2.5 / 499) / 989;
// Ampere: FlashAttention-2 (arXiv 2307.08691) forward + backward up to 225 TFLOPS on A100 under FA's 3.5 x
// accounting = 225 x 3 / 3.5 = 193 TFLOPS in Megatron's = 0.62 of 312.
const AMPERE_ATTENTION = (225 * 3) / 3.5 / 312;
// FP8 GEMM ceiling on Hopper: deepseek-ai/DeepGEMM README, grouped GEMMs (contiguous layout) at DeepSeek-V3's
// expert shapes on H800: 4 x 8192 x 4096 x 7168 at 1297 TFLOPS and 4 x 8192 x 7168 x 2048 at 1099 TFLOPS, each
// "1.2x" over DeepSeek's earlier CUTLASS-based kernels (the ones of the V3 training run): 1081 and 916 TFLOPS;
// FLOP-weighted (fc1 is 2/3 of the FLOPs) 3 / (2/1081 + 1/916) = 1020 TFLOPS = 0.515 of 1979.
const HOPPER_FP8_GEMM = 3 / (2 / (1297 / 1.2) + 1 / (1099 / 1.2)) / 1979;
const SRC_ATTN_HOPPER = 'cuDNN fused attention on H100, head dim 128, seq 4k: 518 TFLOPS fwd (causal), 499 bwd (FlashAttention-3 paper arXiv 2407.08608 Fig. 5-6) -> 0.437 of peak under 3x accounting [S/D]';
const SRC_ATTN_AMPERE = 'FlashAttention-2 paper (arXiv 2307.08691): fwd+bwd up to 225 TFLOPS on A100 under 3.5x accounting -> 0.62 under 3x [P/D]';
const SRC_FP8_HOPPER = 'deepseek-ai/DeepGEMM README grouped GEMMs at DeepSeek-V3 expert shapes (1297 / 1099 TFLOPS on H800, 1.2x over the earlier CUTLASS kernels) -> 0.515 of the FP8 peak [P/D]';
const SRC_LAUNCH_NPU = 'assumed 10 us per op [U]: no published per-op figure for 910B; Pangu Ultra MoE reports host-bound launch overhead (pangu-ultra-moe.md §6.2); CANN: torch_npu dispatches ops asynchronously, host bound when dispatch exceeds device time (MindStudio "Host Bound Issue Classification")';
const SRC_HOST_NPU = 'host dispatch 20 us per op [U]: eager torch_npu runs Python API -> C++ dispatch -> device kernel per op, each kernel waiting for its dispatch (TorchAir reduce-overhead/aclgraph guide; two-stage TASK_QUEUE_ENABLE pipeline, Ascend Extension for PyTorch env reference), but no per-op time is published; taken as the GPU high end, a conservative host-bound check';

const roce200: LinkSpec = { name: 'RoCE 200G', bandwidth: 25 * G, latency: 2 * US, efficiency: 0.9 };
const hccs910b: LinkSpec = { name: 'HCCS', bandwidth: 196 * G, latency: 1 * US, efficiency: 0.76 };
const pcie4: LinkSpec = { name: 'PCIe 4.0 x16', bandwidth: 32 * G, latency: 1 * US, efficiency: 0.8 };
const pcie5: LinkSpec = { name: 'PCIe 5.0 x16', bandwidth: 64 * G, latency: 1 * US, efficiency: 0.8 };
const ib400: LinkSpec = { name: 'InfiniBand NDR 400G', bandwidth: 50 * G, latency: 2 * US, efficiency: 0.9 };

const ascendSources = (peak: string, hbm: string): Record<string, string> => ({
  peakFlops: peak,
  hbmBytes: hbm,
  hbmBandwidth: '1.6 TB/s commonly quoted for 910B (perf-model.md §4; pangu-ultra-moe.md §10 marks it [U])',
  'intraNode.bandwidth': 'HCCS full mesh ~196 GB/s/dir (~392 GB/s aggregate), light-llm-simulator conf/hardware_config.py [S]',
  'intraNode.latency': 'Calculon NVLink-class network latency 1 us (systems/a100_80g.json) [U for HCCS]',
  'intraNode.efficiency': 'measured 8-card all_gather 149 GB/s / 196 GB/s = 0.76 (perf-model.md §4, limulidae) [S/D]',
  'interNode.bandwidth': 'RoCE 200 Gbps per NPU = 25 GB/s/dir, Pangu Ultra §4.1 (pangu-ultra-moe.md §10) [P]',
  'interNode.latency': 'Calculon IB latency 2 us (systems/a100_80g.json) [U for RoCE]',
  'interNode.efficiency': 'Calculon IB efficiency 0.9 [S]',
  'hostLink.bandwidth': 'PCIe Gen4 x16 ~32 GB/s/dir per third party (perf-model.md §4) [S]',
  'hostLink.efficiency': 'Calculon mem2 (host tier) efficiency ~0.8 at 1-10 MB transfers [S]',
  devicesPerNode: 'Atlas 800T A2: 8 NPUs per node, HCCS full mesh (Pangu Ultra §4.1) [P]',
  hostMemoryBytes: 'node DRAM not found in any source; 1 TiB assumed [U]',
  'efficiency.gemm': SRC_ASCEND_GEMM,
  'efficiency.memory': SRC_CALCULON_EFF,
  'efficiency.launchOverhead': SRC_LAUNCH_NPU,
  'efficiency.hostDispatch': SRC_HOST_NPU,
  'efficiency.gemmTile': SRC_TILE_NPU,
});

const nvidiaSources = (peak: string, hbm: string, nvlink: string, ib: string, host: string, hostMem: string): Record<string, string> => ({
  peakFlops: peak,
  hbmBytes: hbm,
  hbmBandwidth: hbm,
  'intraNode.bandwidth': nvlink,
  'intraNode.latency': 'Calculon NVLink latency 1 us (systems/h100_80g_nvl8.json) [S]',
  'intraNode.efficiency': 'Calculon NVLink efficiency 0.6 (systems/h100_80g_nvl8.json) [S]',
  'interNode.bandwidth': ib,
  'interNode.latency': 'Calculon IB latency 2 us [S]',
  'interNode.efficiency': 'Calculon IB efficiency 0.9 [S]',
  'hostLink.bandwidth': host,
  'hostLink.efficiency': 'Calculon mem2 (host tier) efficiency ~0.8 at 1-10 MB transfers [S]',
  devicesPerNode: '8 GPUs per DGX/HGX node (NVIDIA datasheets) [P]',
  hostMemoryBytes: hostMem,
  'efficiency.gemm': SRC_CALCULON_EFF,
  'efficiency.memory': SRC_CALCULON_EFF,
  'efficiency.launchOverhead': SRC_LAUNCH_GPU,
  'efficiency.hostDispatch': SRC_HOST_GPU,
  'efficiency.gemmTile': SRC_TILE_GPU,
  'efficiency.attention': SRC_ATTN_HOPPER,
  'efficiency.fp8Gemm': SRC_FP8_HOPPER,
});

const ascendEff: EfficiencySpec = { gemm: ASCEND_GEMM, memory: CALCULON_MEM, launchOverhead: 10 * US, hostDispatch: 20 * US, gemmTile: 16 };
const hopperEff: EfficiencySpec = { gemm: CALCULON_GEMM, memory: CALCULON_MEM, launchOverhead: 5 * US, hostDispatch: 20 * US, gemmTile: 16, attention: HOPPER_ATTENTION, fp8Gemm: HOPPER_FP8_GEMM };
const ampereEff: EfficiencySpec = { gemm: CALCULON_GEMM, memory: CALCULON_MEM, launchOverhead: 5 * US, hostDispatch: 20 * US, gemmTile: 16, attention: AMPERE_ATTENTION };

// --- the catalog --------------------------------------------------------------------------------

const ascend = (name: string, description: string, tflops: number, hbmGiB: number, hbmBw: number,
  sources: Record<string, string>): DeviceSpec => ({
  name, description,
  peakFlops: { bf16: tflops * T, fp16: tflops * T, fp32: (tflops / 4) * T },
  hbmBytes: hbmGiB * GiB, hbmBandwidth: hbmBw,
  intraNode: hccs910b, interNode: roce200, hostLink: pcie4,
  devicesPerNode: 8, hostMemoryBytes: 1 * TiB,
  efficiency: ascendEff, sources,
});

const nvidia = (name: string, description: string, bf16: number, fp8: number | undefined, hbmGiB: number, hbmBw: number,
  nvlinkPerDir: number, inter: LinkSpec, host: LinkSpec, hostMem: number, sources: Record<string, string>): DeviceSpec => ({
  name, description,
  peakFlops: { bf16: bf16 * T, fp16: bf16 * T, fp32: (bf16 / 2) * T, ...(fp8 ? { fp8: fp8 * T } : {}) },
  hbmBytes: hbmGiB * GiB, hbmBandwidth: hbmBw,
  intraNode: { name: 'NVLink', bandwidth: nvlinkPerDir, latency: 1 * US, efficiency: 0.6 },
  interNode: inter, hostLink: host,
  devicesPerNode: 8, hostMemoryBytes: hostMem,
  efficiency: fp8 ? hopperEff : ampereEff,
  sources: fp8 ? sources : { ...sources, 'efficiency.attention': SRC_ATTN_AMPERE, 'efficiency.fp8Gemm': 'no FP8 tensor cores' },
});

const FP32_ASCEND = '; fp32 = bf16/4 assumed (cube units are fp16/bf16; fp32 runs on vector units) [U]';
const FP32_NV = '; fp32 = TF32 dense = bf16/2 (NVIDIA datasheets) [P]';

export const CATALOG: Record<string, DeviceSpec> = Object.fromEntries([
  ascend('ascend-910b', 'Ascend 910B in Atlas 800T A2 as described by Huawei for Pangu (256 TFLOPS FP16)', 256, 64, 1.6e12,
    ascendSources('256 TFLOPS FP16 per NPU, Pangu Pro MoE §3.1.2 (pangu-ultra-moe.md §10) [H]' + FP32_ASCEND,
      '64 GB HBM2e per NPU, Pangu Ultra §4.1 [P]; modelled as 64 GiB')),
  ascend('ascend-910b2', 'Ascend 910B2 (24 cube cores), Atlas 800T A2', 376, 64, 1.6e12,
    ascendSources('376 TFLOPS BF16 ("ASCEND910B2_376T_64G", light-llm-simulator conf/hardware_config.py) [S]' + FP32_ASCEND,
      '64 GB, light-llm-simulator [S]; Pangu Ultra §4.1 64 GB [P]')),
  ascend('ascend-910b3', 'Ascend 910B3 (20 cube cores), Atlas 800T A2', 313, 64, 1.6e12,
    ascendSources('313 TFLOPS BF16 ("ASCEND910B3_313T_64G", light-llm-simulator) [S]' + FP32_ASCEND, '64 GB, light-llm-simulator [S]')),
  {
    ...ascend('ascend-910b4', 'Ascend 910B4 (PCIe-class interconnect)', 280, 32, 0.8e12,
      { ...ascendSources('280 TFLOPS FP16 (light-llm-simulator; ai.gitee.com) [S]' + FP32_ASCEND, '32 GB, light-llm-simulator [S]'),
        hbmBandwidth: '0.8 TB/s, light-llm-simulator [S]',
        'intraNode.bandwidth': '32 GB/s in light-llm-simulator (PCIe-class) [S]' }),
    intraNode: { name: 'PCIe (910B4)', bandwidth: 32 * G, latency: 1 * US, efficiency: 0.76 },
  },
  {
    ...ascend('ascend-910c', 'Ascend 910C (2 dies) in CloudMatrix384; intra-node = UB plane', 752, 128, 3.2e12,
      { ...ascendSources('752 TFLOPS BF16 per package (CloudMatrix paper arXiv 2506.12708 via summaries) [S]' + FP32_ASCEND,
        '128 GB per package (arXiv 2506.12708 via summaries) [S]'),
        hbmBandwidth: '3.2 TB/s (arXiv 2506.12708 via summaries) [S]',
        'intraNode.bandwidth': 'UB 7 x 224 Gbps per die = 196 GB/s per die, x2 dies = 392 GB/s per package (pangu-ultra-moe.md §10) [S/D]',
        'interNode.bandwidth': '200 Gbps RDMA per die = 25 GB/s, x2 dies = 50 GB/s per package (pangu-ultra-moe.md §10) [S/D]' }),
    intraNode: { name: 'UB', bandwidth: 392 * G, latency: 1 * US, efficiency: 0.76 },
    interNode: { name: 'RDMA 2x200G', bandwidth: 50 * G, latency: 2 * US, efficiency: 0.9 },
  },
  nvidia('a100-sxm-80gb', 'NVIDIA A100 SXM 80GB (DGX A100)', 312, undefined, 80, 2.039e12, 300 * G,
    { name: 'InfiniBand HDR 200G', bandwidth: 25 * G, latency: 2 * US, efficiency: 0.9 }, pcie4, 1 * TiB,
    nvidiaSources('312 TFLOPS BF16 dense, NVIDIA A100 datasheet (perf-model.md §4) [P]' + FP32_NV,
      '80 GB HBM2e, 2.039 TB/s, NVIDIA A100 datasheet [P]',
      'NVLink3 600 GB/s aggregate = 300 GB/s/dir, NVIDIA datasheet [P]', 'HDR 200 Gb/s = 25 GB/s per GPU in DGX A100 [P]',
      'PCIe Gen4 x16 ~32 GB/s/dir [P]', '1 TB DRAM per DGX A100 (NVIDIA DGX A100 datasheet) [S]')),
  nvidia('h100-sxm', 'NVIDIA H100 SXM 80GB (DGX H100)', 989, 1979, 80, 3.35e12, 450 * G, ib400, pcie5, 2 * TiB,
    nvidiaSources('989 BF16 / 1979 FP8 TFLOPS dense, NVIDIA datasheet; dgxc-benchmarking README [P]' + FP32_NV,
      '80 GB HBM3, 3.35 TB/s, NVIDIA datasheet [P]', 'NVLink4 900 GB/s aggregate = 450 GB/s/dir [P]',
      'NDR 400 Gb/s = 50 GB/s per GPU in DGX H100 [P]', 'PCIe Gen5 x16 ~64 GB/s/dir [P]', '2 TB DRAM per DGX H100 (datasheet) [S]')),
  nvidia('h800-sxm', 'NVIDIA H800 SXM (export variant, reduced NVLink)', 989, 1979, 80, 3.35e12, 200 * G, ib400, pcie5, 2 * TiB,
    nvidiaSources('989 BF16 / 1979 FP8 TFLOPS (DeepSeek-V3 report; third-party tables) [S]' + FP32_NV,
      '80 GB HBM3, 3.35 TB/s (third-party tables) [S]',
      'NVLink 400 GB/s aggregate = 200 GB/s/dir; DeepSeek measured ~160 GB/s effective (arXiv 2412.19437) [S]',
      '400 Gb/s IB per GPU, ~50 GB/s (DeepSeek-V3 report) [P]', 'PCIe Gen5 x16 ~64 GB/s/dir [S]', 'assumed as DGX H100: 2 TB [U]')),
  nvidia('h200-sxm', 'NVIDIA H200 SXM 141GB (HGX H200)', 989, 1979, 141, 4.8e12, 450 * G, ib400, pcie5, 2 * TiB,
    nvidiaSources('989 BF16 / 1979 FP8 TFLOPS dense (NVIDIA H200 page, secondary copies) [S]' + FP32_NV,
      '141 GB HBM3e, 4.8 TB/s (NVIDIA H200 page) [S]', 'NVLink4 900 GB/s aggregate = 450 GB/s/dir [S]',
      'typically 400 Gb/s per GPU on HGX [S]', 'PCIe Gen5 x16 ~64 GB/s/dir [S]', '2 TB DRAM per DGX H200 (datasheet) [S]')),
].map((s) => [s.name, s]));

/** The catalog entry `name`, or a clear error listing the known names. */
export function getSpec(name: string): DeviceSpec {
  const s = CATALOG[name];
  if (!s) throw new Error(`unknown device spec '${name}'; known: ${Object.keys(CATALOG).join(', ')}`);
  return structuredClone(s);
}

/** A copy of `spec` with smaller (or larger) memories, so that limits bite in toy runs. */
export function withMemory(spec: DeviceSpec, opts: { hbmBytes?: number; hostMemoryBytes?: number }): DeviceSpec {
  const s = structuredClone(spec);
  if (opts.hbmBytes !== undefined) { s.hbmBytes = opts.hbmBytes; s.sources.hbmBytes = `scaled down for a toy run (was ${spec.hbmBytes} bytes)`; }
  if (opts.hostMemoryBytes !== undefined) { s.hostMemoryBytes = opts.hostMemoryBytes; s.sources.hostMemoryBytes = `scaled for a toy run (was ${spec.hostMemoryBytes} bytes)`; }
  const problems = specProblems(s);
  if (problems.length) throw new Error(`invalid memory override:\n  - ${problems.join('\n  - ')}`);
  return s;
}

// --- validation ----------------------------------------------------------------------------------

const isPos = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;

function linkProblems(v: unknown, path: string): string[] {
  if (typeof v !== 'object' || v === null) return [`${path}: expected an object {name, bandwidth, latency, efficiency}`];
  const l = v as Record<string, unknown>, out: string[] = [];
  if (typeof l.name !== 'string') out.push(`${path}.name: expected a string`);
  if (!isPos(l.bandwidth)) out.push(`${path}.bandwidth: expected bytes/s > 0, got ${JSON.stringify(l.bandwidth)}`);
  if (!(typeof l.latency === 'number' && Number.isFinite(l.latency) && l.latency >= 0)) out.push(`${path}.latency: expected seconds >= 0, got ${JSON.stringify(l.latency)}`);
  if (!(isPos(l.efficiency) && l.efficiency <= 1)) out.push(`${path}.efficiency: expected a number in (0, 1], got ${JSON.stringify(l.efficiency)}`);
  return out;
}

function curveProblems(v: unknown, path: string): string[] {
  if (!Array.isArray(v) || v.length === 0) return [`${path}: expected a non-empty array of [threshold, efficiency] pairs`];
  const out: string[] = [];
  v.forEach((p, i) => {
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'number' || !(p[0] >= 0) || !(isPos(p[1]) && p[1] <= 1))
      out.push(`${path}[${i}]: expected [threshold >= 0, efficiency in (0, 1]], got ${JSON.stringify(p)}`);
    else if (i > 0 && Array.isArray(v[i - 1]) && !(p[0] > v[i - 1][0])) out.push(`${path}[${i}]: thresholds must increase`);
  });
  if (out.length === 0 && v[0][0] !== 0) out.push(`${path}[0]: the first threshold must be 0 so every size has an efficiency`);
  return out;
}

/** Every problem with `v` as a DeviceSpec (empty when valid). */
export function specProblems(v: unknown): string[] {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return ['spec: expected a JSON object'];
  const s = v as Record<string, unknown>, out: string[] = [];
  if (typeof s.name !== 'string' || !s.name) out.push('name: expected a non-empty string');
  if (s.description !== undefined && typeof s.description !== 'string') out.push('description: expected a string');
  if (typeof s.peakFlops !== 'object' || s.peakFlops === null) out.push('peakFlops: expected an object {bf16, fp16, fp32, fp8} of FLOP/s');
  else {
    const pf = s.peakFlops as Record<string, unknown>;
    if (Object.keys(pf).length === 0) out.push('peakFlops: at least one dtype is required');
    for (const [k, x] of Object.entries(pf)) {
      if (!(k in DTYPE_BYTES)) out.push(`peakFlops.${k}: unknown dtype (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
      else if (!isPos(x)) out.push(`peakFlops.${k}: expected FLOP/s > 0, got ${JSON.stringify(x)}`);
    }
  }
  for (const k of ['hbmBytes', 'hbmBandwidth', 'hostMemoryBytes'] as const)
    if (!isPos(s[k])) out.push(`${k}: expected a number > 0, got ${JSON.stringify(s[k])}`);
  if (!(Number.isInteger(s.devicesPerNode) && (s.devicesPerNode as number) > 0))
    out.push(`devicesPerNode: expected an integer >= 1, got ${JSON.stringify(s.devicesPerNode)}`);
  out.push(...linkProblems(s.intraNode, 'intraNode'), ...linkProblems(s.interNode, 'interNode'), ...linkProblems(s.hostLink, 'hostLink'));
  if (typeof s.efficiency !== 'object' || s.efficiency === null) out.push('efficiency: expected an object {gemm, memory, launchOverhead}');
  else {
    const e = s.efficiency as Record<string, unknown>;
    out.push(...curveProblems(e.gemm, 'efficiency.gemm'), ...curveProblems(e.memory, 'efficiency.memory'));
    if (!(typeof e.launchOverhead === 'number' && e.launchOverhead >= 0)) out.push(`efficiency.launchOverhead: expected seconds >= 0, got ${JSON.stringify(e.launchOverhead)}`);
    if (e.hostDispatch !== undefined && !(typeof e.hostDispatch === 'number' && e.hostDispatch >= 0)) out.push(`efficiency.hostDispatch: expected seconds >= 0, got ${JSON.stringify(e.hostDispatch)}`);
    if (e.gemmTile !== undefined && !(Number.isInteger(e.gemmTile) && (e.gemmTile as number) >= 1)) out.push(`efficiency.gemmTile: expected an integer >= 1, got ${JSON.stringify(e.gemmTile)}`);
    for (const k of ['attention', 'fp8Gemm'] as const)
      if (e[k] !== undefined && !(isPos(e[k]) && (e[k] as number) <= 1)) out.push(`efficiency.${k}: expected a number in (0, 1], got ${JSON.stringify(e[k])}`);
  }
  if (s.sources !== undefined && (typeof s.sources !== 'object' || s.sources === null)) out.push('sources: expected an object of field -> citation');
  return out;
}

/** Validate `v` and return it as a DeviceSpec; throws one error listing every problem. */
export function parseSpec(v: unknown, origin = 'spec'): DeviceSpec {
  const problems = specProblems(v);
  if (problems.length) throw new Error(`invalid device spec (${origin}), ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`);
  const s = structuredClone(v) as DeviceSpec;
  s.description ??= '';
  s.sources ??= {};
  return s;
}
