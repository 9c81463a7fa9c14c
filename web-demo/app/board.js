// The board: the cards of kind `card`, kept current by one watch with
// replay, drawn into three columns, and the writes the buttons and forms
// make. An edit or a move sends only the fields the person changed, as a
// patch the server merges into the card it holds: two people who change
// different fields of one card (offline too) both keep their change, and
// when both change the same field the one the server applies last wins. A
// patch of a card someone deleted meanwhile is refused (`key_not_found`)
// and rolled back. A delete carries `ifVersion`, the version the person saw,
// so a card changed elsewhere since is not deleted unseen (`conflict`).

import { KIND } from './config.js';

export const STATES = ['todo', 'doing', 'done'];
export const STATE_LABELS = { todo: 'To do', doing: 'Doing', done: 'Done' };
const FIELD_LABELS = { title: 'Title', assignee: 'Assignee', state: 'State' };
const DRAG_TYPE = 'application/x-zestor-card';

/** A new card key: the creation time first, so keys sort in creation order. */
export function newKey() {
  const time = Date.now().toString(36).padStart(9, '0');
  const random = crypto.getRandomValues(new Uint32Array(1))[0].toString(36).padStart(7, '0');
  return `${time}-${random}`;
}

/**
 * The patch that turns card value `from` into `to`: the fields that differ,
 * a removed field as `null`; `null` when nothing differs.
 */
export function changedFields(from, to) {
  const before = from ?? {};
  const patch = {};
  for (const field of new Set([...Object.keys(before), ...Object.keys(to)])) {
    const value = field in to ? to[field] : null;
    const old = field in before ? before[field] : null;
    if (value !== old) patch[field] = value;
  }
  return Object.keys(patch).length ? patch : null;
}

/** The card value as typed: trimmed; an empty assignee is left out. */
export function cardValue(title, assignee, state) {
  const value = { title: title.trim(), state };
  const who = assignee.trim();
  if (who) value.assignee = who;
  return value;
}

/**
 * The field and the reason of a `validation` error, from its message
 * ("invalid value for card/KEY: /title: must be at least 1 character long").
 * `field` is empty when the failure is not about one property.
 */
export function validationDetail(message) {
  const m = /:\s*(\/[^:\s]*|\(root\)):\s*(.+)$/s.exec(message);
  if (!m) return { field: '', reason: message };
  const field = m[1] === '(root)' ? '' : m[1].slice(1).split('/')[0].replaceAll('~1', '/').replaceAll('~0', '~');
  return { field, reason: m[2] };
}

function stateOf(entry) {
  return STATES.includes(entry.value?.state) ? entry.value.state : 'todo';
}

function titleText(value) {
  return typeof value?.title === 'string' && value.title !== '' ? value.title : '(untitled)';
}

/** Initials for an assignee's avatar. */
function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? words[0][0] + words[words.length - 1][0] : name.trim().slice(0, 2);
  return letters.toUpperCase();
}

/** A hue per name, so each assignee keeps a colour. */
function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

let ids = 0;

