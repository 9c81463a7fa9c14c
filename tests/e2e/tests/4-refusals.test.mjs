// Scenario 4, refusals: an invalid edit is refused in the browser with the
// schema's message next to the field, and nothing is queued or sent; a
// write with the read-only token is refused (`forbidden`) and shown.

import assert from 'node:assert/strict';
import { READ_TOKEN, suite } from '../harness.mjs';
import { addCard, board, status, submitEdit, waitCard, waitConverged, waitOnline, waitSynced } from '../board.mjs';

const s = suite('4-refusals');

/** The visible validation errors inside `scope`: `[{ field, code, text }]`. */
async function validationErrors(scope) {
  return scope.locator('[data-testid="validation-error"]:visible').evaluateAll((els) =>
    els.map((el) => ({ field: el.dataset.field, code: el.dataset.code, text: el.textContent })),
  );
}

s.test('an invalid card is refused in the browser, next to its field, and never queued', async (tc) => {
  const a = await tc.openBoard(await tc.newContext('A'));
  await waitOnline(a);
  const key = await addCard(a, 'Fix the login page', 'Ada');
  await waitSynced(a);
  const server = await tc.serverSnapshot();
  const metrics = await tc.server.metrics();
  const rev = (await status(a)).storeRev;

  // An empty title in the edit form: the schema's minLength, under the title field.
  const form = await submitEdit(a, key, { title: '   ' });
  const titleError = form.locator('[data-testid="validation-error"][data-field="title"]');
  await titleError.waitFor({ state: 'visible' });
  assert.deepEqual(await validationErrors(form), [
    { field: 'title', code: 'validation', text: 'validation Title must be at least 1 character long' },
  ]);
  assert.equal(await form.locator('[data-testid="card-title-input"]').getAttribute('aria-invalid'), 'true');
  assert.equal(await form.locator('[data-testid="card-title-input"]').evaluate((el) => el === document.activeElement), true, 'the title field has the focus');
  assert.equal(await form.isVisible(), true, 'the edit form stays open');
  await tc.shot(a, 'empty title refused in the edit form');

  // An assignee over the schema's 40 characters: under the assignee field.
  await form.locator('[data-testid="card-title-input"]').fill('Fix the login page');
  assert.deepEqual(await validationErrors(form), [], 'typing clears the message');
  await form.locator('[data-testid="card-assignee-input"]').fill('A'.repeat(41));
  await form.locator('[data-testid="card-save"]').click();
  await form.locator('[data-testid="validation-error"][data-field="assignee"]').waitFor({ state: 'visible' });
  assert.deepEqual(await validationErrors(form), [
    { field: 'assignee', code: 'validation', text: 'validation Assignee must be at most 40 characters long' },
  ]);
  await form.locator('[data-testid="card-cancel"]').click();
  await form.waitFor({ state: 'detached' });

  // An empty title in the new-card form.
  const newForm = a.locator('[data-testid="new-card-form"]');
  await newForm.locator('[data-testid="new-card-submit"]').click();
  await newForm.locator('[data-testid="validation-error"][data-field="title"]').waitFor({ state: 'visible' });
  assert.deepEqual(await validationErrors(newForm), [
    { field: 'title', code: 'validation', text: 'validation Title must be at least 1 character long' },
  ]);
  await tc.shot(a, 'empty title refused in the new-card form');

  // Nothing was written, queued or sent.
  const st = await status(a);
  assert.equal(st.pending, 0, 'nothing queued');
  assert.equal(st.storeRev, rev, 'the store did not change');
  await waitCard(a, key, { title: 'Fix the login page', assignee: 'Ada', version: 1, pending: false });
  assert.deepEqual(Object.keys((await board(a)).cards), [key]);
  assert.equal(await a.locator('[data-testid="toast"]').count(), 0, 'no toast: the message is next to the field');
  assert.deepEqual(await tc.serverSnapshot(), server, 'the server state is unchanged');
  const after = await tc.server.metrics();
  assert.equal(after.zestor_ops_acked_total, metrics.zestor_ops_acked_total, 'the server acknowledged nothing more');
  assert.equal(after.zestor_ops_rejected_total, metrics.zestor_ops_rejected_total, 'the server refused nothing: it never saw the write');
});

s.test('a write with the read-only token is refused (forbidden) and shown', async (tc) => {
  const a = await tc.openBoard(await tc.newContext('A'));
  await waitOnline(a);
  const key = await addCard(a, 'Only writers may change this', 'Grace');
  await waitSynced(a);

  const reader = await tc.openBoard(await tc.newContext('reader'), { query: `?token=${READ_TOKEN}` });
  await waitOnline(reader);
  assert.equal(await reader.locator('[data-testid="token"]').textContent(), READ_TOKEN);
  // It reads: the board shows the card.
  await waitCard(reader, key, { title: 'Only writers may change this', assignee: 'Grace', version: 1, pending: false });
  const server = await tc.serverSnapshot();
  const metrics = await tc.server.metrics();
  const keys = Object.keys((await board(reader)).cards);
  const rev = (await status(reader)).storeRev;

  // A new card: refused, with a toast saying so.
  await reader.locator('[data-testid="new-card-title"]').fill('A reader tries to write');
  await reader.locator('[data-testid="new-card-submit"]').click();
  const toast = reader.locator('[data-testid="toast"][data-code="forbidden"]');
  await toast.first().waitFor({ state: 'visible' });
  assert.equal(await toast.count(), 1);
  assert.equal(await toast.locator('[data-testid="toast-code"]').textContent(), 'forbidden');
  assert.match(await toast.locator('[data-testid="toast-title"]').textContent(), /^Not added: “A reader tries to write”/);
  const message = await toast.locator('[data-testid="toast-message"]').textContent();
  assert.match(message, /read/i, 'the message says the token may only read');
  // The board learned it is read-only.
  await reader.locator('[data-testid="mode"][data-mode="read"]').waitFor({ state: 'visible' });
  assert.equal(await reader.locator('[data-testid="mode"]').textContent(), 'read-only');
  await tc.shot(reader, 'read-only token refused');

  // An edit of the existing card: refused too.
  await submitEdit(reader, key, { title: 'Changed by a reader' });
  await reader.locator('[data-testid="toast"][data-code="forbidden"]').nth(1).waitFor({ state: 'visible' });
  await waitCard(reader, key, { title: 'Only writers may change this', version: 1, pending: false });

  // Nothing queued, nothing changed anywhere.
  const st = await status(reader);
  assert.equal(st.pending, 0, 'nothing queued');
  assert.equal(st.storeRev, rev, 'the store did not change');
  assert.deepEqual(Object.keys((await board(reader)).cards), keys);
  assert.deepEqual(await tc.serverSnapshot(), server, 'the server state is unchanged');
  const after = await tc.server.metrics();
  assert.equal(after.zestor_ops_acked_total, metrics.zestor_ops_acked_total);
  assert.equal(after.zestor_ops_rejected_total, metrics.zestor_ops_rejected_total, 'refused in the browser: the server never saw it');
  await waitConverged(tc, [a, reader]);
});
