// What the runners of the browser tests (store-wasm/js-tests/run.mjs,
// tests/e2e/run.mjs) share: the checks for the browser and playwright-core,
// the choice of test files, and Node's test runner over them, one file at a
// time (each file starts its own server and browser), with
// ZESTOR_REQUIRE_ALL=1 turning every skip into a failure.

import fs from 'node:fs';
import path from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';

import { CHROMIUM, REQUIRE_ALL } from './browser.mjs';

export { cargoTargetDir } from './browser.mjs';

export class Runner {
  /** `label` prefixes the runner's messages; `dir` is the test folder (its tests in `dir/tests`). */
  constructor(label, dir) {
    this.label = label;
    this.dir = dir;
  }

  fail(message) {
    console.error(`${this.label}: ${message}`);
    process.exit(1);
  }

  /**
   * Exits when the tests cannot run: without Chromium, successfully (they
   * are skipped) unless ZESTOR_REQUIRE_ALL=1; without playwright-core
   * (`playwright`: `() => import('playwright-core')`, written in the
   * folder's runner), with the command that installs it.
   */
  async requireBrowser(playwright) {
    if (!fs.existsSync(CHROMIUM)) {
      const message = `Chromium not found at ${CHROMIUM}; run scripts/install-browser-tools.sh`;
      if (REQUIRE_ALL) this.fail(`${message} (ZESTOR_REQUIRE_ALL=1 forbids skipping)`);
      console.log(`${this.label}: SKIPPED: ${message}`);
      process.exit(0);
    }
    try {
      await playwright();
    } catch {
      this.fail(`playwright-core is not installed: run \`npm ci\` in ${path.relative(process.cwd(), this.dir) || '.'}`);
    }
  }

  /** The files `tests/*.test.mjs` whose name contains one of `words` (all of them without words), in order. */
  testFiles(words) {
    const files = fs
      .readdirSync(path.join(this.dir, 'tests'))
      .filter((f) => f.endsWith('.test.mjs'))
      .filter((f) => words.length === 0 || words.some((w) => f.includes(w)))
      .sort()
      .map((f) => path.join(this.dir, 'tests', f));
    if (files.length === 0) this.fail(`no test file matches ${words.join(' ')}`);
    return files;
  }

  /** Runs `files` one at a time with the spec reporter; sets the exit code; `onEnd()` runs after the report. */
  run(files, { onEnd = null } = {}) {
    let failed = 0;
    let skipped = 0;
    const stream = run({ files, concurrency: 1 });
    stream.on('test:fail', () => failed++);
    stream.on('test:pass', (t) => {
      if (t.skip !== undefined || t.todo !== undefined) skipped++;
    });
    const out = stream.compose(new spec());
    out.pipe(process.stdout);
    out.on('end', () => {
      onEnd?.();
      if (failed > 0) process.exitCode = 1;
      if (skipped > 0 && REQUIRE_ALL) {
        console.error(`${this.label}: ${skipped} test(s) skipped; ZESTOR_REQUIRE_ALL=1 forbids skipping`);
        process.exitCode = 1;
      }
    });
  }
}
