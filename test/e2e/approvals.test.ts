import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { declareTestSecret, json, keyctl, keyctlInProcess, type RunResult, withProjectSqlite } from '../helpers/cli.js';
import { GpgHome } from '../helpers/gpg.js';

const DBA_PASSPHRASE = 'approver-dba: tr0ub4dor&3 staple';
const ACTOR = 'op@test';
const ENV = { KEYCTL_ACTOR: ACTOR, DBA_PP: DBA_PASSPHRASE };

type Who = 'so' | 'dba' | 'eve';
const WHO: Who[] = ['so', 'dba', 'eve'];
const UID: Record<Who, string> = { so: 'security-officer@example.com', dba: 'dba-oncall@example.com', eve: 'eve@example.com' };
const fpr: Record<Who, string> = { so: '', dba: '', eve: '' };
let home: GpgHome;
let keyDir: string;
let sigCount = 0;
const projects: string[] = [];

const pub = (w: Who) => path.join(keyDir, `${w}.pub.asc`);
const sec = (w: Who) => path.join(keyDir, `${w}.sec.asc`);

const gpg = (args: string[], input?: string): string => home.run(args, input);

/** A detached signature by `who` over exactly `text`, made by gpg outside keyctl (armored unless `binary`); the file's path. */
function gpgSign(text: string, who: Who, opts: { binary?: boolean } = {}): string {
  const file = path.join(keyDir, `sig-${++sigCount}.${opts.binary ? 'sig' : 'asc'}`);
  gpg(
    [
      ...(who === 'dba' ? ['--passphrase', DBA_PASSPHRASE] : []),
      '--local-user',
      fpr[who],
      '--detach-sign',
      ...(opts.binary ? [] : ['--armor']),
      '--output',
      file,
    ],
    text,
  );
  return file;
}

beforeAll(() => {
  home = new GpgHome();
  keyDir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-approvers-'));
  for (const w of WHO) {
    const pass = w === 'dba' ? DBA_PASSPHRASE : '';
    gpg(['--passphrase', pass, '--quick-gen-key', UID[w], 'future-default', 'default', 'never']);
    const line = gpg(['--with-colons', '--fingerprint', UID[w]])
      .split('\n')
      .find((l) => l.startsWith('fpr:'))!;
    fpr[w] = line.split(':')[9]!;
    writeFileSync(pub(w), gpg(['--armor', '--export', fpr[w]]));
    writeFileSync(sec(w), gpg(['--armor', '--passphrase', pass, '--export-secret-keys', fpr[w]]));
  }
  declareTestSecret(DBA_PASSPHRASE, 'passphrase of the dba-oncall approver key');
}, 60_000);

afterAll(() => {
  home.close();
  for (const dir of [keyDir, ...projects]) rmSync(dir, { recursive: true, force: true });
});

const DEFAULT_APPROVALS = `approvals:
  approvers:
    - name: security-officer
      publicKey: ./approvers/so.asc
    - name: dba-oncall
      publicKey: ./approvers/dba.asc
  require: { generate: 2, promote: 2, retire: 2, rollback: 2 }
  expiresHours: 24
  breakGlass: true
`;

/** A demo project (SQLite, file keystore, no propagation wait) with the approvers' public keys in approvers/ and `approvals` appended to keyctl.yaml. */
async function project(approvals: string | null = DEFAULT_APPROVALS): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-e2e-appr-'));
  projects.push(dir);
  const init = await keyctlInProcess(['init', '--demo', '--rows', '20'], { cwd: dir });
  expect(init.code, init.stderr).toBe(0);
  mkdirSync(path.join(dir, 'approvers'));
  for (const w of WHO) copyFileSync(pub(w), path.join(dir, 'approvers', `${w}.asc`));
  const cfg = path.join(dir, 'keyctl.yaml');
  const text = readFileSync(cfg, 'utf8').replace(/minPropagationSeconds: \d+/, 'minPropagationSeconds: 0');
  writeFileSync(cfg, `${text}${text.endsWith('\n') ? '' : '\n'}${approvals ?? ''}`);
  return dir;
}

/** keyctl in this process (fast); `child` for the built binary as an operator runs it. */
const run = (dir: string, ...args: string[]) => keyctlInProcess(args, { cwd: dir, env: ENV });
const child = (dir: string, ...args: string[]) => keyctl(args, { cwd: dir, env: ENV });

function ok(r: RunResult, what: string): RunResult {
  expect(r.code, `${what}: ${r.stderr}`).toBe(0);
  return r;
}

async function steps(dir: string, ...names: string[]): Promise<void> {
  for (const name of names) ok(await run(dir, name), name);
}

interface RequestJson {
  id: number;
  keyring: string;
  action: string;
  rotation: number | null;
  fromVersion: string;
  requestedBy: string;
  toVersion: string;
  reason: string | null;
  expiresAt: string;
  breakGlass: boolean;
  status: string;
  required: number;
  approvals: Array<{ approver: string; fingerprint: string; signedAt: string }>;
  rejected: Array<{ id: number; approver: string; reason: string }>;
  missing: string[];
  consumedAt: string | null;
}

async function request(dir: string, action: string, reason?: string): Promise<{ id: number; canonical: string }> {
  const r = ok(await run(dir, 'approval', 'request', action, ...(reason ? ['--reason', reason] : []), '--json'), `approval request ${action}`);
  return json<{ request: { id: number; canonical: string } }>(r).request;
}

const canonicalOf = async (dir: string, id: number): Promise<string> =>
  ok(await run(dir, 'approval', 'show', String(id), '--canonical'), 'show --canonical').stdout;

const sign = (dir: string, id: number, who: Who, env: NodeJS.ProcessEnv = ENV) =>
  keyctlInProcess(['approval', 'sign', String(id), '--key', sec(who), ...(who === 'dba' ? ['--passphrase-env', 'DBA_PP'] : [])], { cwd: dir, env });

