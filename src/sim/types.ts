// Plain-data types of the analytical simulator: parallel layout, options, calibration, result.
// Megatron vocabulary: TP/PP/VPP/EP/CP/DP sizes, micro-batch, global batch (in sequences).
import type { Dtype } from '../device/specs.ts';

export type Schedule = 'gpipe' | '1f1b' | 'interleaved' | 'zero-bubble' | 'dualpipe';
export type RecomputeGranularity = 'none' | 'selective' | 'full';
/** Fine-grained recompute modules (Megatron `--recompute-modules`, MindSpeed flags; pangu-ultra-moe.md §6.3). */
export type RecomputeModule = 'core-attn' | 'mla-up-proj' | 'norm' | 'activation' | 'moe-act' | 'permute';
export const RECOMPUTE_MODULES: RecomputeModule[] = ['core-attn', 'mla-up-proj', 'norm', 'activation', 'moe-act', 'permute'];

export interface ParallelLayout {
  tp: number;
  pp: number;
  /** virtual pipeline chunks per stage (1 = no interleaving) */
  vpp: number;
  /** expert-parallel group size (ETP = 1). With MindSpeed `--moe-tp-extend-ep` this is TP × EP. */
  ep: number;
  cp: number;
  dp: number;
  microBatch: number;
  /** sequences per iteration */
  globalBatch: number;
  seqLen: number;
}

/** Calibrated efficiency knobs (see docs/simulator.md "Calibration"); 1 = the device spec as catalogued. */
export interface Calibration {
  /** multiplies the device's GEMM efficiency curve (clamped to 0.98) */
  gemmScale: number;
  /** multiplies the bus bandwidth of expert all-to-all traffic (dispatch/combine are all-to-allv with uneven splits) */
  a2aScale: number;
  /** fixed per-layer per-micro-batch host/framework overhead, seconds (dispatch, sync, host-bound launch) */
  layerOverhead: number;
  /**
   * scale for the output heads' vocabulary GEMMs (main + MTP logits) instead of `gemmScale`; unset = `gemmScale`.
   * A sensitivity knob (src/sim/head-sensitivity.ts): one large dense GEMM may run nearer the measured GEMM curve
   * than the layers' kernels that `gemmScale` was fitted on.
   */
  headGemmScale?: number;
}

export const NEUTRAL_CALIBRATION: Calibration = { gemmScale: 1, a2aScale: 1, layerOverhead: 0 };

