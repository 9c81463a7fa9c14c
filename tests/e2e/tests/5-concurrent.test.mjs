// Scenario 5, concurrent edits: an edit sends only the fields the person
// changed, as a patch the server merges into the card it holds.
// - Two browsers offline, one renames a card and the other reassigns it:
//   back online, both edits are on both screens and on the server.
// - Both rename it offline: the rename the server applies last wins, on
//   both screens.
// - One deletes the card while the other edits it offline: the edit is
//   refused by the server (`key_not_found`), rolled back, and a toast says so.
// - A card changed in another field while its edit form is open: saving
//   keeps both changes.

import assert from 'node:assert/strict';
import { suite } from '../harness.mjs';
import { addCard, card, deleteCard, editCard, waitCard, waitConnection, waitConverged, waitGone, waitOnline, waitSynced } from '../board.mjs';

const s = suite('5-concurrent');

/** Two boards online, each in a context of its own, and a card both show. */
async function twoBoards(tc, title, assignee) {
  const contexts = [await tc.newContext('A'), await tc.newContext('B')];
  const pages = [];
  for (const context of contexts) pages.push(await tc.openBoard(context));
  for (const page of pages) await waitOnline(page);
  const key = await addCard(pages[0], title, assignee);
  await waitCard(pages[1], key, { version: 1, pending: false });
  await waitSynced(pages[0]);
  return { contexts, pages, key };
}

async function offline(tc, contexts, pages) {
  for (const context of contexts) await tc.goOffline(context);
  for (const page of pages) await waitConnection(page, 'offline');
}

s.test('offline, one renames a card and the other reassigns it: both edits survive everywhere', async (tc) => {
  const { contexts, pages, key } = await twoBoards(tc, 'Choose a venue', 'Ada');
  const [a, b] = pages;
  await offline(tc, contexts, pages);
  await editCard(a, key, { title: 'Choose a venue downtown' });
  await editCard(b, key, { assignee: 'Grace' });
  await waitCard(a, key, { title: 'Choose a venue downtown', assignee: 'Ada', pending: true });
  await waitCard(b, key, { title: 'Choose a venue', assignee: 'Grace', pending: true });
  await tc.shot(b, 'B offline with its reassignment pending');

  await tc.goOnline(contexts[0], [a], waitSynced);
  await tc.goOnline(contexts[1], [b], waitSynced);
  const both = { title: 'Choose a venue downtown', assignee: 'Grace', pending: false, version: 3 };
  await waitCard(a, key, both);
  await waitCard(b, key, both);
  const server = await waitConverged(tc, pages);
  assert.deepEqual(server.entries[`card/${key}`].value, { title: 'Choose a venue downtown', assignee: 'Grace', state: 'todo' });
  await tc.shot(a, 'A with both edits');
  for (const page of pages) assert.equal(await page.locator('[data-testid="toast"]').count(), 0, `[${page.label}] no toast`);
});

s.test('offline, both rename the card: the rename the server applies last wins on both screens', async (tc) => {
  const { contexts, pages, key } = await twoBoards(tc, 'Book the flights');
  const [a, b] = pages;
  await offline(tc, contexts, pages);
  await editCard(a, key, { title: 'Book the flights (A)' });
  await editCard(b, key, { title: 'Book the flights (B)' });
  // A reaches the server first, B last.
  await tc.goOnline(contexts[0], [a], waitSynced);
  await tc.goOnline(contexts[1], [b], waitSynced);
  const winner = { title: 'Book the flights (B)', pending: false, version: 3 };
  await waitCard(a, key, winner);
  await waitCard(b, key, winner);
  const server = await waitConverged(tc, pages);
  assert.equal(server.entries[`card/${key}`].value.title, 'Book the flights (B)');
});

s.test('a card deleted while another browser edits it offline: the edit is refused, rolled back and shown', async (tc) => {
  const { contexts, pages, key } = await twoBoards(tc, 'Order the badges');
  const [a, b] = pages;
  await tc.goOffline(contexts[1]);
  await waitConnection(b, 'offline');
  await editCard(b, key, { assignee: 'Linus' });
  await waitCard(b, key, { assignee: 'Linus', pending: true });

  await deleteCard(a, key);
  await waitGone(a, key);
  await waitSynced(a);
  const rejectedBefore = (await tc.server.metrics()).zestor_ops_rejected_total;

  await tc.goOnline(contexts[1], [b], waitSynced);
  await waitGone(b, key);
  assert.equal((await tc.server.metrics()).zestor_ops_rejected_total, rejectedBefore + 1, 'the server refused the edit');
  const toast = b.locator('[data-testid="toast"][data-code="key_not_found"]');
  await toast.waitFor({ state: 'visible' });
  assert.equal(await toast.locator('[data-testid="toast-code"]').textContent(), 'key_not_found');
  assert.equal(
    await toast.locator('[data-testid="toast-title"]').textContent(),
    'Rolled back: “Order the badges” — the server refused the change',
  );
  assert.match(await toast.locator('[data-testid="toast-message"]').textContent(), /key not found/);
  await tc.shot(b, 'B after its edit of a deleted card was rolled back');
  const server = await waitConverged(tc, pages);
  assert.equal(server.entries[`card/${key}`], undefined);
});

s.test('a card changed in another field while its edit form is open: saving keeps both changes', async (tc) => {
  const { pages, key } = await twoBoards(tc, 'Print the programme');
  const [a, b] = pages;
  // B opens the edit form at version 1; A reassigns the card meanwhile.
  await card(b, key).locator('[data-testid="card-edit"]').click();
  const form = card(b, key).locator('[data-testid="card-edit-form"]');
  await form.locator('[data-testid="card-title-input"]').fill('Print the programme (200 copies)');
  await editCard(a, key, { assignee: 'Hedy' });
  await waitSynced(a);

  // B's form says the card changed under it, and what saving does.
  const note = form.locator('[data-testid="card-stale-note"]');
  await note.waitFor({ state: 'visible' });
  assert.match(await note.textContent(), /now version 2, you started from 1\): saving changes only the fields you edited/);
  await tc.shot(b, 'B editing a card changed elsewhere');
  await form.locator('[data-testid="card-save"]').click();
  await form.waitFor({ state: 'detached' });
  const both = { title: 'Print the programme (200 copies)', assignee: 'Hedy', pending: false, version: 3 };
  await waitCard(b, key, both);
  await waitCard(a, key, both);
  await waitConverged(tc, pages);
  for (const page of pages) assert.equal(await page.locator('[data-testid="toast"]').count(), 0, `[${page.label}] no toast`);
});
