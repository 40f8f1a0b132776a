// The flags that describe a simulated plan (model, layout, options), shared by `simulate` and `export`.
import type { Options } from './args.ts';

export const PLAN_OPTIONS = {
  model: { type: 'string' }, device: { type: 'string' }, devices: { type: 'string' },
  tp: { type: 'string' }, pp: { type: 'string' }, vpp: { type: 'string' }, ep: { type: 'string' }, cp: { type: 'string' },
  mbs: { type: 'string' }, gbs: { type: 'string' }, seq: { type: 'string' },
  recompute: { type: 'string' }, 'recompute-modules': { type: 'string' }, swap: { type: 'string' }, a2a: { type: 'string' },
  overlap: { type: 'string' }, imbalance: { type: 'string' }, 'dist-opt': { type: 'string' }, 'tp-overlap': { type: 'string' },
  schedule: { type: 'string' }, 'pp-layout': { type: 'string' }, dtype: { type: 'string' }, flops: { type: 'string' }, baseline: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
} as const satisfies Options;
