// The life of saved activations under a plan, replayed without tensors: when each entry is saved,
// dropped, moved to host, reloaded, rebuilt and freed, following the same rules as the executor
// (src/parallel/exec/memory-executor.ts and stage-runner.ts, which import the tables below), so the
// planner's predicted peak is the executed one rather than a per-group approximation.
//
// Forward of a layer (entries saved in descriptor order = the model's save order):
//   after each save, planned (recompute/swap) entries are released once the forward no longer reads
//   them: their block phase is over (`forwardPhase`) or their last reader saved its output
//   (`RELEASE_ON`). A fully recomputed layer saves everything (plus its group input) and frees the
//   layer record at the end, keeping only the input.
// Backward of one micro-batch (last layer first):
//   the last layer's swapped entries are prefetched before the head's backward; before layer l's
//   backward, those of l−1 … l−d (d = plan.prefetchAhead, default 1); inside layer l, the modules'
//   backwards read their saved entries and release each one after its last read, in the order of
//   `BACKWARD_SCRIPT` (from the code of block.ts, attention-mla.ts, attention-gqa.ts, mlp.ts and
//   moe/{experts,moe-layer,shared-expert}.ts); a dropped entry is rebuilt when it is read, after
//   the entries its recipe reads (`RECIPE_READS`, rebuilt first if dropped too). A full-recompute
//   group replays all its layers at once.
// The other in-flight micro-batches hold their kept bytes plus the embedding/head records.
import type { MemoryPlan, PlanEntry } from './policy.ts';

/** Block phase of a saved name: attnNorm → attention → attnPostNorm → mlpNorm → FFN → mlpPostNorm. */
export function forwardPhase(name: string): number {
  let k = phaseOf.get(name);
  if (k === undefined) phaseOf.set(name, (k = phaseOfName(name)));
  return k;
}
const phaseOf = new Map<string, number>(); // memo: the planner asks for the same few names many times

function phaseOfName(name: string): number {
  if (/^attnNorm\./.test(name)) return 0;
  if (/^(mla|attn)\./.test(name)) return 1;
  if (/^attnPostNorm\./.test(name)) return 2;
  if (/^mlpNorm\./.test(name)) return 3;
  if (/^mlpPostNorm\./.test(name)) return 5;
  return 4;
}

/**
 * Inside one sub-module: entry → the saved name after which the module's forward no longer reads it
 * (from the forward code of attention-mla.ts, moe/experts.ts, moe/shared-expert.ts, moe/router.ts).
 * E.g. the experts read permutedTokens for fc1 and fc3 only, so it can go once fc3Out is saved.
 * Entries not listed wait for the end of their phase. Record names (MoE entries unprefixed).
 */
export const RELEASE_ON: Readonly<Record<string, string>> = {
  'mla.x': 'mla.q', 'mla.qANorm.x': 'mla.qLatent', 'mla.qANorm.rstd': 'mla.qLatent', 'mla.qLatent': 'mla.q',
  'mla.kvANorm.x': 'mla.kvLatent', 'mla.kvANorm.rstd': 'mla.kvLatent', 'mla.kvLatent': 'mla.kvUp',
  'mla.kvUp': 'mla.probs', 'mla.kRope': 'mla.probs', 'mla.q': 'mla.probs', 'mla.probs': 'mla.ctx',
  routerJitter: 'permutedTokens', permutedTokens: 'fc3Out', fc1Out: 'act', fc3Out: 'act',
  act: 'sharedFc1Out', permutedProbs: 'sharedFc1Out', sharedFc1Out: 'sharedAct', sharedFc3Out: 'sharedAct',
};

const rnOf = new Map<string, string>();
const rn = (name: string): string => {
  let r = rnOf.get(name);
  if (r === undefined) rnOf.set(name, (r = name.replace(/^moe\./, '')));
  return r;
};

type Step = readonly ['get' | 'release', string];
const norm = (tag: string): Step[] => [['get', `${tag}.x`], ['get', `${tag}.rstd`], ['release', `${tag}.x`], ['release', `${tag}.rstd`]];
const gets = (...ns: string[]): Step[] => ns.map((n) => ['get', n] as const);
const releases = (...ns: string[]): Step[] => ns.map((n) => ['release', n] as const);

