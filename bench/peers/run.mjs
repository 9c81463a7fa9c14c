// Zestor's sync server side by side with TinyBase's WebSocket sync server and
// a raw `ws` broadcast relay, driven by one load generator (this script).
//
//   node run.mjs            full run (a few minutes on 2 vCPUs)
//   node run.mjs --quick    tiny sizes, to prove the suite runs (CI, < 1 min)
//
// Workloads (README.md says what each measures and how fair it is):
//   1. propagation latency: N thin subscribers, one writer at a fixed rate;
//      latency = arrival at a subscriber − the write's send time;
//   2. initial sync: a fresh client from connect until it holds every entry.
//
// Needs `npm ci` here and a release sync-server binary
// (`cargo build --release -p sync-server --bin sync-server`; found through
// `cargo metadata`, or ZESTOR_SYNC_SERVER names it).
// ZESTOR_BENCH_OUT=DIR writes DIR/peers.json (bench/RESULTS-FORMAT.md).
// ZESTOR_KEEP_TMP=1 keeps the temporary directory (databases, server logs).

import { execFileSync, fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const started = performance.now();

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(1);
}

const usage = 'usage: node run.mjs [--quick]';
const argv = process.argv.slice(2);
for (const a of argv) if (a !== '--quick') fail(`unknown argument ${a}; ${usage}`);
const quick = argv.includes('--quick');

// ------------------------------------------------------------ sizes

const CFG = quick
  ? {
      groups: [{ clients: 20, rates: [100] }],
      warmupS: 0.2,
      measureS: 0.5,
      drainS: 2,
      initialEntries: 2_000,
      initialRuns: 1,
      initialLimitS: 20,
    }
  : {
      groups: [
        { clients: 100, rates: [25, 50, 100, 200, 400] },
        { clients: 1000, rates: [10, 25] },
      ],
      warmupS: 0.5,
      measureS: 3,
      drainS: 3,
      initialEntries: 100_000,
      initialRuns: 3,
      initialLimitS: 120,
    };
const PLOT_CLIENTS = CFG.groups[0].clients;
const KEYS = 100; // the writer cycles over this many keys (k0 … k99)
const PAD = 100; // characters of padding in each write, changed by every write
const VALUE_CHARS = 100; // characters of each initial-sync value

// ------------------------------------------------------------ preconditions

let WebSocket, createMergeableStore, createWsSynchronizer, createFilePersister;
try {
  ({ WebSocket } = await import('ws'));
  ({ createMergeableStore } = await import('tinybase'));
  ({ createWsSynchronizer } = await import('tinybase/synchronizers/synchronizer-ws-client'));
  ({ createFilePersister } = await import('tinybase/persisters/persister-file'));
} catch (e) {
  fail(`tinybase / ws are not installed (${e.code ?? e.message}): run \`npm ci\` in ${path.relative(process.cwd(), here) || '.'}`);
}
const pkgVersion = (name) => JSON.parse(fs.readFileSync(path.join(here, 'node_modules', name, 'package.json'), 'utf8')).version;
const versions = { tinybase: pkgVersion('tinybase'), ws: pkgVersion('ws'), node: process.version };

let serverBin = process.env.ZESTOR_SYNC_SERVER;
if (!serverBin) {
  let target;
  try {
    target = JSON.parse(
      execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    ).target_directory;
  } catch (e) {
    fail(`cargo metadata failed (${e.message.split('\n')[0]}); set ZESTOR_SYNC_SERVER to the release sync-server binary`);
  }
  serverBin = path.join(target, 'release', 'sync-server');
  if (!fs.existsSync(serverBin)) fail(`no release sync-server at ${serverBin}: run \`cargo build --release -p sync-server --bin sync-server\``);
}
if (!fs.existsSync(serverBin)) fail(`ZESTOR_SYNC_SERVER: no file ${serverBin}`);
try {
  versions.syncServer = execFileSync(serverBin, ['--version'], { encoding: 'utf8' }).trim().replace(/^sync-server /, '');
} catch (e) {
  fail(`${serverBin} --version failed: ${e.message}`);
}
try {
  versions.commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch {
  versions.commit = null;
}

function openFileLimit() {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s+/)[3];
    return soft === 'unlimited' ? Infinity : Number(soft);
  } catch {
    return Infinity;
  }
}

// ------------------------------------------------------------ temp dir, children, cleanup

const keepTmp = process.env.ZESTOR_KEEP_TMP === '1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zestor-peers-'));
const children = new Set();
let finished = false;

