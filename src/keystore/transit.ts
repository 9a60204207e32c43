/**
 * The `vault-transit` wrapper: data keys made by Transit `datakey/plaintext/<key>` and unwrapped
 * with `decrypt/<key>`; `rewrap/<key>` moves a blob to the key's newest version without the data
 * key leaving Vault. When the Transit key is derived (`derived=true`), every request carries the
 * encryption context of wrap.ts as `context` (base64 of its canonical JSON), so a blob moved to
 * another keyring, version or tenant does not decrypt there. A non-derived key ignores context;
 * keyctl asks Vault which the key is (`<mount>/keys/<key>`) before its first request.
 *
 * The KEK of a blob is `<mount>/<key>:v<N>`, N being the Transit key version in its `vault:vN:`
 * prefix. Token, address, namespace and TLS: as the `vault` provider (vault-client.ts).
 */
import { KeystoreError, UsageError } from '../base/errors.js';
import { type Capability, type VaultClient, VaultConnection, type VaultConnectionOptions, type VaultReply, vaultMessage, vaultStatus } from './vault-client.js';
import { contextBytes, type KekHealth, type KeyWrapper, type WrapContext, type WrappedKey } from './wrap.js';

export interface TransitWrapperOptions extends VaultConnectionOptions {
  mount: string;
  key: string;
}

interface TransitKeyInfo {
  derived: boolean;
  latestVersion: number;
  minDecryptionVersion: number;
}

export class TransitWrapper implements KeyWrapper {
  readonly provider = 'vault-transit' as const;
  private readonly o: TransitWrapperOptions;
  private readonly vault: VaultConnection;
  private info: Promise<TransitKeyInfo> | undefined;
  private warned = false;

  constructor(o: TransitWrapperOptions) {
    this.o = o;
    this.vault = new VaultConnection(o);
  }

  describe(): string {
    const { namespace, address } = this.vault;
    return `Vault Transit key ${this.o.mount}/${this.o.key}${namespace ? ` (namespace ${namespace})` : ''}${address ? ` at ${address}` : ''}`;
  }

  async generate(ctx: WrapContext): Promise<{ key: Buffer; wrapped: WrappedKey }> {
    const out = await this.request('datakey', ctx, { bits: 256 });
    return { key: Buffer.from(String(out.plaintext), 'base64'), wrapped: this.wrappedOf(out.ciphertext) };
  }

  async wrap(key: Buffer, ctx: WrapContext): Promise<WrappedKey> {
    const out = await this.request('encrypt', ctx, { plaintext: key.toString('base64') });
    return this.wrappedOf(out.ciphertext);
  }

  async unwrap(w: WrappedKey, ctx: WrapContext): Promise<Buffer> {
    this.assertOurs(w);
    const out = await this.request('decrypt', ctx, { ciphertext: w.blob });
    return Buffer.from(String(out.plaintext), 'base64');
  }

  async rewrap(w: WrappedKey, ctx: WrapContext, to?: string): Promise<WrappedKey> {
    if (to !== undefined) throw noOtherKek(to);
    this.assertOurs(w);
    const out = await this.request('rewrap', ctx, { ciphertext: w.blob });
    return this.wrappedOf(out.ciphertext);
  }

  async isCurrent(w: WrappedKey, to?: string): Promise<boolean> {
    if (to !== undefined) throw noOtherKek(to);
    this.info = undefined; // the key may have been rotated since: ask again
    return transitVersion(w.blob) === (await this.keyInfo()).latestVersion && w.kek === this.kekOf(transitVersion(w.blob));
  }

  async health(kek?: string): Promise<KekHealth> {
    const name = kek ?? `${this.o.mount}/${this.o.key}`;
    const started = performance.now();
    try {
      this.info = undefined;
      const info = await this.keyInfo();
      const latencyMs = Math.round(performance.now() - started);
      const version = kek ? Number(/:v(\d+)$/.exec(kek)?.[1] ?? Number.NaN) : info.latestVersion;
      if (kek !== undefined && (!kek.startsWith(`${this.o.mount}/${this.o.key}:v`) || !Number.isInteger(version)))
        return {
          kek: name,
          reachable: true,
          latencyMs,
          state: 'unknown',
          problem: `not a version of ${this.o.mount}/${this.o.key}, the configured Transit key`,
        };
      if (version < info.minDecryptionVersion)
        return {
          kek: name,
          reachable: true,
          latencyMs,
          state: 'disabled',
          problem: `version ${version} is below min_decryption_version ${info.minDecryptionVersion}`,
        };
      return { kek: name, reachable: true, latencyMs, state: 'enabled' };
    } catch (err) {
      const latencyMs = Math.round(performance.now() - started);
      if (err instanceof KeystoreError && /has no key/.test(err.message))
        return { kek: name, reachable: true, latencyMs, state: 'missing', problem: err.message };
      return { kek: name, reachable: false, latencyMs: null, state: 'unknown', problem: err instanceof Error ? err.message : String(err) };
    }
  }

