/**
 * The two-person rule (docs/approvals.md): approval requests bound to one action of one rotation,
 * OpenPGP signatures from the approvers listed in keyctl.yaml, and the check a guarded action makes
 * at the moment it runs. Nothing stored is trusted by itself: the canonical text is rebuilt from the
 * request's columns and every signature is verified again against the configured public keys, so
 * editing the tables cannot create an approval. Each request, signature and consumption is an
 * audit row.
 */
import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { APPROVAL_ACTIONS, type ApprovalAction, type ApprovalsConfig } from '../config/schema.js';
import { resolveConfigPath } from '../config/load.js';
import { fromDbTime } from '../db/adapter.js';
import { TABLES } from '../db/migrations.js';
import { translateDbError } from '../db/errors.js';
import { openpgp, readPublicSigningKey, signDetached, SigningKeyError, verifyDetached, type PublicSigningKey } from '../crypto/signatures.js';
import { appendAudit, latestRotation, listVersions, openRotation, type Rotation } from '../rotation/store.js';
import { ConfigError, PgpKeyError, RefusedError, UsageError } from '../base/errors.js';
import { formatTime } from '../base/format.js';
import type { CoreContext } from './context.js';
import { nextVersionName } from './rotation/material.js';

export { APPROVAL_ACTIONS, type ApprovalAction };

/** A signature may predate its request by this much (clocks of two machines). */
const CLOCK_SKEW_MS = 10 * 60_000;

export interface Approver {
  name: string;
  file: string;
  key: PublicSigningKey;
}

export interface ApprovalPolicy {
  config: ApprovalsConfig;
  approvers: Approver[];
}

/** The policy with every approver's key read and checked; null when keyctl.yaml has no `approvals`. Lists every problem at once. */
export async function loadApprovalPolicy(ctx: Pick<CoreContext, 'config'> & { log?: CoreContext['log'] }): Promise<ApprovalPolicy | null> {
  const config = ctx.config.approvals;
  if (!config) return null;
  const problems: string[] = [];
  const approvers: Approver[] = [];
  for (const [i, a] of config.approvers.entries()) {
    const file = resolveConfigPath(ctx.config, a.publicKey);
    const read = await readPublicSigningKey(file);
    // A key that expired or was revoked takes that approver out (said every time), not the whole rule:
    // the others can still approve, and a break glass still works.
    if (!read.ok && read.unusable) ctx.log?.warn(`approver ${a.name} cannot sign: ${a.publicKey} ${read.problem}; renew the key or replace the file`);
    else if (!read.ok) problems.push(`approvals.approvers.${i} (${a.name}): publicKey ${a.publicKey}: ${read.problem}`);
    else approvers.push({ name: a.name, file, key: read.key });
  }
  const byFingerprint = new Map<string, string[]>();
  for (const a of approvers) byFingerprint.set(a.key.fingerprint, [...(byFingerprint.get(a.key.fingerprint) ?? []), a.name]);
  for (const [fp, names] of byFingerprint) {
    if (names.length > 1) problems.push(`approvals.approvers: ${names.join(' and ')} share the key ${fp}; each approver needs a key of their own`);
  }
  if (problems.length > 0) {
    throw new ConfigError(
      `approvals in ${ctx.config.file} cannot be used (${problems.length} problem${problems.length === 1 ? '' : 's'})`,
      problems,
      'each approver exports their public key on their own machine (`gpg --armor --export THEIR-ID > approvers/NAME.asc`); see docs/approvals.md',
    );
  }
  return { config, approvers };
}

export function requiredFor(policy: ApprovalPolicy | null, action: ApprovalAction): number {
  return policy?.config.require[action] ?? 0;
}

// ── requests ──────────────────────────────────────────────────────────────────────────────────────

/** What a request is for: the keyring, the action, the rotation (or the next one) and the key versions. */
export interface Binding {
  keyring: string;
  action: ApprovalAction;
  /** The open rotation; null for a generate that opens the next one. */
  rotationId: number | null;
  /** generate: the keyring's latest rotation id when it was asked for (0: none yet). */
  afterRotation: number | null;
  fromVersion: string;
  toVersion: string;
  /**
   * An emergency rotation's step: for generate, `--emergency` (the primary is marked compromised,
   * and the rotation's later steps may break the glass); otherwise whether the rotation is one.
   */
  emergency: boolean;
}

export interface ApprovalRequest extends Binding {
  id: number;
  nonce: string;
  reason: string | null;
  requestedBy: string;
  requestedAt: Date;
  expiresAt: Date;
  breakGlass: boolean;
  consumedAt: Date | null;
  consumedRotation: number | null;
}

export interface StoredSignature {
  id: number;
  requestId: number;
  approver: string;
  fingerprint: string;
  signature: string;
  signedAt: Date;
  addedBy: string;
  addedAt: Date;
}

