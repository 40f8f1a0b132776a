// Load-balanced context-parallel chunking (Megatron CP): a sequence of S tokens is cut into 2·CP chunks
// of S/(2·CP); CP rank r takes chunks r and 2·CP−1−r, so under a causal mask every rank does the same
// attention work (an early chunk with little context plus a late chunk with much). Pure numbers.

/** Positions (inside a sequence) held by CP rank `r`, in local order. [S/CP] */
export function cpPositions(seqLen: number, cp: number, r: number): Int32Array {
  if (seqLen % (2 * cp) !== 0) throw new Error(`seqLen ${seqLen} is not divisible by 2·cp = ${2 * cp}`);
  const c = seqLen / (2 * cp), out = new Int32Array(2 * c);
  for (let i = 0; i < c; i++) { out[i] = r * c + i; out[c + i] = (2 * cp - 1 - r) * c + i; }
  return out;
}

/** This CP rank's tokens of `b` sequences (batch-major [b·S] → [b·S/CP]). */
export function cpShard(tokens: ArrayLike<number>, b: number, seqLen: number, cp: number, r: number): Int32Array {
  const pos = cpPositions(seqLen, cp, r), L = pos.length, out = new Int32Array(b * L);
  for (let s = 0; s < b; s++) for (let i = 0; i < L; i++) out[s * L + i] = tokens[s * seqLen + pos[i]];
  return out;
}

/** Additive causal mask [Lq, Lk] from query and key positions: 0 where key ≤ query, −1e9 above. */
export function positionMask(qPos: ArrayLike<number>, kPos: ArrayLike<number>): Float32Array {
  const m = new Float32Array(qPos.length * kPos.length);
  for (let i = 0; i < qPos.length; i++) for (let j = 0; j < kPos.length; j++) if (kPos[j] > qPos[i]) m[i * kPos.length + j] = -1e9;
  return m;
}