process.on('exit', () => {
  for (const c of children) {
    try {
      c.proc.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  if (keepTmp) console.error(`bench: kept ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
});
process.on('SIGINT', () => {
  console.error('\nbench: interrupted');
  process.exit(130);
});
process.on('SIGTERM', () => process.exit(143));

function tail(file, lines = 30) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(typeof what === 'function' ? what() : what)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Starts a server as a child process (logging to tmp/NAME.log) and resolves
 * with its port once it prints the line `re` matches. A server that exits
 * later, while the bench runs, ends the bench with its log.
 */
async function startServer(name, command, args, re, { ipc = false } = {}) {
  const logFile = path.join(tmp, `${name}.log`);
  const log = fs.openSync(logFile, 'a');
  const proc = ipc
    ? fork(command, args, { stdio: ['ignore', 'pipe', log, 'ipc'], execArgv: [] })
    : spawn(command, args, { stdio: ['ignore', 'pipe', log], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } });
  fs.closeSync(log);
  const child = { name, proc, logFile, stopping: false, port: 0 };
  children.add(child);
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal)));
  child.exited = exited;
  const port = new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (chunk) => {
      fs.appendFileSync(logFile, chunk);
      out += chunk;
      const m = re.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('error', (e) => reject(new Error(`${name}: could not start ${command}: ${e.message}`)));
    exited.then((how) => reject(new Error(`${name} exited (${how}) before listening; its log:\n${tail(logFile)}`)));
  });
  child.port = await within(port, 30_000, () => `${name} did not start within 30 s; its log:\n${tail(logFile)}`);
  exited.then((how) => {
    if (!child.stopping && !finished) fail(`${name} exited (${how}) during the run; its log:\n${tail(logFile)}`);
  });
  return child;
}

async function stopServer(child) {
  child.stopping = true;
  if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGTERM');
  try {
    await within(child.exited, 10_000, `${child.name} did not stop`);
  } catch {
    child.proc.kill('SIGKILL');
    await child.exited;
  }
  children.delete(child);
}

// ------------------------------------------------------------ clients

const now = () => performance.timeOrigin + performance.now();
// The send time of every write, as it appears in any of the three wire
// formats: Zestor `"t":1795677268272.0051`, TinyBase `"t":[1795677268272.0051,"HLC"]`.
const T_RE = /"t":\[?(\d+(?:\.\d+)?(?:e[+-]?\d+)?)/g;
// A send time may come back a unit in the last place off (Zestor's server
// re-serialises JSON numbers and does not always round-trip them exactly:
// 0.24 µs at these magnitudes), so send times are matched within 2 µs.
const T_SLACK = 0.002;

/** The index in `sorted` of the value within T_SLACK of `t`, or -1. */
function nearest(sorted, t) {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  for (const i of [lo - 1, lo]) if (i >= 0 && i < sorted.length && Math.abs(sorted[i] - t) <= T_SLACK) return i;
  return -1;
}

function openSocket(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/**
 * A thin subscriber, the same for all three systems: a `ws` socket that
 * completes the protocol's handshake (Zestor: hello → welcome → snapshot;
 * TinyBase and the relay: none) and then timestamps every frame on arrival and
 * takes the send times out of it with one regular expression. A write is
 * counted once per subscriber (TinyBase may repeat content).
 */
class Subscriber {
  /** `traffic.last`, shared by a system's subscribers: when any of them last got a frame. */
  constructor(ws, traffic = { last: 0 }) {
    this.ws = ws;
    this.phase = null;
    this.seen = new Set();
    this.closed = null;
    ws.on('message', (data) => {
      const at = now();
      traffic.last = performance.now();
      const phase = this.phase;
      if (!phase) return;
      const text = data.toString();
      T_RE.lastIndex = 0;
      for (let m = T_RE.exec(text); m; m = T_RE.exec(text)) {
        const t = Number(m[1]);
        if (t < phase.from - T_SLACK || this.seen.has(m[1])) continue;
        this.seen.add(m[1]);
        phase.latencies.push(at - t);
      }
    });
    ws.on('close', (code, reason) => {
      this.closed = `${code} ${reason}`;
    });
    ws.on('error', () => {});
  }

  start(phase) {
    this.seen.clear();
    this.phase = phase;
  }

  stop() {
    this.phase = null;
  }
}

// -- Zestor

const NAMESPACE_LAT = 'lat';
const NAMESPACE_INIT = 'init';

/** Opens a raw protocol session: resolves after `welcome` and the whole initial snapshot. */
async function zestorSession(port, namespace, clientId, onFrame) {
  const ws = await openSocket(`ws://127.0.0.1:${port}/sync`);
  const ready = new Promise((resolve, reject) => {
    const handshake = (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.type === 'error') reject(new Error(`zestor ${clientId}: ${msg.code}: ${msg.message}`));
      else if (msg.type === 'snapshot' && msg.done) {
        ws.off('message', handshake);
        resolve();
      }
    };
    ws.on('message', handshake);
    ws.once('close', (code) => reject(new Error(`zestor ${clientId}: closed ${code} during the handshake`)));
  });
  if (onFrame) ws.on('message', onFrame);
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, namespace, token: 'bench', client_id: clientId }));
  await within(ready, 30_000, `zestor ${clientId}: no welcome and snapshot within 30 s`);
  return ws;
}

