// The task board as the tests drive it: only through the stable hooks of
// web-demo/README.md ("For tests"), as a user would (typing, clicking), and
// read back from the page the user sees.

import assert from 'node:assert/strict';
import { eventually } from './harness.mjs';

export const STATES = ['todo', 'doing', 'done'];

/** The card `key` in `page`. */
export function card(page, key) {
  return page.locator(`[data-testid="card"][data-key="${key}"]`);
}

/** The status bar, as its data attributes say. */
export async function status(page) {
  return page.evaluate(() => {
    const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
    const synced = $('status-last-synced').dataset.rev;
    return {
      connection: $('status-connection').dataset.connection,
      state: $('status-connection').dataset.state,
      pending: Number($('status-pending').dataset.count),
      lastSyncedRev: synced === '' ? null : Number(synced),
      storeRev: Number($('store-rev').dataset.rev),
      error: $('status-error').hidden ? null : { code: $('status-error').dataset.code, text: $('status-error').textContent },
      mode: $('mode').dataset.mode,
    };
  });
}

/**
 * Every card on the board: `{ cards: { key: { title, assignee, state,
 * column, pending, version, badge } }, counts: { state: n } }`, read from
 * the DOM. `assignee` is the accessible text of the assignee (the avatar's
 * initials are aria-hidden), null when unassigned.
 */
export async function board(page) {
  return page.evaluate(() => {
    const cards = {};
    const counts = {};
    for (const column of document.querySelectorAll('[data-testid="column"]')) {
      counts[column.dataset.state] = Number(column.querySelector('[data-testid="column-count"]').textContent);
      for (const li of column.querySelectorAll('[data-testid="card"]')) {
        const who = li.querySelector('[data-testid="card-assignee"]');
        const name = [...who.childNodes]
          .filter((n) => !(n.nodeType === 1 && n.getAttribute('aria-hidden') === 'true'))
          .map((n) => n.textContent)
          .join('')
          .trim();
        cards[li.dataset.key] = {
          title: li.querySelector('[data-testid="card-title"]').textContent,
          assignee: name === 'Unassigned' ? null : name,
          state: li.dataset.state,
          column: column.dataset.state,
          pending: li.dataset.pending === 'true',
          badge: !li.querySelector('[data-testid="card-pending-badge"]').hidden,
          version: Number(li.dataset.version),
        };
      }
    }
    return { cards, counts };
  });
}

/** Waits until `page` is online and has synced with the server at least once. */
export async function waitOnline(page, timeout = 30_000) {
  await eventually(
    async () => {
      const s = await status(page);
      assert.equal(s.connection, 'online', `[${page.label}] connection`);
      assert.notEqual(s.lastSyncedRev, null, `[${page.label}] last synced rev`);
    },
    { timeout, what: `[${page.label}] online` },
  );
}

/** Waits until `page` is online with nothing pending (no op in the queue, no card marked pending). */
export async function waitSynced(page, timeout = 30_000) {
  await eventually(
    async () => {
      const s = await status(page);
      assert.equal(s.connection, 'online', `[${page.label}] connection`);
      assert.equal(s.pending, 0, `[${page.label}] pending ops`);
      const { cards } = await board(page);
      const pending = Object.keys(cards).filter((k) => cards[k].pending || cards[k].badge);
      assert.deepEqual(pending, [], `[${page.label}] cards still pending`);
    },
    { timeout, what: `[${page.label}] online with nothing pending` },
  );
}

/** Waits until `page`'s connection is `connection` (e.g. `offline`). */
export async function waitConnection(page, connection, timeout = 20_000) {
  await eventually(
    async () => assert.equal((await status(page)).connection, connection, `[${page.label}] connection`),
    { timeout, what: `[${page.label}] ${connection}` },
  );
}

/** Waits until the card `key` shows in `page` as `expected` says (a subset of `board()`'s fields). */
export async function waitCard(page, key, expected, timeout = 20_000) {
  return eventually(
    async () => {
      const { cards } = await board(page);
      assert.ok(cards[key], `[${page.label}] card ${key} is not on the board`);
      const got = Object.fromEntries(Object.keys(expected).map((k) => [k, cards[key][k]]));
      assert.deepEqual(got, expected, `[${page.label}] card ${key}`);
      return cards[key];
    },
    { timeout, what: `[${page.label}] card ${key}` },
  );
}

