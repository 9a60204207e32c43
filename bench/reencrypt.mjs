#!/usr/bin/env node
// Re-encryption benchmark: one table of N rows with two encrypted columns (an email and a
// ~200-character note), measured on the same data and database:
//   keyctl      `keyctl reencrypt` run as a child process (the real command path), wall time and peak RSS
//   dry run     `keyctl reencrypt --dry-run`: the same reads and crypto without writes
//   crypto      the same decrypt + encrypt of the same values in memory, one thread, keyctl's codec,
//               measured before and again after keyctl's run (the ratios use the mean of the two)
//               (and once more split across one thread per core, to show how far crypto scales here)
//   database    a server-side rewrite of the same columns in keyset batches (no client can beat it)
//   peer        keyset pages of 1,000, one UPDATE per row in one transaction per page (the best
//               hand-written loop, as ORM rotation helpers do it), over --peer-rows rows (all by default)
//   verify      `keyctl verify`: the full decryption scan, against the crypto ceiling
//   naive       OFFSET pages of 100, then one UPDATE per row (how hand-written procedures do it),
//               measured on --naive-rows rows in pages spread evenly over the table (so OFFSET costs
//               what it would on average over a full run) and reported as rows/s
// With --plaintext the table holds plaintext (a table being onboarded, `plaintext: encrypt`): keyctl
// encrypts it for the first time and the crypto ceiling is encryption alone.
// With --fernet the table holds Fernet tokens behind a `FERNET_V1:` prefix under v1, and keyctl
// migrates them to AES-GCM (`from: { codec: fernet, versions: [v1] }`); the crypto ceiling is
// Fernet decryption (HMAC + AES-128-CBC) and AES-GCM encryption.
// Usage: npm run bench -- --db sqlite|pg|mysql --rows N [--plaintext | --fernet] [--batch-size N] [--naive-rows N] [--peer-rows N] [--keep] [--profile DIR] [--quick]
// KEYCTL_BENCH_NODE_ARGS: extra node options for the timed keyctl reencrypt (e.g. --max-semi-space-size=32).
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { programEnv } from './program.mjs';
import { AesGcmV1Codec } from '../dist/crypto/codec.js';
import { FernetCodec } from '../dist/crypto/fernet.js';
import { generateKey } from '../dist/crypto/keys.js';

