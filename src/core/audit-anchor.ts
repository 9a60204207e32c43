/**
 * The audit anchor: the audit chain's head (seq and hash) kept outside the database, in the
 * keystore, with an HMAC made with a key that exists only there. A database writer can make the
 * chain consistent with itself (re-hash every row, rewind keyctl_audit_head) but cannot make it end
 * in the anchored hash, nor forge the anchor. See docs/rotation.md, "Audit evidence".
 *
 * Document (a keyctl-only document beside the keyring; applications never read it):
 *     {"format":"keyctl-audit-anchor-v1","keyring":"default","macKey":"<base64, 32 bytes>",
 *      "head":{"seq":12,"hash":"<hex>","at":"<ISO>","mac":"<hex>"}}
 * mac = HMAC-SHA256(macKey, JSON ["keyctl-audit-anchor-v1", keyring, seq, hash, at]).
 *
 * Order of writes: the anchor is written after the audit rows it covers have committed, so it never
 * claims a head the database lacks; a crash in between leaves it behind (explained by verify,
 * caught up by the next anchoring). It only moves forward: a head at or below the anchored seq is
 * never written, and a head the anchored one does not extend by appending is refused (so keyctl
 * never blesses a truncated or rewritten chain). The keystore's check-and-set makes concurrent
 * writers re-read and try again.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { KeystoreError, KeystoreReadOnlyError } from '../base/errors.js';
import type { Db } from '../db/connect.js';
import type { Keystore } from '../keystore/types.js';
import { appendAudit, chainExtends, readAuditHead, verifyAuditChain, type AuditHead } from '../rotation/store.js';

export const ANCHOR_FORMAT = 'keyctl-audit-anchor-v1';

export interface AnchoredHead extends AuditHead {
  /** ISO-8601 UTC time it was anchored. */
  at: string;
  /** Hex HMAC-SHA256 over the format, keyring, seq, hash and time. */
  mac: string;
}

interface AnchorDocument {
  keyring: string;
  macKey: Buffer;
  head: AnchoredHead | null;
}

export interface StoredAnchor {
  head: AnchoredHead | null;
  /** Whether the head's MAC verifies with the stored key. */
  macOk: boolean;
  where: string;
}

export function headMac(macKey: Buffer, keyring: string, h: Omit<AnchoredHead, 'mac'>): string {
  return createHmac('sha256', macKey)
    .update(JSON.stringify([ANCHOR_FORMAT, keyring, h.seq, h.hash, h.at]))
    .digest('hex');
}

