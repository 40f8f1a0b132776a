import { forEachBackend, tf, assert } from './support/backends.ts';

forEachBackend('smoke', (test, backend) => {
  test('backend is active', () => { assert.is(tf.getBackend(), backend); });
});