const args = process.argv.slice(2);
/**
 * The value after --NAME on the command line, else `def`.
 * @param {string} name
 * @param {string} [def]
 * @returns {string | undefined}
 */
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const dbKind = opt('db', 'sqlite') ?? 'sqlite';
const rows = Number(opt('rows', '200000'));
const naiveRows = Math.min(rows, Number(opt('naive-rows', String(Math.min(rows, 5000)))));
// The hand-written peer runs over the whole table unless told otherwise.
const peerRows = Math.min(rows, Number(opt('peer-rows', String(rows))));
const batchSize = opt('batch-size');
const cryptoWorkers = opt('workers');
const batchArgs = [...(batchSize ? ['--batch-size', batchSize] : []), ...(cryptoWorkers ? ['--crypto-workers', cryptoWorkers] : [])];
const keep = args.includes('--keep');
const plaintext = args.includes('--plaintext');
const fernetFrom = args.includes('--fernet');
if (plaintext && fernetFrom) throw new Error('--plaintext and --fernet are two different tables: choose one');
const FERNET_PREFIX = 'FERNET_V1:';
// --profile DIR: write a V8 CPU profile of the keyctl reencrypt process into DIR.
const profileDir = opt('profile');
const profileArgs = [
  ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profileDir)}`] : []),
  ...(process.env.KEYCTL_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
];
const PG = process.env.KEYCTL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const MY = process.env.KEYCTL_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
// KEYCTL_BENCH_BIN: another build's bin/keyctl.js (an older commit's worktree), to compare two builds with the same bench.
const bin = process.env.KEYCTL_BENCH_BIN ? path.resolve(process.env.KEYCTL_BENCH_BIN) : fileURLToPath(new URL('../bin/keyctl.js', import.meta.url));
// The timed commands run as an operator runs keyctl: the launcher as a program (its shell line sets
// glibc's malloc tunables, see bin/keyctl.js), with this Node.js first on PATH. With node options
// (--profile, KEYCTL_BENCH_NODE_ARGS) they run as `node OPTIONS bin/keyctl.js`, without the tunables.
// An older build's launcher (KEYCTL_BENCH_BIN) may have no shell line: a pair of builds then also
// compares the tunables. The report says how keyctl ran and what GLIBC_TUNABLES the bench inherited.
const asProgram = profileArgs.length === 0;
const launch = `${asProgram ? 'as a program' : 'as node OPTIONS bin/keyctl.js'}, GLIBC_TUNABLES ${process.env.GLIBC_TUNABLES === undefined ? (asProgram ? 'left to the launcher' : 'unset') : `'${process.env.GLIBC_TUNABLES}' from the environment`}`;
/** @param {string[]} a keyctl's arguments */
const timedCommand = (a) => ['-f', '%M %e %U %S %R', ...(asProgram ? [bin] : [process.execPath, ...profileArgs, bin]), ...a];
// --quick: only keyctl reencrypt and the crypto ceiling (for pairs of builds run one after the other).
const quick = args.includes('--quick');
const quiet = { warn() {}, error() {}, debug() {}, deprecate() {} };

const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-bench-'));
const dbName = `keyctl_bench_${randomBytes(4).toString('hex')}`;
/** @param {string} [database] */
function knexFor(database) {
  if (dbKind === 'sqlite')
    return knexFactory({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'bench.db') }, useNullAsDefault: true, log: quiet });
  const u = new URL(dbKind === 'pg' ? PG : MY);
  if (database) u.pathname = `/${database}`;
  return dbKind === 'pg'
    ? knexFactory({ client: 'pg', connection: { connectionString: u.toString() }, pool: { min: 0, max: 2 }, log: quiet })
    : knexFactory({
        client: 'mysql2',
        connection: {
          host: u.hostname,
          port: Number(u.port || 3306),
          user: decodeURIComponent(u.username),
          password: decodeURIComponent(u.password),
          database: database ?? u.pathname.slice(1),
        },
        pool: { min: 0, max: 2 },
        log: quiet,
      });
}
function connectionUrl() {
  if (dbKind === 'sqlite') return './bench.db';
  const u = new URL(dbKind === 'pg' ? PG : MY);
  u.pathname = `/${dbName}`;
  return u.toString();
}

const codec = new AesGcmV1Codec();
const fernet = new FernetCodec({ prefix: FERNET_PREFIX });
/** What a v1 value was written with: AES-GCM, or Fernet with --fernet. @type {(plain: string) => string} */
const writeV1 = (p) => (fernetFrom ? fernet.encrypt(p, 'v1', k1) : codec.encrypt(p, 'v1', k1));
/** Its plaintext: the work keyctl does before encrypting under v2. @type {(v: string) => string} */
const readOld = (v) => (plaintext ? v : fernetFrom ? fernet.decrypt(v, k1) : codec.decrypt(v, (ver) => keys.get(ver)));
const k1 = generateKey();
const k2 = generateKey();
const keys = new Map([
  ['v1', k1],
  ['v2', k2],
]);
const words = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua'.split(' ');
/** @param {number} i */
function note(i) {
  let s = `Customer ${i}:`;
  while (s.length < 200) s += ` ${words[(i * 7 + s.length) % words.length]}`;
  return s.slice(0, 200);
}

async function setup() {
  if (dbKind !== 'sqlite') {
    const admin = knexFor();
    await admin.raw(dbKind === 'pg' ? `CREATE DATABASE "${dbName}"` : `CREATE DATABASE \`${dbName}\``);
    await admin.destroy();
  }
  const knex = knexFor(dbKind === 'sqlite' ? undefined : dbName);
  await knex.schema.createTable('bench', (t) => {
    t.bigIncrements('id').primary();
    t.text('email');
    t.text('note');
    t.integer('visits').defaultTo(0);
  });
  const t0 = performance.now();
  const chunk = 400; // SQLite: knex writes multi-row inserts as a compound SELECT (at most 500 terms)
  for (let i = 1; i <= rows; i += chunk) {
    const batch = [];
    for (let j = i; j < Math.min(i + chunk, rows + 1); j++) {
      batch.push(plaintext ? { email: `user.${j}@example.com`, note: note(j) } : { email: writeV1(`user.${j}@example.com`), note: writeV1(note(j)) });
    }
    await knex('bench').insert(batch);
  }
  process.stderr.write(`bench: ${rows} rows written in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return knex;
}

function writeProject() {
  mkdirSync(path.join(dir, '.keyctl'), { mode: 0o700 });
  writeFileSync(path.join(dir, '.keyctl', 'keyring.json'), JSON.stringify({ keyring: 'default', primary: 'v1', keys: { v1: k1.toString('base64') } }), {
    mode: 0o600,
  });
  writeFileSync(
    path.join(dir, 'keyctl.yaml'),
    `database:\n  client: ${dbKind}\n  connection: ${JSON.stringify(connectionUrl())}\nkeystore:\n  provider: file\n  path: .keyctl/keyring.json\ntargets:\n  - table: bench\n    columns: [email, note]\n${plaintext ? '    plaintext: encrypt\n' : ''}${fernetFrom ? `    from:\n      codec: fernet\n      versions: [v1]\n      prefix: "${FERNET_PREFIX}"\n` : ''}policy:\n  minPropagationSeconds: 0\n`,
  );
}

/** @param {...string} a */
function keyctl(...a) {
  const r = spawnSync(process.execPath, [bin, ...a], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`keyctl ${a.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

/** CPU time (user + system) used so far by the database server's processes, from /proc (Linux). */
function serverCpuSeconds() {
  const names = dbKind === 'pg' ? ['postgres'] : dbKind === 'mysql' ? ['mariadbd', 'mysqld'] : null;
  if (!names) return 0;
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!names.includes(comm)) continue;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime + stime, plus cutime + cstime: PostgreSQL's backends are child processes that exit
      // with their connection, and their time is added to the postmaster's children's time.
      total += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / tick;
    } catch {
      // the process ended meanwhile
    }
  }
  return total;
}

