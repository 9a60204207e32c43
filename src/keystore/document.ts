/**
 * The JSON forms of the keystore's two documents, shared by providers that store them as text.
 *
 * Published keyring (what applications read):
 *     {"keyring":"default","primary":"v2","keys":{"v1":"<base64>","v2":"<base64>"}}
 * Archive (never read by applications):
 *     {"keyring":"default","keys":{"v1":{"key":"<base64>","status":"archived","since":"<ISO>"}}}
 *
 * Parsing validates every field and names the problem without quoting key material.
 */
import { KeystoreError } from '../base/errors.js';
import { compareVersions, isVersionName, parseKeyBase64 } from '../crypto/keys.js';
import type { ArchiveDocument, ArchivedKey, KeyringDocument } from './types.js';

export function serialiseKeyring(doc: KeyringDocument): string {
  const keys: Record<string, string> = {};
  for (const v of [...doc.keys.keys()].sort(compareVersions)) keys[v] = doc.keys.get(v)!.toString('base64');
  return `${JSON.stringify({ keyring: doc.keyring, primary: doc.primary, keys }, null, 2)}\n`;
}

export function serialiseArchive(doc: ArchiveDocument): string {
  const keys: Record<string, { key: string; status: string; since: string }> = {};
  for (const v of [...doc.keys.keys()].sort(compareVersions)) {
    const a = doc.keys.get(v)!;
    keys[v] = { key: a.key.toString('base64'), status: a.status, since: a.since };
  }
  return `${JSON.stringify({ keyring: doc.keyring, keys }, null, 2)}\n`;
}

function parseObject(text: string, where: string, fixHint: string): { obj: Record<string, unknown>; bad: (what: string) => never } {
  const bad = (what: string): never => {
    throw new KeystoreError(`${where}: ${what}`, fixHint);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new KeystoreError(`${where} is not valid JSON`, fixHint);
  }
  const duplicate = firstDuplicateName(text);
  if (duplicate) bad(`${duplicate.path} names ${JSON.stringify(duplicate.name)} more than once; keyctl will not guess which one is meant`);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad('expected a JSON object');
  const obj = raw as Record<string, unknown>;
  if (typeof obj.keyring !== 'string' || obj.keyring === '') bad('"keyring" must be a non-empty string');
  if (!obj.keys || typeof obj.keys !== 'object' || Array.isArray(obj.keys)) bad('"keys" must be an object keyed by version');
  return { obj, bad };
}

function parseKeyEntry(version: string, value: unknown, bad: (what: string) => never): Buffer {
  if (!isVersionName(version)) bad(`"keys" has an entry "${version}" that is not a version name (v1, v2, …)`);
  if (typeof value !== 'string') bad(`key ${version} must be a base64 string`);
  const parsed = parseKeyBase64(value as string);
  if (!parsed.ok) return bad(`key ${version} ${parsed.problem}`);
  return parsed.key;
}

export function parseKeyringJson(text: string, where: string, fixHint: string): KeyringDocument {
  const { obj, bad } = parseObject(text, where, fixHint);
  if (typeof obj.primary !== 'string' || !isVersionName(obj.primary)) bad('"primary" must be a version name such as "v1"');
  const keys = new Map<string, Buffer>();
  for (const [version, value] of Object.entries(obj.keys as Record<string, unknown>)) keys.set(version, parseKeyEntry(version, value, bad));
  const primary = obj.primary as string;
  if (!keys.has(primary)) bad(`the primary version ${primary} has no key in "keys"`);
  return { keyring: obj.keyring as string, primary, keys };
}

export function parseArchiveJson(text: string, where: string, fixHint: string): ArchiveDocument {
  const { obj, bad } = parseObject(text, where, fixHint);
  const keys = new Map<string, ArchivedKey>();
  for (const [version, value] of Object.entries(obj.keys as Record<string, unknown>)) {
    if (!value || typeof value !== 'object') bad(`archive entry ${version} must be an object`);
    const e = value as Record<string, unknown>;
    if (e.status !== 'archived' && e.status !== 'retired') bad(`archive entry ${version} has status "${String(e.status)}", expected "archived" or "retired"`);
    if (typeof e.since !== 'string') bad(`archive entry ${version} needs "since" (an ISO-8601 time)`);
    keys.set(version, { key: parseKeyEntry(version, e.key, bad), status: e.status as ArchivedKey['status'], since: e.since as string });
  }
  return { keyring: obj.keyring as string, keys };
}

/**
 * The first name given twice in one JSON object (`JSON.parse` keeps the last silently), with the
 * path of its object; for text `JSON.parse` accepted. Names are compared decoded ("v\u0031" is "v1").
 */
export function firstDuplicateName(text: string): { name: string; path: string } | null {
  // One frame per open object or array: the names seen in an object, its path, the pending name.
  const stack: Array<{ names: Set<string> | null; path: string; key: string | null }> = [];
  let expectName = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectName && top?.names) {
        const name = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.names.has(name)) return { name, path: top.path || 'the document' };
        top.names.add(name);
        top.key = name;
        expectName = false;
      }
      i = j;
    } else if (c === '{' || c === '[') {
      const top = stack[stack.length - 1];
      const at = top ? (top.names ? `${top.path ? `${top.path}.` : ''}"${top.key ?? ''}"` : `${top.path}[]`) : '';
      stack.push({ names: c === '{' ? new Set() : null, path: at, key: null });
      expectName = c === '{';
    } else if (c === '}' || c === ']') {
      stack.pop();
      expectName = false;
    } else if (c === ',') {
      expectName = stack[stack.length - 1]?.names != null;
    }
  }
  return null;
}
