// The package's TypeScript types as an app's strict `tsc` sees them,
// through the installed package's `exports`: types/models.ts (interface
// models, the hooks, and values that must not compile) and every ```ts and
// ```tsx example of store-wasm/README.md, each as a module of its own.
// Checked with `moduleResolution` `bundler`, `nodenext` and `node10` (the
// last through `typesVersions`, for setups older than `exports`).
//
// An example that uses `store` without declaring it gets
// `declare const store: ZestorStore`, and one without imports gets the
// package's exports, as the README's prose assumes.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { BIN, HERE, run } from '../harness.mjs';

const README = path.join(HERE, '../../store-wasm/README.md');
const OUT = path.join(HERE, 'types/readme');

/** The README's ```ts and ```tsx blocks: `{ line, lang, code }`. */
export function examples(markdown) {
  const blocks = [];
  const re = /^```(ts|tsx)\n([\s\S]*?)^```$/gm;
  for (const m of markdown.matchAll(re)) {
    blocks.push({ line: markdown.slice(0, m.index).split('\n').length, lang: m[1], code: m[2] });
  }
  return blocks;
}

function preamble(code) {
  const lines = [];
  if (!/^import /m.test(code)) lines.push('import { open, init, deleteStore } from "zestor";');
  if (!/\b(const|let) store\b/.test(code)) lines.push('declare const store: import("zestor").ZestorStore;');
  lines.push('export {};');
  return `${lines.join('\n')}\n`;
}

test('the README examples and the models type-check with strict tsc', () => {
  const blocks = examples(fs.readFileSync(README, 'utf8'));
  assert.ok(blocks.length >= 5, `only ${blocks.length} TypeScript examples in the README`);
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  for (const b of blocks) {
    fs.writeFileSync(path.join(OUT, `readme-line-${b.line}.${b.lang}`), `// store-wasm/README.md, line ${b.line}\n${preamble(b.code)}${b.code}`);
  }
  for (const resolution of ['bundler', 'nodenext', 'node10']) {
    const module = resolution === 'nodenext' ? 'nodenext' : 'esnext';
    try {
      run(path.join(BIN, 'tsc'), ['-p', 'types', '--module', module, '--moduleResolution', resolution]);
    } catch (e) {
      // tsc names the file as readme/readme-line-N.ts: the README's line N.
      assert.fail(`tsc --strict (moduleResolution ${resolution}) failed:\n${e.message}`);
    }
  }
});

test('a wrong example fails the check (the check can fail)', () => {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'wrong.ts'), `${preamble('')}await store.set("task", "t1", { title: () => "not JSON" });\n`);
  assert.throws(() => run(path.join(BIN, 'tsc'), ['-p', 'types']), /readme\/wrong\.ts\(\d+,\d+\): error TS2769/);
  fs.rmSync(OUT, { recursive: true, force: true });
});
