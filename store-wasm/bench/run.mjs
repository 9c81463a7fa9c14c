// Runs the browser benchmarks of the npm package: a sync-server (from the
// js-tests harness) serving bench.html, the built package and Dexie; headless
// Chromium on an on-disk profile; every workload of bench.js in one page;
// then a table of each figure next to its baseline, the ratio and the goal,
// and store-wasm/bench/results.json.
//
//   node run.mjs                  full sizes (≈ 2.5–3 min on 2 vCPUs)
//   node run.mjs --quick          tiny sizes, to prove the suite works (CI, ≈ 10 s)
//   node run.mjs --only W,…       only these workloads (batched, single, reads,
//                                 watch, sync); results.json is not written
//   node run.mjs --profile        CPU profiles of every side, into profiles/
//
// docs/benchmarks.md ("Browser (store-wasm)") describes the workloads, the
// goals and the recorded figures.
// Builds nothing. Needs: the package built into store-wasm/pkg/npm
// (scripts/build-wasm.sh; ZESTOR_PKG_DIR overrides), a sync-server binary
// (target/release/sync-server from `cargo build --release -p sync-server`,
// else the debug one; ZESTOR_SYNC_SERVER overrides), Chromium at
// /usr/bin/chromium (ZESTOR_CHROMIUM overrides), `npm ci` here.
// ZESTOR_KEEP_TMP=1 keeps the temporary directory (server log, profile).

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const started = Date.now();

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(1);
}

const usage = 'usage: node run.mjs [--quick] [--profile] [--only batched,single,reads,watch,sync]';
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--only') {
    i++;
    if (!args[i]) fail(`--only needs a list; ${usage}`);
  } else if (args[i] !== '--quick' && args[i] !== '--profile') fail(`unknown argument ${args[i]}; ${usage}`);
}
const quick = args.includes('--quick');
// --profile: every side of every round is CPU-profiled (the page's main
// thread: JS, WebAssembly, GC; IndexedDB's own work runs in the browser
// process and shows as idle time). Timings are distorted, so results.json is
// not written; the profiles go to profiles/ (open them in DevTools) and a
// summary per side is printed.
const profile = args.includes('--profile');
// --only W,…: run only these workloads (batched, single, reads, watch, sync); for diagnosis.
const WORKLOADS = ['batched', 'single', 'reads', 'watch', 'sync'];
let only = WORKLOADS;
const onlyAt = args.indexOf('--only');
if (onlyAt >= 0) {
  only = (args[onlyAt + 1] ?? '').split(',').filter(Boolean);
  for (const w of only) if (!WORKLOADS.includes(w)) fail(`unknown workload ${w}; ${usage}`);
}

// ------------------------------------------------------------ preconditions

const pkgDir = process.env.ZESTOR_PKG_DIR || path.join(repo, 'store-wasm/pkg/npm');
if (!fs.existsSync(path.join(pkgDir, 'url.js')) || !fs.existsSync(path.join(pkgDir, 'zestor_bg.wasm'))) {
  fail(`no built package in ${pkgDir}: run scripts/build-wasm.sh`);
}
const chromiumPath = process.env.ZESTOR_CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(chromiumPath)) fail(`Chromium not found at ${chromiumPath}; run scripts/install-browser-tools.sh`);
const dexieFile = path.join(here, 'node_modules/dexie/dist/dexie.mjs');
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  fail(`playwright-core is not installed: run \`npm ci\` in ${path.relative(process.cwd(), here) || '.'}`);
}
if (!fs.existsSync(dexieFile)) fail(`dexie is not installed: run \`npm ci\` in ${path.relative(process.cwd(), here) || '.'}`);

