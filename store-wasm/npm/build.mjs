// Assembles the npm package from wasm-pack's `--target web` output:
//
//   node store-wasm/npm/build.mjs BINDGEN_DIR OUT_DIR
//
// OUT_DIR gets this folder's entry points, types and package.json, the
// wasm-bindgen glue (as glue.js, with its snippets), zestor_bg.wasm, and
// wasm-inline.js: the module gzipped, in base64, for the `zestor` entry
// point (index.js). scripts/build-wasm.sh runs it.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const [bindgen, out] = process.argv.slice(2);
if (!bindgen || !out) {
  console.error('usage: node store-wasm/npm/build.mjs BINDGEN_DIR OUT_DIR');
  process.exit(2);
}
const fail = (message) => {
  console.error(`npm/build.mjs: ${message}`);
  process.exit(1);
};

const pkg = JSON.parse(fs.readFileSync(path.join(here, 'package.json'), 'utf8'));
const built = JSON.parse(fs.readFileSync(path.join(bindgen, 'package.json'), 'utf8'));
if (pkg.version !== built.version) {
  fail(`store-wasm/npm/package.json says version ${pkg.version}, the crate ${built.version}: make them agree`);
}

let glue = fs.readFileSync(path.join(bindgen, 'zestor.js'), 'utf8');
// Its types are not the package's (zestor.d.ts is); the glue is internal.
glue = glue.replace(/^\/\* @ts-self-types="[^"]*" \*\/\n/, '');
if (glue.includes('import.meta.url')) {
  fail('the glue names a default module path (import.meta.url): build with omit-default-module-path (store-wasm/Cargo.toml)');
}
const wasm = fs.readFileSync(path.join(bindgen, 'zestor_bg.wasm'));

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
for (const file of ['index.js', 'url.js', 'loader.js', 'react.js', 'react.d.ts', 'zestor.d.ts', 'package.json']) {
  fs.copyFileSync(path.join(here, file), path.join(out, file));
}
fs.copyFileSync(path.join(here, '../README.md'), path.join(out, 'README.md'));
fs.copyFileSync(path.join(here, '../LICENSE'), path.join(out, 'LICENSE'));
fs.writeFileSync(path.join(out, 'glue.js'), glue);
fs.cpSync(path.join(bindgen, 'snippets'), path.join(out, 'snippets'), { recursive: true });
fs.writeFileSync(path.join(out, 'zestor_bg.wasm'), wasm);

const gz = zlib.gzipSync(wasm, { level: 9 });
fs.writeFileSync(
  path.join(out, 'wasm-inline.js'),
  '// zestor_bg.wasm, gzipped, in base64 (written by store-wasm/npm/build.mjs).\n' +
    `export default '${gz.toString('base64')}';\n`,
);

// Everything package.json lists is here, and nothing else.
const listed = new Set(pkg.files.map((f) => f.replace(/\/$/, '')));
for (const name of fs.readdirSync(out)) {
  if (!listed.has(name) && !['package.json', 'README.md', 'LICENSE'].includes(name)) fail(`${name} is not in package.json's files`);
}
for (const name of listed) {
  if (!fs.existsSync(path.join(out, name))) fail(`package.json lists ${name}, which the build did not write`);
}
console.log(`npm/build.mjs: ${out}: zestor_bg.wasm ${wasm.length} bytes (${gz.length} gzipped), wasm-inline.js ${fs.statSync(path.join(out, 'wasm-inline.js')).size} bytes`);