/**
 * The Zestor writer: one `push` of one `set` op per write, not awaiting its
 * `ack`. Acks are counted, and timed (send → ack) for the writes after
 * `mark()`: a diagnostic of the commit path.
 */
async function zestorWriter(port, id) {
  const state = { acks: 0, rejects: 0, errors: [] };
  let seq = 0;
  let markedSeq = Infinity;
  const sentAt = [];
  const ackLatencies = [];
  const ws = await zestorSession(port, NAMESPACE_LAT, id, (data) => {
    const text = data.toString();
    if (text.startsWith('{"type":"ack"')) {
      state.acks++;
      const op = Number(/"op_id":"(\d+)"/.exec(text)?.[1]);
      if (op >= markedSeq) ackLatencies.push(performance.now() - sentAt[op - markedSeq]);
    } else if (text.startsWith('{"type":"reject"')) state.rejects++;
    else if (text.startsWith('{"type":"error"')) state.errors.push(text);
  });
  return {
    state,
    get unacked() {
      return seq - state.acks;
    },
    mark() {
      markedSeq = seq + 1;
      sentAt.length = 0;
      ackLatencies.length = 0;
    },
    ackLatencies: () => Float64Array.from(ackLatencies).sort(),
    write(key, t, pad) {
      seq++;
      if (seq >= markedSeq) sentAt.push(performance.now());
      ws.send(JSON.stringify({ type: 'push', ops: [{ op_id: String(seq), kind: 'w', key, action: 'set', value: { t, pad } }] }));
    },
    close: () => ws.close(),
    check() {
      if (state.errors.length) throw new Error(`zestor writer: ${state.errors[0]}`);
      if (state.rejects) throw new Error(`zestor writer: ${state.rejects} writes rejected`);
    },
  };
}

// -- TinyBase

/** The TinyBase writer: a real MergeableStore and WsSynchronizer; each write is one setRow. */
async function tinybaseWriter(port) {
  const store = createMergeableStore();
  const errors = [];
  const ws = await openSocket(`ws://127.0.0.1:${port}/${NAMESPACE_LAT}`);
  const synchronizer = await createWsSynchronizer(store, ws, 1, undefined, undefined, (e) => errors.push(String(e?.message ?? e)));
  await synchronizer.startSync();
  return {
    state: { errors },
    write(key, t, pad) {
      store.setRow('w', key, { t, pad });
    },
    close: () => synchronizer.destroy(),
    check() {
      if (ws.readyState !== ws.OPEN) throw new Error('tinybase writer: its socket closed');
    },
  };
}

// -- raw relay

/** The relay writer: frames shaped like the sync server's `changes` frames, with the same value. */
async function relayWriter(port) {
  const ws = await openSocket(`ws://127.0.0.1:${port}/writer`);
  let rev = 0;
  return {
    state: {},
    write(key, t, pad) {
      rev++;
      ws.send(
        JSON.stringify({
          type: 'changes',
          events: [{ kind: 'w', key, type: 'update', value: { pad, t }, version: rev, rev }],
          rev,
        }),
      );
    },
    close: () => ws.close(),
    check() {
      if (ws.readyState !== ws.OPEN) throw new Error('relay writer: its socket closed');
    },
  };
}

async function connectAll(n, connect) {
  const out = [];
  const batch = 50;
  for (let i = 0; i < n; i += batch) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, j) => connect(i + j)))));
  }
  return out;
}

// ------------------------------------------------------------ workload 1: propagation latency

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * One rate on one system: a warm-up, then `measureS` seconds of writes, one
 * per tick of 1000/rate ms (several in a row when the generator fell behind),
 * then up to `drainS` for the last deliveries.
 */
