// In-page helpers for the tests, at `window.helpers`.

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until `cond()` is truthy (and returns it); throws after `timeout` ms
 * naming `what` (a string, or a function called then).
 */
export async function waitFor(cond, what = 'a condition', timeout = 15000) {
  const deadline = performance.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = cond();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (performance.now() > deadline) {
      const text = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${timeout} ms waiting for ${text}${last ? ` (last error: ${last})` : ''}`);
    }
    await sleep(20);
  }
}

/** What a test checks of an error: whether it is an Error, its name, code and message. */
export function errorInfo(e) {
  return {
    isError: e instanceof Error,
    name: e?.name,
    code: e?.code,
    message: String(e?.message ?? e),
  };
}

/** Runs `fn` (sync or async) and returns `errorInfo` of what it threw; throws if it did not. */
export async function caught(fn) {
  let value;
  try {
    value = await fn();
  } catch (e) {
    return errorInfo(e);
  }
  throw new Error(`expected an error, got ${JSON.stringify(value)}`);
}

/** Resolves with the outcome of a promise without throwing: `{ ok, value }` or `{ ok: false, error }`. */
export function settle(promise) {
  return promise.then(
    (value) => ({ ok: true, value }),
    (e) => ({ ok: false, error: errorInfo(e) }),
  );
}

/**
 * The sync protocol spoken directly (no package): opens a session, reads
 * frames. For checking what the server holds, independently of the package.
 */
export class RawSession {
  static async open(url, namespace, token, clientId = `raw-${Math.random().toString(36).slice(2)}`) {
    const s = new RawSession();
    s.frames = [];
    s.waiters = [];
    s.ws = new WebSocket(url);
    s.ws.onmessage = (e) => {
      s.frames.push(JSON.parse(e.data));
      for (const w of s.waiters.splice(0)) w();
    };
    s.closed = new Promise((resolve) => {
      s.ws.onclose = (e) => {
        s.closeCode = e.code;
        for (const w of s.waiters.splice(0)) w();
        resolve(e.code);
      };
    });
    await new Promise((resolve, reject) => {
      s.ws.onopen = resolve;
      s.ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
    s.ws.send(JSON.stringify({ type: 'hello', protocol: 1, namespace, token, client_id: clientId }));
    s.welcome = await s.next((f) => f.type === 'welcome' || f.type === 'error');
    if (s.welcome.type !== 'welcome') throw new Error(`refused: ${JSON.stringify(s.welcome)}`);
    return s;
  }

  /** The first frame (consumed) for which `pred` holds. */
  async next(pred, timeout = 10000) {
    const deadline = performance.now() + timeout;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.closeCode !== undefined) throw new Error(`closed (${this.closeCode}) while waiting`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no such frame within ${timeout} ms; got ${JSON.stringify(this.frames)}`);
      await new Promise((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, left);
      });
    }
  }

  /** The initial snapshot: `{ rev, entries }` with entries keyed `kind/key`. */
  async snapshot() {
    const entries = {};
    for (;;) {
      const part = await this.next((f) => f.type === 'snapshot');
      for (const e of part.entries) entries[`${e.kind}/${e.key}`] = e;
      if (part.done) return { rev: part.rev, entries };
    }
  }

  /** Pushes one op and returns the server's `ack` or `reject` frame. */
  async push(op) {
    const op_id = op.op_id ?? `op-${Math.random().toString(36).slice(2)}`;
    this.ws.send(JSON.stringify({ type: 'push', ops: [{ action: 'set', ...op, op_id }] }));
    return this.next((f) => (f.type === 'ack' || f.type === 'reject') && f.op_id === op_id);
  }

  close() {
    this.ws.close();
    return this.closed;
  }
}

/** The server's view of a namespace right now: `{ rev, entries }`. */
export async function serverSnapshot(url, namespace, token) {
  const s = await RawSession.open(url, namespace, token);
  try {
    return await s.snapshot();
  } finally {
    await s.close();
  }
}
