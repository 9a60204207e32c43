/**
 * The `vault` keystore: HashiCorp Vault's KV version 2 secrets engine, through the official
 * `node-vault` client (loaded only when this provider is used).
 *
 * Published keyring: the secret at `<mount>/data/<path>`; its data is the keyring document
 * ({keyring, primary, keys}), so applications read it with `vault kv get -field=keys …` or any
 * client. Archive: a second secret at `<archivePath>` (default `<path>-archive`) with the archive
 * document. Every write is a check-and-set (`options.cas`) against the version keyctl read, so
 * two operators cannot silently overwrite each other: Vault answers 400 and keyctl stops.
 *
 * KV keeps up to `max_versions` old versions; keyctl never relies on that history for old keys
 * (the archive holds them). When a key is destroyed, keyctl destroys (POST <mount>/destroy/…)
 * every older version of both secrets that still holds it, so it cannot be read back from the
 * history either.
 *
 * Before its first write keyctl asks Vault what the mount is (GET sys/internal/ui/mounts/<mount>,
 * as the vault CLI's kv preflight does) and refuses a KV version 1 mount: a KV v2 write there
 * would store the keyring as a stray secret at `<mount>/data/<path>`. A KV v2 mount that was just
 * enabled answers 400 "Upgrading from non-versioned to versioned data" for a short while; keyctl
 * waits for it, with backoff, up to UPGRADE_WAIT_MS.
 *
 * Token, address, namespace and TLS are found as the vault CLI finds them (vault-client.ts).
 */