function macMatches(doc: AnchorDocument): boolean {
  if (!doc.head) return true;
  const want = Buffer.from(headMac(doc.macKey, doc.keyring, doc.head), 'hex');
  const got = Buffer.from(doc.head.mac, 'hex');
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Parse the stored text; a malformed anchor is named, never quoted (it holds the MAC key). */
function parseAnchor(text: string, where: string): AnchorDocument {
  const bad = (what: string): never => {
    throw new KeystoreError(
      `${where}: ${what}`,
      'restore it from the keystore history or a backup; remove it only to start anchoring afresh (audited history then rests on the database alone)',
    );
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return bad('is not valid JSON');
  }
  const o = raw as Record<string, unknown> | null;
  if (!o || typeof o !== 'object' || o.format !== ANCHOR_FORMAT) return bad(`expected "format": "${ANCHOR_FORMAT}"`);
  if (typeof o.keyring !== 'string' || !o.keyring) return bad('"keyring" must be a non-empty string');
  const macKey = typeof o.macKey === 'string' ? Buffer.from(o.macKey, 'base64') : Buffer.alloc(0);
  if (macKey.length !== 32) return bad('"macKey" must be base64 of 32 bytes');
  let head: AnchoredHead | null = null;
  if (o.head !== null && o.head !== undefined) {
    const h = o.head as Record<string, unknown>;
    if (!Number.isSafeInteger(h.seq) || typeof h.hash !== 'string' || typeof h.at !== 'string' || typeof h.mac !== 'string' || !/^[0-9a-f]{64}$/.test(h.mac)) {
      return bad('"head" must hold seq (a number), hash, at and mac (hex)');
    }
    head = { seq: h.seq as number, hash: h.hash, at: h.at, mac: h.mac };
  }
  return { keyring: o.keyring, macKey, head };
}

function serialiseAnchor(doc: AnchorDocument): string {
  return `${JSON.stringify({ format: ANCHOR_FORMAT, keyring: doc.keyring, macKey: doc.macKey.toString('base64'), head: doc.head }, null, 2)}\n`;
}

/** Why this keystore cannot hold an anchor (null: it can). */
export function cannotAnchor(ks: Keystore): string | null {
  if (ks.readAnchor && ks.writeAnchor && ks.writable) return null;
  return `${ks.describe()} is read-only: keyctl cannot anchor the audit chain outside the database there`;
}

/** The anchor as stored (null: none yet, or a keystore that cannot hold one). */
export async function readAnchor(ks: Keystore, keyring: string): Promise<StoredAnchor | null> {
  if (!ks.readAnchor) return null;
  const snap = await ks.readAnchor(keyring);
  if (snap.text === null) return null;
  const doc = parseAnchor(snap.text, snap.where);
  if (doc.keyring !== keyring)
    throw new KeystoreError(`${snap.where} anchors keyring ${doc.keyring}, not ${keyring}`, 'point the config at the keystore of this keyring');
  return { head: doc.head, macOk: macMatches(doc), where: snap.where };
}

export type AnchorOutcome =
  | { status: 'anchored'; head: AnchoredHead; previousSeq: number | null }
  | { status: 'up-to-date'; seq: number }
  | { status: 'refused'; reason: string; hint: string };

const TRIES = 6;

/**
 * Bring the anchor of `keyring` up to the database's committed head. Call it only after the
 * audit rows have committed. Throws KeystoreReadOnlyError on a keystore that cannot anchor.
 */
export async function anchorAuditHead(deps: { db: Db; keystore: Keystore; now: () => Date }, keyring: string): Promise<AnchorOutcome> {
  const { db, keystore: ks } = deps;
  const why = cannotAnchor(ks);
  if (why || !ks.readAnchor || !ks.writeAnchor) {
    throw new KeystoreReadOnlyError(
      why ?? 'this keystore cannot anchor',
      'use a file, AWS Secrets Manager or Vault keystore to anchor; meanwhile ship `keyctl audit --export` to write-once storage',
    );
  }
  for (let attempt = 1; ; attempt++) {
    const snap = await ks.readAnchor(keyring);
    const doc = snap.text === null ? null : parseAnchor(snap.text, snap.where);
    if (doc && !macMatches(doc)) {
      return {
        status: 'refused',
        reason: `${snap.where} does not verify (its MAC is wrong)`,
        hint: 'run `keyctl audit --verify`; keyctl does not overwrite an anchor it cannot trust',
      };
    }
    const dbHead = await readAuditHead(db, keyring);
    const anchored = doc?.head ?? null;
    if (!dbHead || dbHead.seq === 0) return { status: 'up-to-date', seq: anchored?.seq ?? 0 };
    // The anchor is written only after its rows committed, so a database head below it (or another
    // hash at its seq) is a truncation or rewrite, never a race: refuse, don't call it up to date.
    if (anchored && dbHead.seq < anchored.seq) {
      return {
        status: 'refused',
        reason: `the database chain ends at seq ${dbHead.seq}, below the anchored head (seq ${anchored.seq}): rows were deleted`,
        hint: 'run `keyctl audit --verify`; after restoring the database from a backup on purpose, re-anchor with `keyctl audit --anchor --reset --reason "…"`',
      };
    }
    if (anchored && dbHead.seq === anchored.seq) {
      if (dbHead.hash === anchored.hash) return { status: 'up-to-date', seq: anchored.seq };
      return {
        status: 'refused',
        reason: `the database head (seq ${dbHead.seq}) has another hash than the anchored one: the chain was rewritten`,
        hint: 'run `keyctl audit --verify`; after restoring the database from a backup on purpose, re-anchor with `keyctl audit --anchor --reset --reason "…"`',
      };
    }
    if (anchored) {
      const link = await chainExtends(db, keyring, anchored, dbHead);
      if (!link.ok) {
        return {
          status: 'refused',
          reason: `the database chain does not extend the anchored head (seq ${anchored.seq}): ${link.reason}`,
          hint: 'run `keyctl audit --verify`: the audit table was changed outside keyctl (after restoring a database backup on purpose: `keyctl audit --anchor --reset --reason "…"`)',
        };
      }
    } else {
      // The first anchor trusts the database once: only a chain that verifies end to end.
      const [report] = await verifyAuditChain(db, keyring);
      if (report && report.problems.length > 0) {
        return {
          status: 'refused',
          reason: `the audit chain of ${keyring} does not verify, so keyctl does not anchor it`,
          hint: 'run `keyctl audit --verify`',
        };
      }
    }
    const macKey = doc?.macKey ?? randomBytes(32);
    const at = deps.now().toISOString();
    const head: AnchoredHead = { seq: dbHead.seq, hash: dbHead.hash, at, mac: headMac(macKey, keyring, { seq: dbHead.seq, hash: dbHead.hash, at }) };
    try {
      await ks.writeAnchor(keyring, serialiseAnchor({ keyring, macKey, head }), snap.revision);
      return { status: 'anchored', head, previousSeq: anchored?.seq ?? null };
    } catch (err) {
      // Another keyctl anchored meanwhile (check-and-set lost): read again; it may already cover us.
      if (attempt >= TRIES || !(err instanceof KeystoreError)) throw err;
      await new Promise((r) => setTimeout(r, 20 * attempt + Math.floor(Math.random() * 30)));
    }
  }
}

export type ResetOutcome = { status: 'reset'; head: AnchoredHead; previous: AnchoredHead | null } | { status: 'refused'; reason: string; hint: string };

/**
 * `audit --anchor --reset --reason`: after a legitimate restore of the database from a backup,
 * the chain no longer reaches the anchored head, and every later anchor is refused. Re-anchor at
 * the database's head — only if its chain verifies on its own — and put the reset on record: an
 * `integrity` row naming the previous anchor, the reason and who did it, which the new anchor covers.
 */
export async function resetAnchor(
  deps: { db: Db; keystore: Keystore; now: () => Date; actor: string },
  keyring: string,
  reason: string,
): Promise<ResetOutcome> {
  const { db, keystore: ks } = deps;
  const why = cannotAnchor(ks);
  if (why || !ks.readAnchor || !ks.writeAnchor) {
    throw new KeystoreReadOnlyError(why ?? 'this keystore cannot anchor', 'use a file, AWS Secrets Manager or Vault keystore to anchor');
  }
  const [report] = await verifyAuditChain(db, keyring);
  if (report && report.problems.length > 0) {
    return {
      status: 'refused',
      reason: `the audit chain of ${keyring} does not verify on its own (${report.problems[0]}), so keyctl does not anchor it`,
      hint: 'restore rotation_audit and keyctl_audit_head from a consistent database backup first; `keyctl audit --verify` shows what is wrong',
    };
  }
  const snap = await ks.readAnchor(keyring);
  const doc = snap.text === null ? null : parseAnchor(snap.text, snap.where);
  const trusted = doc !== null && macMatches(doc);
  const previous = trusted ? (doc.head ?? null) : null;
  await appendAudit(
    db,
    {
      keyring,
      action: 'integrity',
      actor: deps.actor,
      outcome: 'ok',
      details: {
        event: 'anchor-reset',
        reason,
        previousAnchor: previous ? { seq: previous.seq, hash: previous.hash, at: previous.at } : null,
        previousAnchorTrusted: doc === null ? null : trusted,
      },
    },
    deps.now(),
  );
  const dbHead = await readAuditHead(db, keyring);
  if (!dbHead) throw new Error(`internal error: no audit head for ${keyring} after appending to it`);
  // A new MAC key when the old anchor could not be trusted: whoever edited it may know the old one.
  const macKey = trusted ? doc.macKey : randomBytes(32);
  const at = deps.now().toISOString();
  const head: AnchoredHead = { seq: dbHead.seq, hash: dbHead.hash, at, mac: headMac(macKey, keyring, { seq: dbHead.seq, hash: dbHead.hash, at }) };
  await ks.writeAnchor(keyring, serialiseAnchor({ keyring, macKey, head }), snap.revision);
  return { status: 'reset', head, previous };
}