export class Board {
  /**
   * `root` holds the columns; `store` is the open ZestorStore; `on.error`
   * gets the writes the store refused (other than validation errors shown
   * in a form), `on.watchEnded` a watch that ended, `on.render` each redraw.
   */
  constructor(root, store, on) {
    this.root = root;
    this.store = store;
    this.on = on;
    /** key → { key, value, version, rev, pending }, as last drawn. */
    this.cards = new Map();
    /** key → <li>. */
    this.elements = new Map();
    /** key → { version, value, form }: cards being edited, at the version the edit started from. */
    this.editing = new Map();
    /** key → last known title, to name a card after it is gone. */
    this.titles = new Map();
    this.dirty = new Set();
    this.scheduled = false;
    this.lists = {};
    this.columns = {};
    for (const column of root.querySelectorAll('[data-testid="column"]')) {
      this.columns[column.dataset.state] = column;
      this.lists[column.dataset.state] = column.querySelector('.cards');
    }
    this.cardTemplate = document.getElementById('card-template');
    this.editTemplate = document.getElementById('edit-template');
    root.addEventListener('click', (e) => this.#click(e));
    this.#dragAndDrop();
    this.#counts();
  }

  /** Starts the watch: the current cards first (replay), then every change as it commits. */
  start() {
    this.unwatch = this.store.watch(KIND, { replay: true }, (event, error) => this.#event(event, error));
  }

  #event(event, error) {
    if (error) {
      this.#watchEnded(error);
      return;
    }
    // The event says which card changed; the card is drawn from `get`, the
    // latest entry, when the batch is drawn (see #flush).
    if (event.value !== undefined) this.titles.set(event.key, titleText(event.value));
    this.#touch(event.key);
  }

  #watchEnded(error) {
    if (error.code === 'overflow') {
      // Fell behind (not expected from a callback watch, but the contract
      // allows it): redraw every card and watch on from here.
      for (const key of [...this.cards.keys(), ...this.store.keys(KIND)]) this.#touch(key);
      this.unwatch = this.store.watch(KIND, {}, (event, err) => this.#event(event, err));
      return;
    }
    this.on.watchEnded?.(error);
  }

  /**
   * A key stops being pending without a watch event when the server
   * confirms an op without changing the value, so on every ack and status
   * change the pending cards are drawn again.
   */
  refreshPending() {
    for (const entry of this.cards.values()) {
      if (entry.pending) this.#touch(entry.key);
    }
  }

  /** The card's title as last seen (also once it is deleted or rolled back away). */
  titleOf(key) {
    const entry = this.cards.get(key);
    return entry ? titleText(entry.value) : this.titles.get(key) ?? key;
  }

  /** Briefly highlights a card (after a rollback). */
  flash(key) {
    const li = this.elements.get(key);
    if (!li) return;
    li.classList.remove('flash');
    void li.offsetWidth; // restart the animation
    li.classList.add('flash');
    setTimeout(() => li.classList.remove('flash'), 2000);
  }

  #touch(key) {
    this.dirty.add(key);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush() {
    this.scheduled = false;
    const active = document.activeElement;
    const activeCard = active?.closest?.('[data-testid="card"]');
    const states = new Set();
    for (const key of this.dirty) {
      // Drawn from `get` rather than from the event: the same entry once the
      // batch is applied, and right where the package's replay after a
      // reload reports a pending card as `pending: false`.
      const got = this.store.get(KIND, key);
      const entry = got && { key, ...got };
      if (entry) {
        this.cards.set(key, entry);
        this.titles.set(key, titleText(entry.value));
      } else {
        this.cards.delete(key);
      }
      let li = this.elements.get(key);
      if (!entry) {
        if (li) {
          states.add(li.dataset.state);
          li.remove();
          this.elements.delete(key);
          this.editing.delete(key);
        }
        continue;
      }
      if (!li) {
        li = this.cardTemplate.content.firstElementChild.cloneNode(true);
        this.elements.set(key, li);
      }
      if (li.dataset.state) states.add(li.dataset.state);
      states.add(stateOf(entry));
      this.#render(li, entry);
    }
    this.dirty.clear();
    for (const state of states) this.#place(state);
    this.#counts();
    // Moving an element out of place drops its focus (a card moved by its
    // own button, or by someone else while it is being edited): give it back.
    if (active && active !== document.body && document.activeElement !== active) {
      if (active.isConnected && !active.closest('[hidden]')) active.focus({ preventScroll: true });
      else if (activeCard?.isConnected) activeCard.querySelector('[data-testid="card-edit"]')?.focus({ preventScroll: true });
    }
    this.on.render?.();
  }

  #counts() {
    for (const state of STATES) {
      const n = this.lists[state].childElementCount;
      this.columns[state].querySelector('[data-testid="column-count"]').textContent = String(n);
      this.columns[state].classList.toggle('is-empty', n === 0);
    }
  }