let serverBin = process.env.ZESTOR_SYNC_SERVER;
let serverBuild = 'as given by ZESTOR_SYNC_SERVER';
if (!serverBin) {
  const target = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: repo, encoding: 'utf8' }),
  ).target_directory;
  const release = path.join(target, 'release', 'sync-server');
  const debug = path.join(target, 'debug', 'sync-server');
  if (fs.existsSync(release)) [serverBin, serverBuild] = [release, 'release'];
  else if (fs.existsSync(debug)) {
    [serverBin, serverBuild] = [debug, 'debug'];
    console.warn('bench: WARNING: no release sync-server; using the debug build (slower initial sync).');
    console.warn('bench:          `cargo build --release -p sync-server` gives the figures docs/benchmarks.md records.');
  } else fail('no sync-server binary: run `cargo build --release -p sync-server`');
}
if (!fs.existsSync(serverBin)) fail(`no sync-server at ${serverBin}`);
process.env.ZESTOR_SYNC_SERVER = serverBin;
process.env.ZESTOR_PKG_DIR = pkgDir;
process.env.ZESTOR_CHROMIUM = chromiumPath;
// Imported only now: the harness reads the variables above when it loads.
const { SyncServer, CHROMIUM, CHROMIUM_ARGS, NAMESPACE, TOKEN } = await import('../js-tests/harness.mjs');

// ------------------------------------------------------------ sizes (Node side)

/** Sizes of the package as the page loads it (the copy in the server's static dir). */
function sizes(pkgDir) {
  const gz = (buf) => zlib.gzipSync(buf, { level: 9 }).length;
  const wasm = path.join(pkgDir, 'zestor_bg.wasm');
  const wasmBuf = fs.readFileSync(wasm);
  // The JS the page loads with zestor/url: the entry point, the loader, the
  // wasm-bindgen glue and the snippets it imports (wasm-bindgen inline JS).
  const jsFiles = ['url.js', 'loader.js', 'glue.js'].map((f) => path.join(pkgDir, f));
  const snippets = path.join(pkgDir, 'snippets');
  if (fs.existsSync(snippets)) {
    for (const f of fs.readdirSync(snippets, { recursive: true })) {
      const full = path.join(snippets, f);
      if (f.endsWith('.js') && fs.statSync(full).isFile()) jsFiles.push(full);
    }
  }
  const js = jsFiles.map((f) => fs.readFileSync(f));
  return {
    wasm: { raw: wasmBuf.length, gzip9: gz(wasmBuf), sha256: crypto.createHash('sha256').update(wasmBuf).digest('hex') },
    js: {
      files: jsFiles.map((f) => path.relative(pkgDir, f)),
      raw: js.reduce((a, b) => a + b.length, 0),
      gzip9: js.reduce((a, b) => a + gz(b), 0),
    },
  };
}

// ------------------------------------------------------------ summary

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmtInt = (x) => Math.round(x).toLocaleString('en-US');
const fmtMs = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmtRatio = (x) => (x >= 10 ? `${x.toFixed(1)}×` : `${x.toFixed(2)}`);
const fmtBytes = (x) => `${fmtInt(x)} B (${(x / 1024).toFixed(1)} KiB)`;

