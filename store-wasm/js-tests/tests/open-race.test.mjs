// A tab that opens while the leading tab is busy mirroring another
// client's stream of changes misses none of them: it joins the other tabs
// before it reads IndexedDB, so a change the leader persists after the
// read started reaches it as a message, and one persisted before is in
// what it read. Each key is written once, so a missed change would never
// be made good by a later one.
import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';

const s = suite();

const KEYS = 150;
const TABS = 8;

s.test(`${TABS} tabs opened during a stream of remote changes each end with all ${KEYS}`, async (tc) => {
  const writer = await tc.newPage(null, { label: 'writer' });
  await tc.open(writer, { name: 'race-writer', sync: tc.syncOptions() });
  await tc.online(writer);

  const context = await tc.newContext();
  const leader = await tc.newPage(context, { label: 'leader' });
  const sync = tc.syncOptions();
  await tc.open(leader, { name: 'race', sync });
  await tc.online(leader);

  // The stream: one write every few milliseconds, each sent at once.
  await writer.evaluate((keys) => {
    window.writes = (async () => {
      for (let i = 0; i < keys; i++) {
        await window.store.set('task', `k${i}`, { title: `t${i}` });
        await new Promise((resolve) => setTimeout(resolve, 4));
      }
    })();
  }, KEYS);
  // Tabs open one after another while it runs.
  const tabs = [];
  for (let i = 0; i < TABS; i++) {
    const page = await tc.newPage(context, { label: `tab${i}` });
    await tc.open(page, { name: 'race', sync });
    tabs.push(page);
  }
  await writer.evaluate(async () => {
    await window.writes;
    await window.helpers.waitFor(() => window.store.status().pending === 0, 'the writes acknowledged');
  });
  const server = await tc.serverSnapshot();
  const expected = Object.entries(server.entries)
    .map(([id, e]) => [id, e.value.title, e.version])
    .sort();
  assert.equal(expected.length, KEYS, 'the server has every key');
  for (const [i, page] of [leader, ...tabs].entries()) {
    const view = await page.evaluate(async (keys) => {
      const store = window.store;
      await window.helpers
        .waitFor(() => store.list('task').length === keys, 'every key', 10000)
        .catch(() => {});
      return store.list('task').map((e) => [`task/${e.key}`, e.value.title, e.version]);
    }, KEYS);
    assert.deepEqual(view.sort(), expected, `${i === 0 ? 'the leader' : `tab ${i - 1}`} shows every change`);
  }
});