/** A request for `action` signed by both approvers (keyctl approval sign). */
async function approve(dir: string, action: string, reason?: string): Promise<number> {
  const { id } = await request(dir, action, reason);
  for (const w of ['so', 'dba'] as const) ok(await sign(dir, id, w), `approval sign ${id} by ${w}`);
  return id;
}

const show = async (dir: string, id: number): Promise<RequestJson> =>
  json<{ request: RequestJson }>(ok(await run(dir, 'approval', 'show', String(id), '--json'), 'approval show')).request;

const listed = async (dir: string): Promise<RequestJson[]> =>
  json<{ requests: RequestJson[] }>(ok(await run(dir, 'approval', 'list', '--all', '--json'), 'approval list')).requests;

interface AuditEntry {
  action: string;
  outcome: string;
  rotationId: number | null;
  details: Record<string, unknown>;
}

const auditOf = async (dir: string): Promise<AuditEntry[]> =>
  json<{ entries: AuditEntry[] }>(ok(await run(dir, 'audit', '--all', '--format', 'json'), 'audit')).entries;

const signatureRows = (dir: string, id: number) =>
  withProjectSqlite(dir, async (k) => (await k('keyctl_approval_signatures').where({ request_id: id }).orderBy('id')) as Array<Record<string, unknown>>);

const editRequest = (dir: string, id: number, changes: Record<string, unknown>) =>
  withProjectSqlite(dir, async (k) => expect(await k('keyctl_approval_requests').where({ id }).update(changes)).toBe(1));

const requestRow = (dir: string, id: number) =>
  withProjectSqlite(dir, async (k) => (await k('keyctl_approval_requests').where({ id }).first()) as Record<string, unknown>);

const rotations = (dir: string) =>
  withProjectSqlite(dir, async (k) => (await k('keyctl_rotations').orderBy('id')) as Array<{ id: number; phase: string; emergency: number }>);

/** The refused audit rows of `action` whose guard was approvalsSigned. */
const refusedByApprovals = (entries: AuditEntry[], action: string) =>
  entries.filter((e) => e.action === action && e.outcome === 'refused' && e.details.guard === 'approvalsSigned');

describe('without approvals', () => {
  it('1. a project with no approvals section opens a rotation as before, and `approval` says none are needed', async () => {
    const dir = await project(null);
    ok(await run(dir, 'generate'), 'generate');
    expect(await rotations(dir)).toMatchObject([{ id: 1, phase: 'generated' }]);
    expect((await auditOf(dir)).filter((e) => e.action.startsWith('approval-'))).toEqual([]);
    const list = await run(dir, 'approval', 'list');
    expect(list.code).toBe(ExitCode.USAGE);
    expect(list.stderr).toContain('has no approvals section');
  });
});

