// zestor/react in a real React app (apps/react, React 19 in StrictMode,
// bundled by esbuild) in headless Chromium against a real sync-server:
// the hooks show the server's changes and the app's own writes, and a
// change re-renders only the components that show it. React's own checks
// (a getSnapshot that is not cached, for one) print console errors, which
// fail the test.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { APPS, BIN, eventually, run, suite } from '../harness.mjs';

const s = suite();

async function openApp(tc) {
  const dir = path.join(s.server.static, 'react');
  fs.rmSync(dir, { recursive: true, force: true });
  run(path.join(BIN, 'esbuild'), [path.join(APPS, 'react/main.jsx'), '--bundle', '--format=esm', '--jsx=automatic', `--outdir=${dir}`]);
  fs.copyFileSync(path.join(APPS, 'react/index.html'), path.join(dir, 'index.html'));
  const page = await tc.open(`${s.server.url}/react/index.html?${s.query()}`, 'react');
  const text = (testId) => page.getByTestId(testId).textContent();
  const renders = () => page.evaluate(() => ({ ...window.renders }));
  return { page, text, renders };
}

s.test('useList, useEntry and useSyncStatus follow the server and re-render only what changed', async (tc) => {
  await s.server.api('PUT', 'task/a', { title: 'a1' });
  await s.server.api('PUT', 'task/b', { title: 'b1' });
  await s.server.api('PUT', 'task/c', { title: 'c1', done: true });
  const { page, text, renders } = await openApp(tc);

  await eventually(async () => assert.equal(await text('status'), 'online, 0 pending'), { what: 'online' });
  await eventually(async () => assert.equal(await text('list'), 'a1b1c1'), { what: 'the list' });
  assert.equal(await text('detail-a'), 'a1');

  // A change from the server: its row and the list re-render, no other row, not the detail of another key.
  let before = await renders();
  await s.server.api('PATCH', 'task/b', { title: 'b2' });
  await eventually(async () => assert.equal(await text('list'), 'a1b2c1'), { what: 'b2 in the list' });
  let after = await renders();
  assert.ok(after['item:b'] > before['item:b'], 'the changed row re-rendered');
  assert.ok(after.list > before.list, 'the list re-rendered');
  // (The status line shows lastSyncedRev, which moved: it may re-render.)
  for (const name of ['item:a', 'item:c', 'detail:a']) assert.equal(after[name], before[name], `${name} re-rendered`);

  // The entry hook follows its key.
  before = after;
  await s.server.api('PATCH', 'task/a', { title: 'a2' });
  await eventually(async () => assert.equal(await text('detail-a'), 'a2'), { what: 'a2 in the detail' });
  after = await renders();
  assert.ok(after['detail:a'] > before['detail:a']);
  assert.equal(after['item:b'], before['item:b']);

  // A new filter: rows that stay keep their identity (no re-render).
  before = after;
  await page.evaluate(() => window.setShowDone(false));
  await eventually(async () => assert.equal(await text('list'), 'a2b2'), { what: 'the done task filtered out' });
  after = await renders();
  assert.equal(after['item:a'], before['item:a']);
  assert.equal(after['item:b'], before['item:b']);

  // A local write shows at once as pending, then the server's ack clears it
  // (an ack is not a watch event: the hooks follow acks too).
  const shownBefore = await page.evaluate(() => window.shown.length);
  await page.evaluate(() => window.store.patch('task', 'a', { title: 'a3' }));
  await eventually(async () => assert.equal(await page.getByTestId('detail-a').getAttribute('data-pending'), 'false'), {
    what: 'the ack of a3',
  });
  const shown = (await page.evaluate(() => window.shown)).slice(shownBefore);
  assert.deepEqual(shown.at(-1), { title: 'a3', version: 3, pending: false });
  assert.ok(
    shown.some((e) => e.title === 'a3' && e.pending),
    `the detail showed a3 pending first: ${JSON.stringify(shown)}`,
  );
  assert.equal(await page.getByTestId('item-a').getAttribute('data-pending'), 'false');
  assert.equal(await text('list'), 'a3b2');

  // The status hook follows the connection.
  tc.allowConsoleErrors(/WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/sync' failed/);
  await s.server.stop();
  await eventually(async () => assert.notEqual(await page.getByTestId('status').getAttribute('data-connection'), 'online'), {
    what: 'offline',
  });
  await s.server.start();
  await eventually(async () => assert.equal(await text('status'), 'online, 0 pending'), { what: 'online again', timeout: 40_000 });

  // A burst of 200 changes of the kind: the list hook is told once per
  // microtask, not once per change, so it reads the list a few times, not 200.
  const listReads = await page.evaluate(() => window.reads.list);
  const items = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`z${String(i).padStart(3, '0')}`, { title: 'z' }]));
  await page.evaluate((items) => window.store.setMany('task', items), items);
  await eventually(async () => assert.equal((await page.getByTestId('list').locator('li').count()), 202), { what: 'the burst listed' });
  const burstReads = (await page.evaluate(() => window.reads.list)) - listReads;
  assert.ok(burstReads < 20, `the list was read ${burstReads} times for one setMany of 200`);

  // The store closes under the mounted hooks: they keep showing what they last read.
  await page.evaluate(() => window.store.close());
  await page.evaluate(() => window.setShowDone(true));
  assert.equal(await text('detail-a'), 'a3');
  assert.equal(await page.getByTestId('list').locator('li').count(), 202);

  // Unmounted, the hooks let go of every watch and listener.
  assert.ok((await page.evaluate(() => window.subscriptions)) > 0);
  await page.evaluate(() => window.root.unmount());
  assert.equal(await page.evaluate(() => window.subscriptions), 0);
});
