// Autoregressive generation (no KV cache: the whole window is re-run per new token, fine at
// laptop scale) with temperature and top-k, and arithmetic exact-match evaluation by greedy decoding.
import seedrandom from 'seedrandom';
import { tf } from '../backend/tf.ts';
import type { ArithProblem } from './arith.ts';
import type { TrainableModel } from './model.ts';
import type { Tokenizer } from './tokenizer.ts';

export interface SampleOptions {
  maxNewTokens: number;
  temperature: number; // 0 = greedy
  topK: number;        // 0 = whole vocabulary
  seed: number;
  contextLen: number;  // window fed to the model (≤ maxSeqLen)
  stopAt?: number;     // stop a row when it emits this token
}

/** Logits of the last position of each row: [batch][vocab] on the host. */
function lastLogits(model: TrainableModel, rows: Int32Array[], seqLen: number): Float32Array[] {
  const B = rows.length, flat = new Int32Array(B * seqLen);
  rows.forEach((r, b) => flat.set(r, b * seqLen));
  const t = model.logits(flat, B, seqLen);
  const V = t.shape[t.shape.length - 1];
  const last = tf.tidy(() => tf.reshape(tf.slice(tf.reshape(t, [B, seqLen, V]), [0, seqLen - 1, 0], [B, 1, V]), [B, V]));
  t.dispose();
  const data = last.dataSync() as Float32Array;
  last.dispose();
  return rows.map((_, b) => data.subarray(b * V, (b + 1) * V));
}

/** Pick a token from logits: argmax when temperature is 0, else softmax(logits/T) over the top k. */
export function pickToken(logits: Float32Array, temperature: number, topK: number, rng: () => number): number {
  if (temperature <= 0) { let best = 0; for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i; return best; }
  let idx = Array.from(logits.keys());
  if (topK > 0 && topK < idx.length) idx = idx.sort((a, b) => logits[b] - logits[a] || a - b).slice(0, topK);
  const max = Math.max(...idx.map((i) => logits[i]));
  const w = idx.map((i) => Math.exp((logits[i] - max) / temperature));
  let u = rng() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < idx.length; j++) { u -= w[j]; if (u <= 0) return idx[j]; }
  return idx[idx.length - 1];
}

/** Continue equal-length prompts; returns the new tokens of each row. */
export function generate(model: TrainableModel, prompts: Int32Array[], o: SampleOptions): number[][] {
  const rng = seedrandom(`sample-${o.seed}`);
  const seqs = prompts.map((p) => Array.from(p));
  const out: number[][] = prompts.map(() => []);
  const done = prompts.map(() => false);
  for (let n = 0; n < o.maxNewTokens && done.some((d) => !d); n++) {
    const len = Math.min(o.contextLen, seqs[0].length);
    const rows = seqs.map((s) => Int32Array.from(s.slice(s.length - len)));
    const logits = lastLogits(model, rows, len);
    for (let b = 0; b < seqs.length; b++) {
      const tok = pickToken(logits[b], o.temperature, o.topK, rng);
      seqs[b].push(tok);
      if (!done[b]) out[b].push(tok);
      if (tok === o.stopAt) done[b] = true;
    }
  }
  return out;
}

export interface ExactMatch { correct: number; total: number; accuracy: number; examples: { prompt: string; want: string; got: string }[] }

/** Greedy-decode each held-out problem's answer and compare exactly (digits and the newline). */
export function arithExactMatch(model: TrainableModel, tok: Tokenizer, problems: ArithProblem[], contextLen: number, batch = 64): ExactMatch {
  const nl = tok.encode('\n')[0];
  const groups = new Map<number, { p: ArithProblem; ids: Int32Array }[]>();
  for (const p of problems) {
    const ids = tok.encode(p.prompt);
    const g = groups.get(ids.length) ?? [];
    g.push({ p, ids }); groups.set(ids.length, g);
  }
  let correct = 0;
  const examples: ExactMatch['examples'] = [];
  for (const g of groups.values()) {
    for (let i = 0; i < g.length; i += batch) {
      const chunk = g.slice(i, i + batch);
      const maxNew = Math.max(...chunk.map((c) => tok.encode(c.p.answer).length)) + 1;
      const gen = generate(model, chunk.map((c) => c.ids), { maxNewTokens: maxNew, temperature: 0, topK: 0, seed: 1, contextLen, stopAt: nl });
      chunk.forEach((c, j) => {
        const got = tok.decode(gen[j]);
        if (got === c.p.answer) correct++;
        if (examples.length < 8) examples.push({ prompt: c.p.prompt, want: c.p.answer.trim(), got: got.trim() });
      });
    }
  }
  return { correct, total: problems.length, accuracy: problems.length ? correct / problems.length : 0, examples };
}