function subjectOf(b: Binding): string {
  if (b.action === 'shred') return `every key of keyring ${b.keyring} (crypto-shredding)`;
  if (b.rotationId !== null) return `rotation #${b.rotationId}`;
  return b.afterRotation ? `the next rotation after #${b.afterRotation}` : 'the first rotation';
}

/** One line naming what a request is for, e.g. `promote of rotation #7 (v1 → v2)`. */
export function describeBinding(b: Binding): string {
  return `${b.emergency ? 'emergency ' : ''}${b.action} of ${subjectOf(b)} (${b.fromVersion} → ${b.toVersion})`;
}

/**
 * The exact bytes approvers sign: every field that binds the request, one per line, UTF-8, LF
 * line ends. `keyctl approval show ID --canonical` prints it; it is rebuilt from the stored
 * columns whenever a signature is checked, so changing any of them voids every signature.
 */
export function canonicalText(r: ApprovalRequest): string {
  return [
    'keyctl approval request v1',
    `request: ${r.id}`,
    `keyring: ${r.keyring}`,
    `action: ${r.action}`,
    `rotation: ${subjectOf(r)}`,
    `versions: ${r.fromVersion} -> ${r.toVersion}`,
    `emergency: ${r.emergency ? 'yes (an emergency rotation: the old key is marked compromised)' : 'no'}`,
    `break-glass: ${r.breakGlass ? 'yes (the action ran first; this approves it afterwards)' : 'no'}`,
    `reason: ${r.reason ?? '-'}`,
    `requested-by: ${r.requestedBy}`,
    `requested-at: ${r.requestedAt.toISOString()}`,
    `expires-at: ${r.expiresAt.toISOString()}`,
    `nonce: ${r.nonce}`,
    '',
  ].join('\n');
}

const canonicalBytes = (r: ApprovalRequest): Uint8Array => Buffer.from(canonicalText(r), 'utf8');

function toRequest(row: Record<string, unknown>): ApprovalRequest {
  const n = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  return {
    id: Number(row.id),
    keyring: String(row.keyring),
    action: String(row.action) as ApprovalAction,
    rotationId: n(row.rotation_id),
    afterRotation: n(row.after_rotation),
    fromVersion: String(row.from_version),
    toVersion: String(row.to_version),
    emergency: Boolean(row.emergency),
    nonce: String(row.nonce),
    reason: row.reason === null || row.reason === undefined ? null : String(row.reason),
    requestedBy: String(row.requested_by),
    requestedAt: fromDbTime(row.requested_at) ?? new Date(0),
    expiresAt: fromDbTime(row.expires_at) ?? new Date(0),
    breakGlass: Boolean(row.break_glass),
    consumedAt: fromDbTime(row.consumed_at),
    consumedRotation: n(row.consumed_rotation),
  };
}

function toSignature(row: Record<string, unknown>): StoredSignature {
  return {
    id: Number(row.id),
    requestId: Number(row.request_id),
    approver: String(row.approver),
    fingerprint: String(row.fingerprint),
    signature: String(row.signature),
    signedAt: fromDbTime(row.signed_at) ?? new Date(0),
    addedBy: String(row.added_by),
    addedAt: fromDbTime(row.added_at) ?? new Date(0),
  };
}

function parseAction(action: string): ApprovalAction {
  const a = APPROVAL_ACTIONS.find((x) => x === action);
  if (!a)
    throw new UsageError(
      `"${action}" is not an action approvals guard (one of ${APPROVAL_ACTIONS.join(', ')})`,
      'e.g. keyctl approval request promote --reason "CHG-1234"',
    );
  return a;
}

/**
 * Characters that could make the text approvers sign say something else than its fields: line
 * breaks of any kind, control characters (terminal escapes) and bidirectional overrides.
 */
function hasUnsafeCharacter(text: string): boolean {
  return [...text].some((c) => {
    const code = c.codePointAt(0)!;
    return (
      code < 0x20 ||
      (code >= 0x7f && code <= 0x9f) ||
      code === 0x2028 ||
      code === 0x2029 ||
      (code >= 0x200e && code <= 0x200f) ||
      (code >= 0x202a && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069)
    );
  });
}

function checkReason(reason: string | undefined): string | null {
  if (reason === undefined) return null;
  const r = reason.trim();
  if (r === '') return null;
  // One line of plain text: the canonical text is line-based, and read in a terminal.
  if (hasUnsafeCharacter(r)) throw new UsageError('--reason must be one line of plain text (no line breaks, control or bidirectional characters)');
  if (r.length > 500) throw new UsageError(`--reason is ${r.length} characters; keep it under 500 (a ticket number and a short sentence)`);
  return r;
}

