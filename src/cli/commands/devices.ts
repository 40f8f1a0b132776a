// `ultramoe devices`: list the simulated-device spec catalog, or show one spec (catalog name or JSON
// file) with the source of every number.
import { parse, parseBytes } from '../args.ts';
import { CATALOG, type DeviceSpec } from '../../device/specs.ts';
import { resolveSpec } from '../../device/spec-file.ts';
import { formatBytes } from '../../device/memory.ts';

export const summary = 'list the simulated device specs (Ascend 910B/910C, A100, H100, H800, H200) with sources';

const usage = 'ultramoe devices [--spec NAME|FILE.json] [--device-memory 64MiB] [--host-memory 1GiB] [--json]';

function row(s: DeviceSpec): Record<string, string | number> {
  return {
    name: s.name,
    'bf16 TFLOPS': (s.peakFlops.bf16 ?? 0) / 1e12,
    'fp8 TFLOPS': (s.peakFlops.fp8 ?? 0) / 1e12 || '-',
    HBM: formatBytes(s.hbmBytes),
    'HBM TB/s': s.hbmBandwidth / 1e12,
    'intra GB/s': `${s.intraNode.bandwidth / 1e9} (${s.intraNode.name})`,
    'inter GB/s': `${s.interNode.bandwidth / 1e9} (${s.interNode.name})`,
    'per node': s.devicesPerNode,
  };
}

function table(rows: Record<string, string | number>[]): string {
  const cols = Object.keys(rows[0]);
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => cells.map((x, i) => x.padEnd(w[i])).join('  ');
  return [line(cols), line(w.map((n) => '-'.repeat(n))), ...rows.map((r) => line(cols.map((c) => String(r[c]))))].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    spec: { type: 'string' }, 'device-memory': { type: 'string' }, 'host-memory': { type: 'string' },
    json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
  }, usage);
  if (values.help) { console.log(`usage: ${usage}\n\n${summary}`); return 0; }
  const overrides = {
    hbmBytes: values['device-memory'] ? parseBytes(values['device-memory']) : undefined,
    hostMemoryBytes: values['host-memory'] ? parseBytes(values['host-memory']) : undefined,
  };
  if (values.spec) {
    const s = resolveSpec(values.spec, overrides);
    if (values.json) { console.log(JSON.stringify(s)); return 0; }
    console.log(table([row(s)]));
    console.log(`\n${s.description}\nlinks: intra ${JSON.stringify(s.intraNode)}\n       inter ${JSON.stringify(s.interNode)}\n       host  ${JSON.stringify(s.hostLink)}`);
    console.log(`host memory per node: ${formatBytes(s.hostMemoryBytes)}; launch overhead ${s.efficiency.launchOverhead * 1e6} us`);
    console.log(`GEMM efficiency by GFLOP: ${JSON.stringify(s.efficiency.gemm)}; memory efficiency by MB: ${JSON.stringify(s.efficiency.memory)}`);
    console.log('\nsources:');
    for (const [k, v] of Object.entries(s.sources)) console.log(`  ${k.padEnd(26)} ${v}`);
    return 0;
  }
  const specs = Object.keys(CATALOG).map((n) => resolveSpec(n, overrides));
  if (values.json) { console.log(JSON.stringify({ specs })); return 0; }
  console.log(table(specs.map(row)));
  console.log('\nTags: [P] primary, [H] Huawei other doc, [S] secondary, [D] derived, [U] assumption. `ultramoe devices --spec NAME` shows every source.');
  return 0;
}