/**
 * The order in which a block's backward reads (`get`) and releases its saved entries (record names),
 * from the code (TransformerBlock.backward and the modules it calls). Entries a layer does not have
 * (GQA vs MLA, dense MLP vs MoE, no shared expert, no gate, no jitter, no q-LoRA) are skipped.
 */
export const BACKWARD_SCRIPT: readonly Step[] = [
  ...norm('mlpPostNorm'),
  // MoELayer.backward: GroupedExperts, Router, SharedExpert, then the layer input
  ...gets('permutedProbs', 'act'), ...releases('act', 'permutedProbs'),
  ...gets('fc1Out', 'fc3Out'), ...releases('fc1Out', 'fc3Out'),
  ...gets('permutedTokens'), ...releases('permutedTokens'),
  ...gets('x', 'routerJitter'), ...releases('routerJitter'),
  ...gets('x', 'sharedAct', 'sharedGate'), ...releases('sharedGate', 'sharedAct'),
  ...gets('sharedFc1Out', 'sharedFc3Out'), ...releases('sharedFc1Out', 'sharedFc3Out'),
  ...releases('x'),
  // SwiGLUMLP.backward (dense layers)
  ...gets('mlp.act'), ...releases('mlp.act'), ...gets('mlp.fc1'), ...releases('mlp.fc1'), ...gets('mlp.x'), ...releases('mlp.x'),
  ...norm('mlpNorm'),
  ...norm('attnPostNorm'),
  // MLAttention.backward
  ...gets('mla.ctx'), ...releases('mla.ctx'),
  ...gets('mla.q', 'mla.kvUp', 'mla.kRope', 'mla.probs'), ...releases('mla.probs', 'mla.q', 'mla.kvUp', 'mla.kRope'),
  ...gets('mla.kvLatent'), ...releases('mla.kvLatent'), ...norm('mla.kvANorm'),
  ...gets('mla.x'),
  ...gets('mla.qLatent'), ...releases('mla.qLatent'), ...norm('mla.qANorm'),
  ...releases('mla.x'),
  // GQAttention.backward
  ...gets('attn.ctx'), ...releases('attn.ctx'),
  ...gets('attn.q', 'attn.k', 'attn.v', 'attn.probs'), ...releases('attn.probs', 'attn.q', 'attn.k', 'attn.v'),
  ...gets('attn.x'), ...releases('attn.x'),
  ...norm('attnNorm'),
];

/**
 * Entries a recompute recipe reads, in order (`a|b`: the first the layer has). Norm outputs are
 * rebuilt from the norm's x and rstd; rstd from x.
 */
export const RECIPE_READS: Readonly<Record<string, readonly string[]>> = {
  'mla.x': ['attnNorm.x', 'attnNorm.rstd'], 'attn.x': ['attnNorm.x', 'attnNorm.rstd'],
  'mla.qANorm.x': ['mla.x'], 'mla.qANorm.rstd': ['mla.qANorm.x'], 'mla.qLatent': ['mla.qANorm.x', 'mla.qANorm.rstd'],
  'mla.q': ['mla.qLatent|mla.x'],
  'mla.kvANorm.x': ['mla.x'], 'mla.kvANorm.rstd': ['mla.kvANorm.x'], 'mla.kvLatent': ['mla.kvANorm.x', 'mla.kvANorm.rstd'],
  'mla.kvUp': ['mla.kvLatent'], 'mla.kRope': ['mla.x'],
  'mla.probs': ['mla.q', 'mla.kvUp', 'mla.kRope'], 'mla.ctx': ['mla.probs', 'mla.kvUp', 'mla.kRope'],
  'attn.q': ['attn.x'], 'attn.k': ['attn.x'], 'attn.v': ['attn.x'], 'attn.probs': ['attn.q', 'attn.k'], 'attn.ctx': ['attn.probs', 'attn.v'],
  x: ['mlpNorm.x', 'mlpNorm.rstd'], 'mlp.x': ['mlpNorm.x', 'mlpNorm.rstd'], 'mlp.fc1': ['mlp.x'], 'mlp.act': ['mlp.fc1'],
  permutedTokens: ['x'], fc1Out: ['permutedTokens'], fc3Out: ['permutedTokens'], act: ['fc1Out', 'fc3Out'],
  sharedFc1Out: ['x'], sharedFc3Out: ['x'], sharedAct: ['sharedFc1Out', 'sharedFc3Out'], sharedGate: ['x'],
};

