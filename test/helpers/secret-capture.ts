/**
 * The suite-wide secret grep. Every keyctl run a test makes (test/helpers/cli.ts) is recorded in
 * a capture directory shared by the whole run (KEYCTL_TEST_CAPTURE_DIR, made by global-setup.ts):
 * its stdout and stderr, the key material of the keyring files in its project directory, and any
 * secret found in the files the run wrote there (checked at once: test directories are gone by the
 * end). Tests declare the database passwords they use with `declareTestSecret`; the servers'
 * passwords come from the test URLs. At the end of the run `findLeaks` looks for every secret, raw
 * and as base64, base64url and hex, in every capture, and global-setup's teardown fails the run
 * listing each one found.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { MYSQL_ADMIN_URL, PG_ADMIN_URL } from './env.js';

export const CAPTURE_ENV = 'KEYCTL_TEST_CAPTURE_DIR';

interface Secret {
  label: string;
  /** The secret's bytes, base64. */
  value: string;
}

interface RunCapture {
  how: 'child' | 'in-process';
  command: string;
  cwd: string;
  test: string;
  stdout: string;
  stderr: string;
}

export interface Leak {
  secret: string;
  form: string;
  where: string;
}

function captureDir(): string | undefined {
  return process.env[CAPTURE_ENV] || undefined;
}

const known = new Map<string, Secret>();
let serversDeclared = false;

/** The test servers' passwords (global-setup gives PostgreSQL one when its server ignores it). */
function declareServerPasswords(): void {
  if (serversDeclared) return;
  serversDeclared = true;
  for (const url of [PG_ADMIN_URL, MYSQL_ADMIN_URL]) {
    const password = URL.canParse(url) ? decodeURIComponent(new URL(url).password) : '';
    if (password) declareTestSecret(password, `password of the test server ${new URL(url).host}`);
  }
}

/** What a capture calls the run: the command and the names of its options, never their values. */
export function describeArgs(args: readonly string[]): string {
  const command = args.find((a) => !a.startsWith('-')) ?? '';
  return [command, ...args.filter((a) => a.startsWith('-')).map((a) => a.split('=')[0])].join(' ').trim();
}

function currentTest(): string {
  const s = expect.getState();
  return `${s.testPath ? path.basename(s.testPath) : '?'}: ${s.currentTestName ?? '?'}`;
}

function remember(s: Secret): void {
  if (known.has(s.value)) return;
  known.set(s.value, s);
  const dir = captureDir();
  if (dir) appendFileSync(path.join(dir, `secrets-${process.pid}.jsonl`), `${JSON.stringify(s)}\n`, { mode: 0o600 });
}

/** A secret this test hands to keyctl (a database password): no output of the run may contain it. */
export function declareTestSecret(value: string | Buffer, label: string): void {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (bytes.length >= 4) remember({ label, value: bytes.toString('base64') });
}

/** The forms a secret could be printed in. Short text passwords are looked for raw and percent-encoded only. */
export function formsOf(s: Secret): Array<[form: string, text: string]> {
  const bytes = Buffer.from(s.value, 'base64');
  const forms: Array<[string, string]> = [];
  const text = bytes.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(bytes) && /^[\x20-\x7e]+$/.test(text)) {
    forms.push(['raw', text]);
    if (encodeURIComponent(text) !== text) forms.push(['percent-encoded', encodeURIComponent(text)]);
  }
  if (bytes.length >= 16) {
    forms.push(['base64', bytes.toString('base64').replace(/=+$/, '')]);
    forms.push(['base64url', bytes.toString('base64url')]);
    forms.push(['hex', bytes.toString('hex')]);
    forms.push(['HEX', bytes.toString('hex').toUpperCase()]);
  }
  return forms;
}

function findIn(haystack: Buffer | string, where: string, secrets: Iterable<Secret>): Leak[] {
  const leaks: Leak[] = [];
  const buf = typeof haystack === 'string' ? Buffer.from(haystack, 'utf8') : haystack;
  for (const s of secrets) {
    const bytes = Buffer.from(s.value, 'base64');
    if (bytes.length >= 16 && buf.includes(bytes)) leaks.push({ secret: s.label, form: 'bytes', where });
    for (const [form, text] of formsOf(s)) if (buf.includes(text)) leaks.push({ secret: s.label, form, where });
  }
  return leaks;
}

/** Key material held by keyring documents (published or archive) under `dir`. */
function keysUnder(dir: string): Secret[] {
  const found: Secret[] = [];
  for (const file of walk(dir, 3)) {
    if (!file.endsWith('.json')) continue;
    let doc: unknown;
    try {
      if (statSync(file).size > 1_000_000) continue;
      doc = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      continue;
    }
    const keys = (doc as { keyring?: unknown; keys?: unknown } | null)?.keys;
    if (typeof (doc as { keyring?: unknown }).keyring !== 'string' || !keys || typeof keys !== 'object') continue;
    for (const [version, v] of Object.entries(keys as Record<string, unknown>)) {
      const b64 = typeof v === 'string' ? v : typeof (v as { key?: unknown })?.key === 'string' ? (v as { key: string }).key : null;
      if (b64 && Buffer.from(b64, 'base64').length === 32) found.push({ label: `key ${version} of ${path.relative(dir, file)}`, value: b64 });
    }
  }
  return found;
}

/**
 * Inode numbers of the files this process holds a POSIX record lock on (Linux's /proc/locks), or
 * null where that cannot be read.
 */
