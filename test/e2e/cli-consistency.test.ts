/**
 * The command line's consistency promises (issue 17, "Help, completion, consistency"): unwritable
 * backup paths fail fast, usage errors in keyctl's own format (and as JSON with --json), the env
 * keystore's rotation refusal, help examples and defaults, completion scripts, timestamps for cron
 * and one number and time style.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKey as generatePgpKey } from 'openpgp';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { COMMANDS } from '../../src/cli/specs.js';
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

describe('usage errors use keyctl: error: / keyctl: hint:, and --json still prints one JSON object', () => {
  const cwd = tmpdir();

  it('an unknown command names itself, suggests the closest command and where help is', async () => {
    const r = await keyctlInProcess(['frobnicate'], { cwd });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe("keyctl: error: unknown command 'frobnicate'\nkeyctl: hint: run `keyctl --help` for the commands\n");
    const typo = await keyctlInProcess(['statsu'], { cwd });
    expect(typo.stderr).toBe(
      "keyctl: error: unknown command 'statsu'\nkeyctl: hint: did you mean `keyctl status`?\nkeyctl: hint: run `keyctl --help` for the commands\n",
    );
    const sub = await keyctlInProcess(['runbook', 'lsit'], { cwd });
    expect(sub.code).toBe(ExitCode.USAGE);
    expect(sub.stderr).toContain('keyctl: hint: did you mean `keyctl runbook list`?\nkeyctl: hint: run `keyctl runbook --help` for the commands\n');
  });

  it('keyctl rotate points to generate and to the routine-rotation runbook', async () => {
    const r = await keyctlInProcess(['rotate'], { cwd });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toMatch(/^keyctl: error: unknown command 'rotate'\nkeyctl: hint: /);
    expect(r.stderr).toContain('`keyctl generate`');
    expect(r.stderr).toContain('`keyctl runbook run routine-rotation`');
  });

  it("an unknown option names the command's help, with did-you-mean", async () => {
    const r = await keyctlInProcess(['status', '--bogus'], { cwd });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toBe("keyctl: error: unknown option '--bogus'\nkeyctl: hint: run `keyctl status --help` for its options\n");
    const typo = await keyctlInProcess(['reencrypt', '--batch-szie', '5'], { cwd });
    expect(typo.stderr).toBe(
      "keyctl: error: unknown option '--batch-szie'\nkeyctl: hint: did you mean --batch-size?\nkeyctl: hint: run `keyctl reencrypt --help` for its options\n",
    );
    const global = await keyctlInProcess(['--config', 'x.yaml', '--jsn', 'status'], { cwd });
    expect(global.stderr).toContain('keyctl: hint: did you mean --json?');
  });

  it('keyctl --json without a command: the help on stderr, one JSON object on stdout, exit 2', async () => {
    const r = await keyctlInProcess(['--json'], { cwd });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('Usage: keyctl');
    expect(json(r)).toMatchObject({ ok: false, error: { kind: 'usage', message: 'no command given' } });
    const sub = await keyctlInProcess(['runbook', '--json'], { cwd });
    expect(json(sub)).toMatchObject({
      ok: false,
      error: { kind: 'usage', message: 'no command given', hint: expect.stringContaining('keyctl runbook --help') },
    });
  });

  it('with --json, wherever it stands, stdout is one JSON object', async () => {
    for (const args of [
      ['frobnicate', '--json'],
      ['--json', 'rotate'],
      ['status', '--bogus', '--json'],
      ['--json', 'status', '--bogus'],
      ['audit', '--format', 'xml', '--json'],
      ['runbook', 'run', '--json'],
      ['status', 'extra', '--json'],
    ]) {
      const r = await keyctlInProcess(args, { cwd });
      expect(r.code, args.join(' ')).toBe(ExitCode.USAGE);
      expect(json(r), args.join(' ')).toMatchObject({ ok: false, error: { kind: 'usage', exitCode: ExitCode.USAGE, message: expect.any(String) } });
      expect(r.stderr, args.join(' ')).toMatch(/^keyctl: error: .*\nkeyctl: hint: /);
    }
  });
});

describe('the env keystore refuses to rotate and lists the exact variables to set', () => {
  it('generate names the new version, its variable and the primary to set, with the configured prefix', async () => {
    const dir = tmpdir();
    writeFileSync(path.join(dir, 'keyctl.yaml'), 'database:\n  client: sqlite\n  connection: app.db\nkeystore:\n  provider: env\n  prefix: APP_\n');
    writeFileSync(path.join(dir, 'app.db'), '');
    const env = { APP_KEY_V1: Buffer.alloc(32, 7).toString('base64'), APP_KEY_V2: Buffer.alloc(32, 9).toString('base64'), APP_PRIMARY: 'v2' };
    const r = await keyctlInProcess(['generate'], { cwd: dir, env });
    expect(r.code).toBe(ExitCode.REFUSED);
    expect(r.stderr).toContain('keyctl: error: the keystore is read-only');
    expect(r.stderr).toContain('keyctl: hint:   APP_KEY_V3=$(openssl rand -base64 32)');
    expect(r.stderr).toContain('keyctl: hint:   APP_PRIMARY=v2');
    expect(r.stderr).toContain('then APP_PRIMARY=v3');
    expect(r.stderr).toContain('keep APP_KEY_V1, APP_KEY_V2');
    const j = await keyctlInProcess(['generate', '--json'], { cwd: dir, env });
    expect(json<{ error: { hint: string } }>(j).error.hint).toContain('APP_KEY_V3=');
  });
});

describe('every command help ends with 1-3 real examples, prints each default once and without quotes, and groups its flags', () => {
  const cwd = tmpdir();
  const commands = [...COMMANDS.map((c) => [c.name]).filter(([n]) => n !== 'runbook'), ['runbook'], ['runbook', 'list'], ['runbook', 'run']];

  /** The long flags a help text lists. */
  function flagsOf(help: string): Set<string> {
    return new Set([...help.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)/gm)].map((m) => m[1]!));
  }

  it.each(commands.map((c) => [c.join(' '), c] as const))('keyctl %s --help', async (_name, cmd) => {
    const r = await keyctlInProcess([...cmd, '--help'], { cwd });
    expect(r.code).toBe(0);
    const m = /\nExamples:\n((?: {2}(?:[A-Z_]+=.* )?keyctl .*\n)+)$/.exec(r.stdout);
    expect(m, `help of keyctl ${cmd.join(' ')} does not end with examples:\n${r.stdout}`).not.toBeNull();
    const examples = m![1]!.trimEnd().split('\n');
    expect(examples.length).toBeGreaterThanOrEqual(1);
    expect(examples.length).toBeLessThanOrEqual(3);
    const globals = flagsOf((await keyctlInProcess(['--help'], { cwd })).stdout);
    for (const line of examples) {
      const all = line.replace(/#.*$/, '').trim().split(/\s+/);
      const words = all.slice(all.indexOf('keyctl'));
      expect(words.slice(1, 1 + cmd.length), line).toEqual(cmd);
      // An example of a group (`keyctl runbook run …`) is checked against the subcommand's help.
      const sub = await keyctlInProcess([...cmd, words[1 + cmd.length] ?? '', '--help'], { cwd });
      const own = sub.stdout.startsWith(`Usage: keyctl ${[...cmd, words[1 + cmd.length]].join(' ')} `) ? sub.stdout : r.stdout;
      const known = new Set([...flagsOf(own), ...globals]);
      for (const w of words.filter((x) => x.startsWith('--'))) expect(known.has(w.split('=')[0]!), `${line}: ${w}`).toBe(true);
    }
    expect(r.stdout).not.toMatch(/default: "/);
    expect(r.stdout).not.toContain('default: []');
    for (const entry of r.stdout.split('\nExamples:')[0]!.split(/\n(?= {2}-)/))
      expect(entry.match(/\bdefault[:\s]/g)?.length ?? 0, entry).toBeLessThanOrEqual(1);
  });

  it('flags that belong together are grouped under headings', async () => {
    const re = (await keyctlInProcess(['reencrypt', '--help'], { cwd })).stdout;
    expect(re).toMatch(/\nPace:\n(?: {2}.*\n)*? {2}--max-rate/);
    expect(re).toMatch(/\nWhat to rewrite:\n(?: {2}.*\n)*? {2}--shard/);
    const audit = (await keyctlInProcess(['audit', '--help'], { cwd })).stdout;
    expect(audit).toMatch(/\nEvidence checks:\n(?: {2}.*\n)*? {2}--expect-head/);
    expect((await keyctlInProcess(['recover-test', '--help'], { cwd })).stdout).toContain('(default: 20)');
  });
});