/**
 * The backward of one (not fully recomputed) layer: `resident` entries (kept or reloaded) are live at
 * its start, `dropped` ones are rebuilt when first read. Calls `see(liveBytes, at)` at the start and
 * after each rebuild (the only moments the live bytes grow); returns nothing: everything is released
 * by the end.
 */
export function replayLayerBackward(es: readonly PlanEntry[], see: (bytes: number, at: string) => void, release = true): void {
  const byName = new Map(es.map((e) => [rn(e.name), e]));
  const resident = new Set<string>(), released = new Set<string>();
  let cur = 0;
  for (const [n, e] of byName) if (e.decision !== 'recompute') { resident.add(n); cur += e.bytes; }
  see(cur, 'start');
  const get = (n: string): void => {
    const e = byName.get(n);
    if (!e || resident.has(n) || released.has(n)) return;
    for (const alt of RECIPE_READS[n] ?? []) { const d = alt.split('|').find((a) => byName.has(a)); if (d) get(d); }
    resident.add(n);
    cur += e.bytes;
    see(cur, `rebuild ${n}`);
  };
  for (const [op, n] of BACKWARD_SCRIPT) {
    if (op === 'get') get(n);
    else if (release && byName.has(n) && !released.has(n)) { released.add(n); if (resident.delete(n)) cur -= byName.get(n)!.bytes; }
  }
}

export interface LifecycleOptions {
  /** Micro-batches alive at the peak (1F1B rank r: min(p − r, M)). */
  inFlight: number;
  /** Bytes per micro-batch saved before the first layer and freed after the last backward (embedding). */
  preBytes?: number;
  /** Bytes per micro-batch saved after the last layer and freed before the layers' backward (head, MTP). */
  postBytes?: number;
  /** false: the backward keeps every entry until the layer's end (SavedActivations.earlyRelease off). */
  release?: boolean;
}

export interface LifecycleResult {
  peakBytes: number;
  /** Kept bytes per micro-batch after its forward (layers only). */
  keptBytes: number;
  /** Where the peak is: 'forward L<l>', 'backward L<l> phase <k>', ... */
  where: string;
}

