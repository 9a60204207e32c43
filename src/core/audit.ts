/**
 * Checking and exporting the audit evidence: the hash chain in the database, compared with the
 * anchor in the keystore (src/core/audit-anchor.ts) and, optionally, with a head the operator
 * kept elsewhere (`--expect-head SEQ:HASH`). The report separates what is wrong (`problems`,
 * exit 4) from what could not be checked (`unchecked`) and from what is explained (`notes`).
 */
import { formatIsoText } from '../base/format.js';
import type { CoreContext } from './context.js';
import { tenantOfKeyring, tenantView } from '../config/tenancy.js';
import { anchorAuditHead, cannotAnchor, readAnchor, type AnchoredHead } from './audit-anchor.js';
import { auditRowAt, exportAuditRows, keyringsAppended, missingAuditTables, readAuditHead, verifyAuditChain, type ChainReport } from '../rotation/store.js';

export type AnchorStatus = 'matches' | 'behind' | 'none' | 'unsupported' | 'elsewhere' | 'bad-mac' | 'truncated' | 'rewritten';

export interface AnchorReport {
  keyring: string;
  status: AnchorStatus;
  anchoredSeq: number | null;
  anchoredHash: string | null;
  anchoredAt: string | null;
  /** Rows the database holds past the anchored seq (status `behind`). */
  behindBy?: number;
}

export interface AuditVerifyReport {
  intact: boolean;
  chains: ChainReport[];
  anchors: AnchorReport[];
  problems: string[];
  unchecked: string[];
  notes: string[];
  missingTables: string[];
}

export interface ExpectedHead {
  seq: number;
  hash: string;
}

const START_ANCHORING = 'keyctl anchors it with the next audited change; run `keyctl audit --anchor` to anchor the current head now';

/** Verify every keyring's chain; the configured keyring's also against its anchor and `expect`. */
export async function verifyAudit(ctx: CoreContext, expect?: ExpectedHead): Promise<AuditVerifyReport> {
  const keyring = ctx.config.keyring;
  const problems: string[] = [];
  const unchecked: string[] = [];
  const notes: string[] = [];
  const missingTables = await missingAuditTables(ctx.db);
  if (missingTables.length > 0) {
    for (const t of missingTables) {
      problems.push(`table ${t} is missing: it was dropped outside keyctl, so its audit history is gone from the database`);
    }
    return { intact: false, chains: [], anchors: [], problems, unchecked, notes, missingTables };
  }
  // A tenant's check is of its own chain (thousands of tenants' chains are `status --check --all-tenants`'s).
  const chains = await verifyAuditChain(ctx.db, ctx.config.tenant !== undefined ? keyring : undefined);
  for (const c of chains) for (const p of c.problems) problems.push(`${c.keyring}: ${p}`);

  const anchors: AnchorReport[] = [];
  const keyrings = new Set([keyring, ...chains.map((c) => c.keyring)]);
  for (const k of [...keyrings].sort()) {
    if (k !== keyring) {
      anchors.push({ keyring: k, status: 'elsewhere', anchoredSeq: null, anchoredHash: null, anchoredAt: null });
      unchecked.push(`${k}: its anchor is in that keyring's keystore; run \`keyctl audit --verify\` with its config`);
      continue;
    }
    anchors.push(await checkAnchor(ctx, k, problems, unchecked, notes));
  }
  if (expect) {
    const at = await auditRowAt(ctx.db, keyring, expect.seq);
    if (at.rowHash === null) {
      problems.push(`${keyring}: the expected head seq ${expect.seq} is not in the chain (it ends at seq ${at.maxSeq}): rows were deleted`);
    } else if (at.rowHash !== expect.hash) {
      problems.push(`${keyring}: the expected head seq ${expect.seq} has hash ${at.rowHash}, not ${expect.hash}: the chain up to it was rewritten`);
    } else {
      notes.push(`${keyring}: the expected head seq ${expect.seq} is in the chain`);
    }
  }
  return { intact: problems.length === 0, chains, anchors, problems, unchecked, notes, missingTables };
}