function inodesLockedHere(): Set<number> | null {
  let text: string;
  try {
    text = readFileSync('/proc/locks', 'utf8');
  } catch {
    return null;
  }
  const inodes = new Set<number>();
  // `4: POSIX  ADVISORY  READ 8704 fe:00:2146808 1073741826 1073742335`; a waiter's line has `->`.
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === 'POSIX' && Number(f[4]) === process.pid) inodes.add(Number(f[5]?.split(':')[2]));
  }
  return inodes;
}

/**
 * A file's bytes, read so that the test's own locks on it survive. A close() of any descriptor of
 * a file drops every POSIX lock the process holds on it, and a test may hold a SQLite connection
 * to the project's database (WAL mode locks the database and its -shm file): another process then
 * takes itself for the last one, deletes the -wal and -shm on close, and the test's connection
 * reads its unlinked copy from then on. Such a file is read by another process, whose close() is
 * its own.
 */
function readKeepingLocks(file: string, ino: number, locked: Set<number> | null): Buffer {
  // By name as well: /proc/locks may list nothing of this process (another PID namespace).
  const held = Boolean(locked?.has(ino)) || /\.(db|sqlite3?)(-wal|-shm|-journal)?$/.test(file);
  if (held) {
    try {
      return execFileSync('cat', [file], { maxBuffer: 64 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      // No cat here: the file is still checked, at the risk the comment above describes.
    }
  }
  return readFileSync(file);
}

/** Files under `dir` (not following links), at most `depth` directories down. */
function* walk(dir: string, depth: number): Generator<string> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isFile()) yield p;
    else if (e.isDirectory() && depth > 0 && e.name !== 'node_modules') yield* walk(p, depth - 1);
  }
}

/** Files that hold key material by design: the keyring documents, their writers' temp files. */
function holdsKeysByDesign(file: string, keyringFiles: Set<string>): boolean {
  if (keyringFiles.has(file)) return true;
  const base = path.basename(file);
  return [...keyringFiles].some((k) => base.startsWith(`.${path.basename(k)}.`) && base.endsWith('.tmp') && path.dirname(k) === path.dirname(file));
}

/** Record one keyctl run: its output, the keys of its project, and secrets in the files it wrote. */
export function recordRun(run: Omit<RunCapture, 'test' | 'command'> & { args: readonly string[]; startedMs: number }): void {
  const dir = captureDir();
  if (!dir) return;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  declareServerPasswords();
  const keys = keysUnder(run.cwd);
  for (const k of keys) remember(k);
  const capture: RunCapture = { how: run.how, command: describeArgs(run.args), cwd: run.cwd, test: currentTest(), stdout: run.stdout, stderr: run.stderr };
  appendFileSync(path.join(dir, `runs-${process.pid}.jsonl`), `${JSON.stringify(capture)}\n`, { mode: 0o600 });
  // Files this run wrote (the project directory is removed before the run ends, so look now).
  const keyringFiles = new Set([...walk(run.cwd, 3)].filter((f) => keys.some((k) => k.label.endsWith(` of ${path.relative(run.cwd, f)}`))));
  const leaks: Leak[] = [];
  const locked = inodesLockedHere();
  for (const file of walk(run.cwd, 3)) {
    let st: import('node:fs').Stats;
    try {
      st = statSync(file);
    } catch {
      continue;
    }
    if (st.mtimeMs < run.startedMs || st.size > 50_000_000 || holdsKeysByDesign(file, keyringFiles)) continue;
    // Only `init` (without --existing-config) writes keyctl.yaml; a test may write it just before a run.
    // One that init wrote 0600 may hold the secret the operator asked for (a ${VAR:-default}).
    const initWroteConfig = /^init\b/.test(capture.command) && !capture.command.includes('--existing-config');
    if (path.basename(file) === 'keyctl.yaml' && (!initWroteConfig || (st.mode & 0o077) === 0)) continue;
    let bytes: Buffer;
    try {
      bytes = readKeepingLocks(file, st.ino, locked);
    } catch {
      continue;
    }
    leaks.push(...findIn(bytes, `file ${file} written by \`keyctl ${capture.command}\` (${capture.test})`, known.values()));
  }
  if (leaks.length > 0) appendFileSync(path.join(dir, `leaks-${process.pid}.jsonl`), leaks.map((l) => `${JSON.stringify(l)}\n`).join(''));
}

/** Every secret recorded in the run, in every capture; plus what the file checks found. */
export function findLeaks(dir: string): { runs: number; secrets: number; leaks: Leak[] } {
  const names = readdirSync(dir);
  const secrets = new Map<string, Secret>();
  for (const n of names.filter((n) => n.startsWith('secrets-'))) {
    for (const line of readFileSync(path.join(dir, n), 'utf8').split('\n'))
      if (line) secrets.set((JSON.parse(line) as Secret).value, JSON.parse(line) as Secret);
  }
  const leaks: Leak[] = [];
  let runs = 0;
  for (const n of names.filter((n) => n.startsWith('runs-'))) {
    for (const line of readFileSync(path.join(dir, n), 'utf8').split('\n')) {
      if (!line) continue;
      runs++;
      const r = JSON.parse(line) as RunCapture;
      const where = `\`keyctl ${r.command}\` (${r.how}) in ${r.test}`;
      leaks.push(...findIn(r.stdout, `stdout of ${where}`, secrets.values()), ...findIn(r.stderr, `stderr of ${where}`, secrets.values()));
    }
  }
  for (const n of names.filter((n) => n.startsWith('leaks-'))) {
    for (const line of readFileSync(path.join(dir, n), 'utf8').split('\n')) if (line) leaks.push(JSON.parse(line) as Leak);
  }
  return { runs, secrets: secrets.size, leaks };
}
