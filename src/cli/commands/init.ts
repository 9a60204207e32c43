/** `keyctl init`: parse flags → initProject → render. */
import path from 'node:path';
import { locateConfig } from '../../config/load.js';
import { UsageError } from '../../base/errors.js';
import { ExitCode } from '../../base/exit-codes.js';
import { initProject } from '../../core/init.js';
import { fernetKeyFromString } from '../../crypto/fernet.js';
import { parseKeyBase64 } from '../../crypto/keys.js';
import { formatCount } from '../../ui/format.js';
import { actorName, type CliRuntime } from '../runtime.js';
import type { InitOptions } from '../specs.js';

export async function run(rt: CliRuntime, flags: InitOptions): Promise<number> {
  let adoptKey: { source: string; key: Buffer } | undefined;
  if (flags.keyFromEnv) {
    const name = flags.keyFromEnv;
    const value = rt.env[name];
    if (value === undefined || value === '') {
      throw new UsageError(
        `--key-from-env ${name}: environment variable ${name} is not set`,
        `export ${name}=<base64 of your existing 32-byte key>, then run init again`,
      );
    }
    const parsed = parseKeyBase64(value);
    // A Fernet key (Fernet.generate_key(): 32 bytes in base64url) is adopted as it is.
    const fernet = parsed.ok ? null : fernetKeyOrNull(value.trim());
    if (!parsed.ok && !fernet) {
      throw new UsageError(
        `--key-from-env ${name}: the value of ${name} ${parsed.problem}; keyctl needs base64 of exactly 32 bytes (AES-256), or a Fernet key (base64url)`,
        `check that ${name} holds the key itself in standard base64 (44 characters), e.g. from: base64 -w0 < key.bin, or the application's Fernet key as Fernet.generate_key() printed it`,
      );
    }
    adoptKey = { source: `$${name}`, key: parsed.ok ? parsed.key : fernet! };
  }
  const { file } = locateConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  const result = await initProject({
    configFile: file,
    force: Boolean(flags.force),
    demo: Boolean(flags.demo),
    rows: flags.rows,
    ...(flags.tenants !== undefined ? { tenants: flags.tenants } : {}),
    ...(adoptKey ? { adoptKey } : {}),
    ...(flags.database ? { database: flags.database } : {}),
    ...(flags.keyring ? { keyring: flags.keyring } : {}),
    existingConfig: Boolean(flags.existingConfig),
    env: rt.env,
    now: rt.now,
    actor: actorName(rt.env, rt.flags.actor),
    log: rt.output,
  });
  const c = rt.output.out;
  rt.output.result(result, () => {
    const rel = path.relative(rt.cwd, result.configFile) || result.configFile;
    const lines = [
      `${c.green('✓')} ${result.configWritten ? 'wrote' : 'using'} ${rel}`,
      `${c.green('✓')} keyring ${result.keyring}: primary ${result.primary} (fingerprint ${result.fingerprint}, ${result.keySource}) in ${result.keystore}`,
      `${c.green('✓')} database ${result.database} ready`,
    ];
    if (result.databaseEnv) lines.push(`${c.green('✓')} database.connection reads $${result.databaseEnv}: set it for every keyctl command`);
    if (result.demoRows !== null)
      lines.push(
        `${c.green('✓')} customers table with ${formatCount(result.demoRows)} encrypted rows (email, phone, notes)${result.tenants ? ` over ${formatCount(result.tenants)} tenants, each under its own keyring (keyctl tenant list)` : ''}`,
      );
    lines.push(
      '',
      result.tenants
        ? `Next: run ${c.bold('keyctl tenant list')}, then rotate one tenant: ${c.bold('keyctl generate --tenant t001')}.`
        : `Next: run ${c.bold('keyctl status')} to see what each key protects.`,
    );
    return lines.join('\n');
  });
  return ExitCode.OK;
}

function fernetKeyOrNull(text: string): Buffer | null {
  try {
    return fernetKeyFromString(text);
  } catch {
    return null;
  }
}