async function runRate(system, rate) {
  const { subscribers, writer } = system;
  const period = 1000 / rate;
  const warmup = Math.round(rate * CFG.warmupS);
  const measured = Math.max(1, Math.round(rate * CFG.measureS));
  const phase = { from: Infinity, latencies: [] };
  const sentTs = [];
  for (const s of subscribers) s.start(phase);
  const t0 = performance.now();
  let firstMeasured = 0;
  let lastSent = 0;
  for (let i = 0; i < warmup + measured; ) {
    const wait = t0 + i * period - performance.now();
    if (wait > 0) await sleep(wait);
    const due = performance.now();
    while (i < warmup + measured && t0 + i * period <= due) {
      const t = now();
      if (i === warmup) {
        writer.mark?.();
        phase.from = t;
        firstMeasured = performance.now();
      }
      const pad = String(i).padStart(8, '0') + 'p'.repeat(PAD - 8);
      writer.write(`k${i % KEYS}`, t, pad);
      if (i >= warmup) sentTs.push(t);
      lastSent = performance.now();
      i++;
    }
  }
  const expected = measured * subscribers.length;
  const drainUntil = performance.now() + CFG.drainS * 1000;
  while (phase.latencies.length < expected && performance.now() < drainUntil) await sleep(10);
  for (const s of subscribers) s.stop();
  writer.check();
  const unacked = writer.unacked;
  const acks = writer.ackLatencies?.();
  // Writes some subscriber never got (a stall hits every subscriber at once).
  const sorted = Float64Array.from(sentTs).sort();
  const seenBy = new Uint32Array(sorted.length);
  for (const s of subscribers) {
    for (const key of s.seen) {
      const i = nearest(sorted, Number(key));
      if (i >= 0) seenBy[i]++;
    }
  }
  const missingWrites = seenBy.filter((c) => c < subscribers.length).length;
  // Before the next phase (of any system) starts, let this system's backlog
  // reach the generator, so it does not compete with the next measurement.
  const quietSince = performance.now();
  while (performance.now() - system.traffic.last < 300 && performance.now() - quietSince < 30_000) await sleep(20);
  const lat = Float64Array.from(phase.latencies).sort();
  const closed = subscribers.filter((s) => s.closed);
  return {
    rate,
    clients: subscribers.length,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: lat.length ? lat[lat.length - 1] : NaN,
    delivered: lat.length,
    expected,
    missingWrites,
    unacked,
    ackP50: acks ? percentile(acks, 50) : undefined,
    ackP99: acks ? percentile(acks, 99) : undefined,
    achievedRate: measured > 1 ? ((measured - 1) * 1000) / (lastSent - firstMeasured) : rate,
    closed: closed.length,
    closeReasons: [...new Set(closed.map((s) => s.closed))].slice(0, 3),
  };
}

async function connectSystem(kind, server, clients) {
  const traffic = { last: 0 };
  let subscribers;
  let writer;
  if (kind === 'zestor') {
    subscribers = await connectAll(
      clients,
      async (i) => new Subscriber(await zestorSession(server.port, NAMESPACE_LAT, `sub-${clients}-${i}`, null), traffic),
    );
    writer = await zestorWriter(server.port, `writer-${clients}`);
  } else if (kind === 'tinybase') {
    subscribers = await connectAll(clients, async () => new Subscriber(await openSocket(`ws://127.0.0.1:${server.port}/${NAMESPACE_LAT}`), traffic));
    writer = await tinybaseWriter(server.port);
  } else {
    subscribers = await connectAll(clients, async () => new Subscriber(await openSocket(`ws://127.0.0.1:${server.port}/sub`), traffic));
    writer = await relayWriter(server.port);
  }
  // Let connection set-up traffic (TinyBase's hash requests) settle.
  await sleep(300);
  return { kind, subscribers, writer, traffic };
}

async function disconnectSystem(system) {
  await system.writer.close();
  for (const s of system.subscribers) s.ws.terminate();
}

// ------------------------------------------------------------ workload 2: initial sync

const initValue = (i) => {
  const head = `v${i}:`;
  return head + 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(3).slice(0, VALUE_CHARS - head.length);
};

/** Seeds Zestor's `init` namespace through the protocol: pushes of 1,000 ops, up to 5 pushes unanswered. */
async function seedZestor(port, n) {
  let acked = 0;
  let failure = null;
  const ws = await zestorSession(port, NAMESPACE_INIT, 'seeder', (data) => {
    const text = data.toString();
    if (text.startsWith('{"type":"ack"')) acked++;
    else if (text.startsWith('{"type":"reject"') || text.startsWith('{"type":"error"')) failure ??= text;
  });
  const per = 1000;
  let sent = 0;
  while (sent < n) {
    if (failure) throw new Error(`zestor seeding: ${failure}`);
    if (sent - acked >= 5 * per) {
      await sleep(1);
      continue;
    }
    const ops = [];
    for (let i = sent; i < Math.min(n, sent + per); i++) ops.push({ op_id: `s${i}`, kind: 'e', key: `e${i}`, action: 'set', value: initValue(i) });
    ws.send(JSON.stringify({ type: 'push', ops }));
    sent += ops.length;
  }
  await within(
    (async () => {
      while (acked < n && !failure) await sleep(5);
    })(),
    120_000,
    `zestor seeding: ${acked} of ${n} acked after 120 s`,
  );
  if (failure) throw new Error(`zestor seeding: ${failure}`);
  ws.close();
}

