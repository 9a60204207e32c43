/** The rotation machine's table: well-formed, the single source of phase names, and what docs/rotation.md shows. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { withMachineTables } from '../../src/rotation/machine-docs.js';
import {
  CLOSED_PHASES,
  GUARDS,
  MACHINE_COMMANDS,
  PHASE_INFO,
  PHASES,
  RULES,
  allows,
  commandApplies,
  evaluate,
  preview,
  type PhaseOrNone,
  type Snapshot,
} from '../../src/rotation/machine.js';
import type { Rotation } from '../../src/rotation/store.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const rotation = (over: Partial<Rotation> = {}): Rotation => ({
  id: 1,
  keyring: 'default',
  phase: 'verified',
  oldVersion: 'v1',
  newVersion: 'v2',
  emergency: false,
  reason: null,
  compromisedVersion: null,
  openedBy: 'a',
  openedAt: new Date(0),
  phaseChangedAt: new Date(0),
  rollbackDeadline: null,
  closedAt: null,
  verifyScope: null,
  verifyOutcome: null,
  verifiedAt: null,
  ...over,
});

const snap = (r: Rotation | null, over: Partial<Snapshot> = {}): Snapshot => ({
  now: new Date(1_000_000_000),
  keyring: 'default',
  rotation: r,
  versions: [],
  policy: { minPropagationSeconds: 0, rollbackWindowDays: 30 },
  keystoreWritable: true,
  counts: { byVersion: { v2: 10 }, unparseable: 0 },
  ...over,
});

describe('the rotation machine', () => {
  it('docs/rotation.md shows the machine as it is (run `npm run docs:machine` after changing it)', () => {
    const doc = readFileSync(path.join(root, 'docs/rotation.md'), 'utf8');
    expect(withMachineTables(doc)).toBe(doc);
  });

  it('is well-formed: rule ids unique, known guards, closed phases have no way out, every phase reachable from none', () => {
    expect(new Set(RULES.map((r) => r.id)).size).toBe(RULES.length);
    for (const r of RULES) for (const g of r.guards) expect(Object.keys(GUARDS)).toContain(g);
    for (const p of CLOSED_PHASES) expect(RULES.filter((r) => r.from.includes(p))).toEqual([]);
    const reached = new Set<PhaseOrNone>(['none']);
    for (let grew = true; grew; ) {
      grew = false;
      for (const r of RULES) {
        if (r.to === 'same' || reached.has(r.to) || !r.from.some((f) => reached.has(f))) continue;
        reached.add(r.to);
        grew = true;
      }
    }
    expect([...reached].filter((p) => p !== 'none').sort()).toEqual([...PHASES].sort());
    for (const p of PHASES) expect(MACHINE_COMMANDS).toContain(PHASE_INFO[p].forward);
  });

  it('allows only the moves in its table', () => {
    const promote = RULES.find((r) => r.id === 'promote')!;
    expect(allows(promote, 'verified', 'promoted')).toBe(true);
    expect(allows(promote, 'reencrypted', 'promoted')).toBe(false);
    expect(allows(promote, 'verified', 'retired')).toBe(false);
    expect(commandApplies('retire', 'verified')).toBe(false);
    expect(preview('retire', snap(rotation())).refusal?.reason).toContain('retire needs phase promoted');
  });

  it('a sampled verify does not unlock promote unless forced with a reason; a full one does', () => {
    const promote = RULES.find((r) => r.id === 'promote')!;
    const sampled = snap(rotation({ verifyScope: 'sample', verifyOutcome: 'passed' }));
    expect(evaluate(promote, sampled).refusal?.guard).toBe('fullVerifyPassed');
    expect(evaluate(promote, sampled, { force: true }).refusal?.guard).toBe('fullVerifyPassed');
    expect(evaluate(promote, sampled, { force: true, reason: 'CHG-1', approval: null })).toEqual({ refusal: null, forced: ['fullVerifyPassed'] });
    expect(evaluate(promote, snap(rotation({ verifyScope: 'full', verifyOutcome: 'passed' })), { approval: null }).refusal).toBeNull();
    expect(evaluate(promote, snap(rotation({ verifyScope: 'full', verifyOutcome: 'failed' }))).refusal?.guard).toBe('fullVerifyPassed');
  });

  it('destroying a key needs a clean decryption scan, which --force does not bypass', () => {
    const retire = RULES.find((r) => r.id === 'retire')!;
    const s = snap(rotation({ phase: 'promoted', emergency: true, verifyScope: 'full', verifyOutcome: 'passed' }));
    expect(evaluate(retire, s, { destructionScan: { failures: 1, checked: 9 }, force: true, reason: 'x', approval: null }).refusal?.guard).toBe(
      'remainingKeysReadEverything',
    );
    expect(evaluate(retire, s, { force: true, reason: 'x', approval: null }).refusal?.guard).toBe('remainingKeysReadEverything');
    expect(evaluate(retire, s, { destructionScan: null, approval: null }).refusal).toBeNull();
  });

  it("an emergency naming the routine rotation's new key is refused with the way forward", () => {
    const escalate = RULES.find((r) => r.id === 'escalate')!;
    const promoted = snap(rotation({ phase: 'promoted' }));
    expect(evaluate(escalate, promoted, { compromised: 'v2' }).refusal?.hint).toContain('retire --force');
    expect(evaluate(escalate, snap(rotation({ phase: 'dual_key' })), { compromised: 'v2' }).refusal?.hint).toContain('keyctl rollback');
    expect(evaluate(escalate, promoted, { compromised: 'v1', approval: null }).refusal).toBeNull();
  });

  it('the two-person rule guards opening, escalating, promoting, retiring and rolling back; --force does not bypass it', () => {
    const guarded = RULES.filter((r) => r.guards.includes('approvalsSigned')).map((r) => r.id);
    expect(guarded.sort()).toEqual(['abandon', 'escalate', 'generate', 'open', 'promote', 'retire', 'rollback']);
    const promote = RULES.find((r) => r.id === 'promote')!;
    const s = snap(rotation({ verifyScope: 'full', verifyOutcome: 'passed' }));
    const missing = { ok: false as const, reason: 'promote of rotation #1 (v1 → v2) needs 2 signatures', hint: 'keyctl approval add 1 --signature sig.asc' };
    expect(evaluate(promote, s, { approval: missing }).refusal).toMatchObject({ guard: 'approvalsSigned', reason: missing.reason, hint: missing.hint });
    expect(evaluate(promote, s, { approval: missing, force: true, reason: 'x' }).refusal?.guard).toBe('approvalsSigned');
    // A caller that never asked is refused, not waved through.
    expect(evaluate(promote, s).refusal?.reason).toBe('the approval check did not run');
    expect(evaluate(promote, s, { approval: { ok: true } }).refusal).toBeNull();
    // Previews (status, runbook plans) show approvals as their own step, not as a refusal.
    expect(preview('promote', { ...s, rotation: { ...s.rotation!, phase: 'verified' } }).refusal).toBeNull();
  });

  it('is the only place that lists phase names (no other source file names two phases on one line)', () => {
    const names = PHASES.map((p) => `'${p}'`);
    const offenders: string[] = [];
    for (const f of files(path.join(root, 'src'))) {
      if (f.endsWith(path.join('rotation', 'machine.ts'))) continue;
      for (const [i, line] of readFileSync(f, 'utf8').split('\n').entries()) {
        if (names.filter((n) => line.includes(n)).length >= 2) offenders.push(`${path.relative(root, f)}:${i + 1}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