async function checkAnchor(ctx: CoreContext, k: string, problems: string[], unchecked: string[], notes: string[]): Promise<AnchorReport> {
  const empty = { keyring: k, anchoredSeq: null, anchoredHash: null, anchoredAt: null };
  const why = cannotAnchor(ctx.keystore);
  if (why) {
    unchecked.push(
      `${k}: ${why}, so a consistent rewrite of the database chain cannot be told from the real history; ship \`keyctl audit --export\` to write-once storage and check with --expect-head`,
    );
    return { ...empty, status: 'unsupported' };
  }
  const anchor = await readAnchor(ctx.keystore, k);
  if (!anchor?.head) {
    unchecked.push(`${k}: no audit anchor yet (the keyring predates it, or nothing was audited since): ${START_ANCHORING}`);
    return { ...empty, status: 'none' };
  }
  const a = anchor.head;
  const base = { keyring: k, anchoredSeq: a.seq, anchoredHash: a.hash, anchoredAt: a.at };
  if (!anchor.macOk) {
    problems.push(`${k}: the anchor in ${anchor.where} does not verify (its MAC is wrong): it was edited outside keyctl`);
    return { ...base, status: 'bad-mac' };
  }
  const at = await auditRowAt(ctx.db, k, a.seq);
  const what = `the anchor (seq ${a.seq}, ${a.at})`;
  if (at.rowHash === null) {
    problems.push(
      `${k}: ${what} records seq ${a.seq} but the database chain ends at seq ${at.maxSeq}: ${a.seq - at.maxSeq} row(s) were deleted (the audit table was truncated)`,
    );
    return { ...base, status: 'truncated' };
  }
  if (at.rowHash !== a.hash) {
    problems.push(`${k}: row seq ${a.seq} differs from ${what}: the chain up to it was rewritten (rows edited, deleted or replaced, then re-hashed)`);
    return { ...base, status: 'rewritten' };
  }
  const head = await readAuditHead(ctx.db, k);
  const behindBy = Math.max(at.maxSeq, head?.seq ?? 0) - a.seq;
  if (behindBy > 0) {
    notes.push(
      `${k}: the anchor is behind the database by ${behindBy} row(s) (seq ${a.seq + 1}…${a.seq + behindBy}): a keyctl stopped between committing them and anchoring, or is still running. ` +
        'That is not tampering, but those rows are covered by the database chain alone until anchored: run `keyctl audit --anchor`',
    );
    return { ...base, status: 'behind', behindBy };
  }
  notes.push(`${k}: the database chain ends in the anchored head (seq ${a.seq}, anchored ${formatIsoText(a.at)})`);
  return { ...base, status: 'matches' };
}

/** After a command: anchor the configured keyring's head if this command appended audit rows. Never throws. */
export async function anchorAfterCommand(ctx: CoreContext): Promise<void> {
  const keyring = ctx.config.keyring;
  const keyrings = keyringsAppended(ctx.db);
  let next = 0;
  // Several at a time: a pass over a thousand tenants anchors a thousand chains (a keystore write each).
  await Promise.all(
    Array.from({ length: Math.min(8, keyrings.length) }, async () => {
      for (let i = next++; i < keyrings.length; i = next++) await anchorOne(ctx, keyrings[i]!, keyring);
    }),
  );
}

/** Anchor one appended keyring's head in its keystore (a tenant's in its own document). Never throws. */
async function anchorOne(ctx: CoreContext, k: string, keyring: string): Promise<void> {
  // A command on many tenants (reencrypt --all-tenants, shred, backup --prune-tenant) appends
  // rows to each tenant's chain: each is anchored in that tenant's own keystore document.
  const tenant = k === keyring || !ctx.config.tenancy ? null : tenantOfKeyring(ctx.config.tenancy, k);
  const keystore = k === keyring ? ctx.keystore : tenant !== null && ctx.keystoreFor ? ctx.keystoreFor(tenantView(ctx.config, tenant)) : null;
  if (!keystore || cannotAnchor(keystore)) return;
  try {
    const r = await anchorAuditHead({ ...ctx, keystore }, k);
    const of = k === keyring ? '' : ` of ${k}`;
    if (r.status === 'refused') ctx.log.warn(`the audit anchor${of} was not moved: ${r.reason} — ${r.hint}`);
  } catch (err) {
    ctx.log.warn(
      `the audit anchor${k === keyring ? '' : ` of ${k}`} was not updated: ${(err as Error).message} — run \`keyctl audit --anchor\` when the keystore answers`,
    );
  }
}

export interface ExportLine {
  type: 'row' | 'head';
  [field: string]: unknown;
}

/** The keyring's rows as stored, then its head with the anchor (and its MAC): JSON lines for write-once storage or a SIEM. */
export async function exportAudit(ctx: CoreContext): Promise<ExportLine[]> {
  const keyring = ctx.config.keyring;
  const rows = await exportAuditRows(ctx.db, keyring);
  const head = await readAuditHead(ctx.db, keyring);
  let anchor: (AnchoredHead & { where: string; macOk: boolean }) | null = null;
  if (!cannotAnchor(ctx.keystore)) {
    const a = await readAnchor(ctx.keystore, keyring);
    if (a?.head) anchor = { ...a.head, where: a.where, macOk: a.macOk };
  }
  return [
    ...rows.map(({ detailsText, ...r }) => ({ type: 'row' as const, ...r, details: detailsText })),
    { type: 'head', keyring, seq: head?.seq ?? 0, hash: head?.hash ?? null, exportedAt: ctx.now().toISOString(), anchor },
  ];
}
