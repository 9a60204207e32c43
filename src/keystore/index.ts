/** Builds the configured keystore provider. */
import type { LoadedConfig } from '../config/load.js';
import { resolveConfigPath } from '../config/load.js';
import { EnvKeystore } from './env.js';
import { FileKeystore } from './file.js';
import type { Keystore } from './types.js';

export function openKeystore(config: LoadedConfig, env: NodeJS.ProcessEnv): Keystore {
  const ks = config.keystore;
  switch (ks.provider) {
    case 'file':
      return new FileKeystore(resolveConfigPath(config, ks.path));
    case 'env':
      return new EnvKeystore({ env, prefix: ks.prefix, keyring: config.keyring });
  }
}

export type { Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';