export interface SimOptions {
  /** GEMM dtype; the MFU denominator is the peak of `mfuDtype` (default: the same). */
  dtype: Dtype;
  mfuDtype?: Dtype;
  schedule?: Schedule;
  /**
   * pipeline layout as a Megatron `--pipeline-model-parallel-layout` string (E, t, m, L; pp-layout.ts); unset = the
   * time-balanced split that lightens the last stage for the output heads (schedule.ts `stageSplit`)
   */
  ppLayout?: string;
  recompute: RecomputeGranularity;
  /** used when recompute = 'selective' */
  recomputeModules: RecomputeModule[];
  /** offload attention-module activations to host, prefetch before backward (MindSpeed --swap-attention) */
  swapAttention: boolean;
  /** keep fp32 master weights and Adam moments in host memory (MindSpeed --swap-optimizer) */
  swapOptimizer: boolean;
  /** inter-node all-gather + intra-node all-to-all for EP (MindSpeed --moe-hierarchical-alltoallv) */
  hierarchicalA2A: boolean;
  /**
   * How the hierarchical all-to-all crosses nodes: 'dedup' sends each token once per remote node holding one of
   * its experts (DeepEP, DeepSeek's IB→NVLink forwarding); 'allgather' all-gathers every token over the EP
   * group's nodes (MindSpeed `--moe-hierarchical-alltoallv`, the paper's "inter-node AllGather, intra-node
   * All-to-All", pangu-ultra-moe.md §6.1). Default 'dedup'.
   */
  hierarchicalMode?: 'dedup' | 'allgather';
  /** cross-micro-batch fwd/bwd overlap of EP communication, dW/dX split, independent intra/inter links */
  adaptivePipeOverlap: boolean;
  /** ρ = max/mean tokens per EP rank (1 = perfect balance) */
  imbalance: number;
  distributedOptimizer: boolean;
  /** Adam moments in BF16 (8 B/param of optimizer state instead of 12; DeepSeek-V3 report §3.3) */
  bf16AdamMoments?: boolean;
  /** SwiGLU inputs of the MoE (routed and shared experts) cached in FP8 (DeepSeek-V3 report §3.3.2) */
  fp8SwigluInputs?: boolean;
  /**
   * FP8 scaling granularity (dtype 'fp8'): 'tensor' = per-tensor (delayed or current) scaling, Transformer Engine's
   * default, GEMMs at the BF16 efficiency of the shape; 'block' = DeepSeek-V3's fine-grained 1×128 / 128×128 scaling
   * with promotion of the accumulation to CUDA cores, capped by `spec.efficiency.fp8Gemm`. Default 'tensor'.
   */
  fp8Recipe?: 'tensor' | 'block';
  /** fraction of TP collectives hidden under GEMMs (0 = Megatron default, MC2 fusion on Ascend hides part) */
  tpCommOverlap: number;
  /** overlap DP grad reduce-scatter / param all-gather with backward / forward (--overlap-grad-reduce/--overlap-param-gather) */
  dpOverlap: boolean;
  /** FLOPs convention for MFU: causal attention halved (Megatron today) or not (Narayanan/PaLM) */
  causalFlops: boolean;
  gatedMlp: boolean;
  /** fused (flash) attention; false adds the memory-bound score/softmax/dropout traffic of b·a·s² */
  flashAttention: boolean;
  calibration: Calibration;
  /**
   * Fixed per-kernel costs (src/sim/kernels.ts). 'kernels' (default): every kernel a Megatron/MindSpeed layer
   * launches (counted from the model structure: forward, backward, recompute, heads) pays the device's
   * `spec.efficiency.launchOverhead`, and a layer whose kernels the host dispatches slower than the device runs
   * them (`spec.efficiency.hostDispatch` each) is host-bound. 'executor': the kernels of the executed simulated
   * cluster's refiner (src/sim/executed.ts: fused projections, 3 launches per forward op), for the executed
   * comparison. 'none': no fixed kernel cost (the model before fixed costs were added). Collectives pay their
   * per-peer latency alpha in every mode.
   */
  fixedCosts?: 'kernels' | 'executor' | 'none';
  /** gradient collectives per reduction group (Megatron DDP buckets); default one each (a single bucket) */
  dpBuckets?: { dense: number; expert: number };
  /**
   * Count the all-to-all dispatcher's metadata collectives: the all-gather of tokens per expert over EP
   * (forward) and the all-to-all of the routing probabilities (forward and backward). Default false.
   */
  epMetadata?: boolean;
}

export const DEFAULT_OPTIONS: SimOptions = {
  dtype: 'bf16',
  recompute: 'selective',
  recomputeModules: ['core-attn'],
  swapAttention: false,
  swapOptimizer: false,
  hierarchicalA2A: false,
  adaptivePipeOverlap: false,
  imbalance: 1,
  distributedOptimizer: true,
  tpCommOverlap: 0,
  dpOverlap: true,
  causalFlops: true,
  gatedMlp: true,
  flashAttention: true,
  calibration: NEUTRAL_CALIBRATION,
};

/** Per-device memory, bytes, of the most loaded pipeline stage. */
export interface MemoryBreakdown {
  weights: number;
  gradients: number;
  optimizer: number;
  activations: number;
  /** runtime reserve: collective buffers, workspace, fragmentation */
  reserved: number;
  total: number;
  /** bytes parked in host memory by swapping (per device) */
  hostSwap: number;
  capacity: number;
  fits: boolean;
}

/** Seconds per iteration by cause; `total` = the sum. `overhead`: fixed per-kernel costs (launch, host-bound dispatch; src/sim/kernels.ts). */
export interface TimeBreakdown {
  compute: number;
  recompute: number;
  tpComm: number;
  epComm: number;
  cpComm: number;
  ppComm: number;
  dpComm: number;
  bubble: number;
  optimizer: number;
  swap: number;
  overhead: number;
  total: number;
}

export interface SimResult {
  layout: ParallelLayout;
  devices: number;
  stepTimeSeconds: number;
  tokensPerSecond: number;
  mfu: number;
  hfu: number;
  modelFlopsPerIteration: number;
  flopsPerToken: number;
  microBatches: number;
  bubbleFraction: number;
  time: TimeBreakdown;
  memory: MemoryBreakdown;
  peakMemoryBytes: number;
  /** pipeline stage split: layers on a full stage, on the last stage, and the output heads' time in layers */
  stages: { perStage: number; lastStage: number; headLayerEquivalents: number };
}
