#!/usr/bin/env node
// Tiny launcher: the CLI is compiled to dist/ and bundled into dist/bundle/ by `npm ci` / `npm run build`.
import { statSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

// By default V8 lets a heap grow to up to 4× what survived its last full collection before it
// collects again. keyctl's live data is small (the batches in flight), so it grows heaps by 20%
// instead: a 1,000,000-row SQLite reencrypt peaked about 90 MiB lower without losing speed
// (measured at 30%; docs/performance.md, "Memory"). The flag is read at each collection, for
// every thread.
setFlagsFromString('--heap-growing-percent=20');

// dist/bundle/ (scripts/bundle.mjs) holds the same code as dist/cli/ in far fewer files, with
// copies of Knex, the drivers, zod, yaml and commander, and starts about a fifth faster. It is used
// only when it was written after tsc's last full build and after npm last changed node_modules, so
// a `tsc` run on its own, a bundle step that failed or an `npm update` never leaves older code in
// charge. (A partial build such as `tsc --watch` rewrites only the files it changed: run
// `npm run build`, or `node scripts/bundle.mjs`, before running keyctl from it.)
/** @param {string} rel */
const mtime = (rel) => {
  try {
    return statSync(new URL(rel, import.meta.url)).mtimeMs;
  } catch {
    return -1;
  }
};
const bundled = mtime('../dist/bundle/main.js');
const fresh = bundled >= 0 && bundled >= mtime('../dist/cli/main.js') && bundled >= mtime('../node_modules/.package-lock.json');
const entry = fresh ? '../dist/bundle/main.js' : '../dist/cli/main.js';

let cli;
try {
  cli = await import(entry);
} catch (err) {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    process.stderr.write('keyctl: error: keyctl is not built yet\nkeyctl: hint: run `npm ci` (or `npm run build`) in the keyctl directory\n');
    process.exit(1);
  }
  throw err;
}
let cwd;
try {
  cwd = process.cwd();
} catch {
  // The shell's directory was deleted (or renamed) under it.
  process.stderr.write(
    'keyctl: error: the current directory no longer exists\nkeyctl: hint: cd to the directory holding keyctl.yaml (or pass --config PATH from an existing directory)\n',
  );
  process.exit(2);
}
// Everything keyctl takes from the process, handed in here (tests hand in their own).
process.exitCode = await cli.main({
  argv: process.argv,
  env: process.env,
  cwd,
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  stdinIsTTY: Boolean(process.stdin.isTTY),
  onSignal: (signal, handler) => {
    process.on(signal, handler);
    return () => void process.off(signal, handler);
  },
  exitNow: (status) => process.exit(status),
});