describe('the approvalsSigned guard', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await project();
  });

  it('2a. an unapproved generate is refused (exit 3), naming the approvers missing and the commands, with a refused audit row', async () => {
    const none = await child(dir, 'generate');
    expect(none.code).toBe(ExitCode.REFUSED);
    expect(none.stderr).toContain(
      'generate of the first rotation (v1 → v2) needs the signatures of 2 distinct approvers (of security-officer, dba-oncall), and no open approval request is for it',
    );
    expect(none.stderr).toContain('keyctl approval request generate');

    const { id } = await request(dir, 'generate', 'CHG-2');
    const unsigned = await run(dir, 'generate');
    expect(unsigned.code).toBe(ExitCode.REFUSED);
    expect(unsigned.stderr).toContain(`request #${id} has 0; still missing: 2 of security-officer, dba-oncall`);
    expect(unsigned.stderr).toContain(`keyctl approval show ${id} --canonical > request-${id}.txt`);
    expect(unsigned.stderr).toContain(`gpg --detach-sign --armor request-${id}.txt`);
    expect(unsigned.stderr).toContain(`keyctl approval add ${id} --signature`);
    expect(await rotations(dir)).toEqual([]);

    const refused = refusedByApprovals(await auditOf(dir), 'generate');
    expect(refused).toHaveLength(2);
    expect(refused[0]!.details).toMatchObject({ approval: { required: 2, request: null } });
    expect(refused[1]!.details).toMatchObject({ approval: { required: 2, request: id, valid: [], missing: ['security-officer', 'dba-oncall'] } });
  });

  it('11. `approval request --json` gives {ok, request: {id, canonical}}; `approval show ID --canonical` prints exactly those bytes', async () => {
    const r = await child(dir, 'approval', 'request', 'generate', '--reason', 'CHG-11 quarterly', '--json');
    expect(r.code, r.stderr).toBe(0);
    const doc = json<{ ok: boolean; request: { id: number; canonical: string; required: number; expiresAt: string } }>(r);
    expect(doc.ok).toBe(true);
    expect(doc.request.id).toEqual(expect.any(Number));
    expect(doc.request.required).toBe(2);
    expect(doc.request.canonical).toMatch(
      new RegExp(
        `^keyctl approval request v1\\nrequest: ${doc.request.id}\\nkeyring: default\\naction: generate\\nrotation: the first rotation\\nversions: v1 -> v2\\n` +
          'emergency: no\\nbreak-glass: no\\nreason: CHG-11 quarterly\\nrequested-by: op@test\\nrequested-at: \\S+Z\\nexpires-at: \\S+Z\\nnonce: [0-9a-f]{32}\\n$',
      ),
    );
    expect(doc.request.canonical).toContain(`expires-at: ${doc.request.expiresAt}\n`);
    const shown = await child(dir, 'approval', 'show', String(doc.request.id), '--canonical');
    expect(shown.code, shown.stderr).toBe(0);
    expect(Buffer.from(shown.stdout, 'utf8').equals(Buffer.from(doc.request.canonical, 'utf8'))).toBe(true);
    expect((await show(dir, doc.request.id)) as unknown as { canonical: string }).toMatchObject({ canonical: doc.request.canonical, status: 'open' });
  });

  it('3. signatures gpg made outside keyctl (armored and binary) are accepted; with both, generate runs and approval-consume names both approvers with their gpg fingerprints', async () => {
    const { id } = await request(dir, 'generate', 'CHG-3');
    const text = (await run(dir, 'approval', 'show', String(id), '--canonical')).stdout;
    const armored = gpgSign(text, 'so');
    const binary = gpgSign(text, 'dba', { binary: true });
    expect(readFileSync(armored, 'utf8')).toMatch(/^-----BEGIN PGP SIGNATURE-----/);
    expect(readFileSync(binary).includes('-----BEGIN')).toBe(false);

    const first = await child(dir, 'approval', 'add', String(id), '--signature', armored);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`signature of security-officer (${fpr.so}) added to request #${id}`);
    expect(first.stdout).toContain('still missing: 1 of dba-oncall');
    const half = await run(dir, 'generate');
    expect(half.code).toBe(ExitCode.REFUSED);
    expect(half.stderr).toContain(`request #${id} has 1 (security-officer); still missing: 1 of dba-oncall`);

    const second = await run(dir, 'approval', 'add', String(id), '--signature', binary, '--json');
    expect(second.code, second.stderr).toBe(0);
    expect(json<{ request: RequestJson }>(second).request).toMatchObject({ id, status: 'approved', missing: [] });

    const gen = await child(dir, 'generate');
    expect(gen.code, gen.stderr).toBe(0);
    expect(await rotations(dir)).toMatchObject([{ id: 1, phase: 'generated' }]);
    const consumed = (await auditOf(dir)).filter((e) => e.action === 'approval-consume');
    expect(consumed).toHaveLength(1);
    expect(consumed[0]).toMatchObject({
      outcome: 'ok',
      rotationId: 1,
      details: {
        request: id,
        for: 'generate',
        breakGlass: false,
        approvers: [
          { name: 'security-officer', fingerprint: fpr.so, signedAt: expect.stringMatching(/Z$/) },
          { name: 'dba-oncall', fingerprint: fpr.dba, signedAt: expect.stringMatching(/Z$/) },
        ],
      },
    });
    const stored = await signatureRows(dir, id);
    expect(stored.map((s) => [s.approver, s.fingerprint])).toEqual([
      ['security-officer', fpr.so],
      ['dba-oncall', fpr.dba],
    ]);
    for (const s of stored) expect(String(s.signature)).toMatch(/^-----BEGIN PGP SIGNATURE-----/);
    const states = await listed(dir);
    expect(states.find((s) => s.id === id)).toMatchObject({ status: 'consumed', consumedAt: expect.any(String) });
  });

  it('10c. --break-glass on a routine (non-emergency) promote is refused with exit 2', async () => {
    await steps(dir, 'dual-key', 'reencrypt', 'verify');
    const r = await run(dir, 'promote', '--break-glass', '--reason', 'in a hurry');
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('--break-glass is only for emergency rotations');
    expect(await rotations(dir)).toMatchObject([{ id: 1, phase: 'verified' }]);
    expect((await listed(dir)).filter((s) => s.breakGlass)).toEqual([]);
  });

  it('2b. unapproved promote, retire (even with --force) and rollback are refused (exit 3) with refused audit rows; approved, each runs', async () => {
    expect((await rotations(dir))[0]?.phase).toBe('verified');
    const promote = await run(dir, 'promote');
    expect(promote.code).toBe(ExitCode.REFUSED);
    expect(promote.stderr).toContain('promote of rotation #1 (v1 → v2) needs the signatures of 2 distinct approvers (of security-officer, dba-oncall)');
    expect(promote.stderr).toContain('keyctl approval request promote');
    const rollback = await run(dir, 'rollback', '--reason', 'CHG-2b');
    expect(rollback.code).toBe(ExitCode.REFUSED);
    expect(rollback.stderr).toContain('rollback of rotation #1 (v2 → v1) needs the signatures of 2 distinct approvers');

    const p = await approve(dir, 'promote', 'CHG-2b');
    ok(await run(dir, 'promote'), 'approved promote');
    expect((await rotations(dir))[0]?.phase).toBe('promoted');

    const retire = await run(dir, 'retire', '--force', '--reason', 'CHG-2b: window shortened');
    expect(retire.code).toBe(ExitCode.REFUSED);
    expect(retire.stderr).toContain('retire of rotation #1 (v1 → v2) needs the signatures of 2 distinct approvers');
    const { id: r } = await request(dir, 'retire');
    ok(await sign(dir, r, 'dba'), 'dba signs retire');
    const retire2 = await run(dir, 'retire', '--force', '--reason', 'CHG-2b: window shortened');
    expect(retire2.code).toBe(ExitCode.REFUSED);
    expect(retire2.stderr).toContain(`request #${r} has 1 (dba-oncall); still missing: 1 of security-officer`);
    expect(retire2.stderr).toContain(`keyctl approval add ${r} --signature`);
    const rollback2 = await run(dir, 'rollback', '--reason', 'CHG-2b');
    expect(rollback2.code).toBe(ExitCode.REFUSED);

    const entries = await auditOf(dir);
    expect(refusedByApprovals(entries, 'promote')).toHaveLength(1);
    expect(refusedByApprovals(entries, 'retire')).toHaveLength(2);
    expect(refusedByApprovals(entries, 'rollback')).toHaveLength(2);
    expect(entries.filter((e) => e.action === 'approval-consume').map((e) => e.details.request)).toContain(p);

    ok(await sign(dir, r, 'so'), 'so signs retire');
    ok(await run(dir, 'retire', '--force', '--reason', 'CHG-2b: window shortened'), 'approved retire');
    expect((await rotations(dir))[0]?.phase).toBe('retired');
  });
});

