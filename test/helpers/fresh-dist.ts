/**
 * Runs once before the integration and e2e projects: makes sure dist/ is built from the sources
 * as they are now. Those tests run bin/keyctl.js and the crypto worker thread from dist/, so a
 * stale build would test old code while the sources under test look new. A source counts as
 * newer when its .ts file was modified after its .js output (tsc rewrites every output on each
 * build), or the output is missing; then the whole build runs. Type errors are `npm run
 * typecheck`'s business: tsc still writes the outputs then, so the run goes on with a warning;
 * only a build that wrote nothing fails it.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const srcDir = path.join(root, 'src');
const distDir = path.join(root, 'dist');

function mtimeMs(file: string): number | null {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return null;
  }
}

/** The first source whose output is missing or older than it, or null when dist/ is up to date. */
export function staleSource(): string | null {
  for (const entry of readdirSync(srcDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts') || entry.name.endsWith('.d.ts')) continue;
    const source = path.join(entry.parentPath, entry.name);
    const output = path.join(distDir, path.relative(srcDir, source)).replace(/\.ts$/, '.js');
    const built = mtimeMs(output);
    if (built === null || built < statSync(source).mtimeMs) return path.relative(root, source);
  }
  return null;
}

function build(reason: string): void {
  process.stderr.write(`fresh-dist: ${reason}; building dist/ (tsc -p tsconfig.build.json)\n`);
  const started = Date.now();
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' });
  // tsc exits 2 when it reported errors but wrote every output, 1 when it wrote none.
  if (r.status === 2) {
    process.stderr.write(`fresh-dist: built with type errors (run npm run typecheck):\n${r.stdout}${r.stderr}`);
  } else if (r.status !== 0) {
    throw new Error(`building dist/ failed (tsc exited ${r.status ?? r.signal}); the tests would run an old build:\n${r.stdout}${r.stderr}`);
  }
  process.stderr.write(`fresh-dist: built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

/**
 * bin/keyctl.js runs dist/bundle/ (scripts/bundle.mjs) when it was written after tsc's output, so
 * the bundle is rebuilt whenever it is missing or older than any file of that output (a partial
 * build, e.g. `tsc --watch`, rewrites only some), than the installed packages or than the script
 * itself: the tests run the same files a user's `npm ci` gives them.
 */
function bundle(): void {
  const started = Date.now();
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'bundle.mjs')], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bundling dist/ failed (scripts/bundle.mjs exited ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  process.stderr.write(`fresh-dist: bundled in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

/** The newest of what the bundle is made from: tsc's output (any file of it), the installed packages and the bundle script. */
function newestBundleInput(): number {
  let newest = Math.max(mtimeMs(path.join(root, 'node_modules', '.package-lock.json')) ?? 0, mtimeMs(path.join(root, 'scripts', 'bundle.mjs')) ?? 0);
  const bundleDir = path.join(distDir, 'bundle');
  for (const entry of readdirSync(distDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.js') || entry.parentPath === bundleDir || entry.parentPath.startsWith(bundleDir + path.sep)) continue;
    newest = Math.max(newest, mtimeMs(path.join(entry.parentPath, entry.name)) ?? 0);
  }
  return newest;
}

export default function setup(): void {
  const stale = staleSource();
  if (stale) build(`${stale} is newer than its build`);
  const bundled = mtimeMs(path.join(distDir, 'bundle', 'main.js'));
  if (stale || bundled === null || bundled < newestBundleInput()) bundle();
}
