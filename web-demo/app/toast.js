// Toasts: short-lived notices at the bottom of the screen, for what the
// store or the server refused (code and message as they came) and for the
// odd piece of news. They stay while hovered or focused.

const region = () => document.querySelector('[data-testid="toasts"]');
const MAX = 4;

/**
 * Shows a toast. `code` is the error code (shown as is), `title` a short
 * sentence, `message` the store's or the server's message.
 */
export function toast({ code = '', title = '', message = '', tone = 'error', timeoutMs = 10_000 }) {
  const el = document.createElement('div');
  el.className = `toast ${tone}`;
  el.dataset.testid = 'toast';
  el.dataset.code = code;

  const body = document.createElement('div');
  body.className = 'toast-body';
  const head = document.createElement('p');
  head.className = 'toast-title';
  if (code) {
    const c = document.createElement('code');
    c.dataset.testid = 'toast-code';
    c.textContent = code;
    head.append(c, ' ');
  }
  const t = document.createElement('span');
  t.dataset.testid = 'toast-title';
  t.textContent = title;
  head.append(t);
  body.append(head);
  if (message) {
    const m = document.createElement('p');
    m.className = 'toast-message';
    m.dataset.testid = 'toast-message';
    m.textContent = message;
    body.append(m);
  }

  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'toast-close';
  close.dataset.testid = 'toast-dismiss';
  close.setAttribute('aria-label', 'Dismiss');
  close.textContent = '×';
  close.addEventListener('click', () => el.remove());
  el.append(body, close);

  const parent = region();
  parent.append(el);
  while (parent.children.length > MAX) parent.firstElementChild.remove();

  let timer = null;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => el.remove(), timeoutMs);
  };
  const hold = () => clearTimeout(timer);
  el.addEventListener('mouseenter', hold);
  el.addEventListener('mouseleave', arm);
  el.addEventListener('focusin', hold);
  el.addEventListener('focusout', arm);
  arm();
  return el;
}