describe('approval add refuses a signature that does not approve this request', () => {
  let dir: string;
  let promoteId: number;
  let retireText: string;
  let promoteText: string;
  beforeAll(async () => {
    dir = await project();
    await approve(dir, 'generate');
    await steps(dir, 'generate');
    promoteId = (await request(dir, 'promote')).id;
    promoteText = await canonicalOf(dir, promoteId);
    retireText = await canonicalOf(dir, (await request(dir, 'retire')).id);
  });

  async function expectRejected(signatureFile: string, why: string): Promise<void> {
    const before = (await auditOf(dir)).filter((e) => e.action === 'approval-sign' && e.outcome === 'refused').length;
    const r = await run(dir, 'approval', 'add', String(promoteId), '--signature', signatureFile);
    expect(r.code, r.stdout).toBe(ExitCode.REFUSED);
    expect(r.stderr).toContain(`signature not added to request #${promoteId}: ${why}`);
    expect(await signatureRows(dir, promoteId)).toEqual([]);
    const refused = (await auditOf(dir)).filter((e) => e.action === 'approval-sign' && e.outcome === 'refused');
    expect(refused).toHaveLength(before + 1);
    expect(refused.at(-1)!.details).toMatchObject({ request: promoteId, via: 'add' });
  }

  const edits: Array<[string, (promote: string, retire: string) => string]> = [
    ['another action (the retire request of the same rotation and versions)', (_p, retire) => retire],
    ['another rotation', (p) => p.replace('rotation: rotation #1\n', 'rotation: rotation #2\n')],
    ['another version pair', (p) => p.replace('versions: v1 -> v2\n', 'versions: v1 -> v3\n')],
    ['another keyring', (p) => p.replace('keyring: default\n', 'keyring: other\n')],
    ['another nonce', (p) => p.replace(/nonce: [0-9a-f]{32}\n/, `nonce: ${'0'.repeat(32)}\n`)],
  ];
  it.each(edits)('4. a signature over the text of a request for %s: exit 3, nothing stored, a refused approval-sign row', async (_what, edit) => {
    const text = edit(promoteText, retireText);
    expect(text).not.toBe(promoteText);
    await expectRejected(gpgSign(text, 'so'), 'does not sign this request');
  });

  it("4. a signature by a key not listed among the approvers (eve's): refused, from a file and with approval sign", async () => {
    await expectRejected(gpgSign(promoteText, 'eve'), `made by key ${fpr.eve.slice(-16)}, which is not an approver's key`);
    const signed = await run(dir, 'approval', 'sign', String(promoteId), '--key', sec('eve'));
    expect(signed.code).toBe(ExitCode.REFUSED);
    expect(await signatureRows(dir, promoteId)).toEqual([]);
  });

  it('4. the same approver signing twice counts once: the second add is refused and the action stays refused with one approver', async () => {
    const { id } = await request(dir, 'rollback', 'CHG-4');
    const text = await canonicalOf(dir, id);
    ok(await run(dir, 'approval', 'add', String(id), '--signature', gpgSign(text, 'so')), 'first signature');
    const again = await run(dir, 'approval', 'add', String(id), '--signature', gpgSign(text, 'so', { binary: true }));
    expect(again.code).toBe(ExitCode.REFUSED);
    expect(again.stderr).toContain(`security-officer already signed request #${id}`);
    const viaSign = await sign(dir, id, 'so');
    expect(viaSign.code).toBe(ExitCode.REFUSED);
    expect(await signatureRows(dir, id)).toHaveLength(1);
    const rb = await run(dir, 'rollback', '--reason', 'CHG-4');
    expect(rb.code).toBe(ExitCode.REFUSED);
    expect(rb.stderr).toContain(`request #${id} has 1 (security-officer); still missing: 1 of dba-oncall`);
    expect(refusedByApprovals(await auditOf(dir), 'rollback').at(-1)!.details).toMatchObject({ approval: { request: id, valid: ['security-officer'] } });
    expect(await rotations(dir)).toMatchObject([{ id: 1, phase: 'generated' }]);
  });

  it('4. (control) the unedited text signed by the same key is accepted', async () => {
    const r = await run(dir, 'approval', 'add', String(promoteId), '--signature', gpgSign(promoteText, 'so'));
    expect(r.code, r.stderr).toBe(0);
    expect(await signatureRows(dir, promoteId)).toHaveLength(1);
  });
});