/** What a request for `action` made now would be bound to. */
export async function bindingFor(ctx: CoreContext, action: ApprovalAction, opts: { emergency?: boolean } = {}): Promise<Binding> {
  const keyring = ctx.config.keyring;
  const rotation = await openRotation(ctx.db, keyring);
  if (opts.emergency && action !== 'generate')
    throw new UsageError('--emergency goes with generate', 'a later step is an emergency one when its rotation is: keyctl approval request ACTION');
  if (action === 'shred' && rotation)
    throw new RefusedError(
      `rotation #${rotation.id} of keyring ${keyring} is open (phase ${rotation.phase}); shred destroys every key of a keyring with no rotation open`,
      'finish the rotation (or roll it back) first',
    );
  if (rotation) return bindingOfRotation(rotation, action, action === 'generate' ? Boolean(opts.emergency) || rotation.emergency : rotation.emergency);
  if (action !== 'generate' && action !== 'shred') {
    throw new RefusedError(
      `no rotation is open for keyring ${keyring}, so there is nothing to ${action}`,
      'start one with `keyctl generate` (with its own approval)',
    );
  }
  const versions = await listVersions(ctx.db, keyring);
  const primary = versions.find((v) => v.state === 'primary')?.version;
  if (!primary) throw new RefusedError(`keyring ${keyring} has no primary version`, 'run `keyctl status`');
  return {
    keyring,
    action,
    rotationId: null,
    afterRotation: (await latestRotation(ctx.db, keyring))?.id ?? 0,
    fromVersion: primary,
    // shred: every version goes, none comes.
    toVersion: action === 'shred' ? 'none' : await nextVersionName(ctx.keystore, keyring, versions),
    emergency: Boolean(opts.emergency),
  };
}

/** An action on an open rotation (generate: `--emergency` turning it into an emergency rotation). rollback moves from the new key back to the old. */
export function bindingOfRotation(r: Rotation, action: ApprovalAction, emergency: boolean = r.emergency): Binding {
  const back = action === 'rollback';
  return {
    keyring: r.keyring,
    action,
    rotationId: r.id,
    afterRotation: null,
    fromVersion: back ? r.newVersion : r.oldVersion,
    toVersion: back ? r.oldVersion : r.newVersion,
    emergency,
  };
}

const sameBinding = (a: Binding, b: Binding): boolean =>
  a.keyring === b.keyring &&
  a.action === b.action &&
  a.rotationId === b.rotationId &&
  a.afterRotation === b.afterRotation &&
  a.fromVersion === b.fromVersion &&
  a.toVersion === b.toVersion &&
  a.emergency === b.emergency;

async function insertRequest(
  ctx: CoreContext,
  b: Binding,
  fields: { reason: string | null; breakGlass: boolean; consumedRotation?: number | null },
  trx?: Knex.Transaction,
): Promise<ApprovalRequest> {
  if (hasUnsafeCharacter(ctx.actor))
    throw new UsageError(
      'the actor name (KEYCTL_ACTOR, or user@host) holds line breaks, control or bidirectional characters; it goes into the text approvers sign',
      'set KEYCTL_ACTOR to a plain name such as alice@ops',
    );
  const at = ctx.now();
  const expiresAt = new Date(at.getTime() + (ctx.config.approvals?.expiresHours ?? 24) * 3_600_000);
  const nonce = randomBytes(16).toString('hex');
  const k = trx ?? ctx.db.knex;
  const row = {
    keyring: b.keyring,
    action: b.action,
    rotation_id: b.rotationId,
    after_rotation: b.afterRotation,
    from_version: b.fromVersion,
    to_version: b.toVersion,
    emergency: b.emergency,
    nonce,
    reason: fields.reason,
    requested_by: ctx.actor,
    requested_at: ctx.db.adapter.toDbTime(at),
    expires_at: ctx.db.adapter.toDbTime(expiresAt),
    break_glass: fields.breakGlass,
    consumed_at: fields.consumedRotation !== undefined ? ctx.db.adapter.toDbTime(at) : null,
    consumed_rotation: fields.consumedRotation ?? null,
  };
  await k(TABLES.approvals).insert(row);
  // The nonce is random: it finds the row on every dialect (MySQL has no INSERT … RETURNING).
  const id = Number(((await k(TABLES.approvals).where({ nonce }).first('id')) as { id: unknown }).id);
  const request: ApprovalRequest = {
    ...b,
    id,
    nonce,
    reason: fields.reason,
    requestedBy: ctx.actor,
    requestedAt: at,
    expiresAt,
    breakGlass: fields.breakGlass,
    consumedAt: fields.consumedRotation !== undefined ? at : null,
    consumedRotation: fields.consumedRotation ?? null,
  };
  await appendAudit(
    ctx.db,
    {
      rotationId: b.rotationId ?? fields.consumedRotation ?? null,
      keyring: b.keyring,
      action: 'approval-request',
      actor: ctx.actor,
      oldVersion: b.fromVersion,
      newVersion: b.toVersion,
      outcome: 'ok',
      details: {
        request: id,
        for: b.action,
        subject: subjectOf(b),
        reason: fields.reason,
        expiresAt: expiresAt.toISOString(),
        breakGlass: fields.breakGlass,
      },
    },
    at,
    trx,
  );
  return request;
}

