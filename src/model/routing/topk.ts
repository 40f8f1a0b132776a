// Row-wise score functions and top-k on host arrays (row-major [T, E]).
// Top-k ties resolve to the lower index (tfjs's documented order, moe-semantics §2), and
// group-limited top-k follows Megatron's `group_limited_topk` (§3). Pure functions, no tensors.

/** Row-wise softmax of x [T, E] in float64 (max-subtracted). */
export function softmaxRows(x: ArrayLike<number>, T: number, E: number): Float64Array {
  const out = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    const o = t * E;
    let m = -Infinity;
    for (let e = 0; e < E; e++) m = Math.max(m, x[o + e]);
    let s = 0;
    for (let e = 0; e < E; e++) { const v = Math.exp(x[o + e] - m); out[o + e] = v; s += v; }
    for (let e = 0; e < E; e++) out[o + e] /= s;
  }
  return out;
}

/** Element-wise logistic sigmoid. */
export function sigmoid(x: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = 1 / (1 + Math.exp(-x[i]));
  return out;
}

/** Row-wise log-sum-exp of x [T, E] → [T]. */
export function logSumExpRows(x: ArrayLike<number>, T: number, E: number): Float64Array {
  const out = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    const o = t * E;
    let m = -Infinity;
    for (let e = 0; e < E; e++) m = Math.max(m, x[o + e]);
    let s = 0;
    for (let e = 0; e < E; e++) s += Math.exp(x[o + e] - m);
    out[t] = m + Math.log(s);
  }
  return out;
}

/**
 * Top-k of one row segment values[off .. off+n), written as indices relative to `off` into
 * out[outOff .. outOff+k), largest first. Entries with allowed[i] === 0 are skipped (the finite
 * "masked" entries of §3 can never win). Ties: the lower index first.
 */
let scratch = new Float64Array(16);

export function topkRow(values: ArrayLike<number>, off: number, n: number, k: number, out: Int32Array, outOff: number,
  allowed?: Uint8Array, allowedOff = 0): void {
  if (scratch.length < k) scratch = new Float64Array(k);
  const best = scratch; // reused across calls (hot loop): no per-row allocation
  let filled = 0;
  for (let i = 0; i < n; i++) {
    if (allowed && !allowed[allowedOff + i]) continue;
    const v = values[off + i];
    if (filled === k && !(v > best[k - 1])) continue; // equal values keep the earlier (lower) index
    let j = filled < k ? filled : k - 1;
    while (j > 0 && best[j - 1] < v) { best[j] = best[j - 1]; out[outOff + j] = out[outOff + j - 1]; j--; }
    best[j] = v;
    out[outOff + j] = i;
    if (filled < k) filled++;
  }
  if (filled < k) throw new Error(`topk: only ${filled} selectable entries for k=${k}`);
}

/** Indices of the k largest entries of each row of values [T, E] → [T, k], largest first. */
export function topkRows(values: ArrayLike<number>, T: number, E: number, k: number): Int32Array {
  if (k > E) throw new Error(`topk: k=${k} > E=${E}`);
  const out = new Int32Array(T * k);
  for (let t = 0; t < T; t++) topkRow(values, t * E, E, k, out, t * k);
  return out;
}

/**
 * Group-limited top-k (`group_limited_topk`): experts form G contiguous groups of E/G; each group is
 * scored by the sum of its top ⌊k/g⌋ scores; the top g groups per token stay selectable and the
 * top-k is taken among their experts. Returns [T, k] expert indices, largest first.
 */
export function groupLimitedTopk(scores: ArrayLike<number>, T: number, E: number, k: number,
  numGroups: number, groupTopk: number): Int32Array {
  const G = numGroups, g = groupTopk, perGroup = E / G, kg = Math.floor(k / g);
  if (!Number.isInteger(perGroup)) throw new Error(`group-limited topk: E=${E} not divisible by G=${G}`);
  if (g > G || kg < 1 || kg > perGroup || k > g * perGroup) throw new Error(`group-limited topk impossible: k=${k}, G=${G}, g=${g}, E=${E}`);
  const out = new Int32Array(T * k);
  const groupScores = new Float64Array(G);  // [G] for the current token
  const inGroup = new Int32Array(kg);
  const groupIdx = new Int32Array(g);
  const allowed = new Uint8Array(E);
  for (let t = 0; t < T; t++) {
    const o = t * E;
    for (let j = 0; j < G; j++) {
      topkRow(scores, o + j * perGroup, perGroup, kg, inGroup, 0);
      let s = 0;
      for (let i = 0; i < kg; i++) s += scores[o + j * perGroup + inGroup[i]];
      groupScores[j] = s;
    }
    topkRow(groupScores, 0, G, g, groupIdx, 0);
    allowed.fill(0);
    for (let i = 0; i < g; i++) allowed.fill(1, groupIdx[i] * perGroup, (groupIdx[i] + 1) * perGroup);
    topkRow(scores, o, E, k, out, t * k, allowed, 0);
  }
  return out;
}

/** Dense [T, E] 0/1 map from [T, k] indices. */
export function indicesToMap(topkIdx: Int32Array, T: number, E: number, k: number): Uint8Array {
  const map = new Uint8Array(T * E);
  for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) map[t * E + topkIdx[t * k + j]] = 1;
  return map;
}
