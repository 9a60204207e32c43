/**
 * The envelope keystores (aws-kms, vault-transit) in tests: the local KMS or Vault with a Transit
 * key made for keyctl, the keystore section of keyctl.yaml, the wrapped keyring file as stored,
 * and what an application does to get a data key back (docs/keystores.md, "Envelope encryption").
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CreateAliasCommand, CreateKeyCommand, DecryptCommand, KMSClient, UpdateAliasCommand } from '@aws-sdk/client-kms';
import { expect } from 'vitest';
import { startFakeKms, type FakeKms } from '../fixtures/aws-kms.js';
import { declareTestSecret, keyctl, type RunResult } from './cli.js';
import { startFakeVault, type FakeVault } from '../fixtures/vault-server.js';
import { AWS_ENV } from './keystores.js';

export const WRAPPED_FILE = '.keyctl/keyring.wrapped.json';
export const ALIAS = 'alias/keyctl-test';
export const TRANSIT_KEY = 'keyctl-test';

export interface WrappedState {
  primary?: string;
  keys: Record<string, { kek: string; blob: string; status?: string }>;
}

interface Base {
  yaml: string;
  env: NodeJS.ProcessEnv;
  /** The KEK new blobs name now (a KMS key ARN, `transit/<key>:v<N>`). */
  currentKek(): string;
  /** Rotate the key-encryption key at the service: a new KMS key behind the alias, or Transit `rotate`; returns the new KEK. */
  rotateKek(): Promise<string>;
  /** What an application does: unwrap `version` of the stored file with the exact encryption context. */
  unwrapAsApplication(dir: string, version: string, keyring?: string): Promise<Buffer>;
  /** The same for a wrapped key read from elsewhere (storage: database). */
  unwrapAsApplicationFrom(entry: { kek: string; blob: string }, version: string, keyring?: string): Promise<Buffer>;
  close(): Promise<void>;
}
export type EnvelopeHarness =
  | (Base & { provider: 'aws-kms'; kms?: FakeKms | undefined; client: KMSClient; endpoint: string })
  | (Base & { provider: 'vault-transit'; vault: FakeVault; call: (method: 'GET' | 'POST', api: string, body?: unknown) => Promise<Record<string, unknown>> });

export function wrappedFile(dir: string, which: 'published' | 'archive' = 'published'): WrappedState | null {
  const file = path.join(dir, which === 'published' ? WRAPPED_FILE : WRAPPED_FILE.replace(/\.json$/, '.archive.json'));
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as WrappedState;
  } catch {
    return null;
  }
}

/** The published versions and primary, as the other keystores' harnesses report them. */
export function published(dir: string): { primary: string; keys: string[] } | null {
  const w = wrappedFile(dir);
  return w ? { primary: w.primary!, keys: Object.keys(w.keys).sort() } : null;
}

export function archived(dir: string): Record<string, string> {
  const w = wrappedFile(dir, 'archive');
  return Object.fromEntries(Object.entries(w?.keys ?? {}).map(([v, e]) => [v, e.status!]));
}

function context(keyring: string, version: string): Record<string, string> {
  return { 'keyctl:keyring': keyring, 'keyctl:version': version };
}

export async function kmsHarness(extraYaml = ''): Promise<EnvelopeHarness> {
  const kms = await startFakeKms({ region: AWS_ENV.AWS_REGION });
  return kmsHarnessAt(kms.endpoint, extraYaml, kms, () => kms.close());
}