/** `keyctl approval request ACTION`: a new request bound to what the action would do now. */
export async function requestApproval(
  ctx: CoreContext,
  action: string,
  opts: { reason?: string | undefined; emergency?: boolean | undefined },
): Promise<{ request: ApprovalRequest; canonical: string; required: number }> {
  const policy = await requirePolicy(ctx);
  const a = parseAction(action);
  const reason = checkReason(opts.reason);
  const binding = await bindingFor(ctx, a, { emergency: Boolean(opts.emergency) });
  try {
    const made = await insertRequest(ctx, binding, { reason, breakGlass: false });
    // The text approvers sign, from the row as the database stored it (it is rebuilt from the row when checked).
    const request = await getRequest(ctx, made.id);
    return { request, canonical: canonicalText(request), required: requiredFor(policy, a) };
  } catch (err) {
    throw translateDbError(err, ctx.db.endpoint, 'record the approval request in');
  }
}

async function requirePolicy(ctx: CoreContext): Promise<ApprovalPolicy> {
  const policy = await loadApprovalPolicy(ctx);
  if (!policy) {
    throw new UsageError(
      `${ctx.config.file} has no approvals section: keyctl needs no approvals here`,
      'to require them, list approvers and the actions they guard under `approvals:` (docs/approvals.md)',
    );
  }
  return policy;
}

export async function getRequest(ctx: CoreContext, id: number): Promise<ApprovalRequest> {
  const row = (await ctx.db.knex(TABLES.approvals).where({ id, keyring: ctx.config.keyring }).first()) as Record<string, unknown> | undefined;
  if (!row) throw new UsageError(`keyring ${ctx.config.keyring} has no approval request #${id}`, 'list them with `keyctl approval list`');
  return toRequest(row);
}

async function signaturesOf(ctx: CoreContext, ids: readonly number[]): Promise<StoredSignature[]> {
  if (ids.length === 0) return [];
  const rows: Record<string, unknown>[] = await ctx.db.knex(TABLES.approvalSignatures).whereIn('request_id', ids).orderBy('id');
  return rows.map(toSignature);
}

// ── checking signatures ────────────────────────────────────────────────────────────────────────────

export interface ValidApproval {
  approver: string;
  fingerprint: string;
  signedAt: Date;
}

export interface RequestState {
  request: ApprovalRequest;
  required: number;
  /** Distinct approvers whose signature verifies (one per approver, the earliest). */
  valid: ValidApproval[];
  /** Stored signatures that do not count, and why. */
  rejected: Array<{ id: number; approver: string; reason: string }>;
  /** Approvers who have not signed. */
  missing: string[];
  expired: boolean;
  /** Consumed by an action (the column, or the consumption's audit row when the column was cleared). */
  consumed: boolean;
  status: 'open' | 'approved' | 'expired' | 'consumed' | 'break-glass-pending' | 'break-glass-approved';
}

/** Check one stored signature against the request's rebuilt canonical text and the configured keys. */
async function checkSignature(
  policy: ApprovalPolicy,
  r: ApprovalRequest,
  signature: string,
): Promise<{ ok: true; approval: ValidApproval; armored: string } | { ok: false; reason: string }> {
  const check = await verifyDetached(
    canonicalBytes(r),
    signature,
    policy.approvers.map((a) => a.key),
  );
  if (!check.ok) return { ok: false, reason: check.reason };
  const approver = policy.approvers.find((a) => a.key.fingerprint === check.fingerprint)!;
  // A break glass is approved afterwards, however long that takes; an ordinary request only until it expires.
  if (!r.breakGlass && check.signedAt.getTime() > r.expiresAt.getTime())
    return { ok: false, reason: `signed ${check.signedAt.toISOString()}, after the request expired (${r.expiresAt.toISOString()})` };
  if (check.signedAt.getTime() < r.requestedAt.getTime() - CLOCK_SKEW_MS)
    return { ok: false, reason: `signed ${check.signedAt.toISOString()}, before the request was made (${r.requestedAt.toISOString()})` };
  return { ok: true, approval: { approver: approver.name, fingerprint: check.fingerprint, signedAt: check.signedAt }, armored: check.armored };
}

async function consumedInAudit(ctx: CoreContext, ids: readonly number[]): Promise<Set<number>> {
  if (ids.length === 0) return new Set();
  const rows: Array<{ details: unknown }> = await ctx.db
    .knex(TABLES.audit)
    .where({ keyring: ctx.config.keyring, action: 'approval-consume', outcome: 'ok' })
    .select('details');
  const out = new Set<number>();
  for (const r of rows) {
    const id = Number(detailsOf(r.details).request);
    if (ids.includes(id)) out.add(id);
  }
  return out;
}