describe('rows edited in the database do not make an approval', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await project();
    await approve(dir, 'generate');
    await steps(dir, 'generate', 'dual-key', 'reencrypt', 'verify');
  });

  it("5a. signature rows inserted directly (eve's, so's over another request, so's own relabelled as dba-oncall's) do not count", async () => {
    const { id } = await request(dir, 'rollback', 'CHG-5a');
    ok(await sign(dir, id, 'so'), 'so signs');
    const [soRow] = await signatureRows(dir, id);
    const other = (await request(dir, 'retire')).id;
    const forged: Array<[string, string]> = [
      ['eve over this request', readFileSync(gpgSign(await canonicalOf(dir, id), 'eve'), 'utf8')],
      ['security-officer over another request', readFileSync(gpgSign(await canonicalOf(dir, other), 'so'), 'utf8')],
      ["security-officer's own, relabelled", String(soRow!.signature)],
    ];
    for (const [what, signature] of forged) {
      const now = new Date().toISOString();
      const row = { request_id: id, approver: 'dba-oncall', fingerprint: fpr.dba, signature, signed_at: now, added_by: 'dba@sqlite3', added_at: now };
      await withProjectSqlite(dir, (k) => k('keyctl_approval_signatures').insert(row));
      const r = await run(dir, 'rollback', '--reason', 'CHG-5a');
      expect(r.code, what).toBe(ExitCode.REFUSED);
      expect(r.stderr, what).toContain(`request #${id} has 1 (security-officer); still missing: 1 of dba-oncall; not counted: `);
      const state = await show(dir, id);
      expect(state, what).toMatchObject({ status: 'open', approvals: [{ approver: 'security-officer', fingerprint: fpr.so }] });
      expect(state.rejected, what).toHaveLength(1);
      await withProjectSqlite(dir, (k) => k('keyctl_approval_signatures').where({ request_id: id, fingerprint: fpr.dba }).delete());
    }
    expect((await rotations(dir))[0]?.phase).toBe('verified');
  });

  it('5b. editing an approved request (action, to_version, expires_at) voids its signatures; restored, it approves again', async () => {
    const q = await approve(dir, 'retire', 'CHG-5b');
    expect((await show(dir, q)).status).toBe('approved');
    await editRequest(dir, q, { action: 'promote' });
    const asPromote = await run(dir, 'promote');
    expect(asPromote.code).toBe(ExitCode.REFUSED);
    expect(asPromote.stderr).toContain(`request #${q} has 0`);
    expect(asPromote.stderr).toContain('does not sign this request');
    await editRequest(dir, q, { action: 'retire' });

    const p = await approve(dir, 'promote', 'CHG-5b');
    const original = await requestRow(dir, p);
    await editRequest(dir, p, { to_version: 'v3' });
    expect((await run(dir, 'promote')).code).toBe(ExitCode.REFUSED);
    expect(await show(dir, p)).toMatchObject({ status: 'open', approvals: [] });
    await editRequest(dir, p, { to_version: original.to_version });

    const later = new Date(Date.parse(String(original.expires_at)) + 86_400_000).toISOString();
    await editRequest(dir, p, { expires_at: later });
    const extended = await run(dir, 'promote');
    expect(extended.code).toBe(ExitCode.REFUSED);
    expect(extended.stderr).toContain(`request #${p} has 0`);
    expect((await show(dir, p)).rejected).toHaveLength(2);
    await editRequest(dir, p, { expires_at: original.expires_at });

    expect((await show(dir, p)).status).toBe('approved');
    ok(await child(dir, 'promote'), 'promote with the restored request');
    expect((await auditOf(dir)).filter((e) => e.action === 'approval-consume').at(-1)!.details).toMatchObject({ request: p, for: 'promote' });
  });
});

describe('a rotation row written by hand does not open a rotation without approval', () => {
  it("5c. an INSERTed rotation in phase generating: generate's resume is refused until that rotation is approved", async () => {
    const dir = await project();
    const now = new Date().toISOString();
    await withProjectSqlite(dir, (k) =>
      k('keyctl_rotations').insert({
        keyring: 'default',
        phase: 'generating',
        old_version: 'v1',
        new_version: 'v2',
        emergency: false,
        open_keyring: 'default',
        opened_by: 'mallory@db',
        opened_at: now,
        phase_changed_at: now,
      }),
    );
    const refused = await child(dir, 'generate');
    expect(refused.code).toBe(ExitCode.REFUSED);
    expect(refused.stderr).toContain('generate of rotation #1 (v1 → v2) needs the signatures of 2 distinct approvers');
    expect(refusedByApprovals(await auditOf(dir), 'generate')).toHaveLength(1);
    // No key was published by the refused attempt.
    expect((await rotations(dir))[0]?.phase).toBe('generating');
    const id = await approve(dir, 'generate', 'CHG-5c: adopt the stuck rotation');
    ok(await child(dir, 'generate'), 'approved generate');
    expect((await rotations(dir))[0]?.phase).toBe('generated');
    expect((await listed(dir)).find((r) => r.id === id)).toMatchObject({ status: 'consumed', rotation: 1 });
    // The same row set back to generating: its opening approval was spent on the generate that ran.
    await withProjectSqlite(dir, (k) => k('keyctl_rotations').where({ id: 1 }).update({ phase: 'generating' }));
    const again = await child(dir, 'generate');
    expect(again.code).toBe(ExitCode.REFUSED);
    expect(again.stderr).toContain('generate of rotation #1 (v1 → v2) needs the signatures of 2 distinct approvers');
    // And for another key: its opening approval was for v1 → v2.
    await withProjectSqlite(dir, (k) => k('keyctl_rotations').where({ id: 1 }).update({ phase: 'generating', new_version: 'v3' }));
    const reopened = await child(dir, 'generate');
    expect(reopened.code).toBe(ExitCode.REFUSED);
    expect(reopened.stderr).toContain('generate of rotation #1 (v1 → v3) needs the signatures of 2 distinct approvers');
  });
});

