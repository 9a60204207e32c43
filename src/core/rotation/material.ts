/** Key material for decrypting: every version the keystore still holds, published or archived. */
import { versionName, versionNumber } from '../../crypto/keys.js';
import type { Keystore } from '../../keystore/types.js';

export async function loadAllKeys(keystore: Keystore, keyring: string): Promise<Map<string, Buffer>> {
  const keys = new Map<string, Buffer>();
  const archive = await keystore.readArchive(keyring);
  for (const [v, a] of archive.doc.keys) keys.set(v, a.key);
  const published = await keystore.read();
  for (const [v, k] of published?.doc.keys ?? []) keys.set(v, k);
  return keys;
}

/**
 * The version `generate` creates next: one past the highest known anywhere — the registry, the
 * published keyring and the archive (a version number is never reused).
 */
export async function nextVersionName(keystore: Keystore, keyring: string, registered: readonly { version: string }[]): Promise<string> {
  const published = await keystore.read();
  const archive = await keystore.readArchive(keyring);
  const highest = Math.max(
    0,
    ...registered.map((v) => versionNumber(v.version)),
    ...[...(published?.doc.keys.keys() ?? []), ...archive.doc.keys.keys()].map(versionNumber),
  );
  return versionName(highest + 1);
}
