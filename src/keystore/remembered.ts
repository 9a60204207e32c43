/**
 * A keystore whose reads are remembered until it writes through this wrapper: a command that
 * prepares a thousand tenants (reencrypt --all-tenants) reads each tenant's documents once, not
 * once per check. Writes still pass the provider's check-and-set with the revision that was read,
 * so a change made meanwhile by another process is refused, never overwritten.
 */
import type { AnchorSnapshot, ArchiveDocument, ArchiveSnapshot, Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';

export function rememberReads(ks: Keystore): Keystore {
  let published: Promise<KeystoreSnapshot | null> | null = null;
  const archives = new Map<string, Promise<ArchiveSnapshot>>();
  const forget = () => {
    published = null;
    archives.clear();
  };
  /** A failed read is not remembered: the next one asks the provider again. */
  const remember = <T>(p: Promise<T>, drop: () => void): Promise<T> => {
    p.catch(drop);
    return p;
  };
  const wrapped: Keystore = {
    provider: ks.provider,
    writable: ks.writable,
    describe: () => ks.describe(),
    read() {
      published ??= remember(ks.read(), () => {
        published = null;
      });
      return published;
    },
    async write(doc: KeyringDocument, expectedRevision: string | null, why: string) {
      forget();
      await ks.write(doc, expectedRevision, why);
    },
    readArchive(keyring: string) {
      let a = archives.get(keyring);
      if (!a) {
        a = remember(ks.readArchive(keyring), () => archives.delete(keyring));
        archives.set(keyring, a);
      }
      return a;
    },
    async writeArchive(doc: ArchiveDocument, expectedRevision: string | null, why: string) {
      forget();
      await ks.writeArchive(doc, expectedRevision, why);
    },
  };
  if (ks.howToRotate) wrapped.howToRotate = ks.howToRotate.bind(ks);
  if (ks.readAnchor) wrapped.readAnchor = (keyring: string): Promise<AnchorSnapshot> => ks.readAnchor!(keyring);
  if (ks.writeAnchor) wrapped.writeAnchor = (keyring: string, text: string, rev: string | null) => ks.writeAnchor!(keyring, text, rev);
  if (ks.destroyKeyring)
    wrapped.destroyKeyring = async (keyring: string, why: string) => {
      forget();
      await ks.destroyKeyring!(keyring, why);
    };
  return wrapped;
}
