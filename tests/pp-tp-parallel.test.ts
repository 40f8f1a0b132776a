// Pipeline parallelism combined with TP (vocab-parallel head, sequence-parallel MoE, optional dense
// sequence parallelism), with pp=4 × vpp=2 interleaving, and with the 'global' aux scope: loss and every
// gradient equal to single-device training within 1e-5 relative (see tests/pp-ep-parallel.test.ts).
import { forEachBackend } from './support/backends.ts';
import { ppCfg, runPP } from './support/pp.ts';

forEachBackend('PP × TP (and pp=4 interleaved, global aux) equals single device', (test) => {
  test('pp=2,tp=2,ep=2 1F1B, 4 micro-batches', () => runPP(ppCfg(), { layout: 'pp=2,tp=2,ep=2', schedule: '1f1b' }, 8, 4));
  test('pp=2,tp=2 interleaved vpp=2 with sequence parallelism', () => runPP(ppCfg(), { layout: 'pp=2,tp=2', vpp: 2, schedule: 'interleaved', sequenceParallel: true }, 8, 4));
  test('pp=4,ep=2 interleaved vpp=2, 8 micro-batches (8 layers)', () => runPP(ppCfg('switch', 8), { layout: 'pp=4,ep=2', vpp: 2, schedule: 'interleaved' }, 16, 8));
  test("pp=2,ep=2 interleaved vpp=2, 'global' aux (counts accumulated over micro-batches in forward order)", () => runPP(ppCfg('global'), { layout: 'pp=2,ep=2', vpp: 2, schedule: 'interleaved' }, 8, 4));
}, ['wasm']);   // both backends: tests/pp-ep-parallel.test.ts
