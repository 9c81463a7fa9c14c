// Writes BENCHMARKS.md and the latency plots from the results files the
// benchmarks wrote (bench/RESULTS-FORMAT.md).
//
//   node bench/report.mjs --in DIR --out FILE.md --plots DIR
//
// --in     the directory of <suite>.json files (ZESTOR_BENCH_OUT of the run)
// --out    the Markdown file to write
// --plots  where the SVG plots go (linked from --out by relative path)
//
// scripts/bench.sh runs every benchmark and then this.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');

function fail(message) {
  console.error(`report: ${message}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  if (i < 0 || !args[i + 1]) fail(`missing ${name}; usage: node bench/report.mjs --in DIR --out FILE.md --plots DIR`);
  return path.resolve(args[i + 1]);
};
const inDir = opt('--in');
const outFile = opt('--out');
const plotDir = opt('--plots');

/** The suites in the order BENCHMARKS.md shows them. */
const SUITES = ['core', 'backends', 'server', 'peers', 'browser'];

/** The design's performance goals (../DESIGN's "Performance and reliability"). */
const GOALS = [
  ['core-get', 'core `get` ≥ 50 % of a raw `RwLock<HashMap>` lookup'],
  ['core-hub', 'the hub costs ≤ 10 % of write throughput with no watchers'],
  ['core-fanout', 'fan-out ≤ 200 ns per watcher per event'],
  ['browser-batched-raw', 'browser batched writes ≥ 80 % of raw IndexedDB batched `put`'],
  ['browser-batched-dexie', 'browser batched writes ≥ 1.0× Dexie.js `bulkPut`'],
  ['browser-reads-memory', 'reads from memory, not IndexedDB'],
  ['server-sqlite-acked', 'acknowledged durable writes ≥ 80 % of raw rusqlite batched upserts'],
  ['server-pg-acked', 'acknowledged durable writes ≥ 50 % of raw pipelined tokio-postgres upserts'],
  ['server-idle-memory', '10,000 idle WebSocket clients in ≤ 1 GiB'],
  ['server-fanout-p99', 'propagation p99 ≤ 3× the raw broadcast, every event delivered (100 × 400/s, 1,000 × 200/s, 10,000 × 20/s)'],
  ['server-fanout-memory', '≤ 100 KiB of server RSS per connection while fanning out to 10,000'],
  ['server-slow-client', 'a slow client never stalls others'],
  ['wasm-size', 'wasm package ≤ 300 KB gzipped'],
];

// ------------------------------------------------------------ input

const results = new Map();
for (const suite of SUITES) {
  const file = path.join(inDir, `${suite}.json`);
  if (!fs.existsSync(file)) continue;
  let r;
  try {
    r = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`${file} is not JSON: ${e.message}`);
  }
  if (!Array.isArray(r.rows)) fail(`${file} has no rows`);
  // When the bench wrote it; a file from before the field, its mtime
  // (which a checkout resets).
  r.written = Number.isInteger(r.written) ? new Date(r.written * 1000) : fs.statSync(file).mtime;
  results.set(suite, r);
}
if (results.size === 0) fail(`no results in ${inDir}: run scripts/bench.sh`);
const missing = SUITES.filter((s) => !results.has(s));
const quick = [...results.values()].some((r) => r.quick);

// ------------------------------------------------------------ formatting

const int = (x) => Math.round(x).toLocaleString('en-US');
function num(x) {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return int(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}
/** An axis label: no trailing zeros. */
const tick = (x) => String(Number(x.toPrecision(3)));
const withUnit = (x, unit) => (unit ? `${num(x)} ${unit}` : num(x));
function ratio(r) {
  if (r.ratio === undefined || r.ratio === null) return '';
  return r.ratio_unit === '%' ? `${num(r.ratio)} %` : `${num(r.ratio)}×`;
}
const cell = (s) => String(s ?? '').replaceAll('|', '\\|').replaceAll('\n', ' ');
const VERDICT = { met: 'met', 'not met': '**not met**', recorded: 'recorded' };

function table(head, rows) {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

function rowCells(r) {
  return [
    r.case,
    withUnit(r.value, r.unit),
    r.baseline === undefined ? '' : `${withUnit(r.baseline, r.unit)}, ${r.baseline_label ?? ''}`,
    ratio(r),
    r.goal ?? '',
    VERDICT[r.verdict] ?? r.verdict ?? '',
  ];
}

// ------------------------------------------------------------ plot

const COLORS = ['#1f6feb', '#d9480f', '#6e7781', '#2f9e44', '#ae3ec9'];

/** A line plot on log-log axes: one colour per system, p50 solid, p99 dashed. */
function svgPlot(plot) {
  const W = 760;
  const H = 460;
  const m = { l: 70, r: 200, t: 40, b: 56 };
  const pts = plot.series.flatMap((s) => s.points).filter(([x, y]) => x > 0 && y > 0);
  if (pts.length === 0) return null;
  const [xs, ys] = [pts.map((p) => p[0]), pts.map((p) => p[1])];
  const decades = (lo, hi) => [Math.floor(Math.log10(lo)), Math.ceil(Math.log10(hi))];
  const [x0, x1] = [Math.log2(Math.min(...xs)) - 0.25, Math.log2(Math.max(...xs)) + 0.25];
  const [y0, y1] = decades(Math.min(...ys), Math.max(...ys));
  const X = (x) => m.l + ((Math.log2(x) - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const Y = (y) => H - m.b - ((Math.log10(y) - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  const out = [];
  const esc = (s) => String(s).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${m.l}" y="22" font-size="15" font-weight="600">${esc(plot.title)}</text>`);
  // Grid and axes: y at 1, 2, 5 per decade; x at every measured rate.
  for (let d = y0; d <= y1; d++) {
    for (const k of d < y1 ? [1, 2, 5] : [1]) {
      const y = k * 10 ** d;
      const py = Y(y).toFixed(1);
      out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py}" y2="${py}" stroke="${k === 1 ? '#d0d7de' : '#eef1f4'}"/>`);
      out.push(`<text x="${m.l - 8}" y="${py}" text-anchor="end" dominant-baseline="middle" fill="#57606a">${tick(y)}</text>`);
    }
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    const px = X(x).toFixed(1);
    out.push(`<line x1="${px}" x2="${px}" y1="${m.t}" y2="${H - m.b}" stroke="#eef1f4"/>`);
    out.push(`<text x="${px}" y="${H - m.b + 18}" text-anchor="middle" fill="#57606a">${tick(x)}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#8c959f"/>`);
  out.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 14}" text-anchor="middle">${esc(plot.x_label)} (log scale)</text>`);
  out.push(`<text transform="translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(plot.y_label)} (log scale)</text>`);
  // Series: the system is the name without its trailing statistic.
  const systems = [];
  plot.series.forEach((s, i) => {
    const system = s.name.replace(/\s+p\d+$/, '');
    if (!systems.includes(system)) systems.push(system);
    const color = COLORS[systems.indexOf(system) % COLORS.length];
    const dashed = /p99$/.test(s.name);
    const p = s.points.filter(([x, y]) => x > 0 && y > 0).sort((a, b) => a[0] - b[0]);
    const d = p.map(([x, y], j) => `${j ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const [x, y] of p) out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3" fill="${dashed ? '#fff' : color}" stroke="${color}" stroke-width="1.5"><title>${esc(s.name)}: ${num(y)} at ${num(x)}</title></circle>`);
    const ly = m.t + 10 + i * 22;
    out.push(`<line x1="${W - m.r + 16}" x2="${W - m.r + 46}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${W - m.r + 54}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// ------------------------------------------------------------ machine

function sh(cmd, argv) {
  try {
    return execFileSync(cmd, argv, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** Uncommitted changes to tracked files, other than this report's own outputs. */
function dirty() {
  const outputs = [outFile, plotDir, inDir].map((p) => path.relative(repo, p));
  return sh('git', ['status', '--porcelain', '--untracked-files=no'])
    .split('\n')
    .map((l) => l.trim().replace(/^\S+\s+/, ''))
    .some((f) => f && !outputs.some((o) => f === o || f.startsWith(`${o}/`)));
}

const machine = [
  `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`,
  `${sh('rustc', ['--version'])}; Node ${process.version}`,
  `commit ${sh('git', ['rev-parse', '--short', 'HEAD'])}${dirty() ? ' (with uncommitted changes)' : ''}`,
  `load average (1, 5, 15 min) when the report was written: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
  `results written (UTC): ${[...results].map(([s, r]) => `${s} ${r.written.toISOString().slice(0, 16).replace('T', ' ')}`).join(', ')}`,
];

// ------------------------------------------------------------ document

const md = [];
const rel = (p) => path.relative(path.dirname(outFile), p).split(path.sep).join('/');
md.push('# Zestor benchmarks');
md.push('');
md.push(
  `Written by \`scripts/bench.sh\` on ${new Date().toISOString().slice(0, 10)}${quick ? ' in **quick mode: the figures are not meaningful** (the run only proves the suite works)' : ''}. ` +
    'Every figure stands next to a baseline measured in the same run, on the same machine, as a ratio. ' +
    `Regenerate with \`scripts/bench.sh\` (≈ 15 min on 2 cores); do not edit by hand. How each case is measured: [docs/benchmarks.md](${rel(path.join(repo, 'docs/benchmarks.md'))}).`,
);
md.push('');
md.push('Machine:');
md.push('');
for (const l of machine) md.push(`- ${l}`);
if (missing.length) md.push(`- not in this run: ${missing.join(', ')}`);
md.push('');

// Goals: every design goal with the row that judges it.
md.push('## Goals');
md.push('');
const goalRows = GOALS.map(([id, text]) => {
  const hits = [...results.entries()].flatMap(([suite, r]) => r.rows.filter((row) => row.goal_id === id).map((row) => ({ suite, row })));
  if (hits.length === 0) return [text, 'not measured in this run', '', '', '', '**not measured**'];
  // Several rows (e.g. one per value type): the goal is met when all are.
  const met = hits.every((h) => h.row.verdict === 'met');
  return [
    text,
    hits.map((h) => withUnit(h.row.value, h.row.unit)).join('; '),
    hits.map((h) => (h.row.baseline === undefined ? '—' : `${withUnit(h.row.baseline, h.row.unit)}, ${h.row.baseline_label}`)).join('; '),
    hits.map((h) => ratio(h.row) || '—').join('; '),
    [...new Set(hits.map((h) => h.suite))].map((s) => `[${s}](#${anchor(results.get(s).title)})`).join(', '),
    met ? 'met' : '**not met**',
  ];
});
md.push(table(['goal', 'Zestor', 'baseline (same run)', 'ratio', 'where', 'verdict'], goalRows));
md.push('');
const causes = path.join(here, 'findings.md');
if (fs.existsSync(causes)) {
  md.push(fs.readFileSync(causes, 'utf8').trim());
  md.push('');
}

// Plots.
fs.mkdirSync(plotDir, { recursive: true });
for (const [suite, r] of results) {
  if (!r.plot) continue;
  const svg = svgPlot(r.plot);
  if (!svg) continue;
  const file = path.join(plotDir, `${suite}-latency.svg`);
  fs.writeFileSync(file, svg);
  console.log(`report: wrote ${path.relative(process.cwd(), file)}`);
  md.push(`## ${r.plot.title} (${r.title})`);
  md.push('');
  md.push(`![${r.plot.title}](${rel(file)})`);
  md.push('');
}

function anchor(title) {
  return title
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .trim()
    .replace(/\s/g, '-');
}

// One section per suite: rows grouped by their section, then conditions and notes.
for (const suite of SUITES) {
  const r = results.get(suite);
  if (!r) continue;
  md.push(`## ${r.title}`);
  md.push('');
  md.push(`\`${r.command}\` (${r.source})${r.quick ? ', quick mode' : ''}`);
  md.push('');
  const groups = [];
  for (const row of r.rows) {
    const name = row.section ?? '';
    let g = groups.find((x) => x.name === name);
    if (!g) groups.push((g = { name, rows: [] }));
    g.rows.push(row);
  }
  for (const g of groups) {
    if (g.name && groups.length > 1) {
      md.push(`### ${g.name}`);
      md.push('');
    }
    md.push(table(['case', 'Zestor', 'baseline (same run)', 'ratio', 'goal', 'verdict'], g.rows.map(rowCells)));
    md.push('');
  }
  md.push('Conditions:');
  md.push('');
  for (const c of r.conditions ?? []) md.push(`- ${c}`);
  md.push('');
  if (r.notes?.length) {
    md.push('Notes:');
    md.push('');
    for (const n of r.notes) md.push(`- ${n}`);
    md.push('');
  }
}

fs.mkdirSync(path.dirname(outFile), { recursive: true });
fs.writeFileSync(outFile, `${md.join('\n').trimEnd()}\n`);
console.log(`report: wrote ${path.relative(process.cwd(), outFile)} (${results.size} suites${quick ? ', quick mode' : ''})`);
