/**
 * The JSON form of a published keyring document, shared by providers that store it as text:
 *
 *     {"keyring":"default","primary":"v2","keys":{"v1":"<base64>","v2":"<base64>"}}
 *
 * Parsing validates every field and names the problem without quoting key material.
 */
import { KeystoreError } from '../core/errors.js';
import { compareVersions, isVersionName, parseKeyBase64 } from '../crypto/keys.js';
import type { KeyringDocument } from './types.js';

export function serialiseKeyring(doc: KeyringDocument): string {
  const keys: Record<string, string> = {};
  for (const v of [...doc.keys.keys()].sort(compareVersions)) keys[v] = doc.keys.get(v)!.toString('base64');
  return `${JSON.stringify({ keyring: doc.keyring, primary: doc.primary, keys }, null, 2)}\n`;
}

export function parseKeyringJson(text: string, where: string, fixHint: string): KeyringDocument {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new KeystoreError(`${where} is not valid JSON`, fixHint);
  }
  const bad = (what: string): never => {
    throw new KeystoreError(`${where}: ${what}`, fixHint);
  };
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad('expected a JSON object with keyring, primary and keys');
  const obj = raw as Record<string, unknown>;
  if (typeof obj.keyring !== 'string' || obj.keyring === '') bad('"keyring" must be a non-empty string');
  if (typeof obj.primary !== 'string' || !isVersionName(obj.primary)) bad('"primary" must be a version name such as "v1"');
  if (!obj.keys || typeof obj.keys !== 'object' || Array.isArray(obj.keys)) bad('"keys" must be an object of version → base64 key');
  const keys = new Map<string, Buffer>();
  for (const [version, value] of Object.entries(obj.keys as Record<string, unknown>)) {
    if (!isVersionName(version)) bad(`"keys" has an entry "${version}" that is not a version name (v1, v2, …)`);
    if (typeof value !== 'string') bad(`key ${version} must be a base64 string`);
    const parsed = parseKeyBase64(value as string);
    if (!parsed.ok) bad(`key ${version} ${parsed.problem}`);
    else keys.set(version, parsed.key);
  }
  const primary = obj.primary as string;
  if (!keys.has(primary)) bad(`the primary version ${primary} has no key in "keys"`);
  return { keyring: obj.keyring as string, primary, keys };
}