/** The harness on any KMS endpoint (the local one, or moto): a KMS key behind the alias keyctl is configured with. */
export async function kmsHarnessAt(endpoint: string, extraYaml: string, kms: FakeKms | undefined, stop: () => Promise<void>) {
  const client = new KMSClient({
    endpoint,
    region: AWS_ENV.AWS_REGION,
    credentials: { accessKeyId: AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: AWS_ENV.AWS_SECRET_ACCESS_KEY },
  });
  const first = (await client.send(new CreateKeyCommand({ Description: 'keyctl KEK 1' }))).KeyMetadata!;
  await client.send(new CreateAliasCommand({ AliasName: ALIAS, TargetKeyId: first.KeyId }));
  let current = first.Arn!;
  return {
    provider: 'aws-kms' as const,
    kms,
    client,
    endpoint,
    yaml: `keystore:\n  provider: aws-kms\n  keyId: ${ALIAS}\n  region: ${AWS_ENV.AWS_REGION}\n  endpoint: ${endpoint}\n  timeoutSeconds: 2\n${extraYaml}`,
    env: { ...AWS_ENV },
    currentKek: () => current,
    rotateKek: async () => {
      const next = (await client.send(new CreateKeyCommand({ Description: 'keyctl KEK 2' }))).KeyMetadata!;
      await client.send(new UpdateAliasCommand({ AliasName: ALIAS, TargetKeyId: next.KeyId }));
      current = next.Arn!;
      return current;
    },
    unwrapAsApplication: (dir: string, version: string, keyring = 'default') => unwrap(wrappedFile(dir)!.keys[version]!, version, keyring),
    unwrapAsApplicationFrom: (entry: { kek: string; blob: string }, version: string, keyring = 'default') => unwrap(entry, version, keyring),
    close: async () => {
      client.destroy();
      await stop();
    },
  };
  async function unwrap(entry: { kek: string; blob: string }, version: string, keyring: string): Promise<Buffer> {
    const out = await client.send(
      new DecryptCommand({ KeyId: entry.kek, CiphertextBlob: Buffer.from(entry.blob, 'base64'), EncryptionContext: context(keyring, version) }),
    );
    const key = Buffer.from(out.Plaintext!);
    // The suite-wide secret grep then looks for this data key in every later keyctl output.
    declareTestSecret(key, `${keyring} ${version} data key (aws-kms)`);
    return key;
  }
}

async function vaultCall(vault: FakeVault, method: 'GET' | 'POST', api: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${vault.address}/v1/${api}`, {
    method,
    headers: { 'X-Vault-Token': vault.rootToken, 'Content-Type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`Vault ${method} ${api}: ${res.status} ${text}`);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

/** The context keyctl sends for a derived Transit key: the pairs as JSON with sorted names, base64. */
export function transitContext(keyring: string, version: string): string {
  return Buffer.from(JSON.stringify(context(keyring, version))).toString('base64');
}

export async function transitHarness(extraYaml = '', o: { derived?: boolean } = {}): Promise<EnvelopeHarness> {
  const vault = await startFakeVault();
  const derived = o.derived ?? true;
  await vaultCall(vault, 'POST', `transit/keys/${TRANSIT_KEY}`, { derived });
  let version = 1;
  return {
    provider: 'vault-transit',
    vault,
    call: (method, api, body) => vaultCall(vault, method, api, body),
    yaml: `keystore:\n  provider: vault-transit\n  address: ${vault.address}\n  mount: transit\n  key: ${TRANSIT_KEY}\n  timeoutSeconds: 2\n${extraYaml}`,
    env: { VAULT_TOKEN: vault.rootToken },
    currentKek: () => `transit/${TRANSIT_KEY}:v${version}`,
    rotateKek: async () => {
      await vaultCall(vault, 'POST', `transit/keys/${TRANSIT_KEY}/rotate`, {});
      version += 1;
      return `transit/${TRANSIT_KEY}:v${version}`;
    },
    unwrapAsApplication: (dir, v, keyring = 'default') => unwrapTransit(wrappedFile(dir)!.keys[v]!, v, keyring),
    unwrapAsApplicationFrom: (entry, v, keyring = 'default') => unwrapTransit(entry, v, keyring),
    close: () => vault.close(),
  };
  async function unwrapTransit(entry: { kek: string; blob: string }, v: string, keyring: string): Promise<Buffer> {
    const out = await vaultCall(vault, 'POST', `transit/decrypt/${TRANSIT_KEY}`, {
      ciphertext: entry.blob,
      ...(derived ? { context: transitContext(keyring, v) } : {}),
    });
    const key = Buffer.from((out.data as { plaintext: string }).plaintext, 'base64');
    declareTestSecret(key, `${keyring} ${v} data key (vault-transit)`);
    return key;
  }
}

/** keyctl in `dir` as an operator runs it, each command expected to succeed (its stderr shown when one does not). */
export function succeeding(dir: string, env: NodeJS.ProcessEnv): (...args: string[]) => Promise<RunResult> {
  return async (...args) => {
    const r = await keyctl(args, { cwd: dir, env: { ...env, KEYCTL_ACTOR: 'e2e@test' } });
    expect(r.code, `keyctl ${args.join(' ')}\n${r.stderr}`).toBe(0);
    return r;
  };
}
