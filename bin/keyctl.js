#!/bin/sh
//bin/sh -c :; if [ -z "${GLIBC_TUNABLES+set}" ]; then GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864:glibc.malloc.mmap_threshold=33554432 KEYCTL_LAUNCHER_GLIBC_TUNABLES=1; export GLIBC_TUNABLES KEYCTL_LAUNCHER_GLIBC_TUNABLES; else unset KEYCTL_LAUNCHER_GLIBC_TUNABLES; fi; exec node "$0" "$@"; exit 127
// Tiny launcher: the CLI is compiled to dist/ and bundled into dist/bundle/ by `npm ci` / `npm run build`.
//
// Run as a program (`keyctl`, `npx keyctl`, `./bin/keyctl.js`) this file is first a shell script.
// Its second line, a comment to Node.js (`//bin/sh -c :` is a no-op to the shell), sets
// GLIBC_TUNABLES unless it is set already and replaces the shell with Node.js running this file
// (exec: the same pid, so signals, kill -9 and the job files behave as before; without Node.js on
// PATH it stops there with exit 127, as `#!/usr/bin/env node` did). glibc reads the variable only
// when a process starts: it tells malloc to keep up to 64 MiB of freed memory for reuse instead of
// handing it back to the kernel at every garbage collection, which cut the page faults of a
// reencrypt on MySQL/MariaDB and PostgreSQL by a third to four fifths (docs/performance.md, "Page
// faults, and glibc's malloc"). It applies to every command. musl ignores it. Run as `node
// bin/keyctl.js`, the shell line is skipped and nothing is set.
import { statSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

// What the shell line set is not passed on to the programs keyctl starts (runbook checks); an
// operator's own GLIBC_TUNABLES is (the shell line unsets the marker then, and the value is checked
// too for `node bin/keyctl.js`, which runs no shell line). The same value as line 2 (the launcher
// test in test/e2e/cli.test.ts fails when the two differ).
const LAUNCHER_TUNABLES = 'glibc.malloc.trim_threshold=67108864:glibc.malloc.mmap_threshold=33554432';
if (process.env.KEYCTL_LAUNCHER_GLIBC_TUNABLES === '1' && process.env.GLIBC_TUNABLES === LAUNCHER_TUNABLES) {
  delete process.env.GLIBC_TUNABLES;
  delete process.env.KEYCTL_LAUNCHER_GLIBC_TUNABLES;
}

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
