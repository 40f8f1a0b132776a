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
//   backward, those of l−1 … l−d (d = plan.prefetchAhead, default 1); inside layer l, lazy
//   recompute walks the phases 5 → 0: the first rebuild of phase k frees every resident entry of
//   phases > k, then all of phase k's recomputed entries come back and stay until a lower phase is
//   rebuilt or the layer ends (the grouped-expert backward reads permutedTokens, fc1Out, fc3Out and
//   act together). A full-recompute group replays all its layers at once.
// The other in-flight micro-batches hold their kept bytes plus the embedding/head records.
import type { MemoryPlan, PlanEntry } from './policy.ts';

/** Block phase of a saved name: attnNorm → attention → attnPostNorm → mlpNorm → FFN → mlpPostNorm. */
export function forwardPhase(name: string): number {
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

const rn = (name: string) => name.replace(/^moe\./, '');

export interface LifecycleOptions {
  /** Micro-batches alive at the peak (1F1B rank r: min(p − r, M)). */
  inFlight: number;
  /** Bytes per micro-batch saved before the first layer and freed after the last backward (embedding). */
  preBytes?: number;
  /** Bytes per micro-batch saved after the last layer and freed before the layers' backward (head, MTP). */
  postBytes?: number;
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
    // resident entries of this layer: kept + reloaded; walk the phases for lazy rebuilds
    const resident = new Map(es.filter((e) => e.decision !== 'recompute').map((e) => [e.name, e]));
    let cur = sum([...resident.values()]);
    const rest = total() - alive.get(l)!;
    see(base + rest + cur, `backward L${l}`);
    for (let k = 5; k >= 0; k--) {
      const rebuilt = es.filter((e) => e.decision === 'recompute' && forwardPhase(rn(e.name)) === k);
      if (!rebuilt.length) continue;
      for (const [name, e] of resident) if (forwardPhase(rn(name)) > k) { resident.delete(name); cur -= e.bytes; }
      for (const e of rebuilt) { resident.set(e.name, e); cur += e.bytes; }
      see(base + rest + cur, `backward L${l} phase ${k}`);
    }
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
  const saved = new Set<string>(), gone = new Set<string>(), order: PlanEntry[] = [];
  const planned = [...es.filter((e) => e.decision === 'recompute'), ...es.filter((e) => e.decision === 'swap')];
  for (const e of es) {
    resident += e.bytes;
    top = Math.max(top, resident);
    saved.add(rn(e.name));
    phase = Math.max(phase, forwardPhase(rn(e.name)));
    for (const p of planned) {
      if (gone.has(p.name) || !saved.has(rn(p.name))) continue;
      const r = RELEASE_ON[rn(p.name)];
      if (forwardPhase(rn(p.name)) < phase || (r !== undefined && saved.has(r))) { gone.add(p.name); resident -= p.bytes; order.push(p); }
    }
  }
  for (const p of planned) if (!gone.has(p.name)) order.push(p);
  return { order, transientPeak: top };
}