export async function requestStates(ctx: CoreContext, policy: ApprovalPolicy, requests: readonly ApprovalRequest[]): Promise<RequestState[]> {
  const ids = requests.map((r) => r.id);
  const sigs = await signaturesOf(ctx, ids);
  const audited = await consumedInAudit(ctx, ids);
  const now = ctx.now().getTime();
  const out: RequestState[] = [];
  for (const request of requests) {
    const valid: ValidApproval[] = [];
    const rejected: RequestState['rejected'] = [];
    for (const s of sigs.filter((x) => x.requestId === request.id)) {
      const c = await checkSignature(policy, request, s.signature);
      if (!c.ok) rejected.push({ id: s.id, approver: s.approver, reason: c.reason });
      else if (valid.some((v) => v.approver === c.approval.approver))
        rejected.push({ id: s.id, approver: c.approval.approver, reason: `a second signature by ${c.approval.approver}'s key counts once` });
      else valid.push(c.approval);
    }
    const required = Math.max(requiredFor(policy, request.action), request.breakGlass ? 1 : 0);
    const consumed = request.consumedAt !== null || audited.has(request.id);
    const expired = !request.breakGlass && now > request.expiresAt.getTime();
    const enough = valid.length >= required;
    const status: RequestState['status'] = request.breakGlass
      ? enough
        ? 'break-glass-approved'
        : 'break-glass-pending'
      : consumed
        ? 'consumed'
        : expired
          ? 'expired'
          : enough
            ? 'approved'
            : 'open';
    out.push({
      request,
      required,
      valid,
      rejected,
      missing: policy.approvers.map((a) => a.name).filter((n) => !valid.some((v) => v.approver === n)),
      expired,
      consumed,
      status,
    });
  }
  return out;
}

export interface RequestView extends RequestState {
  canonical: string;
  signatures: StoredSignature[];
}

export async function showRequest(ctx: CoreContext, id: number): Promise<RequestView> {
  const policy = await requirePolicy(ctx);
  const request = await getRequest(ctx, id);
  const [state] = await requestStates(ctx, policy, [request]);
  return { ...state!, canonical: canonicalText(request), signatures: await signaturesOf(ctx, [id]) };
}

export async function listRequests(ctx: CoreContext, opts: { limit?: number } = {}): Promise<RequestState[]> {
  const policy = await requirePolicy(ctx);
  const rows: Record<string, unknown>[] = await ctx.db
    .knex(TABLES.approvals)
    .where({ keyring: ctx.config.keyring })
    .orderBy('id', 'desc')
    .limit(opts.limit ?? 100);
  return requestStates(ctx, policy, rows.map(toRequest));
}

/** The commands that add a missing approver's signature to request `id`. */
export function signingCommands(id: number): string[] {
  return [
    `send each approver the text: keyctl approval show ${id} --canonical > request-${id}.txt`,
    `the approver, on their own machine: gpg --detach-sign --armor request-${id}.txt   (sends back request-${id}.txt.asc)`,
    `then, here: keyctl approval add ${id} --signature request-${id}.txt.asc`,
    `(or, with the secret key file at hand: keyctl approval sign ${id} --key SECRET_KEY_FILE --passphrase-env VAR)`,
  ];
}

// ── adding signatures ──────────────────────────────────────────────────────────────────────────────

export interface AddResult {
  request: ApprovalRequest;
  approval: ValidApproval;
  state: RequestState;
}

/**
 * Add a detached signature (armored text or binary) to request `id`: verified now against the
 * canonical text and the approvers' keys (and again when an action uses it). A rejected signature
 * is recorded as a refused `approval-sign` row and refused (exit 3).
 */
export async function addSignature(ctx: CoreContext, id: number, signature: string | Uint8Array, via: 'add' | 'sign'): Promise<AddResult> {
  const policy = await requirePolicy(ctx);
  const request = await getRequest(ctx, id);
  const [before] = await requestStates(ctx, policy, [request]);
  const armored = typeof signature === 'string' ? signature : await armorSignature(signature);
  // Every attempt is an `approval-sign` row, on the rotation the request is for.
  const signRow = (outcome: 'ok' | 'refused', details: Record<string, unknown>, at: Date, trx?: Knex.Transaction) =>
    appendAudit(
      ctx.db,
      {
        rotationId: request.rotationId ?? request.consumedRotation,
        keyring: request.keyring,
        action: 'approval-sign',
        actor: ctx.actor,
        oldVersion: request.fromVersion,
        newVersion: request.toVersion,
        outcome,
        details: { request: id, ...details, via },
      },
      at,
      trx,
    );
  const refuseSign = async (reason: string, hint: string, approver: string | null = null): Promise<never> => {
    await signRow('refused', { approver, reason }, ctx.now());
    throw new RefusedError(`signature not added to request #${id}: ${reason}`, hint);
  };
  if (before!.consumed && !request.breakGlass)
    return refuseSign(
      `request #${id} was already used by ${request.action} and cannot be used again`,
      `make a new one: keyctl approval request ${request.action}`,
    );
  if (before!.expired)
    return refuseSign(`request #${id} expired ${formatTime(request.expiresAt)}`, `make a new one: keyctl approval request ${request.action}`);
  const check = await checkSignature(policy, request, armored);
  if (!check.ok)
    return refuseSign(
      check.reason,
      `the approver signs exactly the text of \`keyctl approval show ${id} --canonical\` with the key listed for them in approvals.approvers`,
    );
  const approval = check.approval;
  if (before!.valid.some((v) => v.approver === approval.approver)) {
    return refuseSign(
      `${approval.approver} already signed request #${id}; a second signature by the same key counts once`,
      'another approver has to sign',
      approval.approver,
    );
  }
  const at = ctx.now();
  try {
    await ctx.db.knex.transaction(async (trx) => {
      await trx(TABLES.approvalSignatures).where({ request_id: id, fingerprint: approval.fingerprint }).delete();
      await trx(TABLES.approvalSignatures).insert({
        request_id: id,
        approver: approval.approver,
        fingerprint: approval.fingerprint,
        signature: check.armored,
        signed_at: ctx.db.adapter.toDbTime(approval.signedAt),
        added_by: ctx.actor,
        added_at: ctx.db.adapter.toDbTime(at),
      });
      await signRow(
        'ok',
        {
          for: request.action,
          approver: approval.approver,
          fingerprint: approval.fingerprint,
          signedAt: approval.signedAt.toISOString(),
          breakGlass: request.breakGlass,
        },
        at,
        trx,
      );
    });
  } catch (err) {
    throw translateDbError(err, ctx.db.endpoint, 'record the signature in');
  }
  const [state] = await requestStates(ctx, policy, [request]);
  return { request, approval, state: state! };
}

