// Byte ledgers for simulated memories (device HBM, node host DRAM): allocate and free by category,
// peak tracking overall and per category, and an out-of-memory error that says who holds the memory.
// Pure bookkeeping: no tensors here (SimDevice ties tensors to allocations).

export const MEMORY_CATEGORIES = ['weights', 'gradients', 'optimizer', 'activations', 'comm', 'swapped', 'other'] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number];

export interface Allocation {
  readonly id: number;
  readonly category: MemoryCategory;
  readonly label: string;
  readonly bytes: number;
}

export function formatBytes(b: number): string {
  const a = Math.abs(b);
  if (a >= 2 ** 30) return `${(b / 2 ** 30).toFixed(2)} GiB`;
  if (a >= 2 ** 20) return `${(b / 2 ** 20).toFixed(2)} MiB`;
  if (a >= 2 ** 10) return `${(b / 2 ** 10).toFixed(2)} KiB`;
  return `${b} B`;
}

export class OutOfMemoryError extends Error {
  constructor(
    readonly ledger: string,
    readonly request: { category: MemoryCategory; label: string; bytes: number },
    readonly freeBytes: number,
    readonly capacity: number,
    readonly largest: Allocation[],
  ) {
    const holders = largest.map((a) => `${a.category} '${a.label}' ${formatBytes(a.bytes)}`).join(', ') || 'none';
    super(`out of memory on ${ledger}: cannot allocate ${formatBytes(request.bytes)} for ${request.category} '${request.label}'; ` +
      `${formatBytes(freeBytes)} free of ${formatBytes(capacity)}; largest holders: ${holders}`);
    this.name = 'OutOfMemoryError';
  }
}

/** A capacity-limited memory with named allocations. */
export class MemoryLedger {
  private live = new Map<number, Allocation>();
  private nextId = 1;
  private usedBytes = 0;
  private peakBytes = 0;
  private byCat = new Map<MemoryCategory, number>();
  private peakByCat = new Map<MemoryCategory, number>();

  /** `name` appears in errors, e.g. 'npu3 HBM (node 0)'. */
  constructor(readonly name: string, readonly capacity: number) {
    if (!(capacity > 0)) throw new Error(`ledger '${name}': capacity must be > 0 bytes, got ${capacity}`);
  }

  get used(): number { return this.usedBytes; }
  get free(): number { return this.capacity - this.usedBytes; }
  get peak(): number { return this.peakBytes; }
  get count(): number { return this.live.size; }

  /** Reserve `bytes`; throws OutOfMemoryError (with the largest holders) if they do not fit. */
  alloc(category: MemoryCategory, label: string, bytes: number): Allocation {
    if (!(Number.isFinite(bytes) && bytes >= 0)) throw new Error(`ledger '${this.name}': bad allocation size ${bytes} for ${category} '${label}'`);
    if (!MEMORY_CATEGORIES.includes(category)) throw new Error(`ledger '${this.name}': unknown category '${category}' (known: ${MEMORY_CATEGORIES.join(', ')})`);
    if (this.usedBytes + bytes > this.capacity) throw new OutOfMemoryError(this.name, { category, label, bytes }, this.free, this.capacity, this.largest(3));
    const a: Allocation = { id: this.nextId++, category, label, bytes };
    this.live.set(a.id, a);
    this.usedBytes += bytes;
    this.peakBytes = Math.max(this.peakBytes, this.usedBytes);
    const c = (this.byCat.get(category) ?? 0) + bytes;
    this.byCat.set(category, c);
    this.peakByCat.set(category, Math.max(this.peakByCat.get(category) ?? 0, c));
    return a;
  }

  /** Release an allocation; freeing twice or a foreign allocation is an error. */
  release(a: Allocation): void {
    if (this.live.get(a.id) !== a) throw new Error(`ledger '${this.name}': ${a.category} '${a.label}' (#${a.id}) is not live here (double free?)`);
    this.live.delete(a.id);
    this.usedBytes -= a.bytes;
    this.byCat.set(a.category, (this.byCat.get(a.category) ?? 0) - a.bytes);
  }

  usedBy(category: MemoryCategory): number { return this.byCat.get(category) ?? 0; }
  peakBy(category: MemoryCategory): number { return this.peakByCat.get(category) ?? 0; }

  /** The `n` largest live allocations. */
  largest(n = 3): Allocation[] {
    return [...this.live.values()].sort((a, b) => b.bytes - a.bytes || a.id - b.id).slice(0, n);
  }

  /** Live allocations (oldest first). */
  allocations(): Allocation[] { return [...this.live.values()]; }

  /** Forget peaks (e.g. between training steps); current usage stays. */
  resetPeak(): void {
    this.peakBytes = this.usedBytes;
    for (const c of MEMORY_CATEGORIES) this.peakByCat.set(c, this.byCat.get(c) ?? 0);
  }

  /** Plain-data snapshot: used, peak and per-category used/peak. */
  snapshot(): { name: string; capacity: number; used: number; peak: number; byCategory: Record<string, { used: number; peak: number }> } {
    const byCategory: Record<string, { used: number; peak: number }> = {};
    for (const c of MEMORY_CATEGORIES) if (this.peakBy(c) > 0 || this.usedBy(c) > 0) byCategory[c] = { used: this.usedBy(c), peak: this.peakBy(c) };
    return { name: this.name, capacity: this.capacity, used: this.usedBytes, peak: this.peakBytes, byCategory };
  }
}
