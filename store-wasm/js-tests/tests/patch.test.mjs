// `patch`: a JSON Merge Patch of an existing key. Locally: members merged,
// `null` removes, the merged value validated, a missing key refused. Synced:
// two stores that patch different members of one value while offline both
// keep their edit, on both screens and on the server; when both patch the
// same member the server's order decides; a patch of a key another client
// deleted meanwhile is refused (`key_not_found`) and rolled back, visibly.
import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';

const s = suite();

s.test('a local patch merges, removes with null, validates the result and refuses a missing key', async (tc) => {
  const page = await tc.newPage(null, { label: 'local' });
  await tc.open(page, {
    name: 'patch-local',
    schemas: { card: { type: 'object', required: ['title'], properties: { title: { type: 'string' } } } },
  });
  const out = await page.evaluate(async () => {
    const store = window.store;
    const code = (p) => p.then(() => 'ok', (e) => e.code);
    await store.set('card', 'c', { title: 'draft', owner: 'ana', meta: { tags: ['a'], color: 'red' } });
    const seen = [];
    store.watch('card', {}, (event) => seen.push([event.type, event.version, event.value]));
    const merged = await store.patch('card', 'c', { owner: 'kim', meta: { color: null, size: 2 } });
    const same = await store.patch('card', 'c', { owner: 'kim' });
    const conflict = await code(store.patch('card', 'c', { owner: 'x' }, { ifVersion: 1 }));
    const invalid = await code(store.patch('card', 'c', { title: null }));
    const missing = await code(store.patch('card', 'nope', { title: 't' }));
    return { merged, same, conflict, invalid, missing, entry: store.get('card', 'c'), absent: store.get('card', 'nope'), seen };
  });
  assert.deepEqual([out.merged.result, out.merged.version], ['updated', 2]);
  assert.deepEqual([out.same.result, out.same.version], ['unchanged', 2]);
  assert.deepEqual(out.entry.value, { title: 'draft', owner: 'kim', meta: { tags: ['a'], size: 2 } });
  assert.deepEqual([out.conflict, out.invalid, out.missing], ['conflict', 'validation', 'key_not_found']);
  assert.equal(out.absent, undefined, 'a patch creates nothing');
  assert.deepEqual(out.seen, [['update', 2, out.entry.value]], 'one event, for the change only');
});

s.test('offline patches from two stores: different members both survive, the same member goes to the server order, a patch after a delete is rolled back', async (tc) => {
  tc.allowConsoleErrors(/WebSocket connection to .* failed/);
  const proxies = [await tc.proxy(), await tc.proxy()];
  const pages = [];
  for (const [i, proxy] of proxies.entries()) {
    const page = await tc.newPage(null, { label: `user${i}` });
    await tc.open(page, { name: `patch-${i}`, sync: tc.syncOptions({ url: proxy.wsUrl, backoffMinMs: 20, backoffMaxMs: 100 }) });
    await tc.online(page);
    pages.push(page);
  }
  const [ana, kim] = pages;
  await ana.evaluate(() => window.store.set('card', 'c1', { title: 'draft', owner: 'ana' }));
  await kim.evaluate(() => window.helpers.waitFor(() => window.store.get('card', 'c1')?.pending === false, 'the card at kim'));

  const offline = async (edits) => {
    for (const p of proxies) p.cut();
    for (const page of pages) {
      await page.evaluate(() => window.helpers.waitFor(() => window.store.status().connection !== 'online', 'offline'));
    }
    for (const [page, edit] of edits) await page.evaluate(edit);
    // The second store's edit reaches the server last.
    for (const p of proxies) {
      p.restore();
      const page = pages[proxies.indexOf(p)];
      await page.evaluate(() => window.helpers.waitFor(() => window.store.status().pending === 0, 'synced'));
    }
  };
  const converged = async (want) => {
    const views = [];
    for (const page of pages) {
      views.push(
        await page.evaluate(async (want) => {
          const store = window.store;
          // Object members in any order.
          const canon = (v) =>
            v && typeof v === 'object' && !Array.isArray(v)
              ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]))
              : v;
          const text = (v) => JSON.stringify(canon(v));
          const same = () => text(store.get('card', 'c1')?.value ?? null) === text(want);
          await window.helpers.waitFor(same, () => `the card to be ${JSON.stringify(want)}, not ${JSON.stringify(store.get('card', 'c1'))}`, 10000);
          return store.get('card', 'c1')?.value ?? null;
        }, want),
      );
    }
    const server = await tc.serverSnapshot();
    return { views, server: server.entries['card/c1']?.value ?? null };
  };

  // One renames the card, the other reassigns it.
  await offline([
    [ana, () => window.store.patch('card', 'c1', { title: 'final' })],
    [kim, () => window.store.patch('card', 'c1', { owner: 'kim' })],
  ]);
  const both = { title: 'final', owner: 'kim' };
  assert.deepEqual(await converged(both), { views: [both, both], server: both }, 'both edits survive');

  // Both rename it: the one the server applies last wins, everywhere.
  await offline([
    [ana, () => window.store.patch('card', 'c1', { title: 'by ana' })],
    [kim, () => window.store.patch('card', 'c1', { title: 'by kim' })],
  ]);
  const winner = { title: 'by kim', owner: 'kim' };
  assert.deepEqual(await converged(winner), { views: [winner, winner], server: winner });

  // Ana deletes it while Kim patches it offline: Kim's patch is refused and
  // rolled back, with the reason.
  await kim.evaluate(() => {
    window.rejected = [];
    window.store.on('rejected', (r) => window.rejected.push(r));
  });
  for (const p of proxies) p.cut();
  await kim.evaluate(() => window.helpers.waitFor(() => window.store.status().connection !== 'online', 'offline'));
  const patched = await kim.evaluate(async () => {
    const w = await window.store.patch('card', 'c1', { owner: 'lee' });
    window.answer = window.helpers.settle(window.store.confirmed(w.opId));
    return window.store.get('card', 'c1');
  });
  assert.deepEqual([patched.value.owner, patched.pending], ['lee', true], 'shown at once, pending');
  proxies[0].restore();
  await ana.evaluate(async () => {
    await window.store.delete('card', 'c1');
    await window.helpers.waitFor(() => window.store.status().pending === 0, 'the delete acknowledged');
  });
  proxies[1].restore();
  const after = await kim.evaluate(async () => {
    await window.helpers.waitFor(() => window.rejected.length === 1, 'the patch refused');
    return { answer: await window.answer, rejected: window.rejected, entry: window.store.get('card', 'c1') ?? null };
  });
  assert.equal(after.entry, null, 'rolled back to the deleted card');
  assert.deepEqual([after.rejected[0].code, after.rejected[0].key], ['key_not_found', 'c1']);
  assert.equal(after.answer.error?.code ?? after.answer.code, 'key_not_found', JSON.stringify(after.answer));
  assert.deepEqual(await converged(null), { views: [null, null], server: null });
});
