// The watch API: callbacks with replay, async iteration ended by an
// AbortSignal, and callbacks that write back into the store.
import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';

const s = suite();

const brief = (e) => [e.kind, e.key, e.type, JSON.stringify(e.value), e.version, e.rev, e.pending];

s.test('watch with a callback: the replay first, then live changes in order, until unsubscribed', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const { waitFor, sleep } = window.helpers;
    const store = await z.open({ name: 'watch-callback' });
    await store.set('note', 'b', { n: 2 });
    await store.set('note', 'a', { n: 1 });
    await store.set('other', 'x', 1);

    const events = [];
    const errors = [];
    const unsubscribe = store.watch('note', { replay: true }, (event, error) => {
      if (error) errors.push({ code: error.code });
      else events.push(event);
    });
    const all = [];
    const unsubscribeAll = store.watch(null, {}, (event) => event && all.push(event));
    const deletes = [];
    store.watch('note', { types: ['delete'] }, (event) => event && deletes.push(event));

    await waitFor(() => events.length >= 2, 'the replay');
    const replay = events.slice();
    await store.set('note', 'a', { n: 10 });
    await store.set('other', 'y', 2);
    await store.set('note', 'a', { n: 10 }); // unchanged: no event
    await store.delete('note', 'b');
    await store.set('note', 'c', { n: 3 });
    await waitFor(() => events.length >= 5, 'the live events');
    unsubscribe();
    unsubscribeAll();
    await store.set('note', 'd', { n: 4 });
    await sleep(100);
    const out = { replay, events, errors, all, deletes };
    await store.close();
    return out;
  });
  const brief2 = (e) => brief(e).slice(0, 5);
  // The replay: the current entries as `create` events, before any live one.
  assert.deepEqual(
    got.replay.map(brief2).sort(),
    [
      ['note', 'a', 'create', '{"n":1}', 1],
      ['note', 'b', 'create', '{"n":2}', 1],
    ],
  );
  assert.deepEqual(got.replay.map((e) => e.rev).sort(), [1, 2]);
  // Live events in commit order; nothing for the unchanged write nor after unsubscribing.
  assert.deepEqual(got.events.slice(2).map(brief), [
    ['note', 'a', 'update', '{"n":10}', 2, 4, false],
    ['note', 'b', 'delete', '{"n":2}', 1, 6, false],
    ['note', 'c', 'create', '{"n":3}', 1, 7, false],
  ]);
  assert.equal(got.events.length, 5);
  assert.deepEqual(got.errors, []);
  // watch(null): every kind, every revision, in order, no replay.
  assert.deepEqual(
    got.all.map((e) => [e.kind, e.key, e.rev]),
    [
      ['note', 'a', 4],
      ['other', 'y', 5],
      ['note', 'b', 6],
      ['note', 'c', 7],
    ],
  );
  // A types filter.
  assert.deepEqual(got.deletes.map(brief2), [['note', 'b', 'delete', '{"n":2}', 1]]);
});

s.test('fromRev resumes a watch exactly after a revision', async (tc) => {
  const page = await tc.newPage();
  const resumed = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const store = await z.open({ name: 'watch-resume' });
    for (let i = 1; i <= 4; i++) await store.set('note', `k${i}`, { i });
    const resumed = [];
    store.watch('note', { fromRev: 2 }, (event) => event && resumed.push([event.key, event.rev]));
    await window.helpers.waitFor(() => resumed.length >= 2, 'the resumed events');
    await store.set('note', 'k5', { i: 5 });
    await window.helpers.waitFor(() => resumed.length >= 3, 'the live event');
    await store.close();
    return resumed;
  });
  assert.deepEqual(resumed, [
    ['k3', 3],
    ['k4', 4],
    ['k5', 5],
  ]);
});

s.test('closing the store ends its watches: the callback once with `closed`, the iterator quietly', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const { sleep } = window.helpers;
    const store = await z.open({ name: 'watch-closed' });
    await store.set('note', 'a', { n: 1 });
    const ends = [];
    store.watch('note', { replay: true }, (event, error) => {
      if (!event) ends.push({ code: error?.code, isError: error instanceof Error });
    });
    const thrown = (async () => {
      try {
        for await (const _ of store.watchIter('note')) {
          // nothing more is written
        }
        return 'ended without an error';
      } catch (e) {
        return { code: e.code, isError: e instanceof Error };
      }
    })();
    await sleep(50);
    await store.close();
    const iterator = await Promise.race([thrown, sleep(5000).then(() => 'still iterating 5 s after close')]);
    await sleep(100);
    return { ends, iterator };
  });
  assert.deepEqual(got.ends, [{ code: 'closed', isError: true }], 'the callback is called once with `closed`');
  assert.equal(got.iterator, 'ended without an error', 'the iterator ends (done) when the store closes');
});