describe('a consumed request cannot be replayed', () => {
  let dir: string;
  let g1: number;
  let p1: number;
  beforeAll(async () => {
    dir = await project();
    g1 = await approve(dir, 'generate');
    await steps(dir, 'generate', 'dual-key', 'reencrypt', 'verify');
    p1 = await approve(dir, 'promote');
    await steps(dir, 'promote');
  });

  it('6a. with consumed_at cleared in the database the audit still marks it consumed: listed so, and it takes no more signatures', async () => {
    for (const id of [g1, p1]) await editRequest(dir, id, { consumed_at: null, consumed_rotation: null });
    const states = await listed(dir);
    expect(states.find((s) => s.id === p1)?.status).toBe('consumed');
    expect(states.find((s) => s.id === g1)?.status).toBe('consumed');
    const add = await run(dir, 'approval', 'add', String(p1), '--signature', gpgSign(await canonicalOf(dir, p1), 'so'));
    expect(add.code).toBe(ExitCode.REFUSED);
    expect(add.stderr).toContain(`request #${p1} was already used by promote and cannot be used again`);
    expect(await signatureRows(dir, p1)).toHaveLength(2);
  });

  it("6b. nor does it open the next rotation (another binding; rewritten columns void the signatures); a previous rotation's text does not sign the next's", async () => {
    await approve(dir, 'retire');
    ok(await run(dir, 'retire', '--force', '--reason', 'CHG-6'), 'retire');
    await editRequest(dir, g1, { consumed_at: null, consumed_rotation: null });
    const again = await run(dir, 'generate');
    expect(again.code).toBe(ExitCode.REFUSED);
    expect(again.stderr).toContain('generate of the next rotation after #1 (v2 → v3) needs the signatures of 2 distinct approvers');
    await editRequest(dir, g1, { after_rotation: 1, from_version: 'v2', to_version: 'v3' });
    expect((await run(dir, 'generate')).code).toBe(ExitCode.REFUSED);
    expect(await rotations(dir)).toHaveLength(1);
    expect(refusedByApprovals(await auditOf(dir), 'generate')).toHaveLength(2);

    await approve(dir, 'generate', 'CHG-6 next');
    ok(await run(dir, 'generate'), 'generate with a fresh approval');
    expect((await rotations(dir)).map((r) => r.id)).toEqual([1, 2]);
    const { id: p2 } = await request(dir, 'promote');
    const add = await run(dir, 'approval', 'add', String(p2), '--signature', gpgSign(await canonicalOf(dir, p1), 'so'));
    expect(add.code).toBe(ExitCode.REFUSED);
    expect(add.stderr).toContain('does not sign this request');
    expect(await signatureRows(dir, p2)).toEqual([]);
  });
});

describe('expiry', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await project();
  });

  it('7a. expires_at moved into the past in the database: the request is expired, its signatures no longer verify, generate is refused', async () => {
    const id = await approve(dir, 'generate');
    expect((await show(dir, id)).status).toBe('approved');
    await editRequest(dir, id, { expires_at: new Date(Date.now() - 60_000).toISOString() });
    const r = await run(dir, 'generate');
    expect(r.code).toBe(ExitCode.REFUSED);
    expect(r.stderr).toContain(`request #${id} expired`);
    const state = await show(dir, id);
    expect(state).toMatchObject({ status: 'expired', approvals: [] });
    expect(state.rejected).toHaveLength(2);
    expect(await rotations(dir)).toEqual([]);
  });

  it('7b. a request past expiresHours (0.0003 h, about 1 s) takes no signature: approval add is refused as expired', async () => {
    const cfg = path.join(dir, 'keyctl.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('expiresHours: 24', 'expiresHours: 0.0003'));
    const { id, canonical } = await request(dir, 'generate', 'CHG-7b');
    const signature = gpgSign(canonical, 'so');
    const expiresAt = Date.parse(/expires-at: (\S+)/.exec(canonical)![1]!);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 300));
    const add = await child(dir, 'approval', 'add', String(id), '--signature', signature);
    expect(add.code).toBe(ExitCode.REFUSED);
    expect(add.stderr).toContain(`signature not added to request #${id}: request #${id} expired`);
    expect(await signatureRows(dir, id)).toEqual([]);
    const refused = (await auditOf(dir)).filter((e) => e.action === 'approval-sign' && e.outcome === 'refused');
    expect(refused.at(-1)!.details).toMatchObject({ request: id, reason: expect.stringContaining('expired') });
    expect((await listed(dir)).find((s) => s.id === id)?.status).toBe('expired');
  });
});

describe('approval sign --key', () => {
  it('8. a passphrase-protected key needs --passphrase-env (exit 10 without, or with a wrong one); with it, it signs; the passphrase is never printed', async () => {
    const dir = await project();
    const { id } = await request(dir, 'generate');
    const signWith = (env: NodeJS.ProcessEnv, ...extra: string[]) =>
      keyctl(['approval', 'sign', String(id), '--key', sec('dba'), ...extra], { cwd: dir, env: { KEYCTL_ACTOR: ACTOR, ...env } });
    const runs: RunResult[] = [];

    const bare = await signWith({});
    runs.push(bare);
    expect(bare.code).toBe(ExitCode.PGP_KEY);
    expect(bare.stderr).toContain(`the secret key ${sec('dba')} is protected by a passphrase: pass --passphrase-env VAR`);
    const wrong = await signWith({ APPROVER_PP: 'not the passphrase' }, '--passphrase-env', 'APPROVER_PP');
    runs.push(wrong);
    expect(wrong.code).toBe(ExitCode.PGP_KEY);
    expect(wrong.stderr).toContain('does not unlock');
    const unset = await signWith({}, '--passphrase-env', 'APPROVER_PP');
    runs.push(unset);
    expect(unset.code).toBe(ExitCode.USAGE);
    expect(await signatureRows(dir, id)).toEqual([]);

    const good = await signWith({ APPROVER_PP: DBA_PASSPHRASE }, '--passphrase-env', 'APPROVER_PP');
    runs.push(good);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain(`signature of dba-oncall (${fpr.dba}) added to request #${id}`);
    const plain = await run(dir, 'approval', 'sign', String(id), '--key', sec('so'), '--json');
    runs.push(plain);
    expect(plain.code, plain.stderr).toBe(0);
    expect(json<{ request: RequestJson }>(plain).request.status).toBe('approved');

    for (const r of runs) expect(r.stdout + r.stderr).not.toContain(DBA_PASSPHRASE);
    expect(JSON.stringify(await auditOf(dir))).not.toContain(DBA_PASSPHRASE);
    ok(await run(dir, 'generate'), 'generate');
  });
});

