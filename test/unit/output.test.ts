import { describe, expect, it } from 'vitest';
import { ConfigError, KeystoreError } from '../../src/base/errors.js';
import { ExitCode } from '../../src/base/exit-codes.js';
import { Output, type Stream } from '../../src/ui/output.js';

function sink(isTTY: boolean): Stream & { text: string } {
  const s = {
    text: '',
    isTTY,
    write: (chunk: string) => {
      s.text += chunk;
      return true;
    },
  };
  return s;
}

function make(opts: { tty: boolean; color?: boolean; env?: NodeJS.ProcessEnv; json?: boolean }) {
  const stdout = sink(opts.tty);
  const stderr = sink(opts.tty);
  const out = new Output({ json: opts.json ?? false, color: opts.color ?? true, env: opts.env ?? {}, stdout, stderr });
  return { out, stdout, stderr };
}

const ANSI = /\u001b\[/;

describe('output rules', () => {
  it('colours only a terminal, and never with --no-color or NO_COLOR', () => {
    for (const [opts, coloured] of [
      [{ tty: true }, true],
      [{ tty: false }, false],
      [{ tty: true, color: false }, false],
      [{ tty: true, env: { NO_COLOR: '1' } }, false],
      [{ tty: true, env: { TERM: 'dumb' } }, false],
    ] as const) {
      const { out, stdout, stderr } = make(opts);
      out.result({}, () => out.out.green('done'));
      out.error(new KeystoreError('boom', 'fix it'));
      expect([ANSI.test(stdout.text), ANSI.test(stderr.text)]).toEqual([coloured, coloured]);
    }
  });

  it('--json prints one object on stdout for results and errors; human text goes to stderr', () => {
    const { out, stdout } = make({ tty: false, json: true });
    out.result({ a: 1 }, () => 'human');
    expect(JSON.parse(stdout.text)).toEqual({ ok: true, a: 1 });
    const e = make({ tty: false, json: true });
    const code = e.out.error(new ConfigError('bad config', ['keyctl.yaml: x: unknown key'], 'see docs'));
    expect(code).toBe(ExitCode.USAGE);
    expect(JSON.parse(e.stdout.text)).toMatchObject({ ok: false, error: { kind: 'config', problems: ['keyctl.yaml: x: unknown key'], hint: 'see docs' } });
    expect(e.stderr.text).toContain('keyctl: error: bad config');
  });

  it('an unexpected error is reported as a bug, without a stack trace, exit 1', () => {
    const { out, stderr } = make({ tty: false });
    expect(out.error(new TypeError('x is undefined'))).toBe(ExitCode.INTERNAL);
    expect(stderr.text).toContain('this is a bug in keyctl');
    expect(stderr.text).not.toContain('    at ');
  });
});
