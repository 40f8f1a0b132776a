import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { ByteTokenizer, trainBpe, tokenizerFromJSON, parseTokenizerSpec } from '../src/train/tokenizer.ts';
import { CORPUS_PATH } from '../src/train/data.ts';

const sample = readFileSync(CORPUS_PATH, 'utf8').slice(0, 60000);

test('byte tokenizer round-trips UTF-8 (em dash is 3 bytes)', () => {
  const t = new ByteTokenizer();
  const ids = t.encode('ago—never');
  assert.is(ids.length, 11);
  assert.is(t.decode(ids), 'ago—never');
});

test('BPE learns the requested vocabulary, compresses, round-trips and serialises', () => {
  const t = trainBpe(sample, 400);
  assert.is(t.vocabSize, 400);
  const text = sample.slice(50000, 52000);
  const ids = t.encode(text);
  assert.is(t.decode(ids), text);
  // 144 merges on English text: at least 1.5 bytes per token.
  assert.ok(Buffer.byteLength(text) / ids.length > 1.5, `compression ${Buffer.byteLength(text) / ids.length}`);
  const back = tokenizerFromJSON(JSON.parse(JSON.stringify(t.toJSON())));
  assert.equal(Array.from(back.encode(text)), Array.from(ids));
  for (const id of ids) assert.ok(id >= 0 && id < 400);
});

test('BPE keeps digits as single tokens (arithmetic stays learnable)', () => {
  const t = trainBpe('12+34=46\n'.repeat(200) + sample.slice(0, 5000), 300);
  assert.equal(Array.from(t.encode('12+34=46\n')).length >= 6, true);
  assert.is(t.decode(t.encode('987*65=64155\n')), '987*65=64155\n');
});

test('BPE on text with too few pairs keeps the requested vocabulary size', () => {
  const t = trainBpe('1+2=3\n', 300);
  assert.is(t.vocabSize, 300);
  assert.is(tokenizerFromJSON(t.toJSON()).vocabSize, 300);
});

test('tokenizer spec parsing', () => {
  assert.equal(parseTokenizerSpec('byte'), { kind: 'byte' });
  assert.equal(parseTokenizerSpec('bpe'), { kind: 'bpe', vocabSize: 512 });
  assert.equal(parseTokenizerSpec('bpe:1024'), { kind: 'bpe', vocabSize: 1024 });
  assert.type(parseTokenizerSpec('bpe:12'), 'string');
  assert.type(parseTokenizerSpec('wordpiece'), 'string');
});

test.run();