/** A fresh Zestor client: `hello` without `since`, every snapshot part parsed into a Map until `done`. */
async function syncZestor(port, n, limitS) {
  const t0 = performance.now();
  const entries = new Map();
  const ws = new WebSocket(`ws://127.0.0.1:${port}/sync`, { perMessageDeflate: false });
  const done = new Promise((resolve, reject) => {
    ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', protocol: 1, namespace: NAMESPACE_INIT, token: 'bench', client_id: `fresh-${t0}` })));
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.type === 'snapshot') {
        for (const e of msg.entries) entries.set(`${e.kind}\u0000${e.key}`, e.value);
        if (msg.done) resolve();
      } else if (msg.type === 'error') reject(new Error(`zestor fresh client: ${msg.code}: ${msg.message}`));
    });
    ws.on('error', reject);
  });
  let complete = true;
  try {
    await within(done, limitS * 1000, 'timeout');
  } catch (e) {
    if (e.message !== 'timeout') throw e;
    complete = false;
  }
  const seconds = (performance.now() - t0) / 1000;
  ws.terminate();
  if (complete && entries.size !== n) throw new Error(`zestor fresh client: snapshot done with ${entries.size} entries, expected ${n}`);
  return { seconds, entries: entries.size, complete };
}

/** Seeds TinyBase's `init` path: the file its FilePersister loads when the path opens (what it would have saved). */
async function seedTinybase(dir, n) {
  const store = createMergeableStore();
  store.transaction(() => {
    for (let i = 0; i < n; i++) store.setCell('e', `e${i}`, 'v', initValue(i));
  });
  const persister = createFilePersister(store, path.join(dir, `${NAMESPACE_INIT}.json`));
  await persister.save();
  await persister.destroy();
}

/** A fresh TinyBase client: a new MergeableStore and WsSynchronizer, from connect until table `e` has every row. */
async function syncTinybase(port, n, limitS) {
  const t0 = performance.now();
  const store = createMergeableStore();
  const errors = [];
  let resolveDone;
  const done = new Promise((resolve) => (resolveDone = resolve));
  store.addDidFinishTransactionListener(() => {
    if (store.getRowCount('e') >= n) resolveDone();
  });
  const ws = await openSocket(`ws://127.0.0.1:${port}/${NAMESPACE_INIT}`);
  const synchronizer = await createWsSynchronizer(store, ws, 1, undefined, undefined, (e) => errors.push(String(e?.message ?? e)));
  let closed = null;
  ws.on('close', (code, reason) => {
    closed = `${code} ${reason}`;
    resolveDone();
  });
  synchronizer.startSync().catch((e) => errors.push(String(e?.message ?? e)));
  let complete = true;
  try {
    await within(done, limitS * 1000, 'timeout');
  } catch {
    complete = false;
  }
  const seconds = (performance.now() - t0) / 1000;
  const rows = store.getRowCount('e');
  await synchronizer.destroy();
  ws.terminate();
  return { seconds, entries: rows, complete: complete && rows >= n, closed, errors: errors.slice(0, 3) };
}

// ------------------------------------------------------------ output helpers

