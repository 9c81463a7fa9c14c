// Scenario 3, server crash: sync-server is killed (SIGKILL) mid-session and
// started again on the same SQLite file. Both browsers reconnect and
// converge; every card the server acknowledged before the kill is still
// there; writes made while it was down arrive. A window reloaded while the
// server is down still opens (service worker) with its pending writes.

import assert from 'node:assert/strict';
import { eventually, suite } from '../harness.mjs';
import {
  addCard,
  board,
  editCard,
  moveCard,
  status,
  waitCard,
  waitConverged,
  waitOnline,
  waitSynced,
} from '../board.mjs';

const s = suite('3-restart');

s.test('the server killed and restarted: both windows reconnect, nothing acknowledged is lost', async (tc) => {
  const contextA = await tc.newContext('A');
  const a = await tc.openBoard(contextA);
  const b = await tc.openBoard(await tc.newContext('B'));
  await waitOnline(a);
  await waitOnline(b);
  await a.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20_000 });

  // Cards written from both windows and acknowledged by the server.
  const acked = [];
  acked.push(await addCard(a, 'Set up the staging server', 'Ada'));
  acked.push(await addCard(b, 'Rotate the API keys', 'Barbara Liskov'));
  acked.push(await addCard(a, 'Plan the sprint'));
  await moveCard(b, acked[1], 'right');
  await editCard(a, acked[2], { title: 'Plan the next sprint', assignee: 'Edsger' });
  await waitSynced(a);
  await waitSynced(b);
  const before = await waitConverged(tc, [a, b]);
  assert.equal(Object.keys(before.entries).length, 3);

  // Crash.
  await tc.killServer();
  for (const page of [a, b]) {
    await eventually(async () => assert.notEqual((await status(page)).connection, 'online'), { what: `[${page.label}] lost the server` });
  }

  // Both keep working while the server is down.
  const downA = await addCard(a, 'Written while the server was down', 'Alan Turing');
  await editCard(b, acked[0], { title: 'Set up the staging server (edited while down)' });
  await moveCard(a, acked[2], 'right');
  await waitCard(a, downA, { pending: true, badge: true });
  await waitCard(b, acked[0], { version: 2, pending: true, badge: true });
  // status() counts a write once it is durable locally: the counts may lag
  // the cards on screen by a moment.
  await eventually(async () => assert.equal((await status(a)).pending, 2), { what: '[A] 2 writes pending' });
  await eventually(async () => assert.equal((await status(b)).pending, 1), { what: '[B] 1 write pending' });
  assert.ok(['offline', 'connecting'].includes((await status(a)).connection));
  assert.equal(await a.locator('[data-testid="status-hint"]').isVisible(), true, 'A: the hint says it syncs later');

  // A reloads while the server is down: the service worker serves the app
  // from its cache, IndexedDB the cards and the queue.
  const navigation = a.waitForEvent('response', (r) => r.request().isNavigationRequest());
  await tc.reload(a);
  assert.equal((await navigation).fromServiceWorker(), true);
  await waitCard(a, downA, { title: 'Written while the server was down', assignee: 'Alan Turing', state: 'todo', pending: true, badge: true });
  await waitCard(a, acked[2], { title: 'Plan the next sprint', state: 'doing', version: 3, pending: true });
  await waitCard(a, acked[1], { title: 'Rotate the API keys', state: 'doing', pending: false });
  assert.equal((await status(a)).pending, 2, 'A: both writes still queued after the reload');
  await tc.shot(a, 'A reloaded while the server is down');
  await tc.shot(b, 'B while the server is down');

  // Restart on the same database and port: both reconnect and sync.
  await tc.restartServer([a, b], waitSynced);
  const after = await waitConverged(tc, [a, b]);
  for (const key of acked) assert.ok(after.entries[`card/${key}`], `acknowledged card ${key} survived the crash`);
  assert.deepEqual(after.entries[`card/${acked[1]}`].value, { title: 'Rotate the API keys', assignee: 'Barbara Liskov', state: 'doing' });
  assert.deepEqual(after.entries[`card/${downA}`].value, { title: 'Written while the server was down', assignee: 'Alan Turing', state: 'todo' });
  assert.deepEqual(after.entries[`card/${acked[0]}`].value, { title: 'Set up the staging server (edited while down)', assignee: 'Ada', state: 'todo' });
  assert.equal(after.entries[`card/${acked[0]}`].version, 2);
  assert.deepEqual(after.entries[`card/${acked[2]}`].value, { title: 'Plan the next sprint', assignee: 'Edsger', state: 'doing' });
  assert.equal(after.entries[`card/${acked[2]}`].version, 3);
  assert.equal(Object.keys(after.entries).length, 4);
  assert.ok(after.rev > before.rev);
  for (const page of [a, b]) {
    const st = await status(page);
    assert.equal(st.lastSyncedRev, after.rev, `[${page.label}] caught up with the server`);
    assert.equal(st.error, null);
  }
  assert.equal((await board(b)).cards[downA].title, 'Written while the server was down');
  await tc.shot(a, 'A after the restart');
  await tc.shot(b, 'B after the restart');
});

