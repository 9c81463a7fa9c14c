// Scenario 5, conflicts: every write carries the version of the card as the
// user saw it. Two browsers edit the same card: an edit made offline on a
// card changed meanwhile is refused by the server (`conflict`) when it
// reconnects, rolled back, and the toast shows the server's message; a card
// changed while its edit form is open is refused at once, in the browser.

import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';
import { addCard, card, editCard, status, waitCard, waitConnection, waitConverged, waitOnline, waitSynced } from '../board.mjs';

const s = suite('5-conflict');

s.test('an offline edit of a card changed meanwhile is refused by the server and rolled back', async (tc) => {
  const a = await tc.openBoard(await tc.newContext('A'));
  const contextB = await tc.newContext('B');
  const b = await tc.openBoard(contextB);
  await waitOnline(a);
  await waitOnline(b);
  const key = await addCard(a, 'Choose a venue', 'Ada');
  await waitCard(b, key, { version: 1, pending: false });
  await waitSynced(a);

  // B edits the card offline (from version 1)...
  await tc.goOffline(contextB);
  await waitConnection(b, 'offline');
  await editCard(b, key, { title: 'Choose a venue (B)' });
  await waitCard(b, key, { title: 'Choose a venue (B)', version: 2, pending: true });

  // ...while A edits it online (also from version 1): A's reaches the server first.
  await editCard(a, key, { title: 'Choose a venue (A)', assignee: 'Alan' });
  await waitSynced(a);
  const server = await tc.serverSnapshot();
  assert.deepEqual(server.entries[`card/${key}`].value, { title: 'Choose a venue (A)', assignee: 'Alan', state: 'todo' });
  assert.equal(server.entries[`card/${key}`].version, 2);
  await tc.shot(b, 'B offline with its stale edit pending');

  // B comes back: the server refuses B's op, B rolls it back and shows A's card.
  const rejectedBefore = (await tc.server.metrics()).zestor_ops_rejected_total;
  await tc.goOnline(contextB, [b], waitSynced);
  await waitCard(b, key, { title: 'Choose a venue (A)', assignee: 'Alan', version: 2, pending: false, badge: false });
  assert.equal((await tc.server.metrics()).zestor_ops_rejected_total, rejectedBefore + 1, 'the server refused one op');

  const toast = b.locator('[data-testid="toast"][data-code="conflict"]');
  await toast.waitFor({ state: 'visible' });
  assert.equal(await b.locator('[data-testid="toast"]').count(), 1, 'B: one toast');
  assert.equal(await toast.locator('[data-testid="toast-code"]').textContent(), 'conflict');
  const title = await toast.locator('[data-testid="toast-title"]').textContent();
  assert.match(title, /^Rolled back: “Choose a venue( \((A|B)\))?” — the server refused the change$/);
  const message = await toast.locator('[data-testid="toast-message"]').textContent();
  // The server's own message: what it answers to the same stale write sent over the raw protocol.
  const raw = await tc.rawPush({ kind: 'card', key, value: { title: 'Choose a venue (raw)', state: 'todo' }, if_version: 1 });
  assert.equal(raw.type, 'reject');
  assert.equal(raw.code, 'conflict');
  assert.equal(message, raw.message, "the toast shows the server's message");
  assert.match(message, /version conflict: expected 1, found 2/);
  await tc.shot(b, 'B after the rollback with the conflict toast');

  // Both end with A's edit, as the server has it; nothing pending.
  const after = await waitConverged(tc, [a, b]);
  assert.deepEqual(after.entries[`card/${key}`], server.entries[`card/${key}`], 'the server kept A’s edit');
  assert.equal(await a.locator('[data-testid="toast"]').count(), 0, 'A: no toast');
});

s.test('a card changed while its edit form is open is refused at once, in the browser', async (tc) => {
  const a = await tc.openBoard(await tc.newContext('A'));
  const b = await tc.openBoard(await tc.newContext('B'));
  await waitOnline(a);
  await waitOnline(b);
  const key = await addCard(a, 'Book the flights');
  await waitCard(b, key, { version: 1, pending: false });
  await waitSynced(a);

  // B opens the edit form at version 1; A saves an edit meanwhile.
  await card(b, key).locator('[data-testid="card-edit"]').click();
  const form = card(b, key).locator('[data-testid="card-edit-form"]');
  await form.locator('[data-testid="card-title-input"]').fill('Book the flights and the hotel');
  await editCard(a, key, { title: 'Book the flights (cheap ones)' });
  await waitSynced(a);

  // B's form says the card changed under it.
  const note = form.locator('[data-testid="card-stale-note"]');
  await note.waitFor({ state: 'visible' });
  assert.match(await note.textContent(), /now version 2, you started from 1/);
  await tc.shot(b, 'B editing a card changed elsewhere');
  const metrics = await tc.server.metrics();

  // Saving is refused at once: a conflict toast, the form closes, the card keeps A's edit.
  await form.locator('[data-testid="card-save"]').click();
  const toast = b.locator('[data-testid="toast"][data-code="conflict"]');
  await toast.waitFor({ state: 'visible' });
  assert.equal(await toast.locator('[data-testid="toast-title"]').textContent(), 'Not saved: “Book the flights (cheap ones)” was changed elsewhere first');
  assert.match(await toast.locator('[data-testid="toast-message"]').textContent(), /version conflict: expected 1, found 2/);
  await form.waitFor({ state: 'detached' });
  await waitCard(b, key, { title: 'Book the flights (cheap ones)', version: 2, pending: false });
  assert.equal((await status(b)).pending, 0, 'nothing queued');
  await tc.shot(b, 'B after its stale save was refused');

  const after = await tc.server.metrics();
  assert.equal(after.zestor_ops_rejected_total, metrics.zestor_ops_rejected_total, 'refused in the browser: the server never saw it');
  assert.equal(after.zestor_ops_acked_total, metrics.zestor_ops_acked_total);
  await waitConverged(tc, [a, b]);
});
