// Named saved activations: what a module's forward keeps for its hand-written backward.
//
// Every module writes the tensors its backward needs into a `SavedActivations` record under a
// stable name (e.g. 'attn.kv', 'moe.permutedTokens', 'mlp.act'). Nothing else holds them: no
// hidden autograd tape. That is what lets later work
//   - enumerate them (name, shape, bytes) for memory accounting,
//   - drop one after forward and recompute it before backward (selective recomputation),
//   - move one to host memory and bring it back (swapping),
// by name, without touching the module code.
import { tf } from '../backend/tf.ts';

export type SavedState = 'resident' | 'dropped' | 'host' | 'released';

export interface SavedInfo {
  name: string;
  shape: number[];
  dtype: string;
  bytes: number;
  state: SavedState;
}

/** How a dropped entry comes back: recompute it (from other saved entries) or reload it. */
export type Restorer = (rec: SavedActivations, name: string) => tf.Tensor;

interface Entry {
  tensor: tf.Tensor | null;  // null when dropped or on host
  host: Float32Array | Int32Array | null;
  shape: number[];
  dtype: tf.DataType;
  restore: Restorer | null;  // recompute recipe, set by the module or a policy
  state: SavedState;
}

/** Host-side values a module saves (routing plans, counts): never tensors, not memory-managed. */
export type HostValue = unknown;

/**
 * The saved activations of one module call (one micro-batch, one layer, one module).
 * Tensors are `tf.keep`-ed when saved, so they survive the `tf.tidy` of the forward, and are
 * disposed by `dispose()` after the backward has consumed them.
 */
export class SavedActivations {
  private entries = new Map<string, Entry>();
  private hostValues = new Map<string, HostValue>();
  /** Observers (memory ledgers, swappers) are told about every save/free. */
  onSave: ((rec: SavedActivations, info: SavedInfo) => void) | null = null;
  onFree: ((rec: SavedActivations, info: SavedInfo) => void) | null = null;

  /** false: `release` does nothing and entries live until `dispose` (to measure what release saves). */
  static earlyRelease = true;

  constructor(readonly owner: string) {}

  /** Keep `t` under `name` (a module-local name such as 'x' or 'probs'). Returns `t`. */
  save<T extends tf.Tensor>(name: string, t: T, restore: Restorer | null = null): T {
    if (this.entries.has(name)) throw new Error(`${this.owner}: saved activation '${name}' already exists`);
    tf.keep(t);
    this.entries.set(name, { tensor: t, host: null, shape: t.shape.slice(), dtype: t.dtype, restore, state: 'resident' });
    this.onSave?.(this, this.info(name));
    return t;
  }

  /** A saved tensor; a dropped or swapped one is brought back first (recompute or reload). */
  get<T extends tf.Tensor = tf.Tensor>(name: string): T {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.owner}: no saved activation '${name}' (have: ${[...this.entries.keys()].join(', ')})`);
    if (e.state === 'released') throw new Error(`${this.owner}: saved activation '${name}' was released after its last backward use and asked for again`);
    if (e.state === 'host') {
      e.tensor = tf.keep(tf.tensor(e.host!, e.shape, e.dtype));
      e.host = null;
      e.state = 'resident';
      this.onSave?.(this, this.info(name));
    } else if (e.state === 'dropped') {
      if (!e.restore) throw new Error(`${this.owner}: '${name}' was dropped and has no recompute recipe`);
      const t = tf.tidy(() => e.restore!(this, name));
      e.tensor = tf.keep(t);
      e.state = 'resident';
      this.onSave?.(this, this.info(name));
    }
    return e.tensor as T;
  }

  has(name: string): boolean { return this.entries.has(name); }

  /** Free a resident entry's memory, keeping its recipe (selective recomputation). */
  drop(name: string, restore?: Restorer): void {
    const e = this.must(name);
    if (restore) e.restore = restore;
    if (!e.restore) throw new Error(`${this.owner}: cannot drop '${name}': no recompute recipe`);
    if (e.state !== 'resident') return;
    this.onFree?.(this, this.info(name));
    e.tensor!.dispose();
    e.tensor = null;
    e.state = 'dropped';
  }

  /** Move a resident entry to host memory (swapping); `get` reloads it. */
  toHost(name: string): void {
    const e = this.must(name);
    if (e.state !== 'resident') return;
    this.onFree?.(this, this.info(name));
    e.host = e.tensor!.dataSync() as Float32Array | Int32Array;
    e.tensor!.dispose();
    e.tensor = null;
    e.state = 'host';
  }

  /**
   * The backward has read these entries for the last time: free them now rather than when the
   * record is disposed (early release, so a module's saved tensors are not all live at once). A
   * released entry cannot be brought back (`get` throws); names the record does not hold (optional
   * entries such as 'sharedGate') are ignored. Observers see a free for a resident entry.
   */
  release(...names: string[]): void {
    if (!SavedActivations.earlyRelease) return;
    for (const name of names) {
      const e = this.entries.get(name);
      if (!e || e.state === 'released') continue;
      if (e.state === 'resident') { this.onFree?.(this, this.info(name)); e.tensor!.dispose(); }
      e.tensor = null;
      e.host = null;
      e.state = 'released';
    }
  }

  /** Register or replace the recompute recipe of an entry without dropping it. */
  setRestorer(name: string, restore: Restorer): void { this.must(name).restore = restore; }

  /** Host-side (non-tensor) values such as routing plans. */
  setHost(name: string, v: HostValue): void { this.hostValues.set(name, v); }
  getHost<T = HostValue>(name: string): T {
    if (!this.hostValues.has(name)) throw new Error(`${this.owner}: no saved host value '${name}'`);
    return this.hostValues.get(name) as T;
  }

  info(name: string): SavedInfo {
    const e = this.must(name);
    const bytes = e.shape.reduce((a, b) => a * b, 1) * 4;
    return { name, shape: e.shape, dtype: e.dtype, bytes, state: e.state };
  }

  list(): SavedInfo[] { return [...this.entries.keys()].map((n) => this.info(n)); }

  /** Bytes of resident tensors. */
  residentBytes(): number {
    return this.list().filter((i) => i.state === 'resident').reduce((a, i) => a + i.bytes, 0);
  }

  /** Dispose every tensor; the record is empty afterwards. */
  dispose(): void {
    for (const [name, e] of this.entries) {
      if (e.state === 'resident') { this.onFree?.(this, this.info(name)); e.tensor!.dispose(); }
    }
    this.entries.clear();
    this.hostValues.clear();
  }

  private must(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.owner}: no saved activation '${name}'`);
    return e;
  }
}