async function armorSignature(binary: Uint8Array): Promise<string> {
  const pgp = await openpgp();
  try {
    return (await pgp.readSignature({ binarySignature: binary })).armor();
  } catch {
    throw new UsageError('the signature file is neither an armored nor a binary OpenPGP signature', 'make one with `gpg --detach-sign --armor`');
  }
}

/** `keyctl approval sign ID --key FILE`: sign the canonical text with a secret key file, then add it. */
export async function signRequest(ctx: CoreContext, id: number, keyFile: string, passphrase: string | undefined): Promise<AddResult> {
  await requirePolicy(ctx);
  const request = await getRequest(ctx, id);
  let signature: string;
  try {
    signature = (await signDetached(canonicalBytes(request), keyFile, passphrase)).signature;
  } catch (err) {
    if (err instanceof SigningKeyError) throw new PgpKeyError(err.message, 'pass the armored secret key of an approver listed in approvals.approvers');
    throw err;
  }
  return addSignature(ctx, id, signature, 'sign');
}

// ── at the moment of the action ────────────────────────────────────────────────────────────────────

/**
 * What the `approvalsSigned` guard looks at: null when the policy needs no approval for the action;
 * otherwise the request that approves it, a break glass, or why not (with what is missing).
 */
export type ApprovalEvidence =
  | null
  | { ok: true; kind: 'approved'; state: RequestState }
  | { ok: true; kind: 'break-glass'; binding: Binding; reason: string; required: number }
  | { ok: false; reason: string; hint: string; details: Record<string, unknown> };

/** The requests for exactly `binding` (newest first), and those of them still usable (not consumed, not expired). */
async function candidatesFor(ctx: CoreContext, policy: ApprovalPolicy, binding: Binding): Promise<{ states: RequestState[]; usable: RequestState[] }> {
  // Only requests for exactly this binding: newer requests for anything else cannot crowd it out.
  let q = ctx.db
    .knex(TABLES.approvals)
    .where({ keyring: binding.keyring, action: binding.action, break_glass: false, from_version: binding.fromVersion, to_version: binding.toVersion })
    .whereNull('consumed_at');
  q =
    binding.rotationId === null
      ? q.whereNull('rotation_id').andWhere({ after_rotation: binding.afterRotation })
      : q.andWhere({ rotation_id: binding.rotationId });
  const rows: Record<string, unknown>[] = await q.orderBy('id', 'desc').limit(50);
  const states = await requestStates(
    ctx,
    policy,
    rows.map(toRequest).filter((r) => sameBinding(r, binding)),
  );
  return { states, usable: states.filter((s) => !s.consumed && !s.expired) };
}

/**
 * For a runbook's approval step: the usable request for `action` as it would run now (the one with
 * the most valid signatures), made when there is none.
 */
export async function requestToWaitFor(ctx: CoreContext, action: ApprovalAction, reason: string, emergency = false): Promise<RequestState> {
  const policy = await requirePolicy(ctx);
  const binding = await bindingFor(ctx, action, { emergency });
  const { usable } = await candidatesFor(ctx, policy, binding);
  const best = usable.sort((a, b) => b.valid.length - a.valid.length || b.request.id - a.request.id)[0];
  if (best) return best;
  const made = await requestApproval(ctx, action, { reason, emergency });
  return (await requestStates(ctx, policy, [made.request]))[0]!;
}

/** A request's state now (signatures re-verified). */
export async function requestState(ctx: CoreContext, id: number): Promise<RequestState> {
  const policy = await requirePolicy(ctx);
  return (await requestStates(ctx, policy, [await getRequest(ctx, id)]))[0]!;
}