/** The median of a side's figure over rounds, and of the per-round ratio a/b (rounds are paired). */
function paired(rounds, a, b, field) {
  const ra = rounds[a].map((r) => r[field]);
  const rb = rounds[b].map((r) => r[field]);
  const ratios = ra.map((x, i) => x / rb[i]);
  return { a: median(ra), b: median(rb), ratio: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
}

function summarize(r) {
  const rows = [];
  const row = (o) => rows.push(o);
  const verdict = (ratio, goal) => (quick ? 'n/a (--quick)' : ratio >= goal ? 'met' : 'NOT MET');

  let p;
  if (r.batched) {
    p = paired(r.batched, 'ours', 'raw', 'perSec');
    row({ id: '1', case: `batched writes, ${fmtInt(r.config.batched.n)} × setMany(1,000)`, ours: `${fmtInt(p.a)} w/s`,
      baseline: `${fmtInt(p.b)} w/s raw IndexedDB (1 tx per 1,000 puts)`, ratio: p.ratio, range: [p.min, p.max], goal: '≥ 0.80', verdict: verdict(p.ratio, 0.8) });
    p = paired(r.batched, 'ours', 'dexie', 'perSec');
    row({ id: '1', case: '… vs Dexie bulkPut(1,000)', ours: `${fmtInt(p.a)} w/s`, baseline: `${fmtInt(p.b)} w/s Dexie`,
      ratio: p.ratio, range: [p.min, p.max], goal: '≥ 1.0', verdict: verdict(p.ratio, 1.0) });

    p = paired(r.batched, 'ours', 'rawShape', 'perSec');
    row({ id: '1′', case: '… vs raw IndexedDB in the package\'s layout (diagnostic)', ours: `${fmtInt(p.a)} w/s`,
      baseline: `${fmtInt(p.b)} w/s raw: JSON-string entries at [kind, key] + head in meta, 1 tx per 1,000`, ratio: p.ratio, range: [p.min, p.max], goal: '—', verdict: '—' });

  }
  if (r.single) {
    p = paired(r.single, 'ours', 'raw', 'perSec');
    row({ id: '2', case: `single durable writes, ${fmtInt(r.config.single.m)} awaited set`, ours: `${fmtInt(p.a)} w/s (${fmtMs(median(r.single.ours.map((x) => x.usPerWrite)))} µs)`,
      baseline: `${fmtInt(p.b)} w/s raw (1 put per tx, ${fmtMs(median(r.single.raw.map((x) => x.usPerWrite)))} µs)`, ratio: p.ratio, range: [p.min, p.max], goal: '≥ 0.90', verdict: verdict(p.ratio, 0.9) });
    p = paired(r.single, 'ours', 'dexie', 'perSec');
    row({ id: '2', case: '… vs Dexie put', ours: `${fmtInt(p.a)} w/s`, baseline: `${fmtInt(p.b)} w/s Dexie`, ratio: p.ratio, range: [p.min, p.max], goal: '—', verdict: 'recorded' });
    p = paired(r.single, 'ours', 'rawShape', 'perSec');
    row({ id: '2′', case: '… vs raw IndexedDB in the package\'s layout (diagnostic)', ours: `${fmtInt(p.a)} w/s`,
      baseline: `${fmtInt(p.b)} w/s raw: entry + head, 2 stores per tx (${fmtMs(median(r.single.rawShape.map((x) => x.usPerWrite)))} µs)`, ratio: p.ratio, range: [p.min, p.max], goal: '—', verdict: '—' });
    p = paired(r.single, 'raw', 'rawStrict', 'perSec');
    row({ id: '2″', case: 'raw, default vs strict durability (diagnostic)', ours: `${fmtInt(p.a)} w/s default`, baseline: `${fmtInt(p.b)} w/s durability: 'strict'`, ratio: p.ratio, range: [p.min, p.max], goal: '—', verdict: '—' });

  }
  if (r.reads) {
    const g = r.reads.get;
    p = paired(g, 'ours', 'dexie', 'perSec');
    row({ id: '3', case: `random get, ${fmtInt(r.reads.keys)} keys`, ours: `${fmtInt(p.a)} gets/s (${fmtMs(median(g.ours.map((x) => x.usPerGet)))} µs, sync)`,
      baseline: `${fmtInt(p.b)} gets/s Dexie get (${fmtMs(median(g.dexie.map((x) => x.usPerGet)))} µs, awaited)`, ratio: p.ratio, range: [p.min, p.max], goal: '≥ 10×', verdict: verdict(p.ratio, 10) });
    p = paired(g, 'ours', 'raw', 'perSec');
    row({ id: '3', case: '… vs raw IndexedDB get', ours: `${fmtInt(p.a)} gets/s`, baseline: `${fmtInt(p.b)} gets/s raw (1 readonly tx per get, ${fmtMs(median(g.raw.map((x) => x.usPerGet)))} µs)`,
      ratio: p.ratio, range: [p.min, p.max], goal: '—', verdict: 'recorded' });
    const s = r.reads.scan;
    p = paired(s, 'ours', 'dexie', 'scansPerSec');
    row({ id: '3', case: `values(kind), ${fmtInt(r.reads.keys)} entries`, ours: `${fmtMs(median(s.ours.map((x) => x.msPerScan)))} ms per scan`,
      baseline: `${fmtMs(median(s.dexie.map((x) => x.msPerScan)))} ms Dexie toArray()`, ratio: p.ratio, range: [p.min, p.max], goal: '≥ 10×', verdict: verdict(p.ratio, 10) });
    p = paired(s, 'ours', 'raw', 'scansPerSec');
    row({ id: '3', case: '… vs raw getAll()', ours: `${fmtMs(median(s.ours.map((x) => x.msPerScan)))} ms`,
      baseline: `${fmtMs(median(s.raw.map((x) => x.msPerScan)))} ms raw getAll()`, ratio: p.ratio, range: [p.min, p.max], goal: '—', verdict: 'recorded' });

  }
  if (r.watch) {
    const w = r.watch;
    row({ id: '4', case: `watch latency, ${w.watchers} subscriptions, set → ${w.watchers}th callback, p50`, ours: `${fmtMs(w.ours.last.p50)} ms`,
      baseline: `${fmtMs(w.raw.last.p50)} ms raw put + ${w.watchers} JS callbacks`, ratioText: `${(w.ours.last.p50 / w.raw.last.p50).toFixed(1)}× the latency`, goal: '—', verdict: 'recorded' });
    row({ id: '4', case: '… p99', ours: `${fmtMs(w.ours.last.p99)} ms`, baseline: `${fmtMs(w.raw.last.p99)} ms`, ratioText: `${(w.ours.last.p99 / w.raw.last.p99).toFixed(1)}× the latency`, goal: '—', verdict: 'recorded' });
    row({ id: '4′', case: '… set → 1st callback / set resolved, p50 (diagnostic)', ours: `${fmtMs(w.ours.first.p50)} / ${fmtMs(w.ours.set.p50)} ms`,
      baseline: `${fmtMs(w.raw.set.p50)} ms raw complete`, goal: '—', verdict: '—' });

  }
  if (r.sync) {
    const y = r.sync;
    p = paired(y, 'ours', 'raw', 'perSec');
    row({ id: '5', case: `initial sync, ${fmtInt(r.config.sync.n)} entries, empty store`, ours: `${(median(y.ours.map((x) => x.ms)) / 1000).toFixed(2)} s, ${fmtInt(p.a)} entries/s`,
      baseline: `${(median(y.raw.map((x) => x.ms)) / 1000).toFixed(2)} s, ${fmtInt(p.b)} entries/s raw IndexedDB (1 tx per 1,000 puts)`, ratio: p.ratio, range: [p.min, p.max], goal: '—', verdict: 'recorded' });
    const mark = (m) => median(y.ours.map((x) => x.marks[m] ?? NaN));
    const ms = (m) => `${fmtMs(mark(m))} ms`;
    row({ id: '5′', case: '… from open(): socket open / welcome / last snapshot part received (diagnostic)',
      ours: `${ms('socketOpen')} / ${ms('firstFrame')} / ${ms('snapshotReceived')}`,
      baseline: `${fmtInt(mark('snapshotParts'))} snapshot parts, ${(mark('chars') / 2 ** 20).toFixed(1)} MiB of JSON`, goal: '—', verdict: '—' });
    row({ id: '5′', case: '… snapshot transaction opened / complete; entries visible (diagnostic)',
      ours: `${ms('snapshotTxCreated')} / ${ms('snapshotTxComplete')}; ${ms('firstEntries')}`,
      baseline: `${fmtInt(mark('readwriteTransactions'))} readwrite transactions`, goal: '—', verdict: '—' });

  }
  const z = r.sizes;
  row({ id: '6', case: 'zestor_bg.wasm', ours: `${fmtBytes(z.wasm.raw)}, gzip -9 ${fmtBytes(z.wasm.gzip9)}`, baseline: '', goal: '—', verdict: 'recorded' });
  row({ id: '6', case: `JS glue (${z.js.files.join(', ')})`, ours: `${fmtBytes(z.js.raw)}, gzip -9 ${fmtBytes(z.js.gzip9)}`, baseline: '', goal: '—', verdict: 'recorded' });
  return rows;
}

/** The rows of browser.json (bench/RESULTS-FORMAT.md): numbers, each next to its same-run baseline. */
function resultRows(r) {
  const rows = [];
  const goal = (id, text, met) => ({ goal_id: id, goal: text, verdict: met ? 'met' : 'not met' });
  const share = (section, kase, unit, p, label, g) =>
    rows.push({ section, case: kase, value: p.a, unit, baseline: p.b, baseline_label: label, ratio: p.ratio * 100, ratio_unit: '%', verdict: 'recorded', ...g });
  const times = (section, kase, unit, a, b, label, ratio, g) =>
    rows.push({ section, case: kase, value: a, unit, baseline: b, baseline_label: label, ratio, ratio_unit: 'x', verdict: 'recorded', ...g });
  let p;
  if (r.batched) {
    const kase = `setMany of 1,000, ${fmtInt(r.config.batched.n)} entries`;
    p = paired(r.batched, 'ours', 'raw', 'perSec');
    share('Writes', kase, 'writes/s', p, 'raw IndexedDB, 1 transaction per 1,000 puts', goal('browser-batched-raw', '>= 80 % of raw IndexedDB', p.ratio >= 0.8));
    p = paired(r.batched, 'ours', 'dexie', 'perSec');
    share('Writes', kase, 'writes/s', p, 'Dexie.js bulkPut of 1,000', goal('browser-batched-dexie', '>= 1.0× Dexie bulkPut', p.ratio >= 1.0));
  }
  if (r.single) {
    const kase = 'single awaited `set`, one transaction each';
    p = paired(r.single, 'ours', 'raw', 'perSec');
    share('Writes', kase, 'writes/s', p, 'raw IndexedDB, 1 put per transaction', { goal: '>= 90 % of raw (the package\'s own goal)', verdict: p.ratio >= 0.9 ? 'met' : 'not met' });
    p = paired(r.single, 'ours', 'dexie', 'perSec');
    share('Writes', kase, 'writes/s', p, 'Dexie.js put');
  }
  if (r.reads) {
    const g = r.reads.get;
    p = paired(g, 'ours', 'dexie', 'perSec');
    times('Reads', `random \`get\` (synchronous, from memory), ${fmtInt(r.reads.keys)} keys`, 'gets/s', p.a, p.b, 'Dexie.js get (awaited)', p.ratio,
      goal('browser-reads-memory', '>= 10× Dexie get', p.ratio >= 10));
    p = paired(g, 'ours', 'raw', 'perSec');
    times('Reads', 'random `get`', 'gets/s', p.a, p.b, 'raw IndexedDB get, 1 readonly transaction each', p.ratio);
    const s = r.reads.scan;
    p = paired(s, 'ours', 'dexie', 'scansPerSec');
    times('Reads', `\`values(kind)\`, ${fmtInt(r.reads.keys)} entries`, 'scans/s', p.a, p.b, 'Dexie.js toArray()', p.ratio,
      { goal: '>= 10× Dexie toArray (the package\'s own goal)', verdict: p.ratio >= 10 ? 'met' : 'not met' });
    p = paired(s, 'ours', 'raw', 'scansPerSec');
    times('Reads', '`values(kind)`', 'scans/s', p.a, p.b, 'raw IndexedDB getAll()', p.ratio);
  }
  if (r.watch) {
    const w = r.watch;
    for (const q of ['p50', 'p99']) {
      times('Watch', `set → ${w.watchers}th callback, ${w.watchers} subscriptions, ${q}`, 'ms', w.ours.last[q], w.raw.last[q],
        `raw put + ${w.watchers} JS callbacks on complete`, w.ours.last[q] / w.raw.last[q]);
    }
  }
  if (r.sync) {
    p = paired(r.sync, 'ours', 'raw', 'perSec');
    share('Initial sync', `${fmtInt(r.config.sync.n)} entries from sync-server into an empty store`, 'entries/s', p, 'raw IndexedDB writing the same entries, 1 transaction per 1,000');
  }
  const z = r.sizes;
  const kb = z.wasm.gzip9 / 1000;
  rows.push({ section: 'Size', case: 'zestor_bg.wasm, gzip -9', value: kb, unit: 'KB', verdict: kb <= 300 ? 'met' : 'not met', goal_id: 'wasm-size', goal: '<= 300 KB gzipped' });
  rows.push({ section: 'Size', case: 'zestor_bg.wasm, raw', value: z.wasm.raw / 1000, unit: 'KB', verdict: 'recorded' });
  rows.push({ section: 'Size', case: `JS glue (${z.js.files.length} files), gzip -9`, value: z.js.gzip9 / 1000, unit: 'KB', verdict: 'recorded' });
  return rows;
}

/** Writes browser.json into $ZESTOR_BENCH_OUT (bench/RESULTS-FORMAT.md). */
function writeResults(r) {
  const dir = process.env.ZESTOR_BENCH_OUT;
  if (!dir) return;
  const c = r.config;
  const file = path.join(dir, 'browser.json');
  fs.writeFileSync(file, `${JSON.stringify({
    suite: 'browser',
    title: 'Browser (the npm package in headless Chromium)',
    source: 'store-wasm/bench/',
    command: 'node store-wasm/bench/run.mjs',
    quick: r.mode === 'quick',
    written: Math.floor(Date.now() / 1000),
    conditions: [
      `${r.browser.product}, headless, on-disk profile; zestor ${r.zestor}, Dexie.js ${r.dexie}; Node ${r.node}`,
      'IndexedDB durability: the browser default for zestor and every baseline',
      'every case alternates with its baselines in rounds in one page; figures are medians over rounds, ratios the median of per-round ratios',
      `sizes: batched ${fmtInt(c.batched.n)} entries, single ${fmtInt(c.single.m)} sets, reads over ${fmtInt(r.reads?.keys ?? 0)} keys, watch ${r.watch?.watchers ?? 0} subscriptions, initial sync ${fmtInt(c.sync.n)} entries`,
      `sync-server: ${r.syncServer.build} build, SQLite ${r.syncServer.sqlite}`,
      `load average at start ${r.machine.loadAverageAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${r.machine.loadAverageAtEnd.map((x) => x.toFixed(2)).join(' ')}`,
    ],
    rows: resultRows(r),
  }, null, 2)}\n`);
  console.log(`bench: wrote ${file}`);
}

function printTable(rows) {
  const cols = [
    ['#', (r) => r.id],
    ['case', (r) => r.case],
    ['zestor', (r) => r.ours],
    ['baseline (same page, same run)', (r) => r.baseline],
    ['ratio', (r) => (r.ratioText ?? (r.ratio === undefined ? '' : r.range ? `${fmtRatio(r.ratio)} [${fmtRatio(r.range[0])}..${fmtRatio(r.range[1])}]` : fmtRatio(r.ratio)))],
    ['goal', (r) => r.goal],
    ['verdict', (r) => r.verdict],
  ];
  const cells = rows.map((r) => cols.map(([, f]) => String(f(r) ?? '')));
  const widths = cols.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c) => c.map((x, i) => x.padEnd(widths[i])).join(' | ');
  console.log(line(cols.map(([h]) => h)));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const c of cells) console.log(line(c));
}