/**
 * Decrypt + encrypt `values` split across `threads` worker threads running at once (each gets its
 * share before the clock starts); returns the seconds until the last one finishes.
 * @param {string[]} values
 * @param {number} threads
 * @returns {Promise<number>}
 */
async function parallelCrypto(values, threads) {
  const per = Math.ceil(values.length / threads);
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    Promise.all([import(workerData.codecUrl), import(workerData.fernetUrl)]).then(([{ AesGcmV1Codec }, { FernetCodec }]) => {
      const codec = new AesGcmV1Codec();
      const fernet = new FernetCodec({ prefix: workerData.prefix });
      const keys = new Map(workerData.keys.map(([v, k]) => [v, Buffer.from(k)]));
      const lookup = (v) => keys.get(v);
      const target = keys.get('v2');
      parentPort.postMessage('ready');
      parentPort.once('message', () => {
        let sink = 0;
        const readOld = (v) => (workerData.plaintext ? v : workerData.fernet ? fernet.decrypt(v, keys.get('v1')) : codec.decrypt(v, lookup));
        for (const v of workerData.values) sink += codec.encrypt(readOld(v), 'v2', target).length;
        parentPort.postMessage(sink);
      });
    });`;
  const codecUrl = new URL('../dist/crypto/codec.js', import.meta.url).href;
  const fernetUrl = new URL('../dist/crypto/fernet.js', import.meta.url).href;
  const workers = Array.from(
    { length: threads },
    (_, i) =>
      new Worker(src, {
        eval: true,
        workerData: {
          codecUrl,
          fernetUrl,
          plaintext,
          fernet: fernetFrom,
          prefix: FERNET_PREFIX,
          keys: [...keys].map(([v, k]) => [v, new Uint8Array(k)]),
          values: values.slice(i * per, (i + 1) * per),
        },
      }),
  );
  /** @param {Worker} w */
  const next = (w) =>
    new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
  await Promise.all(workers.map(next));
  const t0 = performance.now();
  const done = workers.map(next);
  for (const w of workers) w.postMessage('go');
  await Promise.all(done);
  const secs = (performance.now() - t0) / 1000;
  await Promise.all(workers.map((w) => w.terminate()));
  return secs;
}

/**
 * The numbers `/usr/bin/time -f '%M %e %U %S %R'` (peak RSS in KiB, wall, user and system CPU seconds, minor page faults) printed on the last line of a child's stderr.
 * @param {string} stderr
 */
function timeFields(stderr) {
  const last = stderr.trim().split('\n').at(-1) ?? '';
  const [rssKb, wall, user, sys, faults] = last.split(' ').map(Number);
  if (
    rssKb === undefined ||
    wall === undefined ||
    user === undefined ||
    sys === undefined ||
    faults === undefined ||
    [rssKb, wall, user, sys, faults].some(Number.isNaN)
  ) {
    throw new Error(`unexpected /usr/bin/time output: ${last}`);
  }
  return { rssKb, wall, user, sys, faults };
}

async function main() {
  const knex = await setup();
  writeProject();
  keyctl('generate');
  keyctl('dual-key');
  // Use the generated v2 for the crypto ceiling too.
  const published = JSON.parse((await import('node:fs')).readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8'));
  const target = Buffer.from(published.keys.v2, 'base64');
  keys.set('v2', target);

  // Crypto ceiling: all values in memory first, then decrypt + encrypt each, one thread.
  /** @type {string[]} */
  const values = (await knex('bench').select('email', 'note')).flatMap((r) => [r.email, r.note]);
  /** @param {string} v */
  const lookup = (v) => keys.get(v);
  let t0 = performance.now();
  let sink = 0;
  for (const v of values) sink += codec.encrypt(readOld(v), 'v2', target).length;
  const cryptoSecs = (performance.now() - t0) / 1000;
  if (sink === 0) throw new Error('unreachable');
  // The same work on one thread per core at once: how far crypto scales on this machine.
  const parallelSecs = quick ? Number.NaN : await parallelCrypto(values, os.cpus().length);
  values.length = 0;

  // keyctl reencrypt --dry-run: the same reads and crypto without the writes, to tell what the
  // writes (the database server's share of the two cores) cost the real run.
  const dryServerBefore = serverCpuSeconds();
  const dry = quick
    ? { status: 0, stderr: '0 0 0 0 0' }
    : spawnSync('/usr/bin/time', timedCommand(['reencrypt', '--dry-run', '--json', ...batchArgs]), {
        cwd: dir,
        env: programEnv,
        encoding: 'utf8',
      });
  if (dry.status !== 0) throw new Error(`keyctl reencrypt --dry-run exited ${dry.status}: ${dry.stderr}`);
  const dryServerCpu = serverCpuSeconds() - dryServerBefore;
  const { wall: dryWall, user: dryUser, sys: drySys } = timeFields(dry.stderr);

  // keyctl reencrypt, the real command (wall time includes process start-up).
  const serverBefore = serverCpuSeconds();
  const timed = spawnSync('/usr/bin/time', timedCommand(['reencrypt', '--json', ...batchArgs]), {
    cwd: dir,
    env: programEnv,
    encoding: 'utf8',
  });
  if (timed.status !== 0) throw new Error(`keyctl reencrypt exited ${timed.status}: ${timed.stderr}`);
  const serverCpu = serverCpuSeconds() - serverBefore;
  const { rssKb, wall, user: userCpu, sys: sysCpu, faults } = timeFields(timed.stderr);
  const report = JSON.parse(timed.stdout);
  if (report.remaining !== 0) throw new Error(`reencrypt left ${report.remaining} values`);
  if (plaintext && report.tables[0].plaintextPlanned !== 2 * rows)
    throw new Error(`reencrypt encrypted ${report.tables[0].plaintextPlanned} plaintext values, not ${2 * rows}`);

  if (fernetFrom && report.tables[0].valuesPlanned !== 2 * rows)
    throw new Error(`reencrypt migrated ${report.tables[0].valuesPlanned} Fernet tokens, not ${2 * rows}`);

  if (quick) {
    console.log(
      `db=${dbKind} rows=${rows} keyctl ${Math.round(rows / wall)} rows/s (${wall.toFixed(2)} s, peak RSS ${(rssKb / 1024).toFixed(0)} MiB, CPU keyctl ${(userCpu + sysCpu).toFixed(1)} s (system ${sysCpu.toFixed(1)} s, ${faults.toLocaleString('en-US')} minor page faults), server ${serverCpu.toFixed(1)} s) crypto ceiling ${Math.round(rows / cryptoSecs)} rows/s keyctl/crypto ${(rows / wall / (rows / cryptoSecs)).toFixed(2)}`,
    );
    await knex.destroy();
    return;
  }
  // The crypto ceiling once more right after keyctl's run, on the values it wrote (the same work:
  // decrypt one AES-GCM value, encrypt it again). On a shared VM the machine's speed moves from one
  // minute to the next, so the ratios below use the mean of the two measurements around the run.
  // (Not with --plaintext or --fernet: the table no longer holds what the first measurement read.)
  let cryptoAfterSecs = Number.NaN;
  if (!plaintext && !fernetFrom) {
    const written = (await knex('bench').select('email', 'note')).flatMap((r) => [r.email, r.note]);
    t0 = performance.now();
    for (const v of written) sink += codec.encrypt(readOld(v), 'v2', target).length;
    cryptoAfterSecs = (performance.now() - t0) / 1000;
    written.length = 0;
  }
  const cryptoMeanSecs = Number.isNaN(cryptoAfterSecs) ? cryptoSecs : (cryptoSecs + cryptoAfterSecs) / 2;

  // keyctl verify: the full decryption scan (every value decrypted) that guards promote and key destruction.
  const verified = spawnSync('/usr/bin/time', timedCommand(['verify', '--json']), { cwd: dir, env: programEnv, encoding: 'utf8' });
  if (verified.status !== 0) throw new Error(`keyctl verify exited ${verified.status}: ${verified.stderr}`);
  const { rssKb: verifyRssKb, wall: verifyWall } = timeFields(verified.stderr);

  // Peer: the loop a competent application developer writes by hand (as ORM rotation helpers do):
  // keyset pages of 1,000 rows, decrypt + encrypt on one thread, one UPDATE per row inside one
  // transaction per page. It rewrites the v2 values under v2 with fresh nonces: the same work.
  t0 = performance.now();
  let peerDone = 0;
  for (let after = 0; peerDone < peerRows; ) {
    const page = await knex('bench')
      .select('id', 'email', 'note')
      .where('id', '>', after)
      .orderBy('id')
      .limit(Math.min(1000, peerRows - peerDone));
    if (page.length === 0) break;
    await knex.transaction(async (trx) => {
      for (const r of page) {
        await trx('bench')
          .where({ id: r.id })
          .update({ email: codec.encrypt(codec.decrypt(r.email, lookup), 'v2', target), note: codec.encrypt(codec.decrypt(r.note, lookup), 'v2', target) });
      }
    });
    after = Number(page[page.length - 1].id);
    peerDone += page.length;
  }
  const peerSecs = (performance.now() - t0) / 1000;

  // Database ceiling: server-side rewrite of both columns in keyset batches of 1000.
  /** @type {(column: string) => string} */
  const concat = dbKind === 'mysql' ? (c) => `CONCAT('v3', SUBSTRING(${c}, 3))` : (c) => `'v3' || substr(${c}, 3)`;
  t0 = performance.now();
  for (let lo = 0; lo < rows; lo += 1000) {
    await knex.raw(`UPDATE bench SET email = ${concat('email')}, note = ${concat('note')} WHERE id > ? AND id <= ?`, [lo, lo + 1000]);
  }
  const dbSecs = (performance.now() - t0) / 1000;

  // Naive: OFFSET pages of 100, one UPDATE per row (autocommit), decrypt + encrypt per row.
  await knex.raw(`UPDATE bench SET email = ${concat('email').replace("'v3'", "'v2'")}, note = ${concat('note').replace("'v3'", "'v2'")}`);
  // Pages spread evenly over the whole table, so OFFSET costs what it would on average over a full run.
  const pages = Math.max(1, Math.ceil(naiveRows / 100));
  t0 = performance.now();
  for (let p = 0; p < pages; p++) {
    const off = pages === 1 ? 0 : Math.floor((p * (rows - 100)) / (pages - 1));
    const page = await knex('bench').select('id', 'email', 'note').orderBy('id').limit(100).offset(off);
    for (const r of page) {
      // values are not valid ciphertexts after the v3 rewrite: naive work is measured on fresh ones
      const email = codec.encrypt(`user.${r.id}@example.com`, 'v1', k1);
      const n = codec.encrypt(note(Number(r.id)), 'v1', k1);
      await knex('bench')
        .where({ id: r.id })
        .update({ email: codec.encrypt(codec.decrypt(email, lookup), 'v2', target), note: codec.encrypt(codec.decrypt(n, lookup), 'v2', target) });
    }
  }
  const naiveSecs = (performance.now() - t0) / 1000;
  await knex.destroy();

  /** @type {(n: number, s: number) => number} */
  const rate = (n, s) => n / s;
  const keyctlRate = rate(rows, wall);
  const cryptoRate = rate(rows, cryptoMeanSecs);
  const dbRate = rate(rows, dbSecs);
  const naiveRate = rate(pages * 100, naiveSecs);
  const peerRate = rate(peerRows, peerSecs);
  const verifyRate = rate(rows, verifyWall);
  /** @param {number} x */
  const fmt = (x) => Math.round(x).toLocaleString('en-US').padStart(10);
  const lines = [
    `db=${dbKind} rows=${rows} (2 ${plaintext ? 'plaintext columns per row, encrypted for the first time' : fernetFrom ? 'Fernet token columns per row, migrated to AES-GCM' : 'encrypted columns per row'}) node=${process.version} cpus=${os.cpus().length} keyctl run ${launch}`,
    `method                         rows/s`,
    `keyctl reencrypt          ${fmt(keyctlRate)}   (${wall.toFixed(2)} s wall incl. start-up; ${report.summary.seconds} s in the command itself; peak RSS ${(rssKb / 1024).toFixed(0)} MiB)`,
    `  CPU during the run: keyctl ${(userCpu + sysCpu).toFixed(1)} s (system ${sysCpu.toFixed(1)} s, ${faults.toLocaleString('en-US')} minor page faults)${dbKind === 'sqlite' ? ' (SQLite runs inside keyctl)' : `, database server ${serverCpu.toFixed(1)} s`}, of ${(wall * os.cpus().length).toFixed(1)} s available on ${os.cpus().length} cores`,
    `keyctl --dry-run          ${fmt(rate(rows, dryWall))}   (${dryWall.toFixed(2)} s wall: reads and crypto, no writes; CPU keyctl ${(dryUser + drySys).toFixed(1)} s${dbKind === 'sqlite' ? '' : `, database server ${dryServerCpu.toFixed(1)} s`})`,
    `crypto ceiling (1 thread) ${fmt(cryptoRate)}   (${Number.isNaN(cryptoAfterSecs) ? `${cryptoSecs.toFixed(2)} s` : `mean of ${cryptoSecs.toFixed(2)} s before keyctl's run and ${cryptoAfterSecs.toFixed(2)} s after it: ${fmt(rate(rows, cryptoSecs)).trim()} and ${fmt(rate(rows, cryptoAfterSecs)).trim()} rows/s`}${plaintext ? ', encryption only' : fernetFrom ? ', Fernet decryption + AES-GCM encryption' : ''})`,
    `crypto on ${os.cpus().length} threads       ${fmt(rate(rows, parallelSecs))}   (${parallelSecs.toFixed(2)} s: the same work split across ${os.cpus().length} threads at once, ${(cryptoSecs / parallelSecs).toFixed(2)}× one thread)`,
    `database ceiling          ${fmt(dbRate)}   (${dbSecs.toFixed(2)} s, server-side UPDATE in keyset batches)`,
    `naive (OFFSET + per-row)  ${fmt(naiveRate)}   (${naiveSecs.toFixed(2)} s for ${pages} pages of 100 spread over the table)`,
    `peer (keyset + per-row)   ${fmt(peerRate)}   (${peerSecs.toFixed(2)} s for ${peerRows} rows: pages of 1,000, one UPDATE per row, one transaction per page)`,
    `keyctl verify (full)      ${fmt(verifyRate)}   (${verifyWall.toFixed(2)} s wall incl. start-up: every value decrypted; peak RSS ${(verifyRssKb / 1024).toFixed(0)} MiB)`,
    `keyctl / crypto ceiling   ${(keyctlRate / cryptoRate).toFixed(2)}${Number.isNaN(cryptoAfterSecs) ? '' : `   (${(keyctlRate / rate(rows, cryptoSecs)).toFixed(2)} against the ceiling before the run, ${(keyctlRate / rate(rows, cryptoAfterSecs)).toFixed(2)} after)`}`,
    `keyctl / database ceiling ${(keyctlRate / dbRate).toFixed(2)}`,
    `keyctl --dry-run / crypto ${(rate(rows, dryWall) / cryptoRate).toFixed(2)}`,
    `keyctl / naive            ${(keyctlRate / naiveRate).toFixed(1)}`,
    `keyctl / peer             ${(keyctlRate / peerRate).toFixed(2)}`,
    `verify / crypto ceiling   ${(verifyRate / cryptoRate).toFixed(2)}`,
  ];
  console.log(lines.join('\n'));
  if (args.includes('--json'))
    console.log(
      JSON.stringify({
        db: dbKind,
        rows,
        plaintext,
        fernet: fernetFrom,
        keyctlRate,
        cryptoRate,
        cryptoRateBefore: rate(rows, cryptoSecs),
        cryptoRateAfter: Number.isNaN(cryptoAfterSecs) ? null : rate(rows, cryptoAfterSecs),
        dbRate,
        naiveRate,
        peerRate,
        verifyRate,
        verifyPeakRssMiB: verifyRssKb / 1024,
        peakRssMiB: rssKb / 1024,
        wall,
        keyctlCpu: userCpu + sysCpu,
        keyctlLaunch: launch,
        keyctlSystemCpu: sysCpu,
        keyctlMinorFaults: faults,
        serverCpu,
        dryRunRate: rate(rows, dryWall),
        dryRunCpu: dryUser + drySys,
        dryRunServerCpu: dryServerCpu,
        parallelCryptoRate: rate(rows, parallelSecs),
      }),
    );
}

try {
  await main();
} finally {
  if (!keep) {
    if (dbKind !== 'sqlite') {
      const admin = knexFor();
      await admin.raw(dbKind === 'pg' ? `DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)` : `DROP DATABASE IF EXISTS \`${dbName}\``).catch(() => undefined);
      await admin.destroy();
    }
    rmSync(dir, { recursive: true, force: true });
  } else process.stderr.write(`bench: kept ${dir}\n`);
}
