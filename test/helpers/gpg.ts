/**
 * The real `gpg` binary in a private, temporary GNUPGHOME, for tests that need key pairs made the
 * way people make them (backups encrypted to them, approvals signed with them).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export class GpgHome {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'kg-'));

  /** Run gpg non-interactively (loopback pinentry, so `--passphrase` works); its stdout as text. */
  readonly run = (args: string[], input?: string): string =>
    execFileSync('gpg', ['--batch', '--quiet', '--pinentry-mode', 'loopback', ...args], {
      env: { ...process.env, GNUPGHOME: this.dir },
      input,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });

  /** Stop its agent and remove it. */
  close(): void {
    spawnSync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: this.dir } });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