/** The write-path breakdown: mean ms per write (per batch of 1,000 for setMany) of each segment. */
function printWritePath(wp) {
  const segs = ['call', 'stage', 'issue', 'commit', 'reply', 'total'];
  const rows = [];
  const label = { ours: 'zestor', raw: 'raw IndexedDB', rawShape: 'raw, package layout' };
  for (const [what, title] of [['single', 'set'], ['batch', 'setMany(1,000)']]) {
    for (const side of ['ours', 'raw', 'rawShape']) {
      const x = wp[what][side];
      const d = what === 'single' ? 3 : 2;
      rows.push([`${title}: ${label[side]}`, ...segs.map((k) => x[k].toFixed(d)), x.puts.toFixed(0)]);
    }
  }
  const head = ['write path, mean ms', ...segs, 'puts'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (c) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join(' | ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const r of rows) console.log(line(r));
  console.log('call: until the promise is returned; stage: until the transaction opens; issue: opening it and issuing the puts;');
  console.log('commit: until `complete` (IndexedDB, browser process); reply: from `complete` until the caller resumes');
}

// ------------------------------------------------------------ profiles

/** Self and inclusive sample time per function, and the split by category, of the profiles of one side. */
function profileSummary(profiles) {
  const self = new Map();
  const total = new Map();
  const cats = new Map();
  let all = 0;
  const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v);
  for (const p of profiles) {
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const name = (n) => {
      const f = n.callFrame;
      const file = f.url ? f.url.replace(/^.*\//, '') : '';
      return `${f.functionName || '(anonymous)'}${file ? ` ${file}` : ''}`;
    };
    const category = (n) => {
      const f = n.callFrame;
      if (!f.url) return f.functionName.startsWith('(') ? f.functionName : 'native';
      if (f.url.endsWith('.wasm') || f.url.includes('wasm-function')) return 'wasm';
      return f.url.replace(/^.*\//, '');
    };
    for (let i = 0; i < p.samples.length; i++) {
      const dt = (p.timeDeltas[i + 1] ?? 0) / 1000; // ms
      let n = byId.get(p.samples[i]);
      all += dt;
      add(self, name(n), dt);
      add(cats, category(n), dt);
      const seen = new Set();
      for (; n; n = byId.get(parent.get(n.id))) {
        const k = name(n);
        if (!seen.has(k)) {
          seen.add(k);
          add(total, k, dt);
        }
      }
    }
  }
  const top = (m, k) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k);
  return { ms: all, categories: top(cats, 12), self: top(self, 20), total: top(total, 25) };
}

function printProfiles(byLabel) {
  for (const [label, profiles] of byLabel) {
    const s = profileSummary(profiles);
    const pct = (v) => `${((100 * v) / s.ms).toFixed(1).padStart(5)} %`;
    console.log(`\n== profile ${label} (${profiles.length} rounds, ${s.ms.toFixed(0)} ms sampled)`);
    console.log(`  by category: ${s.categories.map(([k, v]) => `${k} ${pct(v).trim()}`).join(', ')}`);
    console.log('  self time:');
    for (const [k, v] of s.self) console.log(`    ${pct(v)}  ${k}`);
    console.log('  inclusive time:');
    for (const [k, v] of s.total) console.log(`    ${pct(v)}  ${k}`);
  }
}

// ------------------------------------------------------------ run

const BROWSER_ARGS = [...CHROMIUM_ARGS, '--disable-features=LocalNetworkAccessChecks'];
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const loadBefore = os.loadavg()[0];
if (loadBefore > 0.5) console.warn(`bench: WARNING: load average ${load()} before the run: other work will skew the figures`);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zestor-bench-'));
const server = new SyncServer(dir);
for (const f of ['bench.html', 'bench.js']) fs.copyFileSync(path.join(here, f), path.join(server.static, f));
fs.copyFileSync(dexieFile, path.join(server.static, 'dexie.mjs'));
let context = null;
const cleanup = () => server.killNow();
process.once('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    cleanup();
    process.exit(130);
  });
}