  private kekOf(version: number): string {
    return `${this.o.mount}/${this.o.key}:v${version}`;
  }

  private wrappedOf(ciphertext: unknown): WrappedKey {
    const blob = String(ciphertext ?? '');
    return { kek: this.kekOf(transitVersion(blob)), blob };
  }

  /** A blob the file says another Transit key wrapped is not sent to this one. */
  private assertOurs(w: WrappedKey): void {
    if (!w.kek.startsWith(`${this.o.mount}/${this.o.key}:v`))
      throw new KeystoreError(
        `the wrapped key names ${w.kek} as its wrapping key, but keystore.mount/key is ${this.o.mount}/${this.o.key}`,
        'point keystore.mount and keystore.key at the Transit key that wrapped this keyring, or restore the file from a backup',
      );
  }

  private keyInfo(): Promise<TransitKeyInfo> {
    this.info ??= (async () => {
      const apiPath = `${this.o.mount}/keys/${this.o.key}`;
      const got = await this.call(`read Transit key ${this.o.mount}/${this.o.key}`, 'read', apiPath, (c) => c.read(apiPath));
      const d = got?.data ?? {};
      if (d.derived !== true && !this.warned) {
        this.warned = true;
        this.o.log.warn(
          `Transit key ${this.o.mount}/${this.o.key} is not derived: its blobs are not bound to their keyring and version (create keys with derived=true; docs/keystores.md)`,
        );
      }
      return {
        derived: d.derived === true,
        latestVersion: Number(d.latest_version ?? 0),
        minDecryptionVersion: Number(d.min_decryption_version ?? 1),
      };
    })();
    const asked = this.info;
    asked.catch(() => {
      if (this.info === asked) this.info = undefined;
    });
    return asked;
  }

  private async request(op: 'encrypt' | 'decrypt' | 'rewrap' | 'datakey', ctx: WrapContext, body: Record<string, unknown>): Promise<VaultReply> {
    const info = await this.keyInfo();
    const apiPath = op === 'datakey' ? `${this.o.mount}/datakey/plaintext/${this.o.key}` : `${this.o.mount}/${op}/${this.o.key}`;
    const context = info.derived ? { context: contextBytes(ctx).toString('base64') } : {};
    const got = await this.call(`${op} with ${this.o.mount}/${this.o.key} (${ctx.version} of keyring ${ctx.keyring})`, 'update', apiPath, (c) =>
      c.write(apiPath, { ...body, ...context }),
    );
    const data = got?.data ?? {};
    if (op === 'decrypt' ? typeof data.plaintext !== 'string' : typeof data.ciphertext !== 'string')
      throw new KeystoreError(
        `Vault's answer to ${op} on ${apiPath} has no ${op === 'decrypt' ? 'plaintext' : 'ciphertext'}: is ${this.o.mount} a Transit mount?`,
      );
    return data;
  }

  private async call(what: string, capability: Capability, apiPath: string, fn: (c: VaultClient) => Promise<VaultReply>): Promise<VaultReply> {
    try {
      return await this.vault.send(what, fn);
    } catch (err) {
      const common = await this.vault.explain(err, what, capability, apiPath);
      if (common) throw common;
      const status = vaultStatus(err);
      const message = vaultMessage(err);
      if (status === 404 || /encryption key not found/.test(message))
        throw new KeystoreError(
          `Vault Transit has no key ${this.o.mount}/${this.o.key} (${status ?? '?'} on ${what})`,
          `check keystore.mount and keystore.key; create the key with: vault write -f ${this.o.mount}/keys/${this.o.key} derived=true`,
        );
      if (/message authentication failed|invalid ciphertext/.test(message))
        throw new KeystoreError(
          `Vault Transit cannot decrypt the wrapped key: ${what}: ${message}`,
          'the blob was altered, or moved from another keyring, version or tenant; restore the wrapped keyring file from a backup (keyctl backup holds the blobs)',
        );
      if (/disallowed by policy \(too old\)/.test(message))
        throw new KeystoreError(
          `Vault Transit refuses ${what}: the blob's key version is below min_decryption_version of ${this.o.mount}/${this.o.key}`,
          `lower it again (vault write ${this.o.mount}/keys/${this.o.key}/config min_decryption_version=<version>), then run \`keyctl rewrap\` before raising it`,
        );
      throw new KeystoreError(`Vault refused ${what}${status ? ` (${status})` : ''}: ${message}`);
    }
  }
}

/** The Transit key version in a `vault:v<N>:…` ciphertext (0 when it has none). */
export function transitVersion(blob: string): number {
  const m = /^vault:v(\d+):/.exec(blob);
  return m ? Number(m[1]) : 0;
}

export function noOtherKek(to: string): UsageError {
  return new UsageError(
    `--to ${to}: Vault Transit rewraps under the newest version of keystore.key only`,
    'rotate the Transit key (vault write -f <mount>/keys/<key>/rotate) and run `keyctl rewrap` without --to',
  );
}
