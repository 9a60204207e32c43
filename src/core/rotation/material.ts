/** Key material for decrypting: every version the keystore still holds, published or archived. */
import type { KeyLookup } from '../../crypto/codec.js';
import type { Keystore } from '../../keystore/types.js';

export async function loadAllKeys(keystore: Keystore, keyring: string): Promise<Map<string, Buffer>> {
  const keys = new Map<string, Buffer>();
  const archive = await keystore.readArchive(keyring);
  for (const [v, a] of archive.doc.keys) keys.set(v, a.key);
  const published = await keystore.read();
  for (const [v, k] of published?.doc.keys ?? []) keys.set(v, k);
  return keys;
}

export function lookup(keys: Map<string, Buffer>): KeyLookup {
  return (v) => keys.get(v);
}