export interface ApprovalOptions {
  breakGlass?: boolean | undefined;
  reason?: string | undefined;
  /** The action is part of an emergency (generate --emergency, or the open rotation is one). */
  emergency: boolean;
}

export async function approvalFor(ctx: CoreContext, binding: Binding, opts: ApprovalOptions): Promise<ApprovalEvidence> {
  const policy = await loadApprovalPolicy(ctx);
  const required = requiredFor(policy, binding.action);
  if (opts.breakGlass) {
    if (!policy || required === 0)
      throw new UsageError(
        `--break-glass: approvals.require does not guard ${binding.action}, so there is nothing to break`,
        'run the command without --break-glass',
      );
    if (!policy.config.breakGlass)
      throw new UsageError(
        '--break-glass is not allowed here: approvals.breakGlass is false in keyctl.yaml',
        'collect the approvals (`keyctl approval request …`), or ask for breakGlass: true in the policy',
      );
    if (binding.action === 'rollback')
      throw new UsageError(
        '--break-glass cannot roll back: undoing an emergency rotation would make the compromised key primary again, and nothing about it is urgent',
        'collect the approvals: keyctl approval request rollback',
      );
    if (!opts.emergency)
      throw new UsageError(
        '--break-glass is only for emergency rotations (`keyctl generate --emergency`, and the steps of an emergency rotation)',
        `collect the approvals: keyctl approval request ${binding.action}`,
      );
    if (!opts.reason?.trim()) throw new UsageError('--break-glass needs --reason TEXT (recorded in the audit, and signed by the approvers afterwards)');
    return { ok: true, kind: 'break-glass', binding, reason: checkReason(opts.reason)!, required };
  }
  if (!policy || required === 0) return null;
  const { states, usable } = await candidatesFor(ctx, policy, binding);
  const approved = usable.find((s) => s.valid.length >= required);
  if (approved) return { ok: true, kind: 'approved', state: approved };
  const what = describeBinding(binding);
  const names = policy.approvers.map((a) => a.name).join(', ');
  const best = usable.sort((a, b) => b.valid.length - a.valid.length || b.request.id - a.request.id)[0];
  if (!best) {
    const expired = states.find((s) => s.expired);
    return {
      ok: false,
      reason: `${what} needs the signatures of ${required} distinct approvers (of ${names}), and no open approval request is for it${expired ? ` (request #${expired.request.id} expired ${formatTime(expired.request.expiresAt)})` : ''}`,
      hint: `request one: keyctl approval request ${binding.action} --reason "…"; then each approver signs it on their own machine, added with \`keyctl approval add ID --signature FILE\` (docs/approvals.md)${opts.emergency && policy.config.breakGlass ? `; in an emergency that cannot wait: add --break-glass --reason "…" and collect the signatures afterwards` : ''}`,
      details: { approval: { required, request: null, expired: expired?.request.id ?? null } },
    };
  }
  const id = best.request.id;
  const rejected = best.rejected.map((r) => `${r.approver}: ${r.reason}`);
  return {
    ok: false,
    reason:
      `${what} needs the signatures of ${required} distinct approvers; request #${id} has ${best.valid.length}` +
      `${best.valid.length > 0 ? ` (${best.valid.map((v) => v.approver).join(', ')})` : ''}; still missing: ${required - best.valid.length} of ${best.missing.join(', ')}` +
      (rejected.length > 0 ? `; not counted: ${rejected.join('; ')}` : ''),
    hint: signingCommands(id).join('\n'),
    details: { approval: { required, request: id, valid: best.valid.map((v) => v.approver), missing: best.missing, rejected } },
  };
}

/**
 * Inside the action's transaction: mark the request used (exactly once) with an `approval-consume`
 * row naming every approver, or record the break glass as a request awaiting signatures afterwards.
 */
export async function consumeApproval(ctx: CoreContext, trx: Knex.Transaction, evidence: ApprovalEvidence, rotationId: number | null, at: Date): Promise<void> {
  if (!evidence?.ok) return;
  if (evidence.kind === 'break-glass') {
    const request = await insertRequest(
      ctx,
      { ...evidence.binding, rotationId, afterRotation: null },
      { reason: evidence.reason, breakGlass: true, consumedRotation: rotationId },
      trx,
    );
    await appendAudit(
      ctx.db,
      {
        rotationId,
        keyring: request.keyring,
        action: 'approval-consume',
        actor: ctx.actor,
        oldVersion: request.fromVersion,
        newVersion: request.toVersion,
        outcome: 'ok',
        details: { request: request.id, for: request.action, breakGlass: true, reason: evidence.reason, required: evidence.required, approvers: [] },
      },
      at,
      trx,
    );
    return;
  }
  const r = evidence.state.request;
  const n = await trx(TABLES.approvals)
    .where({ id: r.id })
    .whereNull('consumed_at')
    .update({ consumed_at: ctx.db.adapter.toDbTime(at), consumed_rotation: rotationId });
  if (n !== 1)
    throw new RefusedError(`approval request #${r.id} was used by another command at the same moment`, 'run `keyctl status` to see where the rotation stands');
  await appendAudit(
    ctx.db,
    {
      rotationId,
      keyring: r.keyring,
      action: 'approval-consume',
      actor: ctx.actor,
      oldVersion: r.fromVersion,
      newVersion: r.toVersion,
      outcome: 'ok',
      details: {
        request: r.id,
        for: r.action,
        breakGlass: false,
        required: evidence.state.required,
        approvers: evidence.state.valid.map((v) => ({ name: v.approver, fingerprint: v.fingerprint, signedAt: v.signedAt.toISOString() })),
      },
    },
    at,
    trx,
  );
}

/** An audit row's details; a row whose details do not parse (edited outside keyctl) says nothing. */
function detailsOf(v: unknown): Record<string, unknown> {
  try {
    const d = JSON.parse(String(v ?? '{}')) as unknown;
    return d && typeof d === 'object' ? (d as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * Whether opening rotation `r` consumed an approval (or broke the glass) for exactly its versions,
 * and it has not been through generate before: a closed rotation's row set back to `generating`
 * in the database is not an approved one.
 */
export async function openingApproved(ctx: CoreContext, r: Rotation): Promise<boolean> {
  const rows: Array<Record<string, unknown>> = await ctx.db
    .knex(TABLES.audit)
    .where({ keyring: ctx.config.keyring, outcome: 'ok', rotation_id: r.id })
    .whereIn('action', ['approval-consume', 'generate'])
    .select('action', 'to_phase', 'old_version', 'new_version', 'details');
  if (rows.some((x) => x.action === 'generate' && x.to_phase === 'generated')) return false;
  return rows.some(
    (x) => x.action === 'approval-consume' && detailsOf(x.details).for === 'generate' && x.old_version === r.oldVersion && x.new_version === r.newVersion,
  );
}

/** A break glass the approvers still owe signatures for, or one that can no longer be checked. */
export interface OwedBreakGlass {
  request: number;
  rotationId: number | null;
  /** What the audit recorded: the action, when and by whom. */
  action: string;
  at: Date;
  actor: string;
  /** Its request as it stands (null when `problem` says why there is none). */
  state: RequestState | null;
  /** Why it can never be approved as it is (the request row gone or altered, the policy gone). */
  problem: string | null;
}

/**
 * Break-glass actions of the keyring short of their signatures (status --check, runbooks). Taken
 * from the audit chain, not the requests table: deleting or editing a break-glass request, or
 * removing `approvals:` from keyctl.yaml, does not make one disappear.
 */
export async function breakGlassOwed(ctx: CoreContext): Promise<OwedBreakGlass[]> {
  const rows: Array<Record<string, unknown>> = await ctx.db
    .knex(TABLES.audit)
    .where({ keyring: ctx.config.keyring, action: 'approval-consume', outcome: 'ok' })
    .andWhere('details', 'like', '%"breakGlass":true%')
    .orderBy('id');
  if (rows.length === 0) return [];
  const policy = ctx.config.approvals ? await loadApprovalPolicy(ctx) : null;
  const out: OwedBreakGlass[] = [];
  for (const row of rows) {
    const d = detailsOf(row.details);
    if (d.breakGlass !== true) continue;
    const id = Number(d.request);
    const base = {
      request: id,
      rotationId: row.rotation_id === null || row.rotation_id === undefined ? null : Number(row.rotation_id),
      action: String(d.for ?? '?'),
      at: fromDbTime(row.created_at) ?? new Date(0),
      actor: String(row.actor),
    };
    const stored = (await ctx.db.knex(TABLES.approvals).where({ id, keyring: ctx.config.keyring }).first()) as Record<string, unknown> | undefined;
    const request = stored ? toRequest(stored) : null;
    if (!request?.breakGlass || request.action !== base.action || request.fromVersion !== row.old_version || request.toVersion !== row.new_version) {
      out.push({
        ...base,
        state: null,
        problem: `its request #${id} is ${request ? 'altered' : 'gone'} in ${TABLES.approvals} (changed outside keyctl), so it can never be approved`,
      });
      continue;
    }
    if (!policy) {
      out.push({ ...base, state: null, problem: `keyctl.yaml has no approvals section any more, so request #${id} cannot be signed` });
      continue;
    }
    const [state] = await requestStates(ctx, policy, [request]);
    if (state!.status === 'break-glass-pending') out.push({ ...base, state: state!, problem: null });
  }
  return out;
}

/** What the move's own audit row says about its approval (the consumption row that follows names every signer). */
export function approvalDetails(approval: ApprovalEvidence): Record<string, unknown> {
  if (!approval?.ok) return {};
  return approval.kind === 'break-glass'
    ? { breakGlass: true }
    : { approval: { request: approval.state.request.id, approvers: approval.state.valid.map((v) => v.approver) } };
}