const pageErrors = [];
const profiles = new Map();
let results;
try {
  await server.start();
  // An on-disk profile, as a user's browser has: a fresh incognito-like
  // context would keep IndexedDB in memory.
  context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: BROWSER_ARGS,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => {
    const text = m.text();
    if (text.startsWith('[bench] ')) console.log(`  ${text.slice(8)}`);
    else if (m.type() === 'error' || m.type() === 'warning') {
      console.log(`  page console.${m.type()}: ${text}`);
      if (m.type() === 'error') pageErrors.push(text);
    }
  });
  page.on('pageerror', (e) => {
    console.log(`  page uncaught: ${e.stack || e}`);
    pageErrors.push(String(e));
  });
  page.on('crash', () => pageErrors.push('the page crashed'));
  // Cross-origin isolation, for performance.now() at 5 µs instead of 100 µs
  // (the server's static files carry no COOP/COEP headers; added here; a
  // page fulfilled by Playwright has no loopback address, hence the
  // LocalNetworkAccessChecks flag for its WebSocket to 127.0.0.1).
  await page.route('**/bench.html', async (route) => {
    const response = await route.fetch();
    await route.fulfill({
      response,
      headers: { ...response.headers(), 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' },
    });
  });
  await page.goto(`${server.url}/bench.html`);
  const isolated = await page.evaluate(() => globalThis.crossOriginIsolated);
  if (!isolated) console.warn('bench: WARNING: the page is not cross-origin isolated: timers have 100 µs resolution');
  const loaded = await page.evaluate(() => window.benchReady);
  const cdp = await context.newCDPSession(page);
  const browserVersion = await cdp.send('Browser.getVersion');
  const userAgent = await page.evaluate(() => navigator.userAgent);
  const cfg = await page.evaluate(
    ([quick, server]) => window.bench.config({ quick, server }),
    [quick, { url: server.wsUrl, namespace: NAMESPACE, token: TOKEN }],
  );
  console.log(`bench: ${quick ? 'quick' : 'full'} run; zestor ${loaded.version}, Dexie ${loaded.dexie}, ${browserVersion.product}`);
  if (profile) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
    cdp.on('Profiler.consoleProfileFinished', ({ title, profile: p }) => {
      const label = title.replace(/:\d+$/, '');
      if (!profiles.has(label)) profiles.set(label, []);
      profiles.get(label).push(p);
      fs.mkdirSync(path.join(here, 'profiles'), { recursive: true });
      fs.writeFileSync(path.join(here, 'profiles', `${title.replaceAll(':', '-')}.cpuprofile`), JSON.stringify(p));
    });
    await page.evaluate(() => window.bench.setProfiling(true));
    console.log('bench: --profile: timings are distorted by the profiler; results.json is not written');
  }

  const step = async (label, fn, arg) => {
    const t0 = Date.now();
    console.log(`bench: ${label}`);
    const out = await page.evaluate(
      ([name, arg]) => window.bench[name](...arg, (line) => console.log(`[bench] ${line}`)),
      [fn, arg],
    );
    console.log(`bench: ${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return out;
  };
  results = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    machine: {
      loadAverageAtStart: os.loadavg(),
      cpu: os.cpus()[0]?.model,
      cpus: os.cpus().length,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      os: `${os.type()} ${os.release()}`,
    },
    crossOriginIsolated: isolated,
    browser: { product: browserVersion.product, revision: browserVersion.revision, userAgent, args: BROWSER_ARGS, profile: 'on disk (persistent context)' },
    node: process.version,
    zestor: loaded.version,
    dexie: loaded.dexie,
    syncServer: { binary: serverBin, build: serverBuild, sqlite: 'synchronous=full (default)' },
    indexedDbDurability: "the browser default (no durability option) for zestor and every baseline; 2″ adds raw with durability 'strict'",
    config: cfg,
  };
  results.sizes = sizes(path.join(server.static, 'pkg'));
  if (only.includes('batched')) results.batched = await step('1. batched writes', 'batched', [cfg.batched]);
  if (only.includes('single')) results.single = await step('2. single durable writes', 'single', [cfg.single]);
  if (only.includes('single') || only.includes('batched')) {
    results.writePath = await step('1/2. where a write\'s time goes (diagnostic)', 'writePath', [cfg.writePath]);
  }
  if (only.includes('reads')) results.reads = await step('3. reads', 'reads', [cfg.reads]);
  if (only.includes('watch')) results.watch = await step('4. watch latency', 'watch', [cfg.watch]);
  if (only.includes('sync')) {
    results.seed = await step('5. seeding the server', 'seed', [cfg.sync, cfg.server]);
    results.sync = await step('5. initial sync', 'initialSync', [cfg.sync, cfg.server, results.seed.rev]);
  }
  if (pageErrors.length) throw new Error(`the page reported errors:\n${pageErrors.join('\n')}`);
} catch (e) {
  console.error(`bench: FAILED: ${e.stack || e}`);
  console.error(`--- sync-server log (tail) ---\n${server.log(30)}`);
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  await server.stop();
  if (process.env.ZESTOR_KEEP_TMP) console.log(`bench: kept ${dir}`);
  else fs.rmSync(dir, { recursive: true, force: true });
}
if (process.exitCode) process.exit();

results.seconds = (Date.now() - started) / 1000;
results.machine.loadAverageAtEnd = os.loadavg();
results.summary = summarize(results);
console.log('');
console.log(`${results.browser.product} (${results.browser.userAgent})`);
console.log(`${results.machine.cpus} × ${results.machine.cpu}, ${results.machine.memGiB} GiB, ${results.machine.os}; Node ${process.version}; sync-server ${serverBuild} build`);
console.log(`load average (1, 5, 15 min) at start ${results.machine.loadAverageAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${load()}; page cross-origin isolated: ${results.crossOriginIsolated}`);
console.log(`zestor ${results.zestor} vs Dexie ${results.dexie} and raw IndexedDB; IndexedDB durability: browser default; ratios: median of per-round ratios [min..max]`);
console.log('');
printTable(results.summary);
if (results.writePath) {
  console.log('');
  printWritePath(results.writePath);
}
if (profile || only.length < WORKLOADS.length) {
  if (profile) printProfiles(profiles);
  if (profile) console.log(`\nbench: profiles in ${path.relative(process.cwd(), path.join(here, 'profiles')) || 'profiles'}/`);
  console.log(`bench: results.json not written (${profile ? '--profile' : '--only'})`);
  process.exit(0);
}
writeResults(results);
const out = path.join(here, 'results.json');
fs.writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nbench: wrote ${path.relative(process.cwd(), out) || out}; ${results.seconds.toFixed(0)} s in all`);
