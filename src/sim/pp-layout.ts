// The simulator's pipeline stage split as a layer-to-chunk layout that a training framework can run:
// Megatron-LM's `--pipeline-model-parallel-layout` string (megatron-core docs, "Custom Pipeline Model Parallel
// Layout": E = embedding, t = decoder layer, m = MTP layer, L = loss; chunks split by '|', `(x|)*k` and `t*k`
// repeat; DeepSeek-V3 on PP16 VPP2 is "Et*3|(tt|)*29,m|L"), and MindSpeed's `--noop-layers` (identity layers
// padding every chunk to the same number of slots; MTP is appended on the last stage, outside the slots).
// Pure functions on numbers: chunk c (model order) runs on stage c mod pp as virtual chunk floor(c / pp).

/** Contents of one model chunk (virtual pipeline stage), in model order. */
export interface Chunk { embedding: boolean; decoder: number; mtp: number; loss: boolean }

/**
 * Chunks for `decoder` + `mtp` pipeline layers split as `simulate()` splits them (schedule.ts `stageSplit`):
 * the last stage holds `last` layers (the MTP layers are the last ones in model order) and the output heads; the
 * other stages share the rest evenly (at most `per` each). Within a stage the layers spread evenly over its `vpp`
 * chunks, the last stage's back-loaded so that its final chunk, which ends the model, holds the MTP layers.
 */
export function layoutChunks(decoder: number, mtp: number, pp: number, vpp: number, split: { per: number; last: number }): Chunk[] {
  const n = decoder + mtp;
  const stage = new Array<number>(pp).fill(0);
  if (pp === 1) stage[0] = n;
  else {
    const last = Math.min(split.last, n), rest = n - last;
    const base = Math.floor(rest / (pp - 1)), extra = rest % (pp - 1);
    for (let p = 0; p < pp - 1; p++) stage[p] = base + (p < extra ? 1 : 0);
    stage[pp - 1] = last;
  }
  const counts = new Array<number>(pp * vpp).fill(0);
  for (let p = 0; p < pp; p++) {
    const b = Math.floor(stage[p] / vpp), x = stage[p] % vpp;
    for (let v = 0; v < vpp; v++) {
      const gets = p === pp - 1 ? v >= vpp - x : v < x; // back-load the last stage
      counts[v * pp + p] = b + (gets ? 1 : 0);
    }
  }
  let seen = 0;
  return counts.map((c, i) => {
    const dec = Math.max(0, Math.min(c, decoder - seen)); // the last `mtp` layers in model order are MTP layers
    seen += c;
    return { embedding: i === 0, decoder: dec, mtp: c - dec, loss: i === counts.length - 1 };
  });
}

const chunkText = (c: Chunk) =>
  (c.embedding ? 'E' : '') + (c.decoder > 2 ? `t*${c.decoder}` : 't'.repeat(c.decoder)) + 'm'.repeat(c.mtp) + (c.loss ? 'L' : '');

/**
 * Megatron `--pipeline-model-parallel-layout` string. Runs of equal non-empty chunks are written `(x|)*k` followed
 * by a (cosmetic) comma, as in the Megatron docs; the final chunk is always written out so nothing trails it.
 */
export function megatronLayout(chunks: Chunk[]): string {
  const texts = chunks.map(chunkText);
  const final = texts.pop() ?? '';
  let out = '';
  for (let i = 0; i < texts.length;) {
    let j = i;
    while (j + 1 < texts.length && texts[j + 1] === texts[i]) j++;
    const k = j - i + 1;
    out += k > 1 && texts[i] !== '' ? `(${texts[i]}|)*${k},` : `${texts[i]}|`.repeat(k);
    i = j + 1;
  }
  return out + final;
}

/**
 * Expand a layout string into its chunks' texts, as Megatron parses it (megatron-core
 * `PipelineParallelLayerLayout.parse_str_to_list`: drop commas, unroll `(x)*n` once, then `c*n`, split on '|'),
 * e.g. "Et*3|(tt|)*2,m|L" -> ["Ettt", "tt", "tt", "m", "L"].
 */