/** Peak resident saved bytes of one stage running `plan` (pure replay of the executor's rules). */
export function simulateLifecycle(plan: MemoryPlan, o: LifecycleOptions): LifecycleResult {
  const pre = o.preBytes ?? 0, post = o.postBytes ?? 0, n = o.inFlight;
  const full = new Set(plan.fullLayers), ahead = plan.prefetchAhead ?? 1;
  const byLayer = new Map<number, PlanEntry[]>();
  for (const e of plan.entries) (byLayer.get(e.layer) ?? byLayer.set(e.layer, []).get(e.layer)!).push(e);
  const layers = [...byLayer.keys()].sort((a, b) => a - b);
  const sum = (es: PlanEntry[], f: (e: PlanEntry) => boolean = () => true) => es.reduce((a, e) => a + (f(e) ? e.bytes : 0), 0);
  const inputOf = (l: number) => byLayer.get(l)!.find((e) => e.name === 'attnNorm.x');
  // a full layer keeps its input only if it starts a group (its input entry is 'keep')
  const keptOf = (l: number) => full.has(l) ? (inputOf(l)?.decision === 'keep' ? inputOf(l)!.bytes : 0) : sum(byLayer.get(l)!, (e) => e.decision === 'keep');
  const swappedOf = (l: number | undefined) => l === undefined || full.has(l) ? 0 : sum(byLayer.get(l)!, (e) => e.decision === 'swap');
  const K = layers.reduce((a, l) => a + keptOf(l), 0);
  const others = (n - 1) * (K + pre + post);
  let peak = 0, where = '';
  const see = (bytes: number, at: string) => { if (bytes > peak) { peak = bytes; where = at; } };
  const last = layers[layers.length - 1];

  // Forward. With n > 1 the previous F has prefetched the waiting micro-batch's last layer.
  const waiting = n > 1 ? swappedOf(last) : 0;
  let prefix = pre;
  for (const l of layers) {
    const es = byLayer.get(l)!;
    if (full.has(l)) {
      see(others + waiting + prefix + (inputOf(l)?.decision === 'keep' ? inputOf(l)!.bytes : 0) + sum(es), `forward L${l} (replayable)`);
    } else {
      see(others + waiting + prefix + forwardReleases(es).transientPeak, `forward L${l}`);
    }
    prefix += keptOf(l);
  }
  see(others + waiting + prefix + post, 'end of forward');

  // Backward of one micro-batch.
  const base = others + pre; // + this micro-batch's layers still alive
  const alive = new Map(layers.map((l) => [l, keptOf(l)]));
  const total = () => [...alive.values()].reduce((a, b) => a + b, 0);
  const reloaded = new Set<number>();
  const prefetch = (l: number | undefined) => {
    if (l === undefined || reloaded.has(l) || full.has(l)) return;
    reloaded.add(l);
    alive.set(l, alive.get(l)! + swappedOf(l));
  };
  prefetch(last);
  see(base + total() + post, 'backward head');
  for (let i = layers.length - 1; i >= 0; i--) {
    const l = layers[i], es = byLayer.get(l)!;
    if (full.has(l)) {
      // group [a, l]: replayed at once (inputs freed first), then freed layer by layer
      if (i === layers.length - 1 || !full.has(layers[i + 1]) || inputOf(layers[i + 1])?.decision === 'keep') {
        let a = i;
        while (a > 0 && full.has(layers[a - 1]) && inputOf(layers[a])?.decision !== 'keep') a--;
        for (let j = a; j <= i; j++) alive.set(layers[j], sum(byLayer.get(layers[j])!));
      }
      for (let j = 1; j <= ahead; j++) prefetch(layers[i - j]);
      see(base + total(), `backward L${l} (replayed)`);
      alive.set(l, 0);
      continue;
    }
    prefetch(l);
    for (let j = 1; j <= ahead; j++) prefetch(layers[i - j]);
    // this layer's kept + reloaded entries, then the backward's reads (rebuilds) and releases
    const rest = total() - alive.get(l)!;
    replayLayerBackward(es, (cur, at) => see(base + rest + cur, `backward L${l} ${at}`), o.release ?? true);
    alive.set(l, 0);
  }
  return { peakBytes: peak, keptBytes: K, where };
}

/**
 * The forward of one (not fully recomputed) layer: its planned (recompute/swap) entries in the order
 * the executor releases them (at each save, the releasable ones in entry order, recompute before
 * swap; the rest at the layer's end) and the peak of the layer's resident bytes meanwhile. The
 * swap-outs are issued in this order, so it is also the D2H order.
 */
export function forwardReleases(es: readonly PlanEntry[]): { order: PlanEntry[]; transientPeak: number } {
  let resident = 0, phase = 0, top = 0;
  const saved = new Set<string>(), order: PlanEntry[] = [];
  const planned = [...es.filter((e) => e.decision === 'recompute'), ...es.filter((e) => e.decision === 'swap')];
  let live = planned.map((p) => ({ p, n: rn(p.name), ph: forwardPhase(rn(p.name)), r: RELEASE_ON[rn(p.name)] }));
  for (const e of es) {
    resident += e.bytes;
    top = Math.max(top, resident);
    const n = rn(e.name);
    saved.add(n);
    phase = Math.max(phase, forwardPhase(n));
    if (!live.length) continue;
    const rest: typeof live = [];
    for (const q of live) {
      if (saved.has(q.n) && (q.ph < phase || (q.r !== undefined && saved.has(q.r)))) { resident -= q.p.bytes; order.push(q.p); }
      else rest.push(q);
    }
    live = rest;
  }
  for (const q of live) order.push(q.p);
  return { order, transientPeak: top };
}
