/** Builds the configured keystore provider. Network providers load their client on first use. */
import type { LoadedConfig } from '../config/load.js';
import { resolveConfigPath } from '../config/load.js';
import { silentLogger, type Logger } from '../base/logger.js';
import { AwsSecretsManagerKeystore } from './aws.js';
import { EnvKeystore } from './env.js';
import { FileKeystore } from './file.js';
import type { Keystore } from './types.js';
import { VaultKeystore } from './vault.js';
import { tenantOfKeyring } from '../config/tenancy.js';
import { EnvelopeKeystore } from './envelope.js';
import { DatabaseWrappedStorage, FileWrappedStorage } from './envelope-storage.js';
import type { Db } from '../db/connect.js';
import { KmsWrapper } from './kms.js';
import { TransitWrapper } from './transit.js';

/** What a keystore may need besides its config: the application database (`storage: database`), opened on first use. */
export interface KeystoreDeps {
  db?: () => Promise<Db>;
}

export function openKeystore(config: LoadedConfig, env: NodeJS.ProcessEnv, log: Logger = silentLogger, deps: KeystoreDeps = {}): Keystore {
  const ks = config.keystore;
  switch (ks.provider) {
    case 'file':
      return new FileKeystore(resolveConfigPath(config, ks.path));
    case 'env':
      return new EnvKeystore({ env, prefix: ks.prefix, keyring: config.keyring });
    case 'aws-secrets-manager':
      return new AwsSecretsManagerKeystore({ ...ks, log });
    case 'vault':
      return new VaultKeystore({
        ...ks,
        ...(ks.tokenFile ? { tokenFile: resolveConfigPath(config, ks.tokenFile) } : {}),
        ...(ks.caCert ? { caCert: resolveConfigPath(config, ks.caCert) } : {}),
        env,
        log,
      });
    case 'aws-kms':
    case 'vault-transit': {
      const wrapper =
        ks.provider === 'aws-kms'
          ? new KmsWrapper({ ...ks, log })
          : new TransitWrapper({
              ...ks,
              ...(ks.tokenFile ? { tokenFile: resolveConfigPath(config, ks.tokenFile) } : {}),
              ...(ks.caCert ? { caCert: resolveConfigPath(config, ks.caCert) } : {}),
              env,
              log,
            });
      const tenant = config.tenancy ? (tenantOfKeyring(config.tenancy, config.keyring) ?? undefined) : undefined;
      const file = resolveConfigPath(config, ks.path);
      const storage =
        ks.storage === 'database'
          ? new DatabaseWrappedStorage(
              config.keyring,
              deps.db ??
                (() => {
                  throw new Error('keystore storage: database opened without the database connection');
                }),
            )
          : new FileWrappedStorage(file);
      return new EnvelopeKeystore({ file, storage, wrapper, tenant, log });
    }
  }
}

export type { Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';
