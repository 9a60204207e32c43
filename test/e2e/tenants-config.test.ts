/**
 * What `tenancy:` refuses, and how: a target table without the tenancy column (named), a tenant id
 * that cannot name a keyring (the value named), ids the keystores reserve or that differ from
 * another only in case, the env keystore, --tenant without tenancy, and rows whose tenant has no
 * keyring (reported, never guessed).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, keyctl, withProjectSqlite } from '../helpers/cli.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempProject = (): string => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'keyctl-tenancy-'));
  dirs.push(d);
  return d;
};

describe('tenancy: configuration and refusals', () => {
  it('names the table without the column, the id that cannot be a keyring, and rows with no keyring', { timeout: 120_000 }, async () => {
    const cwd = tempProject();
    const run = (...args: string[]) => keyctl(args, { cwd });
    expect((await run('init', '--demo', '--tenants', '2', '--rows', '20')).code).toBe(0);
    const config = path.join(cwd, 'keyctl.yaml');

    // --tenant where the file has no tenancy (another project), and a bad id here.
    const bad = await run('tenant', 'add', 'a.b');
    expect(bad.code).toBe(ExitCode.USAGE);
    expect(bad.stderr).toContain('"a.b"');
    const reserved = await run('tenant', 'add', 'acme-archive');
    expect(reserved.code).toBe(ExitCode.USAGE);
    expect(reserved.stderr).toContain('tenant-acme-archive');
    expect((await run('tenant', 'add', 'acme')).code).toBe(0);
    const twin = await run('tenant', 'add', 'ACME');
    expect(twin.code).toBe(ExitCode.REFUSED);
    expect(twin.stderr).toContain('only in case');
    expect((await run('status', '--tenant', 'nobody')).code).toBe(ExitCode.REFUSED);

    // Rows whose tenant has no keyring: reported by tenant list, failed by status --check.
    await withProjectSqlite(cwd, async (k) => {
      const row = await k('customers').where({ id: 1 }).first();
      await k('customers').insert({ tenant_id: 'ghost', email: row.email, phone: row.phone, notes: row.notes });
    });
    const listed = json<{ unknownTenants: Array<{ tenant: string; rows: number }> }>(await run('tenant', 'list', '--json'));
    expect(listed.unknownTenants).toEqual([{ tenant: 'ghost', values: 3, rows: 1 }]);
    expect(listed.unknownTenants[0]!.rows).toBe(1);
    const check = await run('status', '--all-tenants', '--check');
    expect(check.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(check.stderr).toContain('[tenant-without-keyring]');
    // A tenant's own rotation never touches the ghost's row.
    for (const step of ['generate', 'dual-key', 'reencrypt']) expect((await run(step, '--tenant', 't001')).code).toBe(0);
    await withProjectSqlite(cwd, async (k) => {
      expect((await k('customers').where({ tenant_id: 'ghost' }).first()).email.startsWith('v1:')).toBe(true);
    });

    // keyctl_tenants.shredded_at set by a database writer on a live tenant: no key is destroyed on
    // that word (shred's "finish an earlier run" path, backup --prune-tenant), and the tenant stays
    // live and reported.
    await withProjectSqlite(cwd, async (k) => {
      await k('keyctl_tenants').where({ tenant: 't002' }).update({ shredded_at: Date.now() });
    });
    const keyringFile = path.join(cwd, '.keyctl', 'tenants', 'tenant-t002.json');
    const forged = await run('shred', '--tenant', 't002', '--reason', 'x', '--yes');
    expect(forged.code, forged.stderr).toBe(ExitCode.REFUSED);
    expect(forged.stderr).toContain('will not destroy keys on the database');
    expect(readFileSync(keyringFile, 'utf8')).toContain('"primary"');
    expect((await run('backup', '--prune-tenant', 't002')).code).toBe(ExitCode.REFUSED);
    const unproven = await run('status', '--all-tenants', '--check', '--json');
    expect(unproven.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(json<{ problems: Array<{ code: string; message: string }> }>(unproven).problems).toContainEqual(
      expect.objectContaining({ code: 'registry-tampered', message: expect.stringContaining('tenant t002') }),
    );
    expect((await run('status', '--tenant', 't002')).stdout).toContain('Keyring tenant-t002');
    await withProjectSqlite(cwd, async (k) => {
      await k('keyctl_tenants').where({ tenant: 't002' }).update({ shredded_at: null });
    });

    // A tenant's audit chain edited in the database: found by the check over all tenants.
    await withProjectSqlite(cwd, async (k) => {
      await k('rotation_audit').where({ keyring: 'tenant-t002', seq: 1 }).update({ actor: 'someone-else' });
    });
    const chain = await run('status', '--all-tenants', '--check');
    expect(chain.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(chain.stderr).toContain('[audit-chain-broken]: tenant t002');

    // A target table without the tenancy column: named, with the column.
    writeFileSync(config, readFileSync(config, 'utf8').replace('column: tenant_id', 'column: org_id'));
    const missing = await run('status', '--tenant', 't001');
    expect(missing.code).toBe(ExitCode.USAGE);
    expect(missing.stderr).toContain('table "customers"');
    expect(missing.stderr).toContain('"org_id"');

    // The env keystore holds one keyring: refused with tenancy, at load.
    writeFileSync(config, readFileSync(config, 'utf8').replace(/keystore:\n(\s+.*\n)+?(?=keyring:)/, 'keystore:\n  provider: env\n'));
    const env = await run('tenant', 'list');
    expect(env.code, env.stderr).toBe(ExitCode.USAGE);
    expect(env.stderr).toContain('provider env holds one keyring');

    // Without tenancy, --tenant is refused.
    const plain = tempProject();
    expect((await keyctl(['init', '--demo', '--rows', '5'], { cwd: plain })).code).toBe(0);
    const stray = await keyctl(['status', '--tenant', 'acme'], { cwd: plain });
    expect(stray.code).toBe(ExitCode.USAGE);
    expect(stray.stderr).toContain('no tenancy: section');
  });
});
