// A watch on a synced store sees every change another client made, in the
// server's order, with its type and version, none missing: even when the
// changes arrive together (a client that was offline comes back with a
// queue of writes to a few keys), and in a tab that mirrors the one
// holding the connection.
import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';

const s = suite();

// Writes to a few keys: create, update, delete, re-create.
const WRITES = [
  ['set', 'x', 1],
  ['set', 'x', 2],
  ['set', 'y', 1],
  ['delete', 'y'],
  ['set', 'a', 1],
  ['set', 'x', 3],
  ['delete', 'x'],
  ['set', 'x', 4],
  ['set', 'z', 1],
  ['set', 'z', 2],
  ['set', 'a', 2],
  ['delete', 'a'],
];

/** The events the writes make, as the server orders them: [key, type, value, version]. */
function expectedEvents() {
  const state = new Map();
  const out = [];
  for (const [action, key, n] of WRITES) {
    const old = state.get(key);
    if (action === 'delete') {
      out.push([key, 'delete', JSON.stringify({ n: old.n }), old.version]);
      state.delete(key);
    } else {
      const version = old ? old.version + 1 : 1;
      out.push([key, old ? 'update' : 'create', JSON.stringify({ n }), version]);
      state.set(key, { n, version });
    }
  }
  return out;
}

const watchInPage = () => {
  window.seen = [];
  window.store.watch('note', { replay: true }, (event, error) => {
    window.seen.push(error ? { error: error.code } : event);
  });
};

s.test("a watch sees another client's offline writes one by one, in server order, in both tabs", async (tc) => {
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const proxy = await tc.proxy();
  const writer = await tc.newPage(null, { label: 'writer' });
  await tc.open(writer, { name: 'order-writer', sync: tc.syncOptions({ url: proxy.wsUrl }) });
  await tc.online(writer);
  await writer.evaluate(watchInPage);

  // The watching app: a leading tab and a tab that mirrors it.
  const context = await tc.newContext();
  const leader = await tc.newPage(context, { label: 'leader' });
  const mirror = await tc.newPage(context, { label: 'mirror' });
  await tc.open(leader, { name: 'order-reader', sync: tc.syncOptions() });
  await tc.online(leader);
  await tc.open(mirror, { name: 'order-reader', sync: tc.syncOptions() });
  for (const page of [leader, mirror]) await page.evaluate(watchInPage);

  proxy.cut();
  await writer.evaluate(async (writes) => {
    const store = window.store;
    await window.helpers.waitFor(() => store.status().connection !== 'online', 'the writer to notice the cut');
    for (const [action, key, n] of writes) {
      if (action === 'set') await store.set('note', key, { n });
      else await store.delete('note', key);
    }
  }, WRITES);
  proxy.restore();
  const serverRev = await writer.evaluate(async (count) => {
    const store = window.store;
    await window.helpers.waitFor(
      () => store.status().pending === 0 && store.status().connection === 'online',
      () => `the writer's queue to drain (status ${JSON.stringify(store.status())})`,
    );
    await window.helpers.waitFor(() => window.seen.length >= count, () => `the writer to see its writes (seen ${JSON.stringify(window.seen)})`);
    return store.status().lastSyncedRev;
  }, WRITES.length);

  const expected = expectedEvents();
  for (const [label, page] of [
    ['leader', leader],
    ['mirror', mirror],
  ]) {
    const seen = await page.evaluate(
      async ([rev, count]) => {
        await window.helpers.waitFor(
          () => (window.store.status().lastSyncedRev ?? 0) >= rev && window.seen.length >= count,
          () => `the changes (status ${JSON.stringify(window.store.status())}, seen ${window.seen.length})`,
        );
        await window.helpers.sleep(300); // anything extra would show now
        return window.seen;
      },
      [serverRev, expected.length],
    );
    assert.deepEqual(
      seen.map((e) => [e.key, e.type, JSON.stringify(e.value), e.version]),
      expected,
      `${label}: every change, in order, with its type and version`,
    );
    assert.ok(seen.every((e) => e.kind === 'note' && e.pending === false), `${label}: confirmed changes`);
    const revs = seen.map((e) => e.rev);
    assert.deepEqual(
      revs,
      [...revs].sort((p, q) => p - q),
      `${label}: revisions increase`,
    );
    assert.equal(new Set(revs).size, revs.length, `${label}: one revision per change`);
  }

  // The writer saw its own writes as it made them, and nothing more when
  // the server confirmed them (same values, same versions).
  const own = await writer.evaluate(async () => {
    await window.helpers.sleep(300);
    return window.seen;
  });
  assert.deepEqual(
    own.map((e) => [e.key, e.type, JSON.stringify(e.value), e.version]),
    expected,
    'the writer: its own writes once each',
  );
});
