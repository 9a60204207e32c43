/** Key material for decrypting: every version the keystore still holds, published or archived. */
import type { Keystore } from '../../keystore/types.js';

export async function loadAllKeys(keystore: Keystore, keyring: string): Promise<Map<string, Buffer>> {
  const keys = new Map<string, Buffer>();
  const archive = await keystore.readArchive(keyring);
  for (const [v, a] of archive.doc.keys) keys.set(v, a.key);
  const published = await keystore.read();
  for (const [v, k] of published?.doc.keys ?? []) keys.set(v, k);
  return keys;
}