describe('keyctl completion', () => {
  /** What bash completes after `line` (the word being typed is the last, possibly empty), with the keyctl on PATH. */
  function complete(shellDir: string, line: string): string[] {
    const words = line.split(' ');
    const script = [
      'source <(keyctl completion bash)',
      "complete -p keyctl | grep -q -- '-F _keyctl' || exit 3",
      `COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}`,
      '_keyctl; printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n');
    const r = spawnSync('bash', ['-c', script], { cwd: shellDir, encoding: 'utf8', env: { ...process.env, PATH: `${binDir}:${process.env.PATH}` } });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.split('\n').filter(Boolean);
  }
  let binDir: string;
  let project: string;
  beforeAll(async () => {
    binDir = tmpdir();
    symlinkSync(KEYCTL_BIN, path.join(binDir, 'keyctl'));
    project = tmpdir();
    expect((await keyctlInProcess(['init', '--demo', '--rows', '5'], { cwd: project })).code).toBe(0);
  });

  it('bash: commands, subcommands, flags, choices, runbook names and --table targets from keyctl.yaml', () => {
    expect(complete(project, 'keyctl re')).toEqual(['reencrypt', 'recover-test', 'restore', 'retire', 'rewrap']);
    expect(complete(project, 'keyctl runbook ')).toEqual(['list', 'run']);
    expect(complete(project, 'keyctl reencrypt --max-')).toEqual(['--max-rate', '--max-load']);
    expect(complete(project, 'keyctl --config keyctl.yaml reencrypt --ta')).toEqual(['--table']);
    expect(complete(project, 'keyctl reencrypt --table ')).toEqual(['customers']);
    expect(complete(project, 'keyctl audit --format m')).toEqual(['markdown']);
    expect(complete(project, 'keyctl runbook run ')).toEqual(expect.arrayContaining(['routine-rotation', 'emergency-rotation', 'key-recovery-test']));
    expect(complete(project, 'keyctl runbook run routine-rotation --d')).toEqual(['--dry-run']);
    expect(complete(project, 'keyctl completion ')).toEqual(['bash', 'zsh', 'fish']);
    // Outside a project: no tables, and no error on the terminal.
    expect(complete(tmpdir(), 'keyctl reencrypt --table ')).toEqual([]);
  });

  const has = (shell: string) => spawnSync('sh', ['-c', `command -v ${shell}`]).status === 0;

  it.skipIf(!has('zsh'))('zsh (through bashcompinit, with its 0-based arrays): --table targets and runbook names', () => {
    const script = [
      'autoload -U compinit; compinit -u; source <(keyctl completion zsh); setopt ksharrays',
      'COMP_WORDS=(keyctl reencrypt --table ""); COMP_CWORD=3; _keyctl; print -l -- "${COMPREPLY[@]}"',
      'COMP_WORDS=(keyctl runbook run ""); COMP_CWORD=3; _keyctl; print -l -- "${COMPREPLY[@]}"',
    ].join('\n');
    const r = spawnSync('zsh', ['-c', script], { cwd: project, encoding: 'utf8', env: { ...process.env, PATH: `${binDir}:${process.env.PATH}` } });
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['customers', 'emergency-rotation', 'key-recovery-test', 'routine-rotation']);
  });

  it.skipIf(!has('fish'))('fish: subcommands, runbook names, --table targets and choices', () => {
    const script = [
      'keyctl completion fish | source',
      ...['runbook ', 'runbook run ', 'reencrypt --table ', 'audit --format '].map((l) => `complete -C "keyctl ${l}"; echo =`),
    ].join('\n');
    const r = spawnSync('fish', ['-c', script], { cwd: project, encoding: 'utf8', env: { ...process.env, PATH: `${binDir}:${process.env.PATH}` } });
    const [sub, runbooks, tables, formats] = r.stdout.split('=\n').map((s) =>
      s
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]),
    );
    expect(sub).toEqual(['list', 'run']);
    expect(runbooks).toEqual(['emergency-rotation', 'key-recovery-test', 'routine-rotation']);
    expect(tables).toEqual(['customers']);
    expect(formats).toEqual(['json', 'markdown', 'table']);
  });

  it('every flag of every help is in the bash script; zsh and fish scripts name them too', async () => {
    const cwd = tmpdir();
    const bashScript = (await keyctlInProcess(['completion', 'bash'], { cwd })).stdout;
    for (const cmd of [[], ...COMMANDS.map((c) => [c.name]), ['runbook', 'run']]) {
      const help = (await keyctlInProcess([...cmd, '--help'], { cwd })).stdout;
      for (const m of help.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)/gm)) expect(bashScript, `${cmd.join(' ')} ${m[1]}`).toContain(m[1]);
    }
    const zsh = await keyctlInProcess(['completion', 'zsh'], { cwd });
    expect(zsh.stdout).toMatch(/^#compdef keyctl\n/);
    const fish = await keyctlInProcess(['completion', 'fish'], { cwd });
    expect(fish.stdout).toContain(
      "complete -c keyctl -n '__fish_seen_subcommand_from reencrypt' -l table -x -a '(keyctl completion --list tables 2>/dev/null)'",
    );
    const bad = await keyctlInProcess(['completion', 'tcsh'], { cwd });
    expect(bad.code).toBe(ExitCode.USAGE);
  });
});

