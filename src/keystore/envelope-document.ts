/**
 * The documents of an envelope keystore (envelope.ts): versions → wrapped data keys, as the wrapped
 * keyring file holds them (docs/keystores.md, "Envelope encryption"). Parsing checks every field
 * and names the problem; a blob is never quoted (it is safe to show, but long).
 */
import { KeystoreError } from '../base/errors.js';
import { compareVersions, isVersionName } from '../crypto/keys.js';
import { firstDuplicateName } from './document.js';
import type { ArchivedKey } from './types.js';
import type { WrappedKey } from './wrap.js';

export const ENVELOPE_FORMAT = 'keyctl-envelope/1';

export interface WrappedEntry extends WrappedKey {
  status?: ArchivedKey['status'];
  since?: string;
}

/** One of the two files as stored: versions → wrapped keys. */
export interface WrappedDocument {
  keyring: string;
  /** Absent in the archive. */
  primary?: string;
  keys: Map<string, WrappedEntry>;
}

/** Where a wrapped key is: the published document or the archive. */
export type WrappedPlace = 'published' | 'archive';

export function serialiseWrapped(doc: WrappedDocument, provider: string): string {
  const keys: Record<string, Record<string, string>> = {};
  for (const v of [...doc.keys.keys()].sort(compareVersions)) {
    const e = doc.keys.get(v)!;
    keys[v] = { kek: e.kek, blob: e.blob, ...(e.status ? { status: e.status } : {}), ...(e.since ? { since: e.since } : {}) };
  }
  const head = { format: ENVELOPE_FORMAT, keyring: doc.keyring, ...(doc.primary !== undefined ? { primary: doc.primary } : {}), wrapping: provider };
  return `${JSON.stringify({ ...head, keys }, null, 2)}\n`;
}

export function parseWrapped(text: string, where: string, place: WrappedPlace): WrappedDocument {
  const fix = `restore ${where} from a backup (keyctl backup holds the wrapped blobs), or fix its JSON by hand`;
  const bad = (what: string): never => {
    throw new KeystoreError(`${where}: ${what}`, fix);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return bad('not valid JSON');
  }
  const duplicate = firstDuplicateName(text);
  if (duplicate) bad(`${duplicate.path} names ${JSON.stringify(duplicate.name)} more than once; keyctl will not guess which one is meant`);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad('expected a JSON object');
  const o = raw as Record<string, unknown>;
  if (o.format !== ENVELOPE_FORMAT) bad(`"format" is ${JSON.stringify(o.format)}, expected "${ENVELOPE_FORMAT}"`);
  if (typeof o.keyring !== 'string' || o.keyring === '') bad('"keyring" must be a non-empty string');
  if (!o.keys || typeof o.keys !== 'object' || Array.isArray(o.keys)) bad('"keys" must be an object keyed by version');
  const keys = new Map<string, WrappedEntry>();
  for (const [version, value] of Object.entries(o.keys as Record<string, unknown>)) {
    if (!isVersionName(version)) bad(`"keys" has an entry "${version}" that is not a version name (v1, v2, …)`);
    const e = (value ?? {}) as Record<string, unknown>;
    if (typeof e.kek !== 'string' || e.kek === '' || typeof e.blob !== 'string' || e.blob === '') bad(`${version} needs "kek" and "blob" strings`);
    const entry: WrappedEntry = { kek: e.kek as string, blob: e.blob as string };
    if (place === 'archive') {
      if (e.status !== 'archived' && e.status !== 'retired') bad(`archive entry ${version} has status "${String(e.status)}", expected "archived" or "retired"`);
      if (typeof e.since !== 'string') bad(`archive entry ${version} needs "since" (an ISO-8601 time)`);
      entry.status = e.status as ArchivedKey['status'];
      entry.since = e.since as string;
    }
    keys.set(version, entry);
  }
  if (place === 'published') {
    if (typeof o.primary !== 'string' || !isVersionName(o.primary)) bad('"primary" must be a version name such as "v1"');
    if (!keys.has(o.primary as string)) bad(`the primary version ${String(o.primary)} has no key in "keys"`);
  }
  return { keyring: o.keyring as string, ...(place === 'published' ? { primary: o.primary as string } : {}), keys };
}
