/**
 * Audit evidence a database writer cannot rewrite (issue 16): the chain head is anchored in the
 * keystore, so the three consistent lies a database writer could tell — (a) delete the newest row
 * and rewind the head, (b) delete every row and the head, (c) re-hash every row after editing a
 * forced retire — are each reported by `audit --verify` (exit 4). Plus the anchor's edges: behind
 * after a crash (explained, not tampering), concurrent writers, export, an expected head, a
 * missing table, and actor/reason text that tries to break the table.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { auditFieldsOf } from '../../src/db/audit-fields.js';
import { auditRowHash, GENESIS_HASH } from '../../src/db/audit-hash.js';
import { registryDigest } from '../../src/rotation/store.js';
import { demoProject } from '../helpers/project.js';
import { json, keyctl, withProjectSqlite } from '../helpers/cli.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const anchorFile = (dir: string) => path.join(dir, '.keyctl/keyring.audit-anchor.json');

interface VerifyJson {
  intact: boolean;
  problems: string[];
  unchecked: string[];
  anchors: Array<{ keyring: string; status: string; anchoredSeq: number | null; behindBy?: number }>;
}

/**
 * A project through generate and dual-key, then a refused retire: a handful of audit rows, all
 * anchored, the newest one a refusal (so deleting it leaves the registry evidence as it was).
 */
async function rotatedProject() {
  const p = await demoProject(dirs, 20);
  for (const step of ['generate', 'dual-key']) expect((await p.run(step)).code, step).toBe(0);
  expect((await p.run('retire')).code).toBe(ExitCode.REFUSED);
  return p;
}

async function headOf(k: Knex): Promise<{ seq: number; last_hash: string }> {
  const h = (await k('keyctl_audit_head').where({ keyring: 'default' }).first()) as { seq: unknown; last_hash: string };
  return { seq: Number(h.seq), last_hash: h.last_hash };
}

/** Repro (a): delete the newest audit row and rewind keyctl_audit_head to the row before it. */
async function truncateNewest(dir: string): Promise<void> {
  await withProjectSqlite(dir, async (k) => {
    const { seq } = await headOf(k);
    await k('rotation_audit').where({ keyring: 'default', seq }).delete();
    const prev = (await k('rotation_audit')
      .where({ keyring: 'default', seq: seq - 1 })
      .first()) as { row_hash: string };
    await k('keyctl_audit_head')
      .where({ keyring: 'default' })
      .update({ seq: seq - 1, last_hash: prev.row_hash });
  });
}

