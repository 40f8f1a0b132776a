// The simulated Ascend cluster. Tensor-free parts (specs.ts, cost.ts, groups.ts, a2a-plan.ts, memory.ts)
// can be imported directly without loading tfjs; this barrel also loads the tensor executors.
export * from './specs.ts';
export * from './cost.ts';
export * from './memory.ts';
export * from './groups.ts';
export * from './a2a-plan.ts';
export * from './timeline.ts';
export * from './comm-ledger.ts';
export * from './device.ts';
export * from './collectives.ts';
export * from './expert-collectives.ts';
export * from './cluster.ts';
export * from './spec-file.ts';
