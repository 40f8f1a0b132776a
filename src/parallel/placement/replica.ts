// Routing through a placement: which physical replica serves each (token, k) assignment. vLLM's selector
// (`eplb_map_to_physical_and_record`, moe-semantics.md §12) is deterministic and cheap:
//   replica = pos % logicalCount[e], with pos = t·k + j the flat index into topkIds [T, k],
//   physical = logicalToPhysical[e][replica].
// It spreads an expert's assignments over its replicas round-robin, which is the even-split load model.
import type { LayerPlacement } from './types.ts';

/** Replica rank for flat position `pos` routed to logical expert `e`. */
export const selectReplica = (pos: number, e: number, logicalCount: ArrayLike<number>) => pos % logicalCount[e];

/** Map a routing [T*k] of logical expert ids (row-major [T, k]) to physical slot ids. */
export function mapToPhysical(topkIds: ArrayLike<number>, layer: LayerPlacement): Int32Array {
  const out = new Int32Array(topkIds.length); // [T*k]
  const N = layer.logicalCount.length;
  for (let pos = 0; pos < topkIds.length; pos++) {
    const e = topkIds[pos];
    if (!(e >= 0 && e < N)) throw new Error(`mapToPhysical: topkIds[${pos}]=${e} is not an expert id in [0, ${N})`);
    out[pos] = layer.logicalToPhysical[e][selectReplica(pos, e, layer.logicalCount)];
  }
  return out;
}

/** Tokens per physical slot [R] of a physical routing (vLLM records load per physical expert). */
export function tokensPerPhysical(physicalIds: ArrayLike<number>, numReplicas: number): number[] {
  const out = new Array<number>(numReplicas).fill(0);
  for (let i = 0; i < physicalIds.length; i++) out[physicalIds[i]]++;
  return out;
}

/** Tokens per device [D] of a physical routing; slot p lives on device floor(p / (R/D)). */
export function tokensPerDevice(physicalIds: ArrayLike<number>, numReplicas: number, numDevices: number): number[] {
  const S = numReplicas / numDevices;
  const out = new Array<number>(numDevices).fill(0);
  for (let i = 0; i < physicalIds.length; i++) out[Math.floor(physicalIds[i] / S)]++;
  return out;
}

/** Fold physical loads [R] back to logical loads [N] (what the load tracker consumes). */
export function logicalLoads(physicalLoads: ArrayLike<number>, layer: LayerPlacement): number[] {
  const out = new Array<number>(layer.logicalCount.length).fill(0);
  for (let p = 0; p < physicalLoads.length; p++) out[layer.physicalToLogical[p]] += physicalLoads[p];
  return out;
}