import { type KeyctlError, KeystoreConflictError, KeystoreError } from '../base/errors.js';
import { parseArchiveJson, parseKeyringJson, serialiseArchive, serialiseKeyring } from './document.js';
import { type Capability, type VaultClient, VaultConnection, type VaultConnectionOptions, type VaultReply, vaultMessage, vaultStatus } from './vault-client.js';
import type { AnchorSnapshot, ArchiveDocument, ArchiveSnapshot, Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';

export interface VaultKeystoreOptions extends VaultConnectionOptions {
  mount: string;
  path: string;
  archivePath?: string | undefined;
}

interface KvSecret {
  data: Record<string, unknown>;
  version: number;
}

const CAS_MISMATCH = /check-and-set parameter did not match the current version/;
/** A KV v2 mount still upgrading its storage (just enabled, or upgraded from v1). Nothing was done. */
const UPGRADING = /Upgrading from non-versioned to versioned data/;
/** How long keyctl waits for a mount's upgrade to finish, retrying with backoff from 250 ms up to 4 s. */
const UPGRADE_WAIT_MS = 30_000;

export class VaultKeystore implements Keystore {
  readonly provider = 'vault';
  readonly writable = true;
  private readonly o: VaultKeystoreOptions;
  private readonly vault: VaultConnection;
  private readonly archivePath: string;
  private mountChecked: Promise<void> | undefined;

  constructor(o: VaultKeystoreOptions) {
    this.o = o;
    this.vault = new VaultConnection(o);
    this.archivePath = o.archivePath ?? `${o.path}-archive`;
  }

  describe(): string {
    const { namespace, address } = this.vault;
    return `Vault KV secret ${this.o.mount}/${this.o.path}${namespace ? ` (namespace ${namespace})` : ''}${address ? ` at ${address}` : ''}`;
  }

  async read(): Promise<KeystoreSnapshot | null> {
    const got = await this.readKv(this.o.path);
    if (!got) {
      // Nothing there: on a KV v1 mount that is why, so say so rather than "holds no keys".
      await this.checkMount();
      return null;
    }
    const doc = parseKeyringJson(JSON.stringify(got.data), `${this.describe()} (version ${got.version})`, this.restoreHint(this.o.path, got.version));
    return { doc, revision: String(got.version) };
  }

  async write(doc: KeyringDocument, expectedRevision: string | null, _why: string): Promise<void> {
    const before = expectedRevision === null ? null : await this.read();
    await this.writeKv(this.o.path, JSON.parse(serialiseKeyring(doc)) as Record<string, unknown>, expectedRevision);
    const gone = [...(before?.doc.keys.keys() ?? [])].filter((v) => !doc.keys.has(v));
    if (gone.length > 0) await this.purgeDestroyed(gone, doc.keys, (await this.readArchive(doc.keyring)).doc.keys);
  }

  async readArchive(keyring: string): Promise<ArchiveSnapshot> {
    const got = await this.readKv(this.archivePath);
    if (!got) return { doc: { keyring, keys: new Map() }, revision: null };
    const doc = parseArchiveJson(
      JSON.stringify(got.data),
      `Vault KV secret ${this.o.mount}/${this.archivePath} (version ${got.version})`,
      this.restoreHint(this.archivePath, got.version),
    );
    return { doc, revision: String(got.version) };
  }

  async writeArchive(doc: ArchiveDocument, expectedRevision: string | null, _why: string): Promise<void> {
    const before = expectedRevision === null ? null : await this.readArchive(doc.keyring);
    await this.writeKv(this.archivePath, JSON.parse(serialiseArchive(doc)) as Record<string, unknown>, expectedRevision);
    const gone = [...(before?.doc.keys.keys() ?? [])].filter((v) => !doc.keys.has(v));
    if (gone.length > 0) await this.purgeDestroyed(gone, (await this.read())?.doc.keys ?? new Map(), doc.keys);
  }

  /** The audit anchor: a third KV secret, `<path>-audit-anchor`, written with the same check-and-set. */
  async readAnchor(_keyring: string): Promise<AnchorSnapshot> {
    const p = `${this.o.path}-audit-anchor`;
    const got = await this.readKv(p);
    const where = `Vault KV secret ${this.o.mount}/${p}`;
    return got ? { text: JSON.stringify(got.data), revision: String(got.version), where } : { text: null, revision: null, where };
  }

  async writeAnchor(_keyring: string, text: string, expectedRevision: string | null): Promise<void> {
    await this.writeKv(`${this.o.path}-audit-anchor`, JSON.parse(text) as Record<string, unknown>, expectedRevision);
  }

  /**
   * Crypto-shredding: the archive and the published secret are deleted with their metadata, which
   * in KV v2 removes every version of each for good (no undelete). The anchor secret stays.
   */
  async destroyKeyring(_keyring: string, _why: string): Promise<void> {
    for (const p of [this.archivePath, this.o.path]) {
      await this.call(`delete ${this.o.mount}/metadata/${p}`, 'delete', `${this.o.mount}/metadata/${p}`, (c) => c.delete(`${this.o.mount}/metadata/${p}`), {
        notFound: true,
      });
    }
    this.o.log.info(`keystore: deleted ${this.o.mount}/${this.o.path} and ${this.o.mount}/${this.archivePath} with every version`);
  }

  /** Keys that left one secret and are in neither now are destroyed: purge them from the KV history too. */
  private async purgeDestroyed(gone: string[], published: Map<string, unknown>, archive: Map<string, unknown>): Promise<void> {
    const destroyed = gone.filter((v) => !published.has(v) && !archive.has(v));
    if (destroyed.length > 0) for (const p of [this.o.path, this.archivePath]) await this.destroyHistory(p, destroyed);
  }

  // ── KV v2 requests ─────────────────────────────────────────────────────────────────────────

  private async readKv(p: string, version?: number): Promise<KvSecret | null> {
    const apiPath = `${this.o.mount}/data/${p}${version ? `?version=${version}` : ''}`;
    const body = await this.call(`read ${this.o.mount}/${p}`, 'read', `${this.o.mount}/data/${p}`, (c) => c.read(apiPath), { notFound: true });
    if (!body) return null;
    const data = body?.data?.data;
    const v = body?.data?.metadata?.version;
    if (typeof v !== 'number')
      throw new KeystoreError(
        `Vault's answer for ${this.o.mount}/data/${p} has no version: is ${this.o.mount} a KV version 2 mount?`,
        `check keystore.mount; enable one with: vault secrets enable -path=${this.o.mount} kv-v2`,
      );
    if (!data || typeof data !== 'object') return null;
    return { data: data as Record<string, unknown>, version: v };
  }

  private async writeKv(p: string, data: Record<string, unknown>, expectedRevision: string | null): Promise<void> {
    await this.checkMount();
    const cas = expectedRevision === null ? 0 : Number(expectedRevision);
    try {
      await this.call(`write ${this.o.mount}/${p}`, 'create/update', `${this.o.mount}/data/${p}`, (c) =>
        c.write(`${this.o.mount}/data/${p}`, { options: { cas }, data }),
      );
    } catch (err) {
      if (!(err instanceof KeystoreError && CAS_MISMATCH.test(err.message))) throw err;
      // A retried write whose first try did land also fails the check: that is not a conflict.
      const now = await this.readKv(p).catch(() => null);
      if (now && now.version === cas + 1 && JSON.stringify(now.data) === JSON.stringify(data)) return;
      throw new KeystoreConflictError(
        `check-and-set failed on ${this.o.mount}/${p}: it is at version ${now?.version ?? '?'} now, keyctl read version ${cas} — someone else changed it meanwhile`,
        'nothing was written; run the command again so it starts from the current keyring',
      );
    }
  }

  /** Destroy every stored version of `p` whose data still holds one of `versions`' keys. */
  private async destroyHistory(p: string, keyVersions: string[]): Promise<void> {
    const meta = await this.call(
      `read metadata ${this.o.mount}/${p}`,
      'read',
      `${this.o.mount}/metadata/${p}`,
      (c) => c.read(`${this.o.mount}/metadata/${p}`),
      { notFound: true },
    );
    const versions = Object.entries((meta?.data?.versions ?? {}) as Record<string, { destroyed?: boolean }>).filter(([, m]) => !m.destroyed);
    const doomed: number[] = [];
    for (const [n] of versions) {
      const got = await this.readKv(p, Number(n));
      const keys = (got?.data.keys ?? {}) as Record<string, unknown>;
      if (keyVersions.some((v) => v in keys)) doomed.push(Number(n));
    }
    if (doomed.length === 0) return;
    await this.call(`destroy ${this.o.mount}/${p}`, 'update', `${this.o.mount}/destroy/${p}`, (c) =>
      c.write(`${this.o.mount}/destroy/${p}`, { versions: doomed }),
    );
    this.o.log.info(`keystore: destroyed versions ${doomed.join(', ')} of ${this.o.mount}/${p}, which held ${keyVersions.join(', ')}`);
  }

  /**
   * Once per process, before the first write (or when the keyring is missing): refuse a mount that is not KV version 2. Vault
   * answers this for a token with any capability under the mount; when it cannot say (403, or a
   * Vault without the endpoint) the write goes ahead and its own answer decides.
   */
  private checkMount(): Promise<void> {
    this.mountChecked ??= (async () => {
      const apiPath = `sys/internal/ui/mounts/${this.o.mount}`;
      let info: VaultReply;
      try {
        info = await this.call(`read mount ${this.o.mount}`, 'read', apiPath, (c) => c.read(apiPath));
      } catch (err) {
        if (err instanceof KeystoreError && /^(cannot reach|TLS:|Vault answered)/.test(err.message)) throw err;
        return; // cannot tell (no capability under the mount, or an older Vault): the write's answer decides
      }
      const type = typeof info?.data?.type === 'string' ? (info.data.type as string) : undefined;
      const version = String(info?.data?.options?.version ?? '1');
      if (type === undefined) return;
      if (type !== 'kv' && type !== 'generic') {
        throw new KeystoreError(
          `keystore.mount ${this.o.mount} is a ${type} secrets engine, not KV version 2; keyctl wrote nothing`,
          'point keystore.mount at a KV version 2 mount (vault secrets enable -path=<path> kv-v2)',
        );
      }
      if (version !== '2') {
        throw new KeystoreError(
          `keystore.mount ${this.o.mount} is a KV version ${version} mount; keyctl needs KV version 2 (versions and check-and-set) and wrote nothing`,
          `upgrade it with \`vault kv enable-versioning ${this.o.mount}\` (its secrets are kept), or point keystore.mount at a KV version 2 mount`,
        );
      }
    })();
    return this.mountChecked;
  }

  private restoreHint(p: string, version: number): string {
    return `write back the previous version, e.g.: vault kv rollback -mount=${this.o.mount} -version=${Math.max(1, version - 1)} ${p}`;
  }

  // ── client, retries, errors ────────────────────────────────────────────────────────────────

  private call(what: string, capability: Capability, apiPath: string, fn: (c: VaultClient) => Promise<VaultReply>): Promise<VaultReply>;
  private call(
    what: string,
    capability: Capability,
    apiPath: string,
    fn: (c: VaultClient) => Promise<VaultReply>,
    o: { notFound: true },
  ): Promise<VaultReply | null>;
  private async call(
    what: string,
    capability: Capability,
    apiPath: string,
    fn: (c: VaultClient) => Promise<VaultReply>,
    o?: { notFound: true },
  ): Promise<VaultReply | null> {
    const started = Date.now();
    for (let delay = 250; ; delay = Math.min(delay * 2, 4000)) {
      try {
        return await this.vault.send(what, fn);
      } catch (err) {
        if (isUpgrading(err) && Date.now() - started + delay <= UPGRADE_WAIT_MS) {
          this.o.log.warn(`keystore: ${what} failed (${this.o.mount} is being upgraded to KV version 2), retrying in ${delay} ms`);
          await new Promise((resolve) => setTimeout(resolve, delay));
          continue;
        }
        if (o?.notFound && vaultStatus(err) === 404) return null;
        throw await this.translate(err, what, capability, apiPath);
      }
    }
  }

  private async translate(err: unknown, what: string, capability: Capability, apiPath: string): Promise<KeyctlError> {
    const common = await this.vault.explain(err, what, capability, apiPath);
    if (common) return common;
    const status = vaultStatus(err);
    const message = vaultMessage(err);
    if (isUpgrading(err)) {
      return new KeystoreError(
        `Vault is still upgrading ${this.o.mount} to KV version 2 after ${UPGRADE_WAIT_MS / 1000} s (400 on ${what}); nothing was written`,
        `wait until \`vault kv get -mount=${this.o.mount} ${this.o.path}\` stops answering "Upgrading from non-versioned to versioned data", then run the command again`,
      );
    }
    if (status === 404) {
      return new KeystoreError(
        `Vault has nothing at ${apiPath}${message && message !== 'Status 404' ? ` (${message})` : ''}`,
        'check keystore.mount and keystore.path; to create the keyring there, run `keyctl init --existing-config`',
      );
    }
    // Vault's error strings name paths and parameters, never secret data.
    return new KeystoreError(`Vault refused ${what}${status ? ` (${status})` : ''}: ${message}`);
  }
}

function isUpgrading(err: unknown): boolean {
  return vaultStatus(err) === 400 && UPGRADING.test(String((err as Error)?.message ?? ''));
}