describe('audit --verify against the anchor: the three rewrites of issue 16', () => {
  it('(a) deleting the newest row and rewinding keyctl_audit_head is reported as truncation', async () => {
    const { dir, run } = await rotatedProject();
    expect((await run('audit', '--verify')).code).toBe(ExitCode.OK);
    await truncateNewest(dir);
    const r = await run('audit', '--verify', '--json');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    const v = json<VerifyJson>(r);
    expect(v.intact).toBe(false);
    expect(v.problems.join('\n')).toMatch(/anchor.*seq \d+.*(deleted|truncated)/i);
  });

  it('(a, monitoring) status --check reports the truncation the anchor shows as audit-chain-broken', async () => {
    const { dir, run } = await rotatedProject();
    expect(json<{ problems: Array<{ code: string }> }>(await run('status', '--check', '--json')).problems.map((p) => p.code)).not.toContain(
      'audit-chain-broken',
    );
    await truncateNewest(dir);
    const r = await run('status', '--check', '--json');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    const broken = json<{ problems: Array<{ code: string; message: string }> }>(r).problems.find((p) => p.code === 'audit-chain-broken');
    expect(broken?.message).toMatch(/anchor.*(deleted|truncated)/i);
  });

  it('(a, runbooks) the audit-chain-intact runbook check fails on the truncation the anchor shows', async () => {
    const { dir, run } = await rotatedProject();
    const book = path.join(dir, 'chain.yaml');
    writeFileSync(
      book,
      [
        'name: chain',
        'title: Chain check',
        'description: checks the audit chain',
        'steps:',
        '  - id: chain',
        '    kind: check',
        '    check: audit-chain-intact',
        '    title: The audit chain is intact',
        '    explain: keyctl verifies the audit chain.',
        '    on_failure: Compare with a backup.',
        '',
      ].join('\n'),
    );
    expect((await run('runbook', 'run', 'chain', '--file', book, '--yes')).code).toBe(ExitCode.OK);
    await truncateNewest(dir);
    const r = await run('runbook', 'run', 'chain', '--file', book, '--yes');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.stdout + r.stderr).toMatch(/anchor.*(deleted|truncated)/i);
  });

  it('after a database restore, audit --anchor --reset --reason re-anchors at the restored head and puts the reset on record', async () => {
    const { dir, run } = await rotatedProject();
    const backup = path.join(dir, 'backup.db');
    await withProjectSqlite(dir, (k) => k.raw('VACUUM INTO ?', [backup]));
    expect((await run('retire')).code).toBe(ExitCode.REFUSED); // one more audited change: the anchor moves past the backup
    for (const f of ['keyctl.db-wal', 'keyctl.db-shm']) rmSync(path.join(dir, f), { force: true });
    writeFileSync(path.join(dir, 'keyctl.db'), readFileSync(backup));
    const restored = await run('audit', '--verify');
    expect(restored.code, restored.stdout + restored.stderr).toBe(ExitCode.PROBLEMS_FOUND);
    expect((await run('audit', '--anchor')).code).toBe(ExitCode.PROBLEMS_FOUND);
    const noReason = await run('audit', '--anchor', '--reset');
    expect(noReason.code).toBe(ExitCode.USAGE);
    expect(noReason.stderr).toContain('--reason');
    const reset = await run('audit', '--anchor', '--reset', '--reason', 'restored from the 02:00 backup (CHG-7)', '--json');
    expect(reset.code, reset.stderr).toBe(ExitCode.OK);
    const r = json<{ reset: boolean; head: { seq: number }; previous: { seq: number } | null }>(reset);
    expect(r.reset).toBe(true);
    expect(r.previous!.seq).toBeGreaterThanOrEqual(r.head.seq);
    expect((await run('audit', '--verify')).code).toBe(ExitCode.OK);
    const rows = await withProjectSqlite(dir, (k) => k('rotation_audit').where({ action: 'integrity' }).select('details', 'actor'));
    expect(rows.map((x: { details: string }) => JSON.parse(x.details))).toContainEqual(
      expect.objectContaining({
        event: 'anchor-reset',
        reason: 'restored from the 02:00 backup (CHG-7)',
        previousAnchor: expect.objectContaining({ seq: r.previous!.seq }),
      }),
    );
    const problems = json<{ problems: Array<{ code: string }> }>(await run('status', '--check', '--json')).problems.map((p) => p.code);
    expect(problems).not.toContain('audit-chain-broken');
  });

  it('a registry edit hidden by a forged row past the anchored head never unpublishes a key the data needs', async () => {
    const { dir, run } = await demoProject(dirs, 20);
    expect((await run('generate')).code).toBe(0);
    // A database-only attacker makes v2 primary and v1 retired, then appends a correctly hashed
    // `register` row carrying the edited registry's digest, past the anchored head.
    await withProjectSqlite(dir, async (k) => {
      await k('keyctl_key_versions').where({ keyring: 'default', version: 'v2' }).update({ state: 'primary' });
      await k('keyctl_key_versions').where({ keyring: 'default', version: 'v1' }).update({ state: 'retired' });
      const head = await headOf(k);
      const row = {
        rotation_id: null,
        keyring: 'default',
        action: 'register',
        from_phase: null,
        to_phase: null,
        actor: 'attacker',
        old_version: null,
        new_version: null,
        rows_affected: null,
        outcome: 'ok',
        details: JSON.stringify({ registry: await registryDigest(k, 'default') }),
        created_at: new Date().toISOString(),
        seq: head.seq + 1,
      };
      const hash = auditRowHash(head.last_hash, auditFieldsOf(row));
      await k('rotation_audit').insert({ ...row, prev_hash: head.last_hash, row_hash: hash });
      await k('keyctl_audit_head')
        .where({ keyring: 'default' })
        .update({ seq: head.seq + 1, last_hash: hash });
    });
    const r = await run('verify');
    expect(r.code).not.toBe(ExitCode.OK);
    const published = JSON.parse(readFileSync(path.join(dir, '.keyctl/keyring.json'), 'utf8')) as { primary: string; keys: Record<string, string> };
    expect(Object.keys(published.keys)).toContain('v1');
    expect(`${r.stdout}${r.stderr}`).toMatch(/still under v1/);
  });

  it('init anchors the first rows, so deleting the whole history right after init is reported', async () => {
    const { dir, run } = await demoProject(dirs, 20);
    await withProjectSqlite(dir, async (k) => {
      await k('rotation_audit').delete();
      await k('keyctl_audit_head').delete();
    });
    const r = await run('audit', '--verify', '--json');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(json<VerifyJson>(r).problems.join('\n')).toMatch(/anchor.*(deleted|truncated)/i);
  });

  it('(a, later) a keyctl command after the truncation does not bless it: the anchor stays put', async () => {
    const { dir, run } = await rotatedProject();
    const before = readFileSync(anchorFile(dir), 'utf8');
    await truncateNewest(dir);
    // Refused moves append audit rows on top of the truncated chain, past the anchored seq.
    expect((await run('promote')).code).toBe(ExitCode.REFUSED);
    const second = await run('promote');
    expect(second.code).toBe(ExitCode.REFUSED);
    expect(second.stderr).toMatch(/audit anchor was not moved: the database chain does not extend the anchored head/);
    expect(readFileSync(anchorFile(dir), 'utf8')).toBe(before);
    const r = await run('audit', '--verify');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.stdout + r.stderr).toMatch(/rewritten|differs/);
  });

  it('(b) deleting every audit row and the head is reported', async () => {
    const { dir, run } = await rotatedProject();
    await withProjectSqlite(dir, async (k) => {
      await k('rotation_audit').delete();
      await k('keyctl_audit_head').delete();
    });
    const r = await run('audit', '--verify', '--json');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(json<VerifyJson>(r).problems.join('\n')).toMatch(/anchor.*seq \d+.*(deleted|truncated)/i);
  });

  it('(c) re-hashing every row after changing the actor and reason of a forced retire is reported as a rewrite', async () => {
    const { dir, run } = await demoProject(dirs, 20);
    for (const step of ['generate', 'dual-key', 'reencrypt', 'verify', 'promote']) expect((await run(step)).code, step).toBe(0);
    expect((await run('retire', '--force', '--reason', 'the real reason')).code).toBe(0);
    expect((await run('audit', '--verify')).code).toBe(ExitCode.OK);
    await withProjectSqlite(dir, async (k) => {
      const retire = (await k('rotation_audit').where({ action: 'retire', outcome: 'ok' }).first()) as Record<string, unknown>;
      const details = JSON.parse(String(retire.details)) as Record<string, unknown>;
      await k('rotation_audit')
        .where({ id: retire.id })
        .update({ actor: 'someone-else@host', details: JSON.stringify({ ...details, reason: 'a better-sounding reason' }) });
      let prev = GENESIS_HASH;
      for (const r of (await k('rotation_audit').where({ keyring: 'default' }).orderBy('id')) as Record<string, unknown>[]) {
        const hash = auditRowHash(prev, auditFieldsOf(r));
        await k('rotation_audit').where({ id: r.id }).update({ prev_hash: prev, row_hash: hash });
        prev = hash;
      }
      await k('keyctl_audit_head').where({ keyring: 'default' }).update({ last_hash: prev });
    });
    const r = await run('audit', '--verify', '--json');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(json<VerifyJson>(r).problems.join('\n')).toMatch(/rewritten/);
  });
});

