/**
 * What keyctl's two Vault providers share (KV version 2 in vault.ts, Transit in transit.ts): the
 * address, namespace, token and CA as the vault CLI finds them, the `node-vault` client (loaded
 * on first use), bounded retries, and Vault's answers turned into messages that say what to do.
 *
 * Token: VAULT_TOKEN, else `tokenFile`, else ~/.vault-token. Address: `address`, else VAULT_ADDR.
 * Namespace: `namespace`, else VAULT_NAMESPACE. TLS: `caCert`, else VAULT_CACERT.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../base/logger.js';
import { KeyctlError, KeystoreError } from '../base/errors.js';
import { networkCode, unreachable, withRemoteRetry } from './remote.js';

export interface VaultConnectionOptions {
  address?: string | undefined;
  namespace?: string | undefined;
  tokenFile?: string | undefined;
  caCert?: string | undefined;
  timeoutSeconds: number;
  maxAttempts: number;
  env: NodeJS.ProcessEnv;
  log: Logger;
}

/** node-vault's replies are untyped JSON; each caller checks the fields it reads. */
// biome-ignore lint/suspicious/noExplicitAny: the shape of a Vault reply is checked where it is read
export type VaultReply = any;

export interface VaultClient {
  read(path: string): Promise<VaultReply>;
  write(path: string, data: unknown): Promise<VaultReply>;
  delete(path: string): Promise<VaultReply>;
}

/** What a request needs, for the message when Vault says 403. */
export type Capability = 'read' | 'create/update' | 'update' | 'delete';

const SERVICE = 'Vault';
const RETRY_STATUSES = [429, 500, 502, 503, 504];

export class VaultConnection {
  readonly address: string | undefined;
  readonly namespace: string | undefined;
  private readonly o: VaultConnectionOptions;
  private loaded: Promise<VaultClient> | undefined;

  constructor(o: VaultConnectionOptions) {
    this.o = o;
    this.address = (o.address ?? o.env.VAULT_ADDR)?.replace(/\/+$/, '') || undefined;
    this.namespace = o.namespace ?? (o.env.VAULT_NAMESPACE || undefined);
  }

  get maxAttempts(): number {
    return this.o.maxAttempts;
  }

  /** One request with keyctl's retries (throttling, 5xx, dropped connections), each retry logged. */
  async send(what: string, fn: (c: VaultClient) => Promise<VaultReply>): Promise<VaultReply> {
    const client = await this.client();
    return withRemoteRetry(what, () => fn(client), {
      attempts: this.o.maxAttempts,
      log: this.o.log,
      serviceRetryable: (err) => RETRY_STATUSES.includes(vaultStatus(err) ?? 0),
      label: (err) => `HTTP ${vaultStatus(err) ?? '?'}`,
    });
  }

  client(): Promise<VaultClient> {
    this.loaded ??= (async () => {
      if (!this.address)
        throw new KeystoreError(
          'no Vault address: keystore.address is not set and neither is VAULT_ADDR',
          'set keystore.address (e.g. https://vault.example.com:8200) or VAULT_ADDR',
        );
      const token = this.token();
      const caFile = this.o.caCert ?? (this.o.env.VAULT_CACERT || undefined);
      let ca: string | undefined;
      if (caFile) {
        try {
          ca = readFileSync(caFile, 'utf8');
        } catch {
          throw new KeystoreError(`cannot read the Vault CA certificate ${caFile}`, 'check keystore.caCert (or VAULT_CACERT)');
        }
      }
      const { default: factory } = await import('node-vault');
      return factory({
        apiVersion: 'v1',
        endpoint: this.address,
        token,
        ...(this.namespace ? { namespace: this.namespace } : {}),
        requestOptions: { timeout: this.o.timeoutSeconds * 1000, ...(ca ? { ca } : {}) },
        // node-vault's debug output would print request bodies, keys included.
        debug: () => undefined,
      } as Parameters<typeof factory>[0]) as unknown as VaultClient;
    })();
    return this.loaded;
  }

  private token(): string {
    if (this.o.env.VAULT_TOKEN) return this.o.env.VAULT_TOKEN;
    const file = this.o.tokenFile ?? path.join(this.o.env.HOME ?? os.homedir(), '.vault-token');
    try {
      const t = readFileSync(file, 'utf8').trim();
      if (t) return t;
    } catch {
      if (this.o.tokenFile)
        throw new KeystoreError(`cannot read the Vault token file ${file}`, 'check keystore.tokenFile and its permissions, or set VAULT_TOKEN');
    }
    throw new KeystoreError(
      'no Vault token: VAULT_TOKEN is not set and there is no token file',
      'log in (vault login …), set VAULT_TOKEN, or point keystore.tokenFile at a file holding the token',
    );
  }

  /**
   * The failures every Vault request shares — unreachable, TLS, 403 (a bad token or a missing
   * policy: Vault says "permission denied" for both, so keyctl asks which), and 429/5xx after the
   * retries — or null for an answer the caller explains itself.
   */
  async explain(err: unknown, what: string, capability: Capability, apiPath: string): Promise<KeyctlError | null> {
    if (err instanceof KeyctlError) return err;
    const net = networkCode(err);
    if (net) return unreachable(SERVICE, this.address ?? '?', net, this.o.maxAttempts);
    if (/self[- ]signed|unable to verify|certificate/i.test(String((err as Error)?.message))) {
      return new KeystoreError(
        `TLS: cannot verify Vault's certificate at ${this.address}: ${(err as { code?: string }).code ?? (err as Error).message}`,
        'point keystore.caCert (or VAULT_CACERT) at the PEM file of the CA that signed it',
      );
    }
    const status = vaultStatus(err);
    const message = vaultMessage(err);
    if (status === 403) {
      const client = await this.client();
      const tokenOk = await client.read('auth/token/lookup-self').then(
        () => true,
        () => false,
      );
      if (!tokenOk) {
        return new KeystoreError(
          `Vault rejected the token (403 permission denied on ${what}): it is invalid, expired or revoked`,
          'log in again (vault login …) and set VAULT_TOKEN, or refresh the token file',
        );
      }
      return new KeystoreError(
        `Vault denied ${what}: the token's policies lack "${capability}" on ${this.namespace ? `${this.namespace}/` : ''}${apiPath}`,
        `add to the token's policy: path "${apiPath}" { capabilities = [${capability
          .split('/')
          .map((c) => `"${c}"`)
          .join(', ')}] }; docs/keystores.md lists what each command needs`,
      );
    }
    if (status && RETRY_STATUSES.includes(status)) {
      return new KeystoreError(
        `Vault answered ${status}${message ? ` (${message})` : ''} to ${what} ${this.o.maxAttempts} times`,
        status === 503
          ? 'Vault may be sealed or in standby: unseal it or use the active node, then run the command again'
          : 'wait a minute and run the command again (it resumes where it stopped)',
      );
    }
    return null;
  }
}

export function vaultStatus(err: unknown): number | undefined {
  return (err as { response?: { statusCode?: number } })?.response?.statusCode;
}

/** Vault's error text (its `errors` joined by node-vault), which names paths and parameters, never secret data. */
export function vaultMessage(err: unknown): string {
  return String((err as Error)?.message ?? '');
}
