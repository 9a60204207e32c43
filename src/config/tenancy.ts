/**
 * Per-tenant keyrings (docs/tenants.md). A tenant is a keyring of its own — its own versions,
 * rotations, audit chain and keystore document — and its own rows: every target's rows whose
 * tenancy column holds the tenant's id. `tenantView` turns the configuration into one tenant's,
 * so every lifecycle command runs on a tenant exactly as it runs on a single keyring.
 */
import path from 'node:path';
import { ConfigError } from '../base/errors.js';
import type { LoadedConfig } from './load.js';
import { KEYRING_NAME, type KeystoreConfig, type TenancyConfig } from './schema.js';

/** What a tenant id may be: it names a keyring and a keystore document, so no dots, slashes or spaces. */
export const TENANT_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/;

/** The rows of one tenant: `column = value` (the value compared as text by every dialect). */
export interface RowScope {
  column: string;
  value: string;
}

/** Why `id` cannot be a tenant id, or null when it can. */
export function tenantIdProblem(tenancy: TenancyConfig, id: string): string | null {
  if (!TENANT_ID.test(id)) {
    return `tenant id ${JSON.stringify(id.length > 60 ? `${id.slice(0, 60)}…` : id)} cannot name a keyring: use 1–48 letters, digits, _ and -, starting with a letter or digit`;
  }
  const keyring = tenancy.keyring.replace('{tenant}', id);
  // Names the keystores use beside a keyring (its archive, its anchor) cannot be keyrings themselves.
  if (/(^|-)(archive|audit-anchor)$/.test(keyring))
    return `tenant id ${JSON.stringify(id)} gives keyring name "${keyring}", which ends like a keystore's archive or anchor name; choose another id`;
  if (!KEYRING_NAME.test(keyring))
    return `tenant id ${JSON.stringify(id)} gives keyring name "${keyring}", which is not a keyring name (at most 64 of letters, digits, _ . -)`;
  return null;
}

/** The keyring of tenant `id`; a ConfigError naming the value when it cannot form one. */
export function tenantKeyring(tenancy: TenancyConfig, id: string): string {
  const problem = tenantIdProblem(tenancy, id);
  if (problem) throw new ConfigError(problem, [], 'tenant ids are the values of the tenancy column; rename the tenant, or keep its rows out of the targets');
  return tenancy.keyring.replace('{tenant}', id);
}

/** The tenant a keyring name belongs to, or null when the template does not produce it. */
export function tenantOfKeyring(tenancy: TenancyConfig, keyring: string): string | null {
  const [before, after] = tenancy.keyring.split('{tenant}') as [string, string];
  if (!keyring.startsWith(before) || !keyring.endsWith(after) || keyring.length <= before.length + after.length) return null;
  const id = keyring.slice(before.length, keyring.length - after.length);
  return TENANT_ID.test(id) ? id : null;
}

/**
 * Where a tenant's keyring lives, derived from the configured keystore: one document per tenant,
 * read only when a command needs that tenant (docs/tenants.md, "Keystore layout").
 * - file, aws-kms, vault-transit: `<keystore dir>/tenants/<keyring>.json` (archive and anchor beside it);
 * - aws-secrets-manager: the secret `<secretId>/<keyring>`, archives under `<archivePrefix><keyring>/`;
 * - vault: `<path>/<keyring>`, archive `<archivePath>/<keyring>` (default `<path>/<keyring>-archive`).
 */
export function tenantKeystore(ks: KeystoreConfig, keyring: string): KeystoreConfig {
  switch (ks.provider) {
    case 'file':
    case 'aws-kms':
    case 'vault-transit':
      return { ...ks, path: path.join(path.dirname(ks.path), 'tenants', `${keyring}.json`) };
    case 'aws-secrets-manager':
      return {
        ...ks,
        secretId: `${ks.secretId}/${keyring}`,
        ...(ks.archivePrefix !== undefined ? { archivePrefix: `${ks.archivePrefix}${keyring}/` } : {}),
      };
    case 'vault':
      return { ...ks, path: `${ks.path}/${keyring}`, ...(ks.archivePath !== undefined ? { archivePath: `${ks.archivePath}/${keyring}` } : {}) };
    case 'env':
      throw new ConfigError(
        'tenancy needs a keystore keyctl can write one keyring per tenant to; provider env holds one keyring',
        [],
        'use keystore provider file, aws-secrets-manager, vault, aws-kms or vault-transit with tenancy:',
      );
  }
}

/** Problems of a tenancy section that the schema cannot see (checked at load). */
export function tenancyProblems(config: Pick<LoadedConfig, 'tenancy' | 'keystore' | 'targets'>, label: string): string[] {
  const t = config.tenancy;
  if (!t) return [];
  const problems: string[] = [];
  if (config.keystore.provider === 'env')
    problems.push(`${label}: tenancy: keystore provider env holds one keyring; use file, aws-secrets-manager, vault, aws-kms or vault-transit`);
  if (config.keystore.provider === 'aws-secrets-manager' && config.keystore.secretId.startsWith('arn:'))
    problems.push(`${label}: keystore.secretId: with tenancy, give the secret's name (tenants' secrets are named <secretId>/<keyring>), not an ARN`);
  for (const [i, target] of config.targets.entries()) {
    if (target.columns.includes(t.column)) problems.push(`${label}: targets[${i}].columns: the tenancy column "${t.column}" cannot be an encrypted column`);
    if (target.blindIndexes.some((b) => b.column === t.column))
      problems.push(`${label}: targets[${i}].blindIndexes: the tenancy column "${t.column}" cannot be a blind index`);
  }
  return problems;
}

/** One tenant's configuration: its keyring, its keystore document and only its rows of every target. */
export function tenantView(config: LoadedConfig, id: string): LoadedConfig {
  const tenancy = config.tenancy;
  if (!tenancy) throw new ConfigError(`--tenant ${id}: ${config.file} has no tenancy: section`, [], 'run without --tenant, or add tenancy: (docs/tenants.md)');
  const keyring = tenantKeyring(tenancy, id);
  return {
    ...config,
    keyring,
    tenant: id,
    keystore: tenantKeystore(config.keystore, keyring),
    targets: config.targets.map((t) => ({ ...t, scope: { column: tenancy.column, value: id } })),
  };
}