describe('the anchor', () => {
  it('is written with every audited change, holds the head and a MAC, and never reaches output', async () => {
    const { dir, run } = await rotatedProject();
    const doc = JSON.parse(readFileSync(anchorFile(dir), 'utf8')) as { keyring: string; macKey: string; head: { seq: number; hash: string; mac: string } };
    const head = await withProjectSqlite(dir, headOf);
    expect(doc.head).toMatchObject({ seq: head.seq, hash: head.last_hash });
    expect(doc.head.mac).toMatch(/^[0-9a-f]{64}$/);
    const outputs = [await run('audit', '--verify'), await run('audit', '--verify', '--json'), await run('audit', '--export'), await run('audit', '--all')];
    for (const o of outputs) expect(o.stdout + o.stderr).not.toContain(doc.macKey);
    const rows = await withProjectSqlite(dir, (k) => k('rotation_audit').select('details'));
    expect(JSON.stringify(rows)).not.toContain(doc.macKey);
  });

  it('behind the database after a crash between commit and anchor: explained, exit 0, and caught up by the next change', async () => {
    const { dir, run } = await demoProject(dirs, 20);
    expect((await run('generate')).code).toBe(0);
    const old = readFileSync(anchorFile(dir), 'utf8');
    expect((await run('dual-key')).code).toBe(0);
    writeFileSync(anchorFile(dir), old, { mode: 0o600 }); // as if killed after the commit, before the anchor
    const r = await run('audit', '--verify', '--json');
    expect(r.code).toBe(ExitCode.OK);
    const v = json<VerifyJson>(r);
    expect(v.anchors[0]).toMatchObject({ keyring: 'default', status: 'behind' });
    expect(v.anchors[0]!.behindBy).toBeGreaterThan(0);
    const text = await run('audit', '--verify');
    expect(text.stdout + text.stderr).toMatch(/behind/);
    expect((await run('audit', '--anchor')).code).toBe(ExitCode.OK);
    expect(json<VerifyJson>(await run('audit', '--verify', '--json')).anchors[0]).toMatchObject({ status: 'matches' });
  });

  it('never goes backwards when several keyctl processes append at once', async () => {
    const { dir, run } = await rotatedProject();
    // Refused moves each append an audit row; four processes at once race for the anchor.
    const env = { KEYCTL_ACTOR: 'op@test', NO_COLOR: '1' };
    const results = await Promise.all(Array.from({ length: 4 }, () => keyctl(['retire'], { cwd: dir, env })));
    for (const r of results) expect(r.code, r.stderr).toBe(ExitCode.REFUSED);
    const head = await withProjectSqlite(dir, headOf);
    const doc = JSON.parse(readFileSync(anchorFile(dir), 'utf8')) as { head: { seq: number; hash: string } };
    expect(doc.head).toMatchObject({ seq: head.seq, hash: head.last_hash });
    expect((await run('audit', '--verify')).code).toBe(ExitCode.OK);
  });

  it('an edited anchor (the MAC no longer matches) is reported', async () => {
    const { dir, run } = await rotatedProject();
    const doc = JSON.parse(readFileSync(anchorFile(dir), 'utf8')) as { head: { seq: number } };
    doc.head.seq -= 1;
    writeFileSync(anchorFile(dir), JSON.stringify(doc), { mode: 0o600 });
    const r = await run('audit', '--verify');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.stdout + r.stderr).toMatch(/MAC/);
  });

  it('a keyring from before the anchor: verify says it is not anchored yet and how to start; the next change anchors it', async () => {
    const { dir, run } = await rotatedProject();
    rmSync(anchorFile(dir));
    const r = await run('audit', '--verify', '--json');
    expect(r.code).toBe(ExitCode.OK);
    const v = json<VerifyJson>(r);
    expect(v.anchors[0]).toMatchObject({ status: 'none' });
    expect(v.unchecked.join('\n')).toMatch(/keyctl audit --anchor/);
    expect((await run('audit', '--anchor')).code).toBe(ExitCode.OK);
    expect(json<VerifyJson>(await run('audit', '--verify', '--json')).anchors[0]).toMatchObject({ status: 'matches' });
  });
});

