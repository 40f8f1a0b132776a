// SavedLedger: charges the saved activations of SavedActivations records to a simulated device.
//
// It is the records' onSave/onFree observer. A resident entry is an HBM allocation in category
// 'activations'; an entry moved to host (swap) is released from HBM and allocated in the node's host
// ledger as 'swapped'; bringing it back does the reverse. Drops (selective recompute) just release.
// The executor tells the ledger which frees are swap-outs (`expectSwap`) because SavedActivations
// reports a free before it changes the entry's state. Without a device, the ledger only counts bytes
// (resident now / peak), which is what the single-process tests measure.
import type { SimDevice } from '../../device/device.ts';
import type { Allocation } from '../../device/memory.ts';
import type { SavedActivations, SavedInfo } from '../../model/saved.ts';

const key = (rec: SavedActivations, name: string) => `${rec.owner}\u0000${name}`;

export class SavedLedger {
  private hbm = new Map<string, Allocation | number>();   // resident entries: allocation (or bytes without a device)
  private host = new Map<string, Allocation | number>();  // swapped entries
  private pendingSwap = new Set<string>();
  private dropped = new Set<string>();
  /** Resident saved bytes now and their peak over the ledger's life. */
  residentBytes = 0;
  peakResidentBytes = 0;
  hostBytes = 0;
  peakHostBytes = 0;
  /** How many times each entry came back from host (tests: exactly once) or was recomputed. */
  readonly reloads = new Map<string, number>();
  readonly recomputes = new Map<string, number>();
  readonly swappedOut = new Map<string, number>();
  /** Simulated bytes moved to host and back over the ledger's life. */
  swappedOutBytes = 0;
  reloadedBytes = 0;

  /** `device` null: count bytes only. `elementBytes`: simulated bytes per fp32 element (4/elementBytes ratio). */
  constructor(readonly device: SimDevice | null = null) {}

  /** Observe `rec` (sets its onSave/onFree). */
  attach(rec: SavedActivations): SavedActivations {
    rec.onSave = (r, i) => this.onSave(r, i);
    rec.onFree = (r, i) => this.onFree(r, i);
    return rec;
  }

  /** Simulated bytes of an entry on the device (SavedActivations counts 4 bytes per element). */
  bytesOf(info: SavedInfo): number { return (info.bytes / 4) * (this.device?.elementBytes ?? 4); }

  /** The next free of (rec, name) is a swap-out. */
  expectSwap(rec: SavedActivations, name: string): void { this.pendingSwap.add(key(rec, name)); }
  /** Undo expectDrop (the drop did not happen). */
  forgetDrop(rec: SavedActivations, name: string): void { this.dropped.delete(key(rec, name)); }
  /** The next free of (rec, name) is a recompute drop. */
  expectDrop(rec: SavedActivations, name: string): void { this.dropped.add(key(rec, name)); }

  private onSave(rec: SavedActivations, info: SavedInfo): void {
    const k = key(rec, info.name), b = this.bytesOf(info);
    const h = this.host.get(k);
    if (h !== undefined) { // reload from host
      if (typeof h !== 'number') this.device!.host.release(h);
      this.host.delete(k);
      this.hostBytes -= b;
      this.reloads.set(k, (this.reloads.get(k) ?? 0) + 1);
      this.reloadedBytes += b;
    } else if (this.dropped.has(k)) {
      this.dropped.delete(k);
      this.recomputes.set(k, (this.recomputes.get(k) ?? 0) + 1);
    }
    this.hbm.set(k, this.device ? this.device.hbm.alloc('activations', `${rec.owner}:${info.name}`, b) : b);
    this.residentBytes += b;
    this.peakResidentBytes = Math.max(this.peakResidentBytes, this.residentBytes);
  }

  private onFree(rec: SavedActivations, info: SavedInfo): void {
    const k = key(rec, info.name), b = this.bytesOf(info);
    const a = this.hbm.get(k);
    if (a !== undefined) { // (an entry saved before the ledger was attached is not tracked as resident)
      if (typeof a !== 'number') this.device!.hbm.release(a);
      this.hbm.delete(k);
      this.residentBytes -= b;
    }
    if (this.pendingSwap.delete(k)) {
      this.host.set(k, this.device ? this.device.host.alloc('swapped', `${this.device.name}:${rec.owner}:${info.name}`, b) : b);
      this.hostBytes += b;
      this.peakHostBytes = Math.max(this.peakHostBytes, this.hostBytes);
      this.swappedOut.set(k, (this.swappedOut.get(k) ?? 0) + 1);
      this.swappedOutBytes += b;
    }
  }

  /** Forget a disposed record's swapped entries (a record disposed while on host frees host memory). */
  forget(rec: SavedActivations): void {
    const p = `${rec.owner}\u0000`;
    for (const [k, h] of this.host) if (k.startsWith(p)) {
      if (typeof h !== 'number') { this.device!.host.release(h); this.hostBytes -= h.bytes; } else this.hostBytes -= h;
      this.host.delete(k);
    }
    for (const k of this.dropped) if (k.startsWith(p)) this.dropped.delete(k);
  }

  /** Entries swapped out but never reloaded, and entries reloaded more than once (both should be empty). */
  reloadProblems(): string[] {
    const out: string[] = [];
    for (const [k, n] of this.swappedOut) {
      const r = this.reloads.get(k) ?? 0;
      if (r !== n) out.push(`${k.replace('\u0000', ':')}: swapped out ${n}×, reloaded ${r}×`);
    }
    return out;
  }
}
