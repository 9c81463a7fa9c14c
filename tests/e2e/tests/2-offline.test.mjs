// Scenario 2, offline: one browser goes offline (`context.setOffline`: the
// package drops its socket on the `offline` event), keeps working, reloads
// (the service worker serves the app, IndexedDB the data), still shows its
// writes as pending, and syncs them when it is back online; both browsers
// and the server end up with the same board.

import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';
import {
  addCard,
  board,
  card,
  editCard,
  status,
  waitCard,
  waitConnection,
  waitConverged,
  waitOnline,
  waitSynced,
} from '../board.mjs';

const s = suite('2-offline');

s.test('a window offline keeps working, reloads, and syncs when it is back', async (tc) => {
  const contextA = await tc.newContext('A');
  const a = await tc.openBoard(contextA);
  const b = await tc.openBoard(await tc.newContext('B'));
  await waitOnline(a);
  await waitOnline(b);
  // The service worker controls A (it precached the app before taking over).
  await a.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20_000 });

  // A card both windows have seen, to edit offline.
  const seen = await addCard(a, 'Order new laptops', 'Linus');
  await waitCard(b, seen, { version: 1, pending: false });
  await waitSynced(a);

  // A goes offline.
  await tc.goOffline(contextA);
  await waitConnection(a, 'offline');
  assert.equal(await a.evaluate(() => navigator.onLine), false);
  assert.equal(await a.locator('[data-testid="status-connection"]').getAttribute('data-state'), 'offline');

  // A creates a card and edits the one it saw: both show at once, pending.
  const made = await addCard(a, 'Written offline', 'Margaret Hamilton');
  await editCard(a, seen, { title: 'Order new laptops (edited offline)' });
  const madeOffline = { title: 'Written offline', assignee: 'Margaret Hamilton', state: 'todo', version: 1, pending: true, badge: true };
  const editedOffline = { title: 'Order new laptops (edited offline)', assignee: 'Linus', state: 'todo', version: 2, pending: true, badge: true };
  await waitCard(a, made, madeOffline);
  await waitCard(a, seen, editedOffline);
  assert.equal((await status(a)).pending, 2, 'A: two ops pending');
  assert.equal(await a.locator('[data-testid="status-hint"]').isVisible(), true, 'A: the offline hint shows');

  // B, online meanwhile, adds a card of its own.
  const fromB = await addCard(b, 'Made while A was away', 'Katherine Johnson');
  await waitSynced(b);

  // Nothing of A's left the browser: neither B nor the server has it, and A has not seen B's card.
  let server = await tc.serverSnapshot();
  assert.equal(server.entries[`card/${made}`], undefined, 'the server has no card written offline');
  assert.equal(server.entries[`card/${seen}`].version, 1, 'the server has the card unedited');
  assert.equal(server.entries[`card/${seen}`].value.title, 'Order new laptops');
  assert.equal((await board(b)).cards[made], undefined, 'B has no card written offline');
  assert.equal((await board(a)).cards[fromB], undefined, 'A (offline) has no card from B');
  await tc.shot(a, 'A offline with two pending writes');

  // Reload A while offline: the document comes from the service worker's
  // cache (its own fetch of it fails), the cards from IndexedDB.
  const failed = [];
  const onFailed = (request) => {
    if (request.serviceWorker() && request.url() === `${tc.server.url}/`) failed.push(request.failure()?.errorText);
  };
  contextA.on('requestfailed', onFailed);
  const navigation = a.waitForEvent('response', (r) => r.request().isNavigationRequest());
  await tc.reload(a);
  const response = await navigation;
  contextA.off('requestfailed', onFailed);
  assert.equal(response.status(), 200);
  assert.equal(response.fromServiceWorker(), true, 'the reloaded page came through the service worker');
  assert.deepEqual(failed, ['net::ERR_INTERNET_DISCONNECTED'], "the service worker's network fetch of the page failed");
  assert.equal(await a.evaluate(() => navigator.onLine), false);

  await waitCard(a, made, madeOffline);
  await waitCard(a, seen, editedOffline);
  const afterReload = await status(a);
  assert.equal(afterReload.connection, 'offline');
  assert.equal(afterReload.pending, 2, 'A: still two ops pending after the reload');
  assert.equal(await card(a, made).locator('[data-testid="card-pending-badge"]').isVisible(), true);
  await tc.shot(a, 'A reloaded offline');

  // Back online: A's writes reach the server once, B's card reaches A.
  await tc.goOnline(contextA, [a], waitSynced);
  await waitCard(a, fromB, { title: 'Made while A was away', pending: false });
  await waitCard(b, made, { ...madeOffline, pending: false, badge: false });
  await waitCard(b, seen, { ...editedOffline, pending: false, badge: false });
  server = await waitConverged(tc, [a, b]);
  assert.deepEqual(server.entries[`card/${made}`].value, { title: 'Written offline', assignee: 'Margaret Hamilton', state: 'todo' });
  assert.equal(server.entries[`card/${made}`].version, 1);
  assert.deepEqual(server.entries[`card/${seen}`].value, { title: 'Order new laptops (edited offline)', assignee: 'Linus', state: 'todo' });
  assert.equal(server.entries[`card/${seen}`].version, 2);
  assert.equal(Object.keys(server.entries).length, 3);
  const metrics = await tc.server.metrics();
  assert.equal(metrics.zestor_ops_rejected_total, 0, 'no op was refused');
  assert.equal(metrics.zestor_ops_acked_total, 4, 'each write reached the server once');
  assert.equal(await a.locator('[data-testid="toast"]').count(), 0, 'A: no toast');
  await tc.shot(a, 'A back online');
  await tc.shot(b, 'B after A came back');
});