describe('audit --export and --expect-head', () => {
  it('--export prints JSON lines: every row, then the head with its anchor MAC', async () => {
    const { dir, run } = await rotatedProject();
    const r = await run('audit', '--export');
    expect(r.code).toBe(ExitCode.OK);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const head = await withProjectSqlite(dir, headOf);
    const rows = lines.filter((l) => l.type === 'row');
    expect(rows).toHaveLength(head.seq);
    expect(rows.at(-1)).toMatchObject({ seq: head.seq, rowHash: head.last_hash });
    const last = lines.at(-1)!;
    expect(last).toMatchObject({ type: 'head', keyring: 'default', seq: head.seq, hash: head.last_hash });
    expect((last.anchor as { mac: string }).mac).toMatch(/^[0-9a-f]{64}$/);
  });

  it('--expect-head SEQ:HASH: a checkpoint kept elsewhere must still be in the chain', async () => {
    const { dir, run } = await rotatedProject();
    const head = await withProjectSqlite(dir, headOf);
    expect((await run('audit', '--verify', '--expect-head', `${head.seq}:${head.last_hash}`)).code).toBe(ExitCode.OK);
    const wrong = await run('audit', '--verify', '--expect-head', `${head.seq}:${'f'.repeat(64)}`);
    expect(wrong.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(wrong.stdout + wrong.stderr).toMatch(/expected head/);
    const beyond = await run('audit', '--verify', '--expect-head', `${head.seq + 5}:${head.last_hash}`);
    expect(beyond.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect((await run('audit', '--verify', '--expect-head', 'nonsense')).code).toBe(ExitCode.USAGE);
  });
});

describe('smaller findings', () => {
  it('DROP TABLE rotation_audit: audit --verify reports the missing table (exit 4) and names keyctl migrate', async () => {
    const { dir, run } = await rotatedProject();
    await withProjectSqlite(dir, (k) => k.schema.dropTable('rotation_audit'));
    const r = await run('audit', '--verify');
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.stdout + r.stderr).toMatch(/rotation_audit.*missing/);
    expect(r.stdout + r.stderr).toMatch(/keyctl migrate/);
  });

  it('ANSI escapes and newlines in --actor and --reason are escaped in the table and in Markdown', async () => {
    const { run } = await demoProject(dirs, 20);
    const evil = 'evil\u001b[2J\u001b[31mred\nforged | row\r';
    expect((await run('--actor', evil, 'generate', '--emergency', '--reason', evil)).code).toBe(0);
    for (const format of ['table', 'markdown']) {
      const r = await run('audit', '--format', format);
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).not.toMatch(/[\u001b\r]/);
      expect(r.stdout).not.toMatch(/red\nforged/);
      expect(r.stdout).toContain('\\u001b[2J');
    }
  });
});
