/**
 * The network keystores in tests: a local server speaking the service's wire protocol
 * (test/fixtures), the keystore section of keyctl.yaml pointing at it, the environment keyctl
 * needs, and read-outs of the server's state for assertions.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startFakeSecretsManager, type FakeSecretsManager } from '../fixtures/aws-secrets-manager.js';
import type { FakeVault } from '../fixtures/vault-server.js';

export interface PublishedState {
  primary: string;
  keys: string[];
}

export interface KeystoreHarness {
  provider: 'aws-secrets-manager' | 'vault';
  /** The keystore: section of keyctl.yaml. */
  yaml: string;
  env: NodeJS.ProcessEnv;
  /** The published keyring as the service holds it now (null when none). */
  published(): PublishedState | null;
  /** Archived and retired versions: version → status. */
  archive(): Record<string, string>;
  close(): Promise<void>;
}

function summary(text: string | undefined | null): PublishedState | null {
  if (!text) return null;
  const doc = JSON.parse(text) as { primary: string; keys: Record<string, string> };
  return { primary: doc.primary, keys: Object.keys(doc.keys).sort() };
}

export const AWS_SECRET = 'keyctl/test/keyring';
export const AWS_ENV = {
  AWS_ACCESS_KEY_ID: 'AKIDKEYCTLTEST',
  AWS_SECRET_ACCESS_KEY: 'test-secret',
  AWS_REGION: 'eu-west-1',
  AWS_EC2_METADATA_DISABLED: 'true',
};

export async function awsHarness(extraYaml = ''): Promise<KeystoreHarness & { server: FakeSecretsManager }> {
  const server = await startFakeSecretsManager({ region: 'eu-west-1' });
  return {
    provider: 'aws-secrets-manager',
    server,
    yaml: `keystore:\n  provider: aws-secrets-manager\n  secretId: ${AWS_SECRET}\n  region: eu-west-1\n  endpoint: ${server.endpoint}\n  timeoutSeconds: 2\n  recoveryWindowDays: 7\n${extraYaml}`,
    env: { ...AWS_ENV },
    published: () => summary(server.valueAt(AWS_SECRET)),
    archive: () => {
      const out: Record<string, string> = {};
      for (const s of server.secrets.values()) {
        if (!s.name.startsWith(`${AWS_SECRET}/archive/`) || s.deletedDate) continue;
        out[s.tags['keyctl:version']!] = s.tags['keyctl:status']!;
      }
      return out;
    },
    close: () => server.close(),
  };
}

export const VAULT_PATH = 'keyctl/test';

export async function vaultHarness(extraYaml = ''): Promise<KeystoreHarness & { server: FakeVault }> {
  const { startFakeVault } = await import('../fixtures/vault-server.js');
  const server = await startFakeVault();
  return {
    provider: 'vault',
    server,
    yaml: `keystore:\n  provider: vault\n  address: ${server.address}\n  mount: secret\n  path: ${VAULT_PATH}\n  timeoutSeconds: 2\n${extraYaml}`,
    env: { VAULT_TOKEN: server.rootToken },
    published: () => {
      const cur = server.current('secret', VAULT_PATH);
      return cur?.data ? summary(JSON.stringify(cur.data)) : null;
    },
    archive: () => {
      const cur = server.current('secret', `${VAULT_PATH}-archive`);
      const keys = (cur?.data?.keys ?? {}) as Record<string, { status: string }>;
      return Object.fromEntries(Object.entries(keys).map(([v, e]) => [v, e.status]));
    },
    close: () => server.close(),
  };
}

/** keyctl.yaml for a project using this keystore, on the demo customers table. */
export function writeConfig(dir: string, db: { config: { client: string }; connection: string }, h: Pick<KeystoreHarness, 'yaml'>, policy = ''): void {
  writeFileSync(
    path.join(dir, 'keyctl.yaml'),
    `database:\n  client: ${db.config.client}\n  connection: ${JSON.stringify(db.connection)}\n${h.yaml}keyring: default\n` +
      `targets:\n  - table: customers\n    primaryKey: id\n    columns: [email, phone, notes]\npolicy:\n  minPropagationSeconds: 0\n${policy}`,
  );
}