s.test('watchIter: an async iterator that ends when its AbortSignal aborts', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const { waitFor, sleep } = window.helpers;
    const store = await z.open({ name: 'watch-iter' });
    await store.set('note', 'a', { n: 1 });
    const controller = new AbortController();
    const seen = [];
    let ended = false;
    const loop = (async () => {
      for await (const event of store.watchIter('note', { replay: true, signal: controller.signal })) {
        seen.push([event.key, event.type, event.version]);
      }
      ended = true;
    })();
    await waitFor(() => seen.length >= 1, 'the replayed event');
    await store.set('note', 'b', { n: 2 });
    await store.set('note', 'a', { n: 3 });
    await waitFor(() => seen.length >= 3, 'the live events');
    const endedBeforeAbort = ended;
    controller.abort();
    await Promise.race([loop, sleep(5000).then(() => { throw new Error('the iteration did not end within 5 s of the abort'); })]);
    await store.set('note', 'c', { n: 4 });
    await sleep(100);
    await store.close();
    return { seen, endedBeforeAbort, ended };
  });
  assert.deepEqual(got.seen, [
    ['a', 'create', 1],
    ['b', 'create', 1],
    ['a', 'update', 2],
  ]);
  assert.equal(got.endedBeforeAbort, false);
  assert.equal(got.ended, true);
});

s.test('a watch callback can read and write the store', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const { waitFor } = window.helpers;
    const store = await z.open({ name: 'watch-writes' });
    const writes = [];
    const reads = [];
    // Mirror every note into `copy`, and count a chain of updates up to 3.
    store.watch('note', {}, (event) => {
      if (!event || event.type === 'delete') return;
      reads.push(store.get('note', event.key)?.version ?? null);
      writes.push(store.set('copy', event.key, event.value));
      if (event.key === 'counter' && event.value.n < 3) {
        writes.push(store.set('note', 'counter', { n: event.value.n + 1 }));
      }
    });
    await store.set('note', 'x', { n: 100 });
    await store.set('note', 'counter', { n: 0 });
    await waitFor(() => store.get('note', 'counter')?.value.n === 3, 'the counter to reach 3');
    await waitFor(() => store.get('copy', 'counter')?.value.n === 3, 'the copy of the counter');
    const results = await Promise.all(writes);
    const out = {
      counter: store.get('note', 'counter'),
      copies: store.getAll('copy'),
      reads,
      results: results.map((r) => r.result),
    };
    await store.close();
    return out;
  });
  assert.deepEqual(got.counter.value, { n: 3 });
  assert.equal(got.counter.version, 4);
  assert.deepEqual(got.copies.x.value, { n: 100 });
  assert.deepEqual(got.copies.counter.value, { n: 3 });
  assert.equal(got.copies.counter.version, 4);
  // Each callback saw the store at least at the event's version.
  assert.ok(got.reads.every((v) => v >= 1), JSON.stringify(got.reads));
  assert.ok(got.results.every((r) => r === 'created' || r === 'updated'), JSON.stringify(got.results));
});

s.test('a watch whose unsubscribe function the app dropped keeps delivering after garbage collection', async (tc) => {
  const page = await tc.newPage();
  const got = await page.evaluate(async () => {
    const z = await window.zestorReady;
    const { waitFor, sleep } = window.helpers;
    const store = await z.open({ name: 'watch-dropped' });
    window.seen = [];
    // The unsubscribe function is not kept.
    store.watch('note', {}, (event) => event && window.seen.push(event.key));
    for (let i = 0; i < 5; i++) {
      window.gc();
      await sleep(20);
    }
    await store.set('note', 'after-gc', { n: 1 });
    await waitFor(() => window.seen.length === 1, () => `the event (seen ${JSON.stringify(window.seen)})`, 3000);
    await store.close();
    return window.seen;
  });
  assert.deepEqual(got, ['after-gc']);
});
