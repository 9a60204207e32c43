/** `keyctl approval request|show|sign|add|list`: parse → core/approvals → render. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../base/errors.js';
import { ExitCode } from '../../base/exit-codes.js';
import { formatTime } from '../../ui/format.js';
import {
  addSignature,
  describeBinding,
  listRequests,
  requestApproval,
  showRequest,
  signingCommands,
  signRequest,
  type AddResult,
  type RequestState,
  type StoredSignature,
} from '../../core/approvals.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { ApprovalAddOptions, ApprovalListOptions, ApprovalRequestOptions, ApprovalShowOptions, ApprovalSignOptions } from '../specs.js';

function requestId(args: string[]): number {
  const raw = args[0] ?? '';
  if (!/^\d+$/.test(raw)) throw new UsageError(`ID expects a request number, found "${raw}"`, 'list them with `keyctl approval list`');
  return Number(raw);
}

function stateJson(s: RequestState) {
  const r = s.request;
  return {
    id: r.id,
    keyring: r.keyring,
    action: r.action,
    rotation: r.rotationId,
    afterRotation: r.afterRotation,
    fromVersion: r.fromVersion,
    toVersion: r.toVersion,
    emergency: r.emergency,
    reason: r.reason,
    requestedBy: r.requestedBy,
    requestedAt: r.requestedAt.toISOString(),
    expiresAt: r.expiresAt.toISOString(),
    breakGlass: r.breakGlass,
    status: s.status,
    required: s.required,
    approvals: s.valid.map((v) => ({ approver: v.approver, fingerprint: v.fingerprint, signedAt: v.signedAt.toISOString() })),
    rejected: s.rejected,
    missing: s.missing,
    consumedAt: r.consumedAt?.toISOString() ?? null,
  };
}

const STATUS_TEXT: Record<RequestState['status'], string> = {
  open: 'open: waiting for signatures',
  approved: 'approved: the action may run',
  expired: 'expired',
  consumed: 'used by its action',
  'break-glass-pending': 'break glass: the action ran; awaiting approval',
  'break-glass-approved': 'break glass: approved afterwards',
};

function summary(s: RequestState): string {
  return `#${s.request.id} ${describeBinding(s.request)}: ${STATUS_TEXT[s.status]} (${s.valid.length} of ${s.required} signatures)`;
}

export async function request(rt: CliRuntime, f: ApprovalRequestOptions, args: string[]): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const r = await requestApproval(ctx, args[0] ?? '', { reason: f.reason, emergency: f.emergency });
    rt.output.result({ request: { id: r.request.id, canonical: r.canonical, required: r.required, expiresAt: r.request.expiresAt.toISOString() } }, () => {
      const id = r.request.id;
      return [
        `request #${id}: ${describeBinding(r.request)}, needs ${r.required} distinct approver signature(s) before ${formatTime(r.request.expiresAt)}`,
        r.required === 0 ? `note: approvals.require does not guard ${r.request.action}; the request is recorded but not needed` : '',
        '',
        `text to sign (\`keyctl approval show ${id} --canonical\` prints exactly these bytes):`,
        ...r.canonical
          .trimEnd()
          .split('\n')
          .map((l) => `  ${l}`),
        '',
        'each approver:',
        ...signingCommands(id).map((l) => `  ${l}`),
      ]
        .filter((l, i, a) => l !== '' || a[i - 1] !== '')
        .join('\n');
    });
    return ExitCode.OK;
  });
}

function signatureLine(s: StoredSignature, state: RequestState): string {
  const rejected = state.rejected.find((x) => x.id === s.id);
  return `  ${rejected ? '✗' : '✓'} ${s.approver}  ${s.fingerprint}  signed ${formatTime(s.signedAt)}${rejected ? `  not counted: ${rejected.reason}` : ''}`;
}

export async function show(rt: CliRuntime, f: ApprovalShowOptions, args: string[]): Promise<number> {
  const id = requestId(args);
  return withCoreContext(rt, async (ctx) => {
    const v = await showRequest(ctx, id);
    if (f.canonical) {
      rt.output.text(v.canonical);
      return ExitCode.OK;
    }
    rt.output.result({ request: { ...stateJson(v), canonical: v.canonical } }, () => {
      const r = v.request;
      const lines = [
        summary(v),
        `  requested by ${r.requestedBy} at ${formatTime(r.requestedAt)}; expires ${formatTime(r.expiresAt)}${r.reason ? `; reason: ${r.reason}` : ''}`,
        v.signatures.length > 0 ? 'signatures:' : 'no signatures yet',
        ...v.signatures.map((s) => signatureLine(s, v)),
      ];
      const open = v.status === 'open' || v.status === 'break-glass-pending';
      if (open && v.valid.length < v.required) {
        lines.push(`still missing: ${v.required - v.valid.length} of ${v.missing.join(', ')}`, ...signingCommands(id).map((l) => `  ${l}`));
      }
      return lines.join('\n');
    });
    return ExitCode.OK;
  });
}

function added(rt: CliRuntime, a: AddResult): number {
  const s = a.state;
  rt.output.result(
    { request: stateJson(s), added: { approver: a.approval.approver, fingerprint: a.approval.fingerprint, signedAt: a.approval.signedAt.toISOString() } },
    () => {
      const left = s.required - s.valid.length;
      return [
        `✓ signature of ${a.approval.approver} (${a.approval.fingerprint}) added to request #${s.request.id}`,
        `  ${summary(s)}`,
        left > 0
          ? `  still missing: ${left} of ${s.missing.join(', ')}`
          : s.request.breakGlass
            ? '  the break-glass action is now approved'
            : `  approved: \`keyctl ${s.request.action}\` may run now`,
      ].join('\n');
    },
  );
  return ExitCode.OK;
}

export async function sign(rt: CliRuntime, f: ApprovalSignOptions, args: string[]): Promise<number> {
  const id = requestId(args);
  let passphrase: string | undefined;
  if (f.passphraseEnv) {
    passphrase = rt.env[f.passphraseEnv];
    if (passphrase === undefined)
      throw new UsageError(`--passphrase-env ${f.passphraseEnv}: the variable is not set`, `export ${f.passphraseEnv}=… first (not on the command line)`);
  }
  const keyFile = path.resolve(rt.cwd, f.key);
  return withCoreContext(rt, async (ctx) => added(rt, await signRequest(ctx, id, keyFile, passphrase)));
}

export async function add(rt: CliRuntime, f: ApprovalAddOptions, args: string[]): Promise<number> {
  const id = requestId(args);
  const file = path.resolve(rt.cwd, f.signature);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new UsageError(
      `cannot read the signature ${f.signature}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      'the approver signs the text of `keyctl approval show ID --canonical` with `gpg --detach-sign --armor FILE`',
    );
  }
  const text = bytes.toString('utf8');
  const signature = text.includes('-----BEGIN PGP SIGNATURE-----') ? text : new Uint8Array(bytes);
  return withCoreContext(rt, async (ctx) => added(rt, await addSignature(ctx, id, signature, 'add')));
}

export async function list(rt: CliRuntime, f: ApprovalListOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const states = await listRequests(ctx, f.all ? { limit: 100_000 } : {});
    rt.output.result({ requests: states.map(stateJson) }, () =>
      states.length === 0 ? 'no approval requests yet; make one with `keyctl approval request ACTION`' : states.map(summary).join('\n'),
    );
    return ExitCode.OK;
  });
}
