import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BatchSampler, loadDataset, parseDataSpec } from '../src/train/data.ts';
import { arithProblems, isHeldOut, parseArithSpec, formatProblem } from '../src/train/arith.ts';

test('shipped corpus loads with a 90/10 split', () => {
  const ds = loadDataset('text', 'byte', 1);
  assert.ok(ds.train.length > 1_000_000, `train ${ds.train.length}`);
  const ratio = ds.val.length / (ds.train.length + ds.val.length);
  assert.ok(Math.abs(ratio - 0.1) < 0.01, `val fraction ${ratio}`);
});

test('batches are deterministic from the seed, targets are shifted tokens', () => {
  const ds = loadDataset('text', 'byte', 1);
  const a = new BatchSampler(ds.train, 4, 32, 7), b = new BatchSampler(ds.train, 4, 32, 7), c = new BatchSampler(ds.train, 4, 32, 8);
  const x = a.next(), y = b.next(), z = c.next();
  assert.equal(Array.from(x.tokens), Array.from(y.tokens));
  assert.not.equal(Array.from(x.tokens), Array.from(z.tokens));
  assert.equal(Array.from(x.tokens.subarray(1, 32)), Array.from(x.targets.subarray(0, 31)));
});

test('sampler position saves and restores exactly', () => {
  const ds = loadDataset('text', 'byte', 1);
  const a = new BatchSampler(ds.train, 2, 16, 3);
  a.next(); a.next();
  const saved = JSON.parse(JSON.stringify(a.state()));
  const next3 = [a.next(), a.next(), a.next()].map((b) => Array.from(b.tokens));
  const r = new BatchSampler(ds.train, 2, 16, 3);
  r.restore(saved);
  assert.equal([r.next(), r.next(), r.next()].map((b) => Array.from(b.tokens)), next3);
});

test('arithmetic: format, exact answers, disjoint held-out split', () => {
  assert.equal(formatProblem(12, '+', 34), { prompt: '12+34=', answer: '46\n' });
  assert.equal(formatProblem(12, '*', 34), { prompt: '12*34=', answer: '408\n' });
  const spec = parseArithSpec('arith:add:2');
  if (typeof spec === 'string') throw new Error(spec);
  const tr = arithProblems(spec, 'train', 1), va = arithProblems(spec, 'val', 1);
  assert.is(tr.length + va.length, 90 * 90);
  assert.ok(va.length > 600 && va.length < 1000, `val ${va.length}`);
  const trainSet = new Set(tr.map((p) => p.prompt));
  for (const p of va) assert.not.ok(trainSet.has(p.prompt));
  const [a, b] = va[0].prompt.slice(0, -1).split('+').map(Number);
  assert.ok(isHeldOut(spec, a, '+', b));
  const ds = loadDataset('arith:add:2', 'byte', 1);
  const s = new BatchSampler(ds.train, 2, 18, 1, ds.trainStarts);
  const first = Buffer.from(Int32Array.from(s.next().tokens.subarray(0, 10)) as unknown as number[]).toString();
  assert.match(first, /^\d\d\+\d\d=\d+/);
  assert.is(ds.valProblems!.length, va.length);
});

test('data spec errors are explicit', () => {
  assert.type(parseDataSpec('arith:div'), 'string');
  assert.type(parseDataSpec('/no/such/file.txt'), 'string');
  assert.equal(parseDataSpec('arith:mul:3'), { kind: 'arith', spec: { ops: ['*'], digits: 3, valFraction: 0.1 } });
});

test.run();
