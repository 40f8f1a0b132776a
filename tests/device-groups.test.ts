// Process groups follow Megatron-Core rank order (tp fastest, then cp, dp, pp; experts: etp, ep, edp, pp).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { groupOf, groupsOf, rankCoords, resolveDims } from '../src/device/groups.ts';

const test = suite('process groups');

test('TP2 PP2 DP4 / EP4 on 16 ranks', () => {
  const d = resolveDims(16, { tp: 2, pp: 2, ep: 4 });
  assert.equal([d.dp, d.edp], [4, 2]);
  assert.equal(groupsOf('tp', d).slice(0, 3), [[0, 1], [2, 3], [4, 5]]);
  assert.equal(groupsOf('dp', d).slice(0, 2), [[0, 2, 4, 6], [1, 3, 5, 7]]);
  assert.equal(groupsOf('pp', d).slice(0, 2), [[0, 8], [1, 9]]);
  assert.equal(groupsOf('ep', d).slice(0, 2), [[0, 1, 2, 3], [4, 5, 6, 7]]);
  assert.equal(groupsOf('edp', d).slice(0, 2), [[0, 4], [1, 5]]);
  assert.equal(groupOf('ep', 13, d).ranks, [12, 13, 14, 15]);
  assert.equal(rankCoords(13, d), { tp: 1, cp: 0, dp: 2, pp: 1, etp: 0, ep: 1, edp: 1 });
});

test('expert TP and the TP-extend-EP group', () => {
  const d = resolveDims(16, { tp: 4, pp: 1, ep: 2, etp: 2 });
  assert.equal(groupsOf('etp', d).slice(0, 2), [[0, 1], [2, 3]]);
  assert.equal(groupsOf('ep', d).slice(0, 2), [[0, 2], [1, 3]]);
  assert.equal(groupsOf('etp-ep', d)[0], [0, 1, 2, 3]);
  assert.equal(groupsOf('tp-cp', resolveDims(8, { tp: 2, cp: 2, pp: 1 }))[1], [4, 5, 6, 7]);
});

test('every kind partitions the world', () => {
  const d = resolveDims(48, { tp: 2, cp: 2, pp: 3, ep: 4, etp: 2 });
  for (const k of ['tp', 'cp', 'dp', 'pp', 'dp-cp', 'tp-cp', 'ep', 'etp', 'edp', 'etp-ep', 'world'] as const) {
    const all = groupsOf(k, d).flat().sort((a, b) => a - b);
    assert.equal(all, Array.from({ length: 48 }, (_, i) => i), k);
  }
});

test('bad layouts list every problem', () => {
  assert.throws(() => resolveDims(16, { tp: 3, pp: 2, ep: 5 }), /2 problem\(s\):\n  - world 16 is not divisible by tp·cp·pp = 3·1·2 = 6\n  - world 16 is not divisible by etp·ep·pp = 1·5·2 = 10/);
  assert.throws(() => resolveDims(8, { tp: 0, pp: 1.5 }), /tp: expected an integer >= 1, got 0[\s\S]*pp: expected an integer >= 1, got 1.5/);
  assert.throws(() => resolveDims(8, { tp: 2, pp: 1, dp: 2 }), /tp·cp·dp·pp = 4 != world 8/);
});

test.run();