/** Waits until the card `key` is gone from `page`. */
export async function waitGone(page, key, timeout = 20_000) {
  await eventually(
    async () => assert.equal((await board(page)).cards[key], undefined, `[${page.label}] card ${key} still shown`),
    { timeout, what: `[${page.label}] card ${key} gone` },
  );
}

/**
 * Adds a card with the new-card form (typing and clicking); waits until it
 * shows in To do and returns its key.
 */
export async function addCard(page, title, assignee = '') {
  const before = new Set(Object.keys((await board(page)).cards));
  const form = page.locator('[data-testid="new-card-form"]');
  await form.locator('[data-testid="new-card-title"]').fill(title);
  await form.locator('[data-testid="new-card-assignee"]').fill(assignee);
  await form.locator('[data-testid="new-card-submit"]').click();
  return eventually(
    async () => {
      const { cards } = await board(page);
      const added = Object.keys(cards).filter((k) => !before.has(k) && cards[k].title === title.trim());
      assert.equal(added.length, 1, `[${page.label}] one new card titled ${JSON.stringify(title)}`);
      assert.equal(cards[added[0]].state, 'todo');
      // The form is cleared for the next card.
      assert.equal(await form.locator('[data-testid="new-card-title"]').inputValue(), '');
      return added[0];
    },
    { what: `[${page.label}] card ${JSON.stringify(title)} added` },
  );
}

/** Opens the edit form of card `key`, types `title` and/or `assignee`, and clicks Save. Returns the form. */
export async function submitEdit(page, key, { title, assignee }) {
  const li = card(page, key);
  await li.locator('[data-testid="card-edit"]').click();
  const form = li.locator('[data-testid="card-edit-form"]');
  await form.waitFor();
  if (title !== undefined) await form.locator('[data-testid="card-title-input"]').fill(title);
  if (assignee !== undefined) await form.locator('[data-testid="card-assignee-input"]').fill(assignee);
  await form.locator('[data-testid="card-save"]').click();
  return form;
}

/** Edits card `key` and waits until the edit form closed (the store took the write). */
export async function editCard(page, key, changes) {
  const form = await submitEdit(page, key, changes);
  await form.waitFor({ state: 'detached' });
}

/** Clicks the card's move button towards `dir` (`left`/`right`); returns the state it moves to. */
export async function moveCard(page, key, dir) {
  const button = card(page, key).locator(`[data-testid="card-move"][data-dir="${dir}"]`);
  const to = await button.getAttribute('data-to');
  await button.click();
  return to;
}

/** Clicks the card's Delete button. */
export async function deleteCard(page, key) {
  await card(page, key).locator('[data-testid="card-delete"]').click();
}

/** The cards of kind `card` in a server snapshot, shaped as `board()` shows them (confirmed: not pending). */
export function serverCards(snapshot) {
  const out = {};
  for (const e of Object.values(snapshot.entries)) {
    if (e.kind !== 'card') continue;
    out[e.key] = {
      title: e.value.title,
      assignee: e.value.assignee ?? null,
      state: e.value.state,
      column: e.value.state,
      pending: false,
      badge: false,
      version: e.version,
    };
  }
  return out;
}

/**
 * Waits until every page shows exactly the cards the server holds, none
 * pending, each in its column, and the column counts agree; returns the
 * server's snapshot.
 */
export async function waitConverged(tc, pages, timeout = 30_000) {
  return eventually(
    async () => {
      const snapshot = await tc.serverSnapshot();
      const expected = serverCards(snapshot);
      for (const page of pages) {
        const { cards, counts } = await board(page);
        assert.deepEqual(cards, expected, `[${page.label}] the board differs from the server's state`);
        for (const state of STATES) {
          const n = Object.values(expected).filter((c) => c.state === state).length;
          assert.equal(counts[state], n, `[${page.label}] count of column ${state}`);
        }
        assert.equal((await status(page)).pending, 0, `[${page.label}] pending ops`);
      }
      return snapshot;
    },
    { timeout, what: `${pages.map((p) => p.label).join(', ')} converged with the server` },
  );
}