  /** Puts the column's cards in key order, moving only those out of place (moving one loses its focus). */
  #place(state) {
    const list = this.lists[state];
    if (!list) return;
    const keys = [...this.cards.values()].filter((e) => stateOf(e) === state).map((e) => e.key).sort();
    let at = list.firstElementChild;
    for (const key of keys) {
      const li = this.elements.get(key);
      if (li === at) {
        at = at.nextElementSibling;
      } else {
        list.insertBefore(li, at);
      }
    }
  }

  #render(li, entry) {
    const { key, value, version, rev, pending } = entry;
    const state = stateOf(entry);
    const title = titleText(value);
    li.dataset.key = key;
    li.dataset.state = state;
    li.dataset.pending = String(pending);
    li.dataset.version = String(version);
    li.dataset.rev = String(rev);
    li.classList.toggle('is-pending', pending);

    li.querySelector('[data-testid="card-title"]').textContent = title;
    const who = li.querySelector('[data-testid="card-assignee"]');
    who.textContent = '';
    if (typeof value?.assignee === 'string' && value.assignee.trim() !== '') {
      const avatar = document.createElement('span');
      avatar.className = 'avatar';
      avatar.setAttribute('aria-hidden', 'true');
      avatar.style.setProperty('--hue', String(hue(value.assignee)));
      avatar.textContent = initials(value.assignee);
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = value.assignee;
      who.append(avatar, name);
      who.classList.remove('none');
    } else {
      who.textContent = 'Unassigned';
      who.classList.add('none');
    }
    li.querySelector('[data-testid="card-pending-badge"]').hidden = !pending;
    const meta = li.querySelector('[data-testid="card-meta"]');
    meta.textContent = `v${version} · r${rev}`;
    meta.title = `Version ${version} of this card; last changed at revision ${rev} of this browser's store`;

    const i = STATES.indexOf(state);
    for (const button of li.querySelectorAll('[data-testid="card-move"]')) {
      const to = STATES[button.dataset.dir === 'left' ? i - 1 : i + 1];
      button.hidden = !to;
      if (!to) continue;
      button.dataset.to = to;
      button.textContent = button.dataset.dir === 'left' ? `← ${STATE_LABELS[to]}` : `${STATE_LABELS[to]} →`;
      button.setAttribute('aria-label', `Move “${title}” to ${STATE_LABELS[to]}`);
    }
    li.querySelector('[data-testid="card-edit"]').setAttribute('aria-label', `Edit “${title}”`);
    li.querySelector('[data-testid="card-delete"]').setAttribute('aria-label', `Delete “${title}”`);

    const editing = this.editing.get(key);
    li.draggable = !editing;
    if (editing) {
      const note = editing.form.querySelector('[data-testid="card-stale-note"]');
      const stale = version !== editing.version;
      note.hidden = !stale;
      note.textContent = stale
        ? `Changed elsewhere while you edit (now version ${version}, you started from ${editing.version}): saving changes only the fields you edited.`
        : '';
    }
  }

  // ---- writes ------------------------------------------------------------

  /** Creates a card in To do from the new-card form. */
  async create(form) {
    clearErrors(form);
    const value = cardValue(form.elements.title.value, form.elements.assignee.value, 'todo');
    try {
      // ifVersion 0: must not exist yet.
      await this.store.set(KIND, newKey(), value, { ifVersion: 0 });
      form.reset();
      form.elements.title.focus();
    } catch (err) {
      this.#failed(err, { form, action: 'create', title: value.title });
    }
  }

  async move(key, to) {
    const entry = this.cards.get(key);
    if (!entry || stateOf(entry) === to) return;
    try {
      await this.store.patch(KIND, key, { state: to });
    } catch (err) {
      this.#failed(err, { key, action: 'move' });
    }
  }

  async remove(key) {
    const entry = this.cards.get(key);
    if (!entry) return;
    try {
      await this.store.delete(KIND, key, { ifVersion: entry.version });
    } catch (err) {
      this.#failed(err, { key, action: 'delete' });
    }
  }

  edit(key) {
    const entry = this.cards.get(key);
    const li = this.elements.get(key);
    if (!entry || !li || this.editing.has(key)) return;
    const form = this.editTemplate.content.firstElementChild.cloneNode(true);
    const id = `edit-${++ids}`;
    for (const name of ['title', 'assignee']) {
      const input = form.elements[name];
      input.id = `${id}-${name}`;
      form.querySelector(`label[data-for="${name}"]`).htmlFor = input.id;
      const error = form.querySelector(`[data-testid="validation-error"][data-field="${name}"]`);
      error.id = `${id}-${name}-error`;
      input.setAttribute('aria-describedby', error.id);
    }
    form.elements.title.value = entry.value?.title ?? '';
    form.elements.assignee.value = entry.value?.assignee ?? '';
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.save(key);
    });
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        this.stopEditing(key, true);
      }
    });
    form.addEventListener('input', (e) => clearError(form, e.target.name));
    form.querySelector('[data-testid="card-cancel"]').addEventListener('click', () => this.stopEditing(key, true));
    this.editing.set(key, { version: entry.version, value: entry.value, form });
    li.classList.add('is-editing');
    li.querySelector('.card-view').hidden = true;
    li.append(form);
    this.#render(li, entry);
    form.elements.title.focus();
    form.elements.title.select();
  }

  stopEditing(key, focus = false) {
    const editing = this.editing.get(key);
    if (!editing) return;
    this.editing.delete(key);
    editing.form.remove();
    const li = this.elements.get(key);
    if (!li) return;
    li.classList.remove('is-editing');
    li.querySelector('.card-view').hidden = false;
    li.draggable = true;
    if (focus) li.querySelector('[data-testid="card-edit"]').focus();
  }

  /** Saves the edit form of `key`: the fields changed since the edit started, as a patch. */
  async save(key) {
    const editing = this.editing.get(key);
    if (!editing) return;
    const { form, value: seen } = editing;
    clearErrors(form);
    const state = seen?.state ?? 'todo';
    const patch = changedFields(seen, cardValue(form.elements.title.value, form.elements.assignee.value, state));
    try {
      if (patch) await this.store.patch(KIND, key, patch);
      this.stopEditing(key, true);
    } catch (err) {
      if (err?.code === 'validation') {
        this.#failed(err, { form, key, action: 'edit' });
      } else {
        this.stopEditing(key, true);
        this.#failed(err, { key, action: 'edit' });
      }
    }
  }

  #failed(err, { form = null, key = null, action, title = null }) {
    const code = err?.code ?? err?.name ?? 'error';
    const message = err?.message ?? String(err);
    if (code === 'validation' && form) {
      showValidation(form, message);
      return;
    }
    this.on.error?.({ code, message, key, action, title: key ? this.titleOf(key) : title });
  }

  // ---- events --------------------------------------------------------------

  #click(e) {
    const button = e.target.closest('button');
    const li = e.target.closest('[data-testid="card"]');
    if (!button || !li || button.closest('form')) return;
    const key = li.dataset.key;
    switch (button.dataset.testid) {
      case 'card-move':
        this.move(key, button.dataset.to);
        break;
      case 'card-edit':
        this.edit(key);
        break;
      case 'card-delete':
        this.remove(key);
        break;
    }
  }

  #dragAndDrop() {
    let dragged = null;
    this.root.addEventListener('dragstart', (e) => {
      const li = e.target.closest?.('[data-testid="card"]');
      if (!li || this.editing.has(li.dataset.key)) return;
      dragged = li.dataset.key;
      e.dataTransfer.setData(DRAG_TYPE, dragged);
      e.dataTransfer.effectAllowed = 'move';
      li.classList.add('dragging');
    });
    this.root.addEventListener('dragend', () => {
      dragged = null;
      for (const el of this.root.querySelectorAll('.dragging, .drop-target')) el.classList.remove('dragging', 'drop-target');
    });
    for (const [state, column] of Object.entries(this.columns)) {
      column.addEventListener('dragover', (e) => {
        if (!dragged || !e.dataTransfer.types.includes(DRAG_TYPE)) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = 'move';
        column.classList.add('drop-target');
      });
      column.addEventListener('dragleave', (e) => {
        if (!column.contains(e.relatedTarget)) column.classList.remove('drop-target');
      });
      column.addEventListener('drop', (e) => {
        const key = e.dataTransfer.getData(DRAG_TYPE);
        column.classList.remove('drop-target');
        if (!key) return;
        e.preventDefault();
        this.move(key, state);
      });
    }
  }
}

// ---- form errors -------------------------------------------------------------

/** Shows a `validation` error next to the field it is about (else under the form). */
export function showValidation(form, message) {
  const { field, reason } = validationDetail(message);
  const el =
    (field && form.querySelector(`[data-testid="validation-error"][data-field="${CSS.escape(field)}"]`)) ||
    form.querySelector('[data-testid="validation-error"][data-field=""]');
  el.textContent = '';
  const code = document.createElement('code');
  code.textContent = 'validation';
  const label = FIELD_LABELS[field];
  el.append(code, ' ', label && el.dataset.field === field ? `${label} ${reason}` : field ? `${field}: ${reason}` : reason);
  el.title = message;
  el.dataset.code = 'validation';
  el.hidden = false;
  const input = field && form.elements[field];
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }
}

function clearError(form, field) {
  const el = form.querySelector(`[data-testid="validation-error"][data-field="${CSS.escape(field ?? '')}"]`);
  if (el) {
    el.hidden = true;
    el.textContent = '';
  }
  form.querySelector('[data-testid="validation-error"][data-field=""]').hidden = true;
  form.elements[field]?.removeAttribute('aria-invalid');
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll('[data-testid="validation-error"]')) {
    el.hidden = true;
    el.textContent = '';
  }
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}
