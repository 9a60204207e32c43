/**
 * `keyctl metrics` on real projects: its output passes `promtool check metrics` on SQLite,
 * PostgreSQL and MySQL/MariaDB and tells the state (values per version, the open rotation and its
 * re-encryption pass, a keystore that does not answer); `--out` under a cron-like environment
 * (`env -i`, no terminal) replaces the file atomically and exits with keyctl's usual codes; the
 * `--listen` endpoint answers from its cache, refuses other paths and methods, and stops on SIGTERM.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import path from 'node:path';
import knexFactory from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { declareTestSecret, json, KEYCTL_BIN, keyctl } from '../helpers/cli.js';
import { createTestDatabase, DIALECTS, dialectAvailable, type TestDatabase } from '../helpers/databases.js';

/** `promtool check metrics` on an exposition: its exit status and what it said. */
function promtoolCheck(text: string): { status: number | null; out: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw new Error(`promtool is needed (Debian: apt-get install prometheus; .ci/run installs it): ${r.error.message}`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of an exposition (the tests' own small parser: no escapes in the labels keyctl uses here). */
function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

const pick = (all: Sample[], name: string, labels: Record<string, string> = {}) =>
  all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
const one = (all: Sample[], name: string, labels: Record<string, string> = {}): number => {
  const found = pick(all, name, labels);
  expect(found, `${name} ${JSON.stringify(labels)}`).toHaveLength(1);
  return found[0]!.value;
};

/** `keyctl metrics --listen` on a free port; resolves once it serves, with its base URL. */
async function startListener(cwd: string, cacheSeconds: string, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [KEYCTL_BIN, 'metrics', '--listen', '127.0.0.1:0', '--cache-seconds', cacheSeconds], {
    cwd,
    env: { ...process.env, KEYCTL_LOG_TIMESTAMPS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const base = await new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /serving (http:\/\/\S+)\/metrics/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.on('close', () => reject(new Error(`keyctl metrics --listen exited: ${err}`)));
  });
  return { child, base, exited, stderr: () => err };
}

const ROWS = 30;
const COLUMNS = ['email', 'phone', 'notes'];

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`keyctl metrics on ${dialect}`, () => {
    let tdb: TestDatabase | undefined;
    afterEach(async () => {
      await tdb?.drop();
      tdb = undefined;
    });

    it('passes promtool check metrics and tells values, rotation, progress and keystore state', { timeout: 120_000 }, async () => {
      tdb = await createTestDatabase(dialect);
      const cwd = tdb.dir;
      const env = { APP_DB: tdb.connection, KEYCTL_ACTOR: 'op@test' };
      const run = (...args: string[]) => keyctl(args, { cwd, env });
      const ok = async (...args: string[]) => {
        const r = await run(...args);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        return r;
      };
      const metrics = async (...args: string[]) => {
        const r = await ok('metrics', ...args);
        const check = promtoolCheck(r.stdout);
        expect(check.status, check.out).toBe(0);
        return samples(r.stdout);
      };
      await ok('init', '--demo', '--rows', String(ROWS), '--database', '${APP_DB}');

      // A healthy project: keystore up, every value under v1, no rotation, no problem.
      let m = await metrics();
      expect(one(m, 'keyctl_keystore_up', { keyring: 'default', provider: 'file' })).toBe(1);
      for (const column of COLUMNS) {
        expect(one(m, 'keyctl_values', { table: 'customers', column, version: 'v1' })).toBe(ROWS);
        expect(one(m, 'keyctl_values_unparseable', { column })).toBe(0);
      }
      expect(one(m, 'keyctl_values_counted')).toBe(1);
      expect(one(m, 'keyctl_reencrypt_table_rows', { table: 'customers' })).toBe(ROWS);
      expect(one(m, 'keyctl_rotation_open')).toBe(0);
      expect(pick(m, 'keyctl_rotation_phase').every((s) => s.value === 0)).toBe(true);
      expect(one(m, 'keyctl_primary_key_age_seconds', { version: 'v1' })).toBeGreaterThanOrEqual(0);
      expect(one(m, 'keyctl_rotation_due_seconds')).toBeGreaterThan(89 * 86_400);
      expect(one(m, 'keyctl_audit_chain_ok')).toBe(1);
      expect(one(m, 'keyctl_registry_ok')).toBe(1);
      const problems = pick(m, 'keyctl_status_check_problems');
      expect(problems.length).toBeGreaterThan(5);
      expect(problems.filter((p) => p.value !== 0).map((p) => p.labels.code)).toEqual(
        json<{ problems: Array<{ code: string }> }>(await run('status', '--check', '--json')).problems.map((p) => p.code),
      );
      for (const s of m) expect(s.labels.keyring).toBe(s.name === 'keyctl_tenants' ? undefined : 'default');

      // A rotation re-encrypted to v2: its phase one-hot, the pass complete, the values moved.
      await ok('generate');
      await ok('dual-key');
      await ok('reencrypt', '--batch-size', '7');
      m = await metrics();
      expect(one(m, 'keyctl_rotation_open')).toBe(1);
      expect(pick(m, 'keyctl_rotation_phase', { phase: 'reencrypted' }).map((s) => s.value)).toEqual([1]);
      expect(pick(m, 'keyctl_rotation_phase').filter((s) => s.value === 1)).toHaveLength(1);
      expect(one(m, 'keyctl_rotation_emergency')).toBe(0);
      expect(one(m, 'keyctl_rotation_phase_seconds')).toBeGreaterThanOrEqual(0);
      expect(one(m, 'keyctl_reencrypt_completed', { table: 'customers' })).toBe(1);
      expect(one(m, 'keyctl_reencrypt_running', { table: 'customers' })).toBe(0);
      expect(one(m, 'keyctl_reencrypt_rows_done', { table: 'customers' })).toBe(ROWS);
      expect(one(m, 'keyctl_reencrypt_last_batch_timestamp_seconds', { table: 'customers' })).toBeGreaterThan(Date.now() / 1000 - 600);
      for (const column of COLUMNS) {
        expect(one(m, 'keyctl_values', { column, version: 'v2' })).toBe(ROWS);
        expect(pick(m, 'keyctl_values', { column, version: 'v1' })).toEqual([]);
      }

      // --no-counts: no table scan, and says so.
      m = await metrics('--no-counts');
      expect(one(m, 'keyctl_values_counted')).toBe(0);
      expect(pick(m, 'keyctl_values')).toEqual([]);
      expect(pick(m, 'keyctl_reencrypt_table_rows')).toEqual([]);
      expect(one(m, 'keyctl_rotation_open')).toBe(1);

      // --json: the exposition in one string.
      const j = json<{ metrics: string }>(await ok('metrics', '--json', '--no-counts'));
      expect(promtoolCheck(j.metrics).status).toBe(0);

      // The keystore does not answer: still exit 0, keystore_up 0, and what the database alone tells.
      const ring = path.join(cwd, '.keyctl', 'keyring.json');
      renameSync(ring, `${ring}.away`);
      try {
        m = await metrics();
        expect(one(m, 'keyctl_keystore_up')).toBe(0);
        expect(one(m, 'keyctl_rotation_open')).toBe(1);
        expect(pick(m, 'keyctl_primary_key_age_seconds')).toEqual([]);
        expect(pick(m, 'keyctl_status_check_problems')).toEqual([]);
      } finally {
        renameSync(`${ring}.away`, ring);
      }
    });
  });
}

describe('keyctl metrics --out, as cron runs it', () => {
  let tdb: TestDatabase | undefined;
  afterEach(async () => {
    await tdb?.drop();
    tdb = undefined;
  });

  /** keyctl under `env -i` (no variables at all, not even PATH or HOME), stdin not a terminal. */
  const cron = (cwd: string, ...args: string[]) => {
    const r = spawnSync('env', ['-i', process.execPath, KEYCTL_BIN, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it('replaces the file atomically, leaves no temporary file, and exits with the usual codes', { timeout: 60_000 }, async () => {
    tdb = await createTestDatabase('sqlite');
    const cwd = tdb.dir;
    expect((await keyctl(['init', '--demo', '--rows', '10'], { cwd })).code).toBe(0);
    const out = path.join(cwd, 'textfile', 'keyctl.prom');
    expect(cron(cwd, 'metrics', '--out', out).code).toBe(ExitCode.USAGE); // no such directory
    spawnSync('mkdir', ['-m', '0755', path.join(cwd, 'textfile')]);

    const first = cron(cwd, 'metrics', '--out', out);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe('');
    const before = readFileSync(out, 'utf8');
    expect(promtoolCheck(before).status).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o644);

    // A reader holding the file open while cron writes the next one keeps the whole old file: the new
    // one arrives by rename (a new inode), never by rewriting in place.
    const fd = openSync(out, 'r');
    try {
      const inode = statSync(out).ino;
      const second = cron(cwd, 'metrics', '--out', out, '--no-counts');
      expect(second.code, second.stderr).toBe(0);
      expect(statSync(out).ino).not.toBe(inode);
      const buf = Buffer.alloc(before.length + 100);
      expect(buf.toString('utf8', 0, readSync(fd, buf, 0, buf.length, 0))).toBe(before);
      expect(readFileSync(out, 'utf8')).toContain('keyctl_values_counted{keyring="default"} 0');
    } finally {
      closeSync(fd);
    }
    expect(readdirSync(path.dirname(out))).toEqual(['keyctl.prom']);

    // --json says where it wrote; the usual exit codes for a bad name and an unreachable database.
    const j = cron(cwd, 'metrics', '--out', out, '--json');
    expect(JSON.parse(j.stdout)).toMatchObject({ out, bytes: expect.any(Number) });
    const badName = cron(cwd, 'metrics', '--out', path.join(cwd, 'textfile', 'keyctl.txt'));
    expect(badName.code).toBe(ExitCode.USAGE);
    expect(badName.stderr).toContain('.prom');
    const unreachable = readFileSync(path.join(cwd, 'keyctl.yaml'), 'utf8')
      .replace(/client: sqlite/, 'client: pg')
      .replace(/connection: .*/, 'connection: "postgres://nobody@127.0.0.1:1/none"');
    writeFileSync(path.join(cwd, 'unreachable.yaml'), unreachable);
    const noDb = cron(cwd, 'metrics', '--out', out, '--config', 'unreachable.yaml');
    expect(noDb.code, noDb.stderr).toBe(ExitCode.DATABASE);
    expect(readdirSync(path.dirname(out))).toEqual(['keyctl.prom']);
  });
});

describe('keyctl metrics --listen', () => {
  let tdb: TestDatabase | undefined;
  afterEach(async () => {
    await tdb?.drop();
    tdb = undefined;
  });

  it('serves /metrics from its cache, refuses other paths and methods, and stops on SIGTERM', { timeout: 60_000 }, async () => {
    tdb = await createTestDatabase('sqlite');
    const cwd = tdb.dir;
    expect((await keyctl(['init', '--demo', '--rows', '10'], { cwd })).code).toBe(0);
    const { child, base, exited, stderr } = await startListener(cwd, '600');
    try {
      const first = await fetch(`${base}/metrics`);
      expect(first.status).toBe(200);
      expect(first.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const text = await first.text();
      expect(promtoolCheck(text).status).toBe(0);
      const second = await (await fetch(`${base}/metrics`)).text();
      // From the cache: the same collection, to its timestamp.
      const stamp = (t: string) => one(samples(t), 'keyctl_metrics_timestamp_seconds');
      expect(stamp(second)).toBe(stamp(text));
      expect((await fetch(`${base}/`)).status).toBe(404);
      expect((await fetch(`${base}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, stderr()).toBe(0);
  });

  it('answers from the old cache at once when it has expired, and has the next collection on a later scrape', { timeout: 60_000 }, async () => {
    tdb = await createTestDatabase('sqlite');
    const cwd = tdb.dir;
    expect((await keyctl(['init', '--demo', '--rows', '10'], { cwd })).code).toBe(0);
    const { child, base, exited, stderr } = await startListener(cwd, '1');
    try {
      const stamp = async () => one(samples(await (await fetch(`${base}/metrics`)).text()), 'keyctl_metrics_timestamp_seconds');
      const first = await stamp();
      await new Promise((r) => setTimeout(r, 1_300));
      // Expired: this scrape gets the old text (and starts a collection); a later one gets the new.
      expect(await stamp()).toBe(first);
      let later = first;
      for (let i = 0; i < 100 && later === first; i++) {
        await new Promise((r) => setTimeout(r, 100));
        later = await stamp();
      }
      expect(later).toBeGreaterThan(first);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, stderr()).toBe(0);
  });

  it.skipIf(!dialectAvailable('pg'))(
    'answers 503 naming the failure, without the database password or key material, when a refresh fails',
    { timeout: 60_000 },
    async () => {
      tdb = await createTestDatabase('pg');
      const cwd = tdb.dir;
      // PostgreSQL here trusts local connections: the password is accepted and never needed.
      const password = 'Mx7pw4Listener';
      declareTestSecret(password, 'database password in the listener test');
      const url = new URL(tdb.connection);
      url.password = password;
      const env = { APP_DB: url.toString() };
      expect((await keyctl(['init', '--demo', '--rows', '5', '--database', '${APP_DB}'], { cwd, env })).code).toBe(0);
      const key = Object.values(JSON.parse(readFileSync(path.join(cwd, '.keyctl', 'keyring.json'), 'utf8')).keys as Record<string, string>)[0]!;
      const { child, base, exited, stderr } = await startListener(cwd, '1', env);
      try {
        expect((await fetch(`${base}/metrics`)).status).toBe(200);
        // The database goes away under the listener: the next refresh fails.
        const adminUrl = new URL(tdb.connection);
        adminUrl.pathname = '/postgres';
        const admin = knexFactory({ client: 'pg', connection: adminUrl.toString() });
        await admin.raw(`DROP DATABASE "${url.pathname.slice(1)}" WITH (FORCE)`).finally(() => admin.destroy());
        let res = await fetch(`${base}/metrics`);
        for (let i = 0; i < 100 && res.status === 200; i++) {
          await new Promise((r) => setTimeout(r, 100));
          res = await fetch(`${base}/metrics`);
        }
        const body = await res.text();
        expect(res.status, body).toBe(503);
        expect(body).toContain('keyctl could not collect the metrics');
        expect(stderr()).toContain('metrics: collecting failed');
        for (const out of [body, stderr()]) {
          expect(out).not.toContain(password);
          expect(out).not.toContain(key);
        }
      } finally {
        child.kill('SIGTERM');
      }
      expect(await exited, stderr()).toBe(0);
    },
  );

  it('refuses a bad address and a port in use with exit 2, an unreachable database with exit 6', { timeout: 60_000 }, async () => {
    tdb = await createTestDatabase('sqlite');
    const cwd = tdb.dir;
    expect((await keyctl(['init', '--demo', '--rows', '5'], { cwd })).code).toBe(0);
    const bad = await keyctl(['metrics', '--listen', 'localhost'], { cwd });
    expect(bad.code).toBe(ExitCode.USAGE);
    expect(bad.stderr).toContain('HOST:PORT');
    const both = await keyctl(['metrics', '--listen', '127.0.0.1:0', '--out', 'x.prom'], { cwd });
    expect(both.code).toBe(ExitCode.USAGE);
    // The first collection runs before listening: a database that does not answer exits 6 at once.
    writeFileSync(
      path.join(cwd, 'unreachable.yaml'),
      readFileSync(path.join(cwd, 'keyctl.yaml'), 'utf8')
        .replace(/client: sqlite/, 'client: pg')
        .replace(/connection: .*/, 'connection: "postgres://nobody@127.0.0.1:1/none"'),
    );
    const noDb = await keyctl(['--config', 'unreachable.yaml', 'metrics', '--listen', '127.0.0.1:0'], { cwd });
    expect(noDb.code, noDb.stderr).toBe(ExitCode.DATABASE);
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as AddressInfo).port;
      const inUse = await keyctl(['metrics', '--listen', `127.0.0.1:${port}`], { cwd });
      expect(inUse.code).toBe(ExitCode.USAGE);
      expect(inUse.stderr).toContain('EADDRINUSE');
    } finally {
      taken.close();
    }
  });
});

describe('keyctl metrics with tenancy', () => {
  let tdb: TestDatabase | undefined;
  afterEach(async () => {
    await tdb?.drop();
    tdb = undefined;
  });

  it('--all-tenants: one exposition, each family once, every sample labelled with its tenant', { timeout: 60_000 }, async () => {
    tdb = await createTestDatabase('sqlite');
    const cwd = tdb.dir;
    const run = (...args: string[]) => keyctl(args, { cwd });
    expect((await run('init', '--demo', '--tenants', '3', '--rows', '30')).code).toBe(0);
    const all = await run('metrics', '--all-tenants');
    expect(all.code, all.stderr).toBe(0);
    expect(promtoolCheck(all.stdout).status).toBe(0);
    const m = samples(all.stdout);
    expect(one(m, 'keyctl_tenants')).toBe(3);
    const tenants = [...new Set(pick(m, 'keyctl_keystore_up').map((s) => s.labels.tenant))];
    expect(tenants).toHaveLength(3);
    for (const tenant of tenants) {
      expect(one(m, 'keyctl_keystore_up', { tenant: tenant! })).toBe(1);
      expect(pick(m, 'keyctl_primary_key_age_seconds', { tenant: tenant! })).toHaveLength(1);
    }
    // The values of the three tenants add up to the table.
    expect(pick(m, 'keyctl_values', { column: 'email' }).reduce((n, s) => n + s.value, 0)).toBe(30);
    expect(all.stdout.match(/^# TYPE keyctl_values gauge$/gm)).toHaveLength(1);

    // One tenant: its labels only; no tenant named: the usual usage error.
    const t = await run('metrics', '--tenant', tenants[0]!, '--no-counts');
    expect(t.code, t.stderr).toBe(0);
    expect(new Set(samples(t.stdout).map((s) => s.labels.tenant))).toEqual(new Set([tenants[0]]));
    expect((await run('metrics')).code).toBe(ExitCode.USAGE);
  });
});