describe('configuration errors', () => {
  let dir: string;
  let base: string;
  beforeAll(async () => {
    dir = await project(null);
    base = readFileSync(path.join(dir, 'keyctl.yaml'), 'utf8');
    writeFileSync(path.join(dir, 'approvers', 'not-a-key.asc'), 'hello, I am not a key\n');
    copyFileSync(pub('so'), path.join(dir, 'approvers', 'so-copy.asc'));
    copyFileSync(sec('eve'), path.join(dir, 'approvers', 'eve-secret.asc'));
  });

  const approvers = `approvals:
  approvers:
    - name: security-officer
      publicKey: ./approvers/missing.asc
    - name: dba-oncall
      publicKey: ./approvers/not-a-key.asc
    - name: alice
      publicKey: ./approvers/so.asc
    - name: bob
      publicKey: ./approvers/so-copy.asc
    - name: carol
      publicKey: ./approvers/so.asc
    - name: eve
      publicKey: ./approvers/eve-secret.asc
`;
  const keyProblems = () => [
    'approvals.approvers.0 (security-officer): publicKey ./approvers/missing.asc: no such file',
    'approvals.approvers.1 (dba-oncall): publicKey ./approvers/not-a-key.asc: not an armored OpenPGP public key',
    'approvals.approvers.3 (bob): publicKey ./approvers/so-copy.asc: the same key as approvals.approvers.2 (alice)',
    'approvals.approvers.4 (carol): publicKey ./approvers/so.asc: the same key as approvals.approvers.2 (alice)',
    'approvals.approvers.5 (eve): publicKey ./approvers/eve-secret.asc: holds a secret key',
  ];
  const configure = (text: string) => writeFileSync(path.join(dir, 'keyctl.yaml'), `${base}${text}`);

  it('9a. unusable approver keys (missing, not a key, one key for several approvers, a secret key): exit 2 listing every problem', async () => {
    configure(`${approvers}  require: { generate: 2 }\n`);
    for (const args of [['generate'], ['approval', 'request', 'generate']]) {
      const r = await (args.length === 1 ? child : run)(dir, ...args);
      expect(r.code, args.join(' ')).toBe(ExitCode.USAGE);
      expect(r.stderr).toContain('is not a valid keyctl configuration (5 problems)');
      for (const p of keyProblems()) expect(r.stderr).toContain(p);
    }
    expect(await rotations(dir)).toEqual([]);
  });

  it('9b. an unknown action under require: exit 2 naming it', async () => {
    configure(`${DEFAULT_APPROVALS.replace('rollback: 2 }', 'rollback: 2, frobnicate: 1 }')}`);
    const r = await run(dir, 'generate');
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('approvals.require.frobnicate');
    expect(await rotations(dir)).toEqual([]);
  });

  it('9c. every problem at once: the unknown action and each unusable key are all listed in one run', async () => {
    configure(`${approvers}  require: { generate: 2, frobnicate: 1 }\n`);
    const r = await run(dir, 'generate');
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('approvals.require.frobnicate');
    for (const p of keyProblems()) expect(r.stderr).toContain(p);
  });
});

