/** `verify --json` says `"ok": false` when the check fails, in step with its exit status (issue 16). */
import { rmSync } from 'node:fs';
import path from 'node:path';
import knexFactory from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json } from '../helpers/cli.js';
import { demoProject } from '../helpers/project.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function withDb(dir: string, fn: (k: ReturnType<typeof knexFactory>) => Promise<unknown>): Promise<void> {
  const k = knexFactory({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'keyctl.db') }, useNullAsDefault: true });
  try {
    await fn(k);
  } finally {
    await k.destroy();
  }
}

describe('verify --json', () => {
  it('reports "ok": false with "passed": false when the check fails (exit 4)', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    await withDb(dir, (k) => k('customers').where('id', 1).update({ email: 'v1:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==' }));
    const r = await run('verify', '--json');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(json<{ ok: boolean; passed: boolean }>(r)).toMatchObject({ ok: false, passed: false });
    const good = await demoProject(dirs, 10);
    const g = await good.run('verify', '--json');
    expect(g.code).toBe(0);
    expect(json<{ ok: boolean; passed: boolean }>(g)).toMatchObject({ ok: true, passed: true });
  });
});
