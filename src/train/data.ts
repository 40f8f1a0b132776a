// Datasets (shipped corpus, arithmetic, any text file) as token streams with a deterministic
// train/validation split, and a seeded batch sampler whose position can be saved and restored.
//
//   const ds = loadDataset('text', tokenizerSpec, seed);
//   const sampler = new BatchSampler(ds.train, batch, seqLen, seed);
//   const {tokens, targets} = sampler.next();            // [batch·seqLen] each, targets shifted by one
//   const pos = sampler.state(); ... sampler.restore(pos); // bit-exact continuation
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import { arithProblems, arithStream, parseArithSpec, type ArithProblem, type ArithSpec } from './arith.ts';
import { ByteTokenizer, trainBpe, parseTokenizerSpec, type Tokenizer } from './tokenizer.ts';

export const DATA_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'data');
export const CORPUS_PATH = join(DATA_DIR, 'moby-dick.txt');

export type DataSource = { kind: 'text'; path: string } | { kind: 'arith'; spec: ArithSpec };

/** Parse --data: 'text' (the shipped corpus), 'arith[...]' or a path to a UTF-8 text file. */
export function parseDataSpec(spec: string): DataSource | string {
  if (spec === 'text') return { kind: 'text', path: CORPUS_PATH };
  if (spec.startsWith('arith')) {
    const a = parseArithSpec(spec);
    return typeof a === 'string' ? a : { kind: 'arith', spec: a };
  }
  if (!existsSync(spec)) return `--data: no such file '${spec}' (use text, arith[:add|mul|addmul][:N] or a text file)`;
  return { kind: 'text', path: spec };
}

export interface Dataset {
  name: string;
  tokenizer: Tokenizer;
  train: Int32Array;
  val: Int32Array;
  /** Token offsets where a line (an arithmetic problem) starts: batches begin there. */
  trainStarts?: Int32Array;
  valStarts?: Int32Array;
  /** Held-out arithmetic problems for exact-match evaluation. */
  valProblems?: ArithProblem[];
}

/** Offsets just after each '\n' token (tokens are single bytes for digits and '\n' in both tokenizers). */
function lineStarts(ids: Int32Array, newline: number, seqLen = 0): Int32Array {
  const s: number[] = [0];
  for (let i = 0; i < ids.length - 1; i++) if (ids[i] === newline) s.push(i + 1);
  return Int32Array.from(s.filter((x) => x + seqLen + 1 <= ids.length));
}

/** Raw text of a source and the split: text files split 90/10 by position, arithmetic by operand pair. */
export function loadText(src: DataSource, seed: number): { train: string; val: string; valProblems?: ArithProblem[] } {
  if (src.kind === 'text') {
    const text = readFileSync(src.path, 'utf8');
    const cut = Math.floor(text.length * 0.9);
    return { train: text.slice(0, cut), val: text.slice(cut) };
  }
  const trainP = arithProblems(src.spec, 'train', seed), valP = arithProblems(src.spec, 'val', seed);
  return {
    train: arithStream(trainP, 60000, `arith-train-${seed}`),
    val: arithStream(valP, 3000, `arith-val-${seed}`),
    valProblems: valP,
  };
}

/** Build a dataset: tokenizer (byte, or BPE trained on the train split) and encoded splits. */
export function loadDataset(data: string, tokenizerSpec: string, seed: number, tokenizer?: Tokenizer): Dataset {
  const src = parseDataSpec(data);
  if (typeof src === 'string') throw new Error(src);
  const { train, val, valProblems } = loadText(src, seed);
  if (!tokenizer) {
    const t = parseTokenizerSpec(tokenizerSpec);
    if (typeof t === 'string') throw new Error(t);
    tokenizer = t.kind === 'byte' ? new ByteTokenizer() : trainBpe(train, t.vocabSize);
  }
  const ds: Dataset = { name: data, tokenizer, train: tokenizer.encode(train), val: tokenizer.encode(val), valProblems };
  if (src.kind === 'arith') {
    const nl = tokenizer.encode('\n')[0];
    ds.trainStarts = lineStarts(ds.train, nl);
    ds.valStarts = lineStarts(ds.val, nl);
  }
  return ds;
}

export interface Batch { tokens: Int32Array; targets: Int32Array; batch: number; seqLen: number }

export interface SamplerState { rng: object; drawn: number }

/** Random windows of `seqLen + 1` tokens; deterministic in (seed, number of batches drawn). */
export class BatchSampler {
  private rng: seedrandom.StatefulPRNG<seedrandom.State.Arc4>;
  private drawn = 0;
  private readonly starts: Int32Array | null;

  constructor(private readonly ids: Int32Array, readonly batch: number, readonly seqLen: number, seed: number | string, starts?: Int32Array) {
    if (ids.length < seqLen + 2) throw new Error(`dataset has ${ids.length} tokens, fewer than seqLen + 2 = ${seqLen + 2}`);
    this.rng = seedrandom(`batches-${seed}`, { state: true });
    const ok = starts?.filter((s) => s + seqLen + 1 <= ids.length);
    this.starts = ok && ok.length > 0 ? ok : null;
  }

  next(): Batch {
    const { batch: B, seqLen: S } = this;
    const tokens = new Int32Array(B * S), targets = new Int32Array(B * S);
    for (let b = 0; b < B; b++) {
      const off = this.starts
        ? this.starts[Math.floor(this.rng() * this.starts.length)]
        : Math.floor(this.rng() * (this.ids.length - S - 1));
      tokens.set(this.ids.subarray(off, off + S), b * S);
      targets.set(this.ids.subarray(off + 1, off + S + 1), b * S);
    }
    this.drawn++;
    return { tokens, targets, batch: B, seqLen: S };
  }

  state(): SamplerState { return { rng: this.rng.state(), drawn: this.drawn }; }

  restore(s: SamplerState): void {
    this.rng = seedrandom('', { state: s.rng as seedrandom.State.Arc4 });
    this.drawn = s.drawn;
  }
}