export function expandLayout(layout: string): string[] {
  return layout.replace(/,/g, '')
    .replace(/\(([^)]+)\)\*(\d+)/g, (_, body: string, k: string) => body.repeat(Number(k)))
    .replace(/(.)\*(\d+)/g, (_, x: string, k: string) => x.repeat(Number(k)))
    .split('|');
}

/**
 * MindSpeed `--noop-layers`: every chunk padded to the largest chunk's decoder count with identity layers at its
 * end. Returns the padded `--num-layers`, the layers per chunk and the no-op indices (empty when nothing pads).
 */
export function noopLayers(chunks: Chunk[]): { numLayers: number; perChunk: number; noop: number[] } {
  const perChunk = Math.max(1, ...chunks.map((c) => c.decoder));
  const noop: number[] = [];
  chunks.forEach((c, i) => { for (let s = c.decoder; s < perChunk; s++) noop.push(i * perChunk + s); });
  return { numLayers: perChunk * chunks.length, perChunk, noop };
}

/**
 * The chunks of a user's layout string for a model of `decoder` + `mtp` layers on `pp` × `vpp` chunks, or every
 * problem with it: unknown symbols, chunk count, layer counts, E opening the first chunk, L closing the last one,
 * MTP layers after all decoder layers.
 */
export function parseLayout(layout: string, decoder: number, mtp: number, pp: number, vpp: number): { chunks: Chunk[]; problems: string[] } {
  const problems: string[] = [];
  const s = layout.replace(/\s/g, '');
  if (!/^[EtmL|(),*0-9]*$/.test(s)) problems.push(`pipeline layout '${layout}': only E, t, m, L, '|', '(...)*n', 'x*n' and ',' are allowed`);
  const texts = expandLayout(s);
  if (!problems.length && texts.some((x) => /[^EtmL]/.test(x))) problems.push(`pipeline layout '${layout}': could not be expanded (nested or unmatched parentheses?)`);
  if (texts.length !== pp * vpp) problems.push(`pipeline layout has ${texts.length} chunks; PP × VPP = ${pp} × ${vpp} = ${pp * vpp}`);
  const all = texts.join('');
  const n = (ch: string) => all.split('').filter((x) => x === ch).length;
  if (n('t') !== decoder) problems.push(`pipeline layout has ${n('t')} decoder layers (t); the model has ${decoder}`);
  if (n('m') !== mtp) problems.push(`pipeline layout has ${n('m')} MTP layers (m); the model has ${mtp}`);
  if (n('E') !== 1 || !texts[0].startsWith('E')) problems.push('pipeline layout: E (embedding) must open the first chunk, once');
  if (n('L') !== 1 || !texts[texts.length - 1].endsWith('L')) problems.push('pipeline layout: L (loss, output heads) must close the last chunk, once');
  if (/m.*t/.test(all)) problems.push('pipeline layout: MTP layers (m) must come after every decoder layer (t)');
  const chunks = texts.map((x) => ({
    embedding: x.includes('E'), decoder: x.split('t').length - 1, mtp: x.split('m').length - 1, loss: x.includes('L'),
  }));
  return { chunks, problems };
}

/** Layers (decoder + MTP) per stage of a chunk list: chunk c runs on stage c mod pp. */
export function stageLayerCounts(chunks: Chunk[], pp: number): number[] {
  const out = new Array<number>(pp).fill(0);
  chunks.forEach((c, i) => { out[i % pp] += c.decoder + c.mtp; });
  return out;
}

/** The {per, last} split of a layout (as `stageSplit` returns it): the heaviest non-last stage and the last stage. */
export function layoutSplit(chunks: Chunk[], pp: number): { per: number; last: number } {
  const counts = stageLayerCounts(chunks, pp);
  if (pp === 1) return { per: counts[0], last: counts[0] };
  return { per: Math.max(...counts.slice(0, -1)), last: counts[pp - 1] };
}
