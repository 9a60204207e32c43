/**
 * The `env` keystore (read-only): keys come from <prefix>KEY_V1, <prefix>KEY_V2, … (base64 of
 * 32 bytes) and the primary version from <prefix>PRIMARY. Anything that would change keys is
 * refused with the exact variables the operator should set instead.
 */
import { createHash } from 'node:crypto';
import { KeystoreError, KeystoreReadOnlyError } from '../base/errors.js';
import { compareVersions, fingerprint, normaliseVersion, parseKeyBase64 } from '../crypto/keys.js';
import type { ArchiveDocument, ArchiveSnapshot, Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';

export class EnvKeystore implements Keystore {
  readonly provider = 'env';
  readonly writable = false;
  private readonly env: NodeJS.ProcessEnv;
  private readonly prefix: string;
  private readonly keyring: string;

  constructor(opts: { env: NodeJS.ProcessEnv; prefix: string; keyring: string }) {
    this.env = opts.env;
    this.prefix = opts.prefix;
    this.keyring = opts.keyring;
  }

  describe(): string {
    return `env keystore (${this.prefix}KEY_V<N>, ${this.prefix}PRIMARY)`;
  }

  async read(): Promise<KeystoreSnapshot | null> {
    const keyRe = new RegExp(`^${this.prefix}KEY_V([1-9][0-9]*)$`);
    const keys = new Map<string, Buffer>();
    for (const [name, value] of Object.entries(this.env)) {
      const m = keyRe.exec(name);
      if (!m || value === undefined) continue;
      const parsed = parseKeyBase64(value);
      if (!parsed.ok) {
        throw new KeystoreError(
          `environment variable ${name} ${parsed.problem}; it must hold base64 of exactly 32 bytes`,
          `set it to the key's base64 (44 characters), e.g. a new key from: openssl rand -base64 32`,
        );
      }
      keys.set(`v${m[1]}`, parsed.key);
    }
    if (keys.size === 0) return null;
    const primaryVar = `${this.prefix}PRIMARY`;
    const rawPrimary = this.env[primaryVar];
    let primary: string | undefined;
    if (rawPrimary === undefined || rawPrimary === '') {
      if (keys.size === 1) primary = [...keys.keys()][0];
      else {
        throw new KeystoreError(
          `${primaryVar} is not set and there are ${keys.size} keys (${[...keys.keys()].sort(compareVersions).join(', ')})`,
          `set ${primaryVar} to the version new writes should use, e.g. ${primaryVar}=${[...keys.keys()].sort(compareVersions).at(-1)}`,
        );
      }
    } else {
      primary = normaliseVersion(rawPrimary);
      if (!primary) {
        throw new KeystoreError(
          `${primaryVar} must name a version such as v2, found "${rawPrimary.slice(0, 20)}"`,
          `set ${primaryVar}=v1 (or the version in use)`,
        );
      }
      if (!keys.has(primary)) {
        throw new KeystoreError(
          `${primaryVar}=${primary} but ${this.prefix}KEY_${primary.toUpperCase()} is not set`,
          `set ${this.prefix}KEY_${primary.toUpperCase()} to that key's base64, or point ${primaryVar} at one of ${[...keys.keys()].sort(compareVersions).join(', ')}`,
        );
      }
    }
    const doc: KeyringDocument = { keyring: this.keyring, primary: primary!, keys };
    // Revision from fingerprints, never from the material itself.
    const revision = createHash('sha256')
      .update(
        [...keys.entries()]
          .sort(([a], [b]) => compareVersions(a, b))
          .map(([v, k]) => `${v}=${fingerprint(k)}`)
          .join(','),
      )
      .update(`;${primary}`)
      .digest('hex');
    return { doc, revision };
  }

  async write(doc: KeyringDocument, _expectedRevision: string | null, why: string): Promise<void> {
    const primaryVar = `${this.prefix}PRIMARY`;
    const wanted = [...doc.keys.keys()].sort(compareVersions).map((v) => `${this.prefix}KEY_${v.toUpperCase()}`);
    throw new KeystoreReadOnlyError(
      `the env keystore is read-only, so keyctl cannot ${why}`,
      `set the keys in the environment of keyctl and of your application instead:\n` +
        `  ${wanted.join(', ')} (base64 of 32 bytes; a new one from: openssl rand -base64 32)\n` +
        `  ${primaryVar}=${doc.primary}\n` +
        'or switch keystore.provider to "file" (or a managed keystore) so keyctl can write keys itself',
    );
  }

  howToRotate(present: readonly string[], primary: string | undefined, next: string): string {
    const key = (v: string) => `${this.prefix}KEY_${v.toUpperCase()}`;
    const primaryVar = `${this.prefix}PRIMARY`;
    return [
      'keyctl cannot set environment variables; to add the next key by hand, set in the environment of keyctl and of every application:',
      `  ${key(next)}=$(openssl rand -base64 32)${present.length ? `   (keep ${present.map(key).join(', ')})` : ''}`,
      ...(primary ? [`  ${primaryVar}=${primary}   (unchanged until every reader has ${key(next)}; then ${primaryVar}=${next})`] : [`  ${primaryVar}=${next}`]),
      'or run rotations with a keystore keyctl can write (keystore.provider: file, or a managed keystore)',
    ].join('\n');
  }

  /** The environment has no archive: versions no longer published are simply unset. */
  async readArchive(keyring: string): Promise<ArchiveSnapshot> {
    return { doc: { keyring, keys: new Map() }, revision: null };
  }

  async writeArchive(_doc: ArchiveDocument, _expectedRevision: string | null, why: string): Promise<void> {
    throw new KeystoreReadOnlyError(
      `the env keystore is read-only and has no archive, so keyctl cannot ${why}`,
      'keep retired keys elsewhere (e.g. a backup), or switch keystore.provider to "file" or a managed keystore',
    );
  }
}
