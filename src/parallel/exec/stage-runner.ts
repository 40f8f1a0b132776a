// ChunkRunner: forward and backward of one model chunk (a contiguous layer range, plus the embedding
// on the first chunk and head + MTP on the last) for one micro-batch at a time, on one simulated
// device. It keeps one set of SavedActivations per in-flight micro-batch, applies the memory plan
// (selective recompute, swap, full-layer recompute) and charges every op to the device timeline with
// the device's cost functions (FLOPs from the config, not wall-clock), so simulated times are
// deterministic.
//
// Full recomputation: a group of layers [a, b] keeps only its input (a record 'input' entry, charged
// like any saved activation); before layer b's backward the group's forward is replayed with
// recordStats: false and the same ctx.seed (router statistics, aux-loss trackers and expert counts are
// counted once), and the replayed MoE records get the *original* routing plan back, so the aux-loss
// gradient uses the statistics of the real forward (the 'global' tracker may have moved meanwhile).
import { tf } from '../../backend/tf.ts';
import type { SimDevice } from '../../device/device.ts';
import type { SimEvent } from '../../device/timeline.ts';
import type { MoEGPT, LossReport } from '../../model/gpt.ts';
import type { ForwardContext, GradStore } from '../../model/module.ts';
import { SavedActivations } from '../../model/saved.ts';
import { mtpShift } from '../../model/mtp.ts';
import type { MemoryExecutor } from './memory-executor.ts';
import type { SavedLedger } from './saved-ledger.ts';

export interface MicroBatch { tokens: Int32Array; targets: Int32Array; batch: number; seqLen: number }

/** Simulated cost of the pieces of a chunk (FLOPs or HBM bytes), per micro-batch. */
export interface ChunkCosts {
  layerForwardFlops: (layer: number) => number;
  /** B / F (default 2). */
  backwardFactor?: number;
  embeddingBytes: number;
  headFlops: number;
  /** per MTP depth */
  mtpFlops: number;
  /** false: embedding, head and MTP cost nothing (uniform stages for bubble measurements). */
  chargeEmbeddingHead?: boolean;
}

interface InFlight {
  ctx: ForwardContext;
  mb: MicroBatch;
  layers: (SavedActivations | null)[];
  /** group start layer → record holding the group input ('input'), for full recompute */
  groupInputs: Map<number, SavedActivations>;
  plans: Map<number, unknown>;
  embedding: SavedActivations | null;
  head: SavedActivations | null;
  mtp: SavedActivations[];
  report: LossReport | null;
}

export class ChunkRunner {
  private inflight = new Map<number, InFlight>();
  /** Most micro-batches alive at once on this chunk. */
  peakInFlight = 0;

  constructor(
    readonly model: MoEGPT, readonly start: number, readonly end: number,
    readonly isFirst: boolean, readonly isLast: boolean,
    readonly device: SimDevice | null, readonly mem: MemoryExecutor, readonly ledger: SavedLedger,
    readonly costs: ChunkCosts, readonly label = `chunk[${start},${end})`,
  ) {}

  private rec(owner: string): SavedActivations { return this.ledger.attach(new SavedActivations(owner)); }

  private charge(name: string, flops: number, after: SimEvent[], bytes = false): SimEvent | null {
    if (!this.device || flops <= 0) return null; // nothing to charge (e.g. uncharged embedding/head)
    return this.device.charge(name, bytes ? { bytes: flops } : { flops }, { after });
  }

  /** Group [a, b] of fully recomputed layers containing `l` in this chunk (null if l is not recomputed whole). */
  private groupOf(l: number): [number, number] | null {
    if (this.mem.mode(l) === 'none') return null;
    let a = l;
    while (a > this.start && this.mem.mode(a) === 'full-inner') a--;
    let b = l;
    while (b + 1 < this.end && this.mem.mode(b + 1) === 'full-inner') b++;
    return [a, b];
  }

