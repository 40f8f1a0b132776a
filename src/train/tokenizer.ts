// Tokenizers: byte-level (vocab 256, the default) and a byte-pair encoding trained on a corpus.
// Both work on UTF-8 bytes, so any text round-trips. A tokenizer serialises to a small JSON
// object that is stored with every checkpoint (tokenizer.json).
//
//   const tok = trainBpe(text, 512);       // 256 byte tokens + 256 merges
//   tok.decode(tok.encode('Call me Ishmael.')) === 'Call me Ishmael.'

export interface Tokenizer {
  readonly kind: 'byte' | 'bpe';
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
  toJSON(): TokenizerJSON;
}

export type TokenizerJSON = { type: 'byte' } | { type: 'bpe'; vocabSize: number; merges: [number, number][] };

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: false });

export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte' as const;
  readonly vocabSize = 256;
  encode(text: string): Int32Array { return Int32Array.from(utf8.encode(text)); }
  decode(ids: ArrayLike<number>): string { return fromUtf8.decode(Uint8Array.from(ids as ArrayLike<number>)); }
  toJSON(): TokenizerJSON { return { type: 'byte' }; }
}

// GPT-2 style pre-split: a word keeps its leading space, digits and punctuation stand alone, so
// merges never cross word boundaries (and a digit is always one token: arithmetic stays learnable).
const PRE_SPLIT = / ?[A-Za-z\u00C0-\uFFFF]+| ?[0-9]| ?[^\sA-Za-z0-9\u00C0-\uFFFF]+|\s+/g;

const pairKey = (a: number, b: number) => a * 65536 + b;

export class BpeTokenizer implements Tokenizer {
  readonly kind = 'bpe' as const;
  readonly vocabSize: number;
  private readonly rank = new Map<number, number>(); // pairKey -> merge index
  private readonly bytesOf: Uint8Array[] = [];       // token id -> its bytes
  private readonly cache = new Map<string, number[]>();

  /** `vocabSize` may exceed 256 + merges when the corpus ran out of pairs (the rest are unused ids). */
  constructor(readonly merges: [number, number][], vocabSize = 256 + merges.length) {
    for (let b = 0; b < 256; b++) this.bytesOf.push(Uint8Array.of(b));
    merges.forEach(([a, b], i) => {
      this.rank.set(pairKey(a, b), i);
      const x = this.bytesOf[a], y = this.bytesOf[b];
      const m = new Uint8Array(x.length + y.length);
      m.set(x); m.set(y, x.length);
      this.bytesOf.push(m);
    });
    this.vocabSize = Math.max(vocabSize, 256 + merges.length);
  }

  /** Apply merges to one pre-split word, lowest rank first (the order they were learned). */
  private encodeWord(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let syms = Array.from(utf8.encode(word));
    for (;;) {
      let best = -1;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = this.rank.get(pairKey(syms[i], syms[i + 1]));
        if (r !== undefined && (best < 0 || r < best)) best = r;
      }
      if (best < 0) break;
      const [a, b] = this.merges[best];
      const out: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) { out.push(256 + best); i++; }
        else out.push(syms[i]);
      }
      syms = out;
    }
    if (this.cache.size < 100_000) this.cache.set(word, syms);
    return syms;
  }

  encode(text: string): Int32Array {
    const out: number[] = [];
    for (const m of text.matchAll(PRE_SPLIT)) for (const t of this.encodeWord(m[0])) out.push(t);
    return Int32Array.from(out);
  }

  decode(ids: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    let n = 0;
    for (let i = 0; i < ids.length; i++) { const b = this.bytesOf[ids[i]] ?? Uint8Array.of(63); parts.push(b); n += b.length; }
    const all = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { all.set(p, o); o += p.length; }
    return fromUtf8.decode(all);
  }

  toJSON(): TokenizerJSON { return { type: 'bpe', vocabSize: this.vocabSize, merges: this.merges }; }
}

/** Learn `vocabSize − 256` merges from `text` (most frequent adjacent pair first; ties by lower key). */
export function trainBpe(text: string, vocabSize: number): BpeTokenizer {
  if (!(Number.isInteger(vocabSize) && vocabSize >= 256 && vocabSize <= 65536))
    throw new Error(`BPE vocabulary size must be an integer in [256, 65536] (got ${vocabSize})`);
  // Unique words with counts; each word is a list of symbols that merges rewrite in place.
  const counts = new Map<string, number>();
  for (const m of text.matchAll(PRE_SPLIT)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const words: number[][] = [], freq: number[] = [];
  for (const [w, c] of counts) { words.push(Array.from(utf8.encode(w))); freq.push(c); }
  const merges: [number, number][] = [];
  while (256 + merges.length < vocabSize) {
    const pairs = new Map<number, number>();
    for (let w = 0; w < words.length; w++) {
      const s = words[w];
      for (let i = 0; i + 1 < s.length; i++) { const k = pairKey(s[i], s[i + 1]); pairs.set(k, (pairs.get(k) ?? 0) + freq[w]); }
    }
    let bestKey = -1, bestCount = 1; // a pair seen once is not worth a token
    for (const [k, c] of pairs) if (c > bestCount || (c === bestCount && bestKey >= 0 && k < bestKey)) { bestKey = k; bestCount = c; }
    if (bestKey < 0) break;
    const a = Math.floor(bestKey / 65536), b = bestKey % 65536, id = 256 + merges.length;
    merges.push([a, b]);
    for (let w = 0; w < words.length; w++) {
      const s = words[w];
      let j = 0;
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { s[j++] = id; i++; }
        else s[j++] = s[i];
      }
      s.length = j;
    }
  }
  return new BpeTokenizer(merges, vocabSize);
}

export function tokenizerFromJSON(j: TokenizerJSON): Tokenizer {
  if (j.type === 'byte') return new ByteTokenizer();
  if (j.type === 'bpe') return new BpeTokenizer(j.merges, j.vocabSize);
  throw new Error(`unknown tokenizer type '${(j as { type: string }).type}'`);
}

/** Parse a --tokenizer spec: 'byte', 'bpe' (512) or 'bpe:N'. Returns a problem string when invalid. */
export function parseTokenizerSpec(spec: string): { kind: 'byte' } | { kind: 'bpe'; vocabSize: number } | string {
  if (spec === 'byte') return { kind: 'byte' };
  const m = /^bpe(?::(\d+))?$/.exec(spec);
  if (!m) return `--tokenizer must be 'byte', 'bpe' or 'bpe:N' (got '${spec}')`;
  const n = m[1] ? Number(m[1]) : 512;
  if (n < 257 || n > 65536) return `--tokenizer bpe:N needs 257 <= N <= 65536 (got ${n})`;
  return { kind: 'bpe', vocabSize: n };
}
