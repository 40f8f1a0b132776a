// ASCII Gantt chart of a simulated schedule, one character per `unit` of time, one row per rank:
// forward of micro-batch m = lowercase letter ('a' = 0), its backward = uppercase ('A'),
// weight-grad W = '*', idle = '.'. With v > 1 a second row per rank gives the virtual chunk of
// each busy cell.
import type { Schedule } from './schedule.ts';
import type { SimResult } from './simulate.ts';

export interface GanttOptions {
  /** Time per character (default: the smallest compute duration). */
  unit?: number;
  /** Max characters per row. */
  width?: number;
}

export function renderGantt(s: Schedule, sim: SimResult, opts: GanttOptions = {}): string {
  const durations = sim.timeline.flat()
    .filter((t) => t.end > t.start && (t.action.kind === 'F' || t.action.kind === 'B' || t.action.kind === 'W'))
    .map((t) => t.end - t.start);
  const unit = opts.unit ?? Math.min(...durations);
  const cols = Math.min(Math.ceil(sim.stepTime / unit - 1e-9), opts.width ?? 400);
  const lines: string[] = [];
  for (let r = 0; r < s.pp; r++) {
    const row = new Array<string>(cols).fill('.');
    const chunkRow = new Array<string>(cols).fill(' ');
    for (const t of sim.timeline[r]) {
      const a = t.action;
      if (a.kind !== 'F' && a.kind !== 'B' && a.kind !== 'W') continue;
      const letter = String.fromCharCode(97 + (a.microBatch % 26));
      const ch = a.kind === 'W' ? '*' : a.kind === 'F' ? letter : letter.toUpperCase();
      const c0 = Math.round(t.start / unit), c1 = Math.round(t.end / unit);
      for (let c = c0; c < c1 && c < cols; c++) { row[c] = ch; chunkRow[c] = String(a.chunk); }
    }
    lines.push(`r${r} |${row.join('')}|`);
    if (s.vpp > 1) lines.push(`   |${chunkRow.join('')}|`);
  }
  return lines.join('\n');
}

/** One line per rank listing its actions compactly, e.g. "F0 F1 B0 ..." (p2p omitted unless asked). */
export function renderActions(s: Schedule, withP2P = false): string {
  return s.ranks.map((list, r) => `r${r}: ` + list
    .filter((a) => withP2P || (a.kind !== 'send' && a.kind !== 'recv'))
    .map((a) => (a.kind === 'send' || a.kind === 'recv')
      ? `${a.kind === 'send' ? '>' : '<'}${a.dir === 'fwd' ? 'f' : 'b'}${a.microBatch}`
      : `${a.kind}${a.microBatch}${s.vpp > 1 ? '.' + a.chunk : ''}`)
    .join(' ')).join('\n');
}
