// The communication ledger: bytes moved per collective, process group and link type. Every byte
// that leaves a device is recorded once, on the link it crosses (self copies are not recorded).
import * as aq from 'arquero';

export type LinkKind = 'intra' | 'inter' | 'host';

export interface CommRecord {
  /** collective name, e.g. 'allReduce', 'allToAllV', 'hierarchicalAllToAll.phase1' */
  op: string;
  /** process-group kind, e.g. 'ep' */
  group: string;
  link: LinkKind;
  src: number;
  dst: number;
  bytes: number;
  /** caller's label (e.g. 'layer3.dispatch') */
  label: string;
}

export class CommLedger {
  readonly records: CommRecord[] = [];

  add(r: CommRecord): void { if (r.bytes > 0) this.records.push(r); }

  /** Total bytes matching every given field. */
  total(filter: Partial<Pick<CommRecord, 'op' | 'group' | 'link' | 'label' | 'src' | 'dst'>> = {}): number {
    let s = 0;
    for (const r of this.records) {
      let ok = true;
      for (const [k, v] of Object.entries(filter)) if (v !== undefined && (r as unknown as Record<string, unknown>)[k] !== v) { ok = false; break; }
      if (ok) s += r.bytes;
    }
    return s;
  }

  /** Bytes and message counts per (op, group, link). */
  summary(): Array<{ op: string; group: string; link: LinkKind; bytes: number; messages: number }> {
    const m = new Map<string, { op: string; group: string; link: LinkKind; bytes: number; messages: number }>();
    for (const r of this.records) {
      const k = `${r.op}|${r.group}|${r.link}`;
      const e = m.get(k) ?? { op: r.op, group: r.group, link: r.link, bytes: 0, messages: 0 };
      e.bytes += r.bytes; e.messages += 1;
      m.set(k, e);
    }
    return [...m.values()].sort((a, b) => a.op.localeCompare(b.op) || a.group.localeCompare(b.group) || a.link.localeCompare(b.link));
  }

  summaryTable(): aq.ColumnTable { return aq.from(this.summary()); }

  clear(): void { this.records.length = 0; }
}
