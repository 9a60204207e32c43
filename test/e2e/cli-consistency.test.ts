/**
 * The command line's consistency promises (issue 17, "Help, completion, consistency"): unwritable
 * backup paths fail fast, usage errors in keyctl's own format (and as JSON with --json), the env
 * keystore's rotation refusal, help examples and defaults, completion scripts, timestamps for cron
 * and one number and time style.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKey as generatePgpKey } from 'openpgp';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, KEYCTL_BIN, keyctlInProcess, type RunResult } from '../helpers/cli.js';

function tmpdir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'keyctl-e2e-cons-'));
}

/** `keyctl ARGS` as a child process, killed after `ms` (a hang is reported as exit null, "timed out"). */
function keyctlWithin(ms: number, args: string[], cwd: string): Promise<RunResult & { timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.FORCE_COLOR;
    const child = spawn(process.execPath, [KEYCTL_BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, ms);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

describe('backup --out to a path that cannot be written fails fast with exit 8', () => {
  let cwd: string;
  beforeAll(async () => {
    cwd = tmpdir();
    const pgp = await generatePgpKey({ userIDs: [{ email: 'backup@example.com' }], type: 'ecc', curve: 'curve25519Legacy', format: 'armored' });
    writeFileSync(path.join(cwd, 'backup.pub.asc'), pgp.publicKey);
    writeFileSync(path.join(cwd, 'a-file'), 'not a directory\n');
    expect((await keyctlInProcess(['init'], { cwd })).code).toBe(0);
  });

  // /proc/nope made Node's recursive mkdir spin forever at 100% CPU.
  for (const out of ['/proc/nope', '/proc/self/nope/deeper', '/sys/nope', '/dev/null/x', 'a-file', 'a-file/sub']) {
    it(`--out ${out}`, async () => {
      const r = await keyctlWithin(10_000, ['backup', '--recipient', 'backup.pub.asc', '--out', out, '--json'], cwd);
      expect(r.timedOut, 'keyctl backup hung').toBe(false);
      expect(r.code, r.stderr).toBe(ExitCode.BACKUP);
      expect(r.stderr).toMatch(/^keyctl: error: cannot (write to|create) the backup directory /);
      expect(r.stderr).toContain('keyctl: hint: ');
      expect(json(r)).toMatchObject({ ok: false, error: { kind: 'backup', exitCode: ExitCode.BACKUP } });
    }, 20_000);
  }
});