  /**
   * Forward of micro-batch `m`: `input` is the received hidden state (null on the first chunk);
   * returns the output to send (null on the last chunk, which computes the loss) and the last event.
   */
  forward(m: number, mb: MicroBatch, ctx: ForwardContext, input: tf.Tensor | null, after: SimEvent[]): { output: tf.Tensor | null; event: SimEvent | null } {
    const st: InFlight = { ctx, mb, layers: [], groupInputs: new Map(), plans: new Map(), embedding: null, head: null, mtp: [], report: null };
    this.inflight.set(m, st);
    this.peakInFlight = Math.max(this.peakInFlight, this.inflight.size);
    const { batch: B, seqLen: S } = mb, H = this.model.cfg.hiddenSize;
    const chargeEH = this.costs.chargeEmbeddingHead ?? true;
    let deps = after, last: SimEvent | null = null;
    const step = (ev: SimEvent | null) => { if (ev) { last = ev; deps = [ev]; } };
    let x: tf.Tensor;
    if (this.isFirst) {
      st.embedding = this.rec(`mb${m}.embedding`);
      x = this.model.embed(mb.tokens, B, S, st.embedding);
      step(this.charge(`F mb${m} embedding`, chargeEH ? this.costs.embeddingBytes : 0, deps, true));
    } else x = tf.clone(input!);
    for (let l = this.start; l < this.end; l++) {
      const rec = this.rec(`mb${m}.layers.${l}`);
      const group = this.groupOf(l);
      if (group && group[0] === l) { // the group keeps its input only
        const inp = this.rec(`mb${m}.layers.${l}.input`);
        inp.save('input', tf.clone(x));
        st.groupInputs.set(l, inp);
      }
      if (!group) this.mem.beforeForward(l, rec);
      const y = this.model.layerForward(l, l + 1, x, [rec], ctx);
      x.dispose();
      x = y;
      step(this.charge(`F mb${m} L${l}`, this.costs.layerForwardFlops(l), deps));
      if (group) { // full recompute: keep the routing plan (host), free every tensor
        if (this.model.blocks[l].moe) st.plans.set(l, rec.getHost('plan'));
        rec.dispose();
        st.layers.push(null);
      } else {
        this.mem.afterForward(l, rec, last);
        st.layers.push(rec);
      }
    }
    if (!this.isLast) return { output: x, event: last };
    // head (+ MTP): the loss of this micro-batch
    st.head = this.rec(`mb${m}.head`);
    const lmT = tf.tidy(() => this.model.head.loss(tf.clone(x), mb.targets, st.head!));
    const lm = lmT.dataSync()[0];
    lmT.dispose();
    step(this.charge(`F mb${m} head`, chargeEH ? this.costs.headFlops : 0, deps));
    let mtp = 0, hPrev = x;
    for (let k = 0; k < this.model.mtp.length; k++) {
      const sh = mtpShift(mb.targets, B, S, k + 1);
      const r = this.rec(`mb${m}.mtp.${k}`);
      st.mtp.push(r);
      const { h, loss } = this.model.mtp[k].forward(hPrev, sh.ids, sh.targets, r, ctx);
      mtp += loss.dataSync()[0] / this.model.mtp.length;
      loss.dispose();
      hPrev.dispose();
      hPrev = h;
      step(this.charge(`F mb${m} mtp${k}`, chargeEH ? this.costs.mtpFlops : 0, deps));
    }
    hPrev.dispose();
    st.report = lossReport(this.model, lm, mtp, ctx);
    void H;
    return { output: null, event: last };
  }

  /** Start reloading the swapped tensors micro-batch `m`'s backward needs first (its last layer). */
  prefetchBackward(m: number): void {
    const last = this.inflight.get(m)?.layers.at(-1);
    if (last) this.mem.prefetch(last);
  }

  /** Loss of a finished forward on the last chunk. */
  lossOf(m: number): LossReport { return this.inflight.get(m)!.report!; }