const fmtMs = (x) => (Number.isNaN(x) ? '—' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmtInt = (x) => Math.round(x).toLocaleString('en-US');
const round = (x, digits = 3) => (Number.isFinite(x) ? Number(x.toPrecision(digits)) : null);
const pct = (r) => (100 * r.delivered) / r.expected;

function table(head, rows) {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

// ------------------------------------------------------------ main

const LABEL = { zestor: 'Zestor', tinybase: 'TinyBase', relay: 'raw ws relay' };
const ORDER = ['zestor', 'tinybase', 'relay'];

async function main() {
  console.log(`peers bench${quick ? ' (--quick: figures not meaningful)' : ''}: sync-server ${versions.syncServer}, tinybase ${versions.tinybase}, ws ${versions.ws}, node ${versions.node}, ${os.cpus().length} CPUs`);

  const tinybaseDir = path.join(tmp, 'tinybase');
  fs.mkdirSync(tinybaseDir);
  const servers = {
    zestor: await startServer(
      'zestor',
      serverBin,
      ['--db', `sqlite://${path.join(tmp, 'zestor.db')}`, '--listen', '127.0.0.1:0', '--insecure-open', '--heartbeat-ms', '3600000'],
      /listening on http:\/\/127\.0\.0\.1:(\d+)/,
    ),
    tinybase: await startServer('tinybase', path.join(here, 'tinybase-server.mjs'), ['--dir', tinybaseDir], /listening on (\d+)/, { ipc: true }),
    relay: await startServer('relay', path.join(here, 'relay-server.mjs'), [], /listening on (\d+)/, { ipc: true }),
  };
  const pathReady = new Map();
  servers.tinybase.proc.on('message', (m) => {
    if (m?.type === 'path-ready') pathReady.set(m.pathId, m.rows);
  });

  // ---- 1. propagation latency
  const latency = []; // {kind, ...runRate result}
  const notes = [];
  const fdLimit = openFileLimit();
  for (const group of CFG.groups) {
    const need = 3 * (group.clients + 2) + 100;
    if (need > fdLimit) {
      const msg = `${group.clients} clients skipped: they need about ${need} open files here, the soft limit is ${fdLimit}`;
      console.log(`\n${msg}`);
      notes.push(msg);
      continue;
    }
    console.log(`\nPropagation latency, ${group.clients} subscribers, ${CFG.measureS} s per rate (+${CFG.warmupS} s warm-up)`);
    const systems = {};
    for (const kind of ORDER) systems[kind] = await connectSystem(kind, servers[kind], group.clients);
    const rows = [];
    for (const [ri, rate] of group.rates.entries()) {
      // Rotate which system goes first at each rate.
      const order = ORDER.map((_, i) => ORDER[(i + ri) % ORDER.length]);
      for (const kind of order) {
        const r = await runRate(systems[kind], rate);
        latency.push({ kind, ...r });
        await sleep(200);
      }
      for (const kind of ORDER) {
        const r = latency.find((x) => x.kind === kind && x.rate === rate && x.clients === group.clients);
        rows.push([
          `${LABEL[kind]} @ ${rate}/s`,
          fmtMs(r.p50),
          fmtMs(r.p99),
          fmtMs(r.max),
          `${fmtInt(r.delivered)} / ${fmtInt(r.expected)}`,
          r.missingWrites + (r.unacked ? ` (${r.unacked} unacked)` : ''),
          r.achievedRate.toFixed(0),
          r.ackP50 === undefined ? '' : `${fmtMs(r.ackP50)} / ${fmtMs(r.ackP99)}`,
          r.closed ? `${r.closed} (${r.closeReasons.join(', ')})` : '0',
        ]);
      }
    }
    table(['system @ writes/s', 'p50 ms', 'p99 ms', 'max ms', 'delivered / expected', 'writes missed', 'sent/s', 'ack p50 / p99 ms', 'subs closed'], rows);
    for (const kind of ORDER) await disconnectSystem(systems[kind]);
    await sleep(500);
  }

  // ---- 2. initial sync
  const n = CFG.initialEntries;
  console.log(`\nInitial sync of ${fmtInt(n)} entries (~${VALUE_CHARS}-byte values) to a fresh client`);
  const seedT0 = performance.now();
  await seedZestor(servers.zestor.port, n);
  const zestorSeedS = (performance.now() - seedT0) / 1000;
  await seedTinybase(tinybaseDir, n);
  // The holder keeps TinyBase's `init` path open, so its server-side store
  // stays loaded in memory (TinyBase drops a path's persister and store when
  // its last client leaves; Zestor keeps a namespace open once used).
  const holder = new Subscriber(await openSocket(`ws://127.0.0.1:${servers.tinybase.port}/${NAMESPACE_INIT}`));
  await within(
    (async () => {
      while (!pathReady.has(NAMESPACE_INIT)) await sleep(20);
    })(),
    120_000,
    'tinybase: the init path did not load within 120 s',
  );
  if (pathReady.get(NAMESPACE_INIT) !== n) throw new Error(`tinybase: the init path loaded ${pathReady.get(NAMESPACE_INIT)} rows, expected ${n}`);
  await sleep(500);
  const initial = { zestor: [], tinybase: [] };
  for (let run = 0; run < CFG.initialRuns; run++) {
    for (const kind of run % 2 ? ['tinybase', 'zestor'] : ['zestor', 'tinybase']) {
      // Skip further TinyBase runs when one did not finish in the limit.
      if (kind === 'tinybase' && initial.tinybase.some((r) => !r.complete)) continue;
      const r = kind === 'zestor' ? await syncZestor(servers.zestor.port, n, CFG.initialLimitS) : await syncTinybase(servers.tinybase.port, n, CFG.initialLimitS);
      initial[kind].push(r);
      console.log(
        `  ${LABEL[kind].padEnd(8)} run ${run + 1}: ${r.complete ? '' : 'INCOMPLETE: '}${fmtInt(r.entries)} entries in ${r.seconds.toFixed(2)} s` +
          (r.closed ? ` (socket closed: ${r.closed})` : '') +
          (r.errors?.length ? ` (errors: ${r.errors.join('; ')})` : ''),
      );
      await sleep(300);
    }
  }
  holder.ws.terminate();
  const best = (runs) => {
    const complete = runs.filter((r) => r.complete);
    if (!complete.length) return { ...runs[0], median: false };
    const sorted = [...complete].sort((a, b) => a.seconds - b.seconds);
    return { ...sorted[(sorted.length - 1) >> 1], median: true, runs: complete.length };
  };
  const initZ = best(initial.zestor);
  const initT = best(initial.tinybase);
  table(
    ['system', 'seconds', 'entries/s', 'entries held', 'runs'],
    [
      ['Zestor', initZ.seconds.toFixed(2), fmtInt(initZ.entries / initZ.seconds), `${fmtInt(initZ.entries)}${initZ.complete ? '' : ' (limit hit)'}`, initial.zestor.length],
      ['TinyBase', initT.seconds.toFixed(2), fmtInt(initT.entries / initT.seconds), `${fmtInt(initT.entries)}${initT.complete ? '' : ' (limit hit)'}`, initial.tinybase.length],
    ],
  );
  console.log(`(median of the complete runs; seeding Zestor through the protocol took ${zestorSeedS.toFixed(1)} s, not timed)`);

  // ---- stats from the TinyBase server (ignored errors: unanswered requests, overflows)
  const tbStats = await within(
    new Promise((resolve) => {
      servers.tinybase.proc.once('message', (m) => m?.type === 'stats' && resolve(m));
      servers.tinybase.proc.send({ type: 'stats' });
    }),
    5000,
    'tinybase: no stats',
  ).catch(() => null);

  finished = true;
  for (const kind of ORDER) await stopServer(servers[kind]);

  // ---- results file
  const out = process.env.ZESTOR_BENCH_OUT;
  if (out) {
    fs.mkdirSync(out, { recursive: true });
    const file = path.join(out, 'peers.json');
    fs.writeFileSync(file, `${JSON.stringify(results({ latency, initZ, initT, n, zestorSeedS, tbStats, notes }), null, 2)}\n`);
    console.log(`\nwrote ${file}`);
  }
  console.log(`\npeers bench done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

function results({ latency, initZ, initT, n, zestorSeedS, tbStats, notes }) {
  const tbLabel = `TinyBase ${versions.tinybase} WsServer + FilePersister`;
  const rows = [];
  const get = (kind, clients, rate) => latency.find((r) => r.kind === kind && r.clients === clients && r.rate === rate);
  // Against TinyBase (with the delivered share), then against the raw relay.
  const baselines = [
    { kind: 'tinybase', versus: 'TinyBase', label: tbLabel, delivered: true },
    { kind: 'relay', versus: "the raw ws relay: this generator's floor", label: `raw ws ${versions.ws} broadcast relay (Node)`, delivered: false },
  ];
  for (const b of baselines) {
    for (const group of CFG.groups) {
      if (!get('zestor', group.clients, group.rates[0])) continue;
      const section = `Propagation latency, ${fmtInt(group.clients)} clients (vs ${b.versus})`;
      for (const rate of group.rates) {
        const z = get('zestor', group.clients, rate);
        const t = get(b.kind, group.clients, rate);
        const kase = (what) => `${what}, ${fmtInt(group.clients)} clients, ${rate} writes/s`;
        for (const p of ['p50', 'p99']) {
          rows.push({ section, case: kase(p), value: round(z[p]), unit: 'ms', baseline: round(t[p]), baseline_label: b.label, ratio: round(z[p] / t[p]), ratio_unit: 'x', verdict: 'recorded' });
        }
        if (b.delivered) {
          rows.push({ section, case: kase('delivered'), value: round(pct(z), 4), unit: '% of expected', baseline: round(pct(t), 4), baseline_label: b.label, verdict: 'recorded' });
        }
      }
    }
  }
  const initSection = `Initial sync of ${fmtInt(n)} entries to a fresh client`;
  rows.push({
    section: initSection,
    case: `time to hold all ${fmtInt(n)} entries`,
    value: round(initZ.seconds),
    unit: 's',
    ...(initT.complete ? { baseline: round(initT.seconds), baseline_label: tbLabel, ratio: round(initZ.seconds / initT.seconds), ratio_unit: 'x' } : {}),
    verdict: 'recorded',
  });
  rows.push({
    section: initSection,
    case: 'entries/s (higher is better)',
    value: round(initZ.entries / initZ.seconds),
    unit: 'entries/s',
    baseline: round(initT.entries / initT.seconds),
    baseline_label: tbLabel + (initT.complete ? '' : ` (incomplete: ${initT.entries} entries in ${initT.seconds.toFixed(0)} s)`),
    ratio: round(initZ.entries / initZ.seconds / (initT.entries / initT.seconds)),
    ratio_unit: 'x',
    verdict: 'recorded',
  });

  const series = [];
  for (const kind of ORDER) {
    for (const p of ['p50', 'p99']) {
      series.push({
        name: `${LABEL[kind]} ${p}`,
        points: latency.filter((r) => r.kind === kind && r.clients === PLOT_CLIENTS).map((r) => [r.rate, round(r[p])]),
      });
    }
  }

  const groupsText = CFG.groups.map((g) => `${fmtInt(g.clients)} subscribers at ${g.rates.join(', ')} writes/s`).join('; ');
  const relayRows = latency
    .filter((r) => r.kind === 'relay')
    .map((r) => `${fmtInt(r.clients)} clients @ ${r.rate}/s p50 ${fmtMs(r.p50)} ms, p99 ${fmtMs(r.p99)} ms`);
  const extraNotes = [...notes];
  for (const r of latency) {
    if (r.delivered < r.expected || r.closed) {
      extraNotes.push(
        `${LABEL[r.kind]}, ${fmtInt(r.clients)} clients @ ${r.rate}/s: ${fmtInt(r.delivered)} of ${fmtInt(r.expected)} deliveries within ${CFG.drainS} s after the last write; ${r.missingWrites} writes missed by at least one subscriber` +
          (r.unacked ? `; ${r.unacked} writes still unacknowledged` : '') +
          (r.closed ? `; ${r.closed} subscribers closed (${r.closeReasons.join(', ')})` : ''),
      );
    }
    if (r.achievedRate < 0.95 * r.rate) extraNotes.push(`${LABEL[r.kind]}, ${fmtInt(r.clients)} clients @ ${r.rate}/s: the generator sent only ${r.achievedRate.toFixed(0)} writes/s`);
  }
  const ackText = latency
    .filter((r) => r.kind === 'zestor' && r.ackP50 !== undefined)
    .map((r) => `${fmtInt(r.clients)} clients @ ${r.rate}/s ${fmtMs(r.ackP50)} / ${fmtMs(r.ackP99)} ms`);
  extraNotes.push(
    `Zestor writer, send → ack p50 / p99 (the commit path: pushes a connection has already sent share a commit and fsync): ${ackText.join('; ')}`,
  );
  if (!initT.complete) extraNotes.push(`TinyBase initial sync did not complete within ${CFG.initialLimitS} s: ${fmtInt(initT.entries)} of ${fmtInt(n)} entries held`);
  if (tbStats?.ignoredErrors) {
    extraNotes.push(
      `TinyBase server reported ${tbStats.ignoredErrors} ignored errors (mostly its own synchronizer's requests that the thin subscribers never answer); last: ${tbStats.lastErrors.join(' | ')}`,
    );
  }

  return {
    suite: 'peers',
    title: 'Sync server next to a peer: TinyBase',
    source: 'bench/peers/run.mjs',
    command: `node bench/peers/run.mjs${quick ? ' --quick' : ''}`,
    quick,
    written: Math.floor(Date.now() / 1000),
    conditions: [
      `versions: sync-server ${versions.syncServer}${versions.commit ? ` (${versions.commit})` : ''} release build; tinybase ${versions.tinybase}; ws ${versions.ws}; Node ${versions.node}; ${os.cpus().length} vCPUs, all processes on 127.0.0.1`,
      'each server in its own process; one load generator (run.mjs, one Node process) drives all three with the same thin subscribers',
      'Zestor durability: SQLite file, WAL, synchronous=FULL (the default); a change is published only after its transaction is committed and fsynced',
      `TinyBase durability: server-side MergeableStore per path with TinyBase's FilePersister (whole store as JSON, written to a temporary file and renamed, no fsync), saved after each change; the server relays a client's change to the other clients before and independently of that save. Not SQLite: TinyBase's better-sqlite3 persister wants better-sqlite3 13, whose bundled binaries need Node ≥ 22 (it crashes on Node 20), older versions need a native build, and Node 20 has no node:sqlite`,
      'raw ws relay: a Node `ws` server forwarding every frame of the writer to every other connection, no storage and no parsing: the floor of this generator (at 1,000 clients its own single-threaded fan-out in Node weighs too)',
      `propagation: ${groupsText}; ${CFG.measureS} s measured per rate after ${CFG.warmupS} s warm-up, up to ${CFG.drainS} s to drain; the three systems interleaved per rate`,
      `a write: Zestor, one \`push\` of one \`set\` op ({t, pad: ${PAD} chars}) over the protocol, not awaiting its ack; TinyBase, one setRow (cells t and pad) on a MergeableStore with a WsSynchronizer (its real wire message); relay, a frame shaped like Zestor's \`changes\`; the writer cycles over ${KEYS} keys`,
      'latency = arrival of the frame at a subscriber (timestamped before parsing) − the send time carried in the value (performance.timeOrigin + performance.now()), over every (subscriber, write) pair; a write not delivered within the drain time counts as missing',
      `initial sync: ${fmtInt(n)} entries of ~${VALUE_CHARS}-byte string values, seeded untimed (Zestor through pushes of 1,000 ops, ${zestorSeedS.toFixed(1)} s; TinyBase as its persister's file, loaded by the server and kept open by an idle client); timed from connect until the fresh client holds all of them: Zestor, raw protocol client parsing snapshot parts into a Map; TinyBase, a real MergeableStore + WsSynchronizer (default 1 s request timeout) until table e has ${fmtInt(n)} rows; median of ${CFG.initialRuns} run(s), ${CFG.initialLimitS} s limit`,
      `raw ws relay, for reference: ${relayRows.join('; ')}`,
    ],
    rows,
    plot: {
      title: `Propagation latency vs write rate, ${fmtInt(PLOT_CLIENTS)} clients`,
      x_label: 'writes/s',
      y_label: 'latency (ms)',
      series,
    },
    notes: extraNotes,
  };
}

main().catch((e) => {
  console.error(`bench: ${e.stack ?? e}`);
  process.exit(1);
});