describe('cron: timestamps on every human line, a hint for variables cron does not set', () => {
  const STAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ /;

  it('--log-timestamps (or KEYCTL_LOG_TIMESTAMPS=1) starts every line with the UTC time; --json stays as it is', async () => {
    const cwd = tmpdir();
    for (const [args, env] of [
      [['status', '--log-timestamps'], {}],
      [['status'], { KEYCTL_LOG_TIMESTAMPS: '1' }],
    ] as const) {
      const r = await keyctlInProcess([...args], { cwd, env });
      expect(r.code).toBe(ExitCode.USAGE);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines.length).toBeGreaterThanOrEqual(2);
      for (const line of lines) expect(line).toMatch(STAMP);
      expect(lines[0]!.replace(STAMP, '')).toMatch(/^keyctl: error: no keyctl configuration found/);
    }
    const j = await keyctlInProcess(['status', '--json', '--log-timestamps'], { cwd });
    expect(json(j)).toMatchObject({ ok: false, error: { kind: 'config' } });
    const plain = await keyctlInProcess(['status'], { cwd, env: { KEYCTL_LOG_TIMESTAMPS: undefined, TERM: 'xterm' } });
    expect(plain.stderr).toMatch(/^keyctl: error: /);
  });

  it('under cron (no terminal, no TERM) every human line is stamped by itself, stdout too; KEYCTL_LOG_TIMESTAMPS=0 turns it off; --json never', async () => {
    const cwd = tmpdir();
    const init = await keyctlInProcess(['init', '--demo', '--rows', '5'], { cwd, env: { KEYCTL_LOG_TIMESTAMPS: undefined, TERM: undefined } });
    expect(init.code, init.stderr).toBe(0);
    const lines = (init.stdout + init.stderr).split('\n').filter((l) => l !== '');
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(line).toMatch(STAMP);
    const status = await keyctlInProcess(['status'], { cwd, env: { KEYCTL_LOG_TIMESTAMPS: undefined, TERM: undefined } });
    for (const line of status.stdout.split('\n').filter((l) => l !== '')) expect(line).toMatch(STAMP);
    const off = await keyctlInProcess(['status'], { cwd, env: { KEYCTL_LOG_TIMESTAMPS: '0', TERM: undefined } });
    expect(off.stdout).toMatch(/^Keyring /);
    const j = await keyctlInProcess(['status', '--json'], { cwd, env: { KEYCTL_LOG_TIMESTAMPS: undefined, TERM: undefined } });
    expect(json(j)).toMatchObject({ ok: true });
    const script = await keyctlInProcess(['completion', 'bash'], { cwd, env: { KEYCTL_LOG_TIMESTAMPS: undefined, TERM: undefined } });
    expect(script.stdout).not.toMatch(STAMP);
  });

  it('a variable keyctl.yaml references but the environment lacks gets a hint about cron when there is no terminal', async () => {
    const cwd = tmpdir();
    writeFileSync(path.join(cwd, 'keyctl.yaml'), 'database:\n  client: pg\n  connection: ${DATABASE_URL}\nkeystore:\n  provider: file\n');
    const r = await keyctlInProcess(['status'], { cwd, env: { DATABASE_URL: undefined, TERM: undefined } });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('environment variable DATABASE_URL is not set');
    expect(r.stderr).toContain('keyctl: hint: under cron the environment is almost empty');
    // A cron job run from the home directory: where the config is, not how to make one.
    const home = await keyctlInProcess(['backup'], { cwd: tmpdir(), env: { TERM: undefined, KEYCTL_CONFIG: undefined } });
    expect(home.stderr).toContain('keyctl: hint: under cron a job starts in the home directory: `cd /etc/keyctl && keyctl …`');
    const homeJson = await keyctlInProcess(['backup', '--json'], { cwd: tmpdir(), env: { TERM: undefined, KEYCTL_CONFIG: undefined } });
    expect(json<{ error: { hint: string } }>(homeJson).error.hint).toContain('under cron a job starts in the home directory');
    const term = await keyctlInProcess(['status'], { cwd, env: { DATABASE_URL: undefined, TERM: 'xterm' } });
    expect(term.stderr).not.toContain('under cron');
  });
});