  /**
   * Backward of micro-batch `m`: `dOut` is the received gradient (null on the last chunk);
   * returns the gradient to send (null on the first chunk) and the last event. Frees the micro-batch.
   */
  backward(m: number, dOut: tf.Tensor | null, grads: GradStore, after: SimEvent[]): { dInput: tf.Tensor | null; event: SimEvent | null; report: LossReport | null } {
    const st = this.inflight.get(m);
    if (!st) throw new Error(`${this.label}: backward of micro-batch ${m} before its forward`);
    const { ctx, mb } = st, { batch: B, seqLen: S } = mb, H = this.model.cfg.hiddenSize;
    const shape = [B, S, H], chargeEH = this.costs.chargeEmbeddingHead ?? true, bf = this.costs.backwardFactor ?? 2;
    let deps = after, last: SimEvent | null = null;
    const step = (ev: SimEvent | null) => { if (ev) { last = ev; deps = [ev]; } };
    let d: tf.Tensor;
    // start bringing back the last layer's swapped tensors while the head's backward runs
    const lastRec = st.layers[st.layers.length - 1];
    if (lastRec) this.mem.prefetch(lastRec, after);
    if (this.isLast) {
      const D = this.model.mtp.length, s = ctx.lossScale;
      let dh: tf.Tensor | null = null;
      for (let k = D - 1; k >= 0; k--) {
        const dPrev: tf.Tensor = this.model.mtp[k].backward(s * this.model.cfg.mtpLossCoeff / D, dh, st.mtp[k], grads, ctx, shape);
        dh?.dispose();
        dh = dPrev;
        st.mtp[k].dispose();
        step(this.charge(`B mb${m} mtp${k}`, chargeEH ? bf * this.costs.mtpFlops : 0, deps));
      }
      const dHead = tf.tidy(() => this.model.head.backward(s, st.head!, grads, shape));
      st.head!.dispose();
      step(this.charge(`B mb${m} head`, chargeEH ? bf * this.costs.headFlops : 0, deps));
      d = dh ? tf.add(dHead, dh) : dHead;
      if (dh) { dh.dispose(); dHead.dispose(); }
    } else d = tf.clone(dOut!);
    for (let l = this.end - 1; l >= this.start; l--) {
      const i = l - this.start;
      const group = this.groupOf(l);
      if (group && group[1] === l) this.replay(m, st, group, deps, step);
      const rec = st.layers[i]!;
      const start = deps; // the layer's backward work starts here: prefetches are issued now
      const swapIns = this.mem.prefetch(rec, start);
      const rflops = group ? 0 : this.mem.recompute(l, rec);
      if (rflops > 0 && this.device) {
        // at the layer's FLOP rate without a launch of its own: a layer pass is charged as one op (one
        // launch), so a recomputed piece of it must not pay a whole launch
        const f = this.costs.layerForwardFlops(l), launch = this.device.spec.efficiency.launchOverhead;
        const secs = f > 0 ? (rflops * (this.device.costOf({ flops: f }) - launch)) / f : this.device.costOf({ flops: rflops });
        step(this.device.charge(`R mb${m} L${l}`, { seconds: secs }, { after: deps }));
      }
      // prefetch the next layers in backward order (plan.prefetchAhead, default 1) while this one runs
      for (let j = 1; j <= this.mem.prefetchAhead && l - j >= this.start; j++)
        if (st.layers[i - j]) this.mem.prefetch(st.layers[i - j]!, start);
      const dn = this.model.layerBackward(l, l + 1, d, [rec], grads, ctx); // disposes rec
      this.mem.forget(rec);
      d.dispose();
      d = dn;
      step(this.charge(`B mb${m} L${l}`, bf * this.costs.layerForwardFlops(l), [...deps, ...swapIns]));
    }
    const report = st.report;
    this.inflight.delete(m);
    if (!this.isFirst) return { dInput: d, event: last, report };
    tf.tidy(() => { this.model.embedding.backward(tf.reshape(d, [B * S, H]), st.embedding!, grads, ctx); });
    st.embedding!.dispose();
    d.dispose();
    step(this.charge(`B mb${m} embedding`, chargeEH ? bf * this.costs.embeddingBytes : 0, deps, true));
    return { dInput: null, event: last, report };
  }

  /** Full recompute: rerun the forward of group [a, b] from its kept input, stats off, same seed. */
  private replay(m: number, st: InFlight, [a, b]: [number, number], deps: SimEvent[], step: (e: SimEvent | null) => void): void {
    const inp = st.groupInputs.get(a)!;
    const replayCtx: ForwardContext = { ...st.ctx, recordStats: false, routerStats: [] };
    let x = tf.clone(inp.get('input'));
    inp.dispose();
    this.ledger.forget(inp);
    st.groupInputs.delete(a);
    let flops = 0;
    for (let l = a; l <= b; l++) {
      const rec = this.rec(`mb${m}.layers.${l}`);
      const y = this.model.layerForward(l, l + 1, x, [rec], replayCtx);
      if (st.plans.has(l)) rec.setHost('plan', st.plans.get(l)); // the original routing statistics
      x.dispose();
      x = y;
      st.layers[l - this.start] = rec;
      flops += this.costs.layerForwardFlops(l);
    }
    x.dispose();
    step(this.charge(`R mb${m} L${a}-${b}`, flops, deps));
  }

  /** Dispose everything still in flight (after an error). */
  dispose(): void {
    for (const st of this.inflight.values())
      for (const r of [...st.layers, st.embedding, st.head, ...st.mtp, ...st.groupInputs.values()]) r?.dispose();
    this.inflight.clear();
  }
}

/** MoEGPT's loss report for one micro-batch (router stats of this ctx only). */
export function lossReport(model: MoEGPT, lm: number, mtp: number, ctx: ForwardContext): LossReport {
  let auxLoss = 0, zLoss = 0;
  for (const s of ctx.routerStats) for (const [k, v] of Object.entries(s.auxLosses)) { if (k === 'z') zLoss += v; else auxLoss += v; }
  return { loss: lm + model.cfg.mtpLossCoeff * mtp + auxLoss + zLoss, lmLoss: lm, mtpLoss: mtp, auxLoss, zLoss };
}
