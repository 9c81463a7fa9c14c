// Scenario 1, live: two browsers (two contexts: two stores, two
// connections) on the board; a card created, edited, moved and deleted in
// one shows in the other as it commits, and the server holds the same.

import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';
import {
  addCard,
  board,
  card,
  deleteCard,
  editCard,
  moveCard,
  status,
  waitCard,
  waitConverged,
  waitGone,
  waitOnline,
  waitSynced,
} from '../board.mjs';

const s = suite('1-live');

s.test('a card created, edited, moved and deleted in one window shows in the other', async (tc) => {
  const a = await tc.openBoard(await tc.newContext('A'));
  const b = await tc.openBoard(await tc.newContext('B'));
  await waitOnline(a);
  await waitOnline(b);
  assert.deepEqual((await board(a)).cards, {}, 'a fresh server: an empty board');

  // Create in A: it shows in A at once, then in B, confirmed everywhere.
  const key = await addCard(a, 'Write the release notes', 'Ada Lovelace');
  const created = { title: 'Write the release notes', assignee: 'Ada Lovelace', state: 'todo', version: 1 };
  await waitCard(b, key, { ...created, column: 'todo', pending: false, badge: false });
  await waitSynced(a);
  await waitCard(a, key, { ...created, pending: false });
  assert.match(await card(b, key).locator('[data-testid="card-meta"]').textContent(), /^v1 · r\d+$/);

  // The other way: a card created in B shows in A.
  const other = await addCard(b, 'Review the pull request');
  await waitCard(a, other, { title: 'Review the pull request', assignee: null, state: 'todo', version: 1, pending: false });

  // Edit title and assignee in A.
  await editCard(a, key, { title: 'Write and publish the release notes', assignee: 'Grace Hopper' });
  const edited = { title: 'Write and publish the release notes', assignee: 'Grace Hopper', state: 'todo', version: 2 };
  await waitCard(b, key, { ...edited, pending: false });
  await tc.shot(b, 'B after the edit in A');

  // Clear the assignee in B: A shows the card unassigned.
  await editCard(b, key, { assignee: '' });
  await waitCard(a, key, { ...edited, assignee: null, version: 3, pending: false });

  // Move in B (To do → Doing), then in A (Doing → Done).
  assert.equal(await moveCard(b, key, 'right'), 'doing');
  await waitCard(a, key, { state: 'doing', column: 'doing', version: 4, pending: false });
  assert.equal(await moveCard(a, key, 'right'), 'done');
  await waitCard(b, key, { state: 'done', column: 'done', version: 5, pending: false });
  // In Done only the left button shows, back to Doing.
  const moves = await card(b, key).locator('[data-testid="card-move"]:visible').evaluateAll((els) => els.map((e) => [e.dataset.dir, e.dataset.to]));
  assert.deepEqual(moves, [['left', 'doing']]);

  let snapshot = await waitConverged(tc, [a, b]);
  assert.deepEqual(snapshot.entries[`card/${key}`].value, { title: 'Write and publish the release notes', state: 'done' });
  const counts = (await board(b)).counts;
  assert.deepEqual(counts, { todo: 1, doing: 0, done: 1 });
  await tc.shot(a, 'A after create edit move');
  await tc.shot(b, 'B after create edit move');

  // Delete in A: gone in B and at the server.
  await deleteCard(a, other);
  await waitGone(b, other);
  snapshot = await waitConverged(tc, [a, b]);
  assert.equal(snapshot.entries[`card/${other}`], undefined);
  assert.deepEqual(Object.keys(snapshot.entries), [`card/${key}`]);
  assert.deepEqual((await board(a)).counts, { todo: 0, doing: 0, done: 1 });

  // Both learned read-write from their acks; nothing went wrong.
  for (const page of [a, b]) {
    const st = await status(page);
    assert.equal(st.mode, 'read_write', `[${page.label}] mode`);
    assert.equal(st.error, null, `[${page.label}] status error`);
    assert.equal(await page.locator('[data-testid="toast"]').count(), 0, `[${page.label}] toasts`);
  }
  await tc.shot(b, 'B after delete');
});