describe('what approvers sign cannot be stretched', () => {
  it('12a. a routine generate approval does not open an emergency rotation; one requested with --emergency does, and says so in the text', async () => {
    const dir = await project();
    await approve(dir, 'generate', 'CHG-12a');
    const emergency = await run(dir, 'generate', '--emergency', '--reason', 'INC-12a');
    expect(emergency.code).toBe(ExitCode.REFUSED);
    expect(emergency.stderr).toContain('emergency generate of the first rotation (v1 → v2) needs the signatures');
    const r = ok(await run(dir, 'approval', 'request', 'generate', '--emergency', '--reason', 'INC-12a', '--json'), 'request --emergency');
    const { id, canonical } = json<{ request: { id: number; canonical: string } }>(r).request;
    expect(canonical).toContain('emergency: yes');
    for (const w of ['so', 'dba'] as const) ok(await sign(dir, id, w), `sign by ${w}`);
    ok(await run(dir, 'generate', '--emergency', '--reason', 'INC-12a'), 'approved emergency generate');
    expect((await rotations(dir))[0]).toMatchObject({ phase: 'generated', emergency: 1 });
  });

  it('12b. an actor name with a line break or a terminal escape cannot write itself into the text approvers sign', async () => {
    const dir = await project();
    for (const actor of ['mallory\naction: rollback', 'op\u001b[7A\raction: promote', 'op\u2028keyring: other']) {
      const r = await run(dir, 'approval', 'request', 'generate');
      expect(r.code).toBe(0);
      const bad = await keyctlInProcess(['approval', 'request', 'generate'], { cwd: dir, env: { ...ENV, KEYCTL_ACTOR: actor } });
      expect(bad.code, JSON.stringify(actor)).toBe(ExitCode.USAGE);
      expect(bad.stderr).toContain('the actor name (KEYCTL_ACTOR, or user@host) holds line breaks, control or bidirectional characters');
    }
    expect((await listed(dir)).map((x) => x.requestedBy)).toEqual(['op@test', 'op@test', 'op@test']);
  });

  it('12c. a signature file with more in it than the signature (a secret key appended) stores only the signature', async () => {
    const dir = await project();
    const { id, canonical } = await request(dir, 'generate');
    const file = gpgSign(canonical, 'so');
    const both = path.join(keyDir, 'sig-and-secret.asc');
    writeFileSync(both, `${readFileSync(file, 'utf8')}${readFileSync(sec('so'), 'utf8')}`);
    ok(await run(dir, 'approval', 'add', String(id), '--signature', both), 'add');
    const [row] = await signatureRows(dir, id);
    expect(String(row!.signature)).toContain('BEGIN PGP SIGNATURE');
    expect(String(row!.signature)).not.toContain('PRIVATE KEY');
  });

  it('12d. --break-glass never rolls back an emergency rotation', async () => {
    const dir = await project();
    ok(await child(dir, 'generate', '--emergency', '--break-glass', '--reason', 'INC-12d'), 'break-glass generate');
    const r = await run(dir, 'rollback', '--force', '--break-glass', '--reason', 'oops');
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toMatch(/unknown option '--break-glass'/);
    expect((await rotations(dir))[0]?.phase).toBe('generated');
  });

  it('12e. a break glass stays owed when its request row is deleted or the approvals section removed', async () => {
    const dir = await project();
    ok(await child(dir, 'generate', '--emergency', '--break-glass', '--reason', 'INC-12e'), 'break-glass generate');
    await withProjectSqlite(dir, (k) => k('keyctl_approval_requests').where({ break_glass: true }).delete());
    const gone = await child(dir, 'status', '--check');
    expect(gone.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(gone.stderr).toMatch(/\[break-glass-unapproved\].*request #\d+ is gone/);
    const file = path.join(dir, 'keyctl.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').slice(0, readFileSync(file, 'utf8').indexOf('approvals:')));
    const noPolicy = await child(dir, 'status', '--check');
    expect(noPolicy.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(noPolicy.stderr).toContain('[break-glass-unapproved]');
  });
});

describe('break glass', () => {
  let dir: string;
  const bg = async () => (await listed(dir)).filter((s) => s.breakGlass);
  beforeAll(async () => {
    dir = await project();
  });

  it('10a. generate --emergency --break-glass --reason runs without signatures and is recorded as a break-glass request awaiting approval', async () => {
    const plain = await run(dir, 'generate', '--emergency', '--reason', 'INC-10: key in a log');
    expect(plain.code).toBe(ExitCode.REFUSED);
    expect(plain.stderr).toContain('--break-glass');
    const noReason = await run(dir, 'generate', '--emergency', '--break-glass');
    expect(noReason.code).toBe(ExitCode.USAGE);

    const r = await child(dir, 'generate', '--emergency', '--break-glass', '--reason', 'INC-10: key in a log, approvers asleep');
    expect(r.code, r.stderr).toBe(0);
    expect(await rotations(dir)).toMatchObject([{ id: 1, phase: 'generated', emergency: 1 }]);
    const [req] = await bg();
    expect(req).toMatchObject({
      action: 'generate',
      rotation: 1,
      breakGlass: true,
      status: 'break-glass-pending',
      reason: 'INC-10: key in a log, approvers asleep',
      approvals: [],
    });
    expect((await auditOf(dir)).filter((e) => e.action === 'approval-consume')).toMatchObject([
      { outcome: 'ok', rotationId: 1, details: { request: req!.id, breakGlass: true, approvers: [] } },
    ]);
  });

  it('10a. status --check exits 4 and names the break-glass action awaiting approval', async () => {
    const [req] = await bg();
    expect(req?.status).toBe('break-glass-pending');
    const check = await child(dir, 'status', '--check');
    expect(check.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(check.stdout + check.stderr).toMatch(/break-glass/);
    expect(check.stdout + check.stderr).toContain(`request #${req!.id}`);
  });

  it('10b. both approvers sign the break-glass request afterwards (approval sign): break-glass-approved, and status --check no longer flags it', async () => {
    const [req] = await bg();
    const first = ok(await run(dir, 'approval', 'sign', String(req!.id), '--key', sec('so')), 'so signs');
    expect(first.stdout).toContain('still missing: 1 of dba-oncall');
    expect((await bg())[0]?.status).toBe('break-glass-pending');
    const second = ok(await sign(dir, req!.id, 'dba'), 'dba signs');
    expect(second.stdout).toContain('the break-glass action is now approved');
    expect((await bg())[0]).toMatchObject({ status: 'break-glass-approved', approvals: [{ approver: 'security-officer' }, { approver: 'dba-oncall' }] });
    const check = await run(dir, 'status', '--check');
    expect(check.stdout + check.stderr).not.toMatch(/break-glass/);
  });

  it("10. the emergency rotation's promote: refused without approvals, runs with --break-glass --reason, awaiting approval in turn", async () => {
    await steps(dir, 'dual-key', 'reencrypt', 'verify');
    const refused = await run(dir, 'promote');
    expect(refused.code).toBe(ExitCode.REFUSED);
    expect(refused.stderr).toContain('--break-glass');
    ok(await run(dir, 'promote', '--break-glass', '--reason', 'INC-10: promote now'), 'promote --break-glass');
    expect((await rotations(dir))[0]?.phase).toBe('promoted');
    expect((await bg()).map((s) => [s.action, s.status])).toEqual([
      ['promote', 'break-glass-pending'],
      ['generate', 'break-glass-approved'],
    ]);
  });

  it('10e. a break-glass request can still be approved after expiresHours have passed (approvers sign afterwards)', async () => {
    const cfg = path.join(dir, 'keyctl.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('expiresHours: 24', 'expiresHours: 0.0003'));
    ok(await run(dir, 'retire', '--break-glass', '--force', '--reason', 'INC-10: retire the leaked key now'), 'retire --break-glass');
    const retire = (await bg()).find((s) => s.action === 'retire')!;
    expect(retire.status).toBe('break-glass-pending');
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(retire.expiresAt) - Date.now()) + 1100));
    const late = await run(dir, 'approval', 'sign', String(retire.id), '--key', sec('so'));
    expect(late.code, late.stderr).toBe(0);
    ok(await sign(dir, retire.id, 'dba'), 'dba signs late');
    expect((await bg()).find((s) => s.id === retire.id)?.status).toBe('break-glass-approved');
  });
});
