// Aux-loss-free balancing (DeepSeek-V3; Megatron `get_updated_expert_bias`, moe-semantics §6):
// once per global batch, b_e ← b_e + u · sign(mean(c) − c_e), with sign(0) = 0. The bias only
// changes which experts are selected (see score.ts), never the combine weights.

/** New bias from the counts accumulated over a global batch (after dropping). Pure. */
export function updateExpertBias(bias: ArrayLike<number>, counts: ArrayLike<number>, rate: number): Float32Array {
  const E = bias.length;
  let sum = 0;
  for (let e = 0; e < E; e++) sum += counts[e];
  const mean = sum / E;
  const out = new Float32Array(E);
  for (let e = 0; e < E; e++) out[e] = bias[e] + rate * Math.sign(mean - counts[e]);
  return out;
}
