/**
 * Finding, reading, interpolating and validating keyctl.yaml. Every problem is reported as
 * `<file>: <key path>: expected …, found …`, all problems at once, so one run shows everything to fix.
 */
import { closest } from '../base/suggest.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../base/errors.js';
import { hasLiteralPassword, redactText } from '../db/redact.js';
import { checkTemplate } from '../crypto/context.js';
import { ConfigSchema, DatabaseSchema, KEYSTORE_PROVIDERS, KeystoreSchema, PolicySchema, TargetSchema, type RawConfig, type TargetConfig } from './schema.js';
import { tenancyProblems } from './tenancy.js';

export const DEFAULT_CONFIG_FILE = 'keyctl.yaml';

export interface LoadedConfig extends Omit<RawConfig, 'targets'> {
  targets: TargetConfig[];
  /** Set in one tenant's view (config/tenancy): the tenant every command acts on. */
  tenant?: string;
  /** Absolute path of the file it came from. */
  file: string;
  /** Directory relative paths in the file are resolved against. */
  baseDir: string;
  /** Things that work but should change (e.g. a literal database password); the CLI prints them. */
  warnings?: string[];
}

export interface LocateOptions {
  /** --config */
  explicitPath?: string | undefined;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** Which file to read: --config, then KEYCTL_CONFIG, then ./keyctl.yaml. */
export function locateConfig(opts: LocateOptions): { file: string; source: string } {
  if (opts.explicitPath) return { file: path.resolve(opts.cwd, opts.explicitPath), source: '--config' };
  const fromEnv = opts.env.KEYCTL_CONFIG;
  if (fromEnv) return { file: path.resolve(opts.cwd, fromEnv), source: 'KEYCTL_CONFIG' };
  return { file: path.resolve(opts.cwd, DEFAULT_CONFIG_FILE), source: 'working directory' };
}

export function loadConfig(opts: LocateOptions): LoadedConfig {
  const { file, source } = locateConfig(opts);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      const where = source === 'working directory' ? `in ${opts.cwd}` : `at ${file} (from ${source})`;
      throw new ConfigError(
        `no keyctl configuration found ${where}`,
        [],
        'run `keyctl init` to create one (add --demo to try keyctl on sample data),\n' +
          'or point to an existing file with --config PATH or KEYCTL_CONFIG=PATH',
      );
    }
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, [], 'check the path and its permissions');
  }
  return parseConfig(text, file, opts.env);
}

/** Parse config text; `file` is used for messages and to resolve relative paths. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv): LoadedConfig {
  const label = displayName(file);
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const at = pos ? `${label}:${pos.line}:${pos.col}` : label;
      return `${at}: YAML syntax error: ${firstLine(e.message)}`;
    });
    throw new ConfigError(`${label} is not valid YAML`, problems, 'fix the syntax at the line shown; keyctl.yaml uses two-space indentation');
  }
  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (err) {
    // The yaml library refuses to expand aliases past a limit ("resource exhaustion attack").
    throw new ConfigError(
      `${label} could not be read: ${firstLine((err as Error).message)}`,
      [`${label}: YAML aliases (*name) expand to too many values`],
      'keyctl.yaml needs no aliases: write the values out, or remove the anchors (&name) and aliases (*name)',
    );
  }
  if (raw === null || raw === undefined || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(
      `${label}: expected a mapping with database, keystore and targets, found ${describeValue(raw)}`,
      [],
      'see docs/configuration.md, or run `keyctl init` to write a working file',
    );
  }

  const envProblems: string[] = [];
  const interpolated = interpolate(raw, [], env, (p, name) =>
    envProblems.push(`${label}: ${formatPath(p)}: environment variable ${name} is not set (referenced as \${${name}})`),
  );
  if (envProblems.length > 0) {
    throw new ConfigError(
      `${label} references environment variables that are not set`,
      envProblems,
      'export the variables, or use ${NAME:-default} to give a default',
    );
  }

  const result = ConfigSchema.safeParse(interpolated);
  // Approvers' key files are checked with the rest, so one run lists every problem of the section.
  const keyFileProblems = [...approverKeyFileProblems(interpolated, path.dirname(file), label), ...(result.success ? tenancyProblems(result.data, label) : [])];
  if (!result.success || keyFileProblems.length > 0) {
    const problems = [...(result.success ? [] : result.error.issues.flatMap((issue) => formatIssue(issue, interpolated, label))), ...keyFileProblems];
    throw new ConfigError(
      `${label} is not a valid keyctl configuration (${problems.length} problem${problems.length === 1 ? '' : 's'})`,
      problems,
      'see docs/configuration.md for every key and its allowed values',
    );
  }
  const baseDir = path.dirname(file);
  const warnings = secretWarnings(raw as Record<string, unknown>, label);
  // Templates that parse but bind less than they seem to (no row column, adjacent values).
  for (const [i, t] of result.data.targets.entries()) {
    for (const [key, template] of [
      ['aad', t.aad],
      ['derive.info', t.derive?.info],
    ] as const) {
      if (template !== undefined) for (const w of checkTemplate(template).warnings) warnings.push(`${label}: targets[${i}].${key}: ${w.message}`);
    }
  }
  return { ...result.data, file, baseDir, ...(warnings.length > 0 ? { warnings } : {}) };
}

/**
 * What can be told of `approvals.approvers[].publicKey` without OpenPGP: a missing or unreadable
 * file, one that holds no armored public key, two approvers with the same file or key text. (The
 * keys themselves are parsed when a command needs them: core/approvals.)
 */
function approverKeyFileProblems(raw: unknown, baseDir: string, label: string): string[] {
  const approvers = (raw as { approvals?: { approvers?: unknown } } | undefined)?.approvals?.approvers;
  if (!Array.isArray(approvers)) return [];
  const problems: string[] = [];
  const seen = new Map<string, string>();
  approvers.forEach((a: unknown, i) => {
    const file = (a as { publicKey?: unknown } | null)?.publicKey;
    const name = (a as { name?: unknown } | null)?.name;
    if (typeof file !== 'string' || file === '') return;
    const where = `${label}: approvals.approvers.${i}${typeof name === 'string' ? ` (${name})` : ''}: publicKey ${file}`;
    let text: string;
    try {
      text = readFileSync(path.resolve(baseDir, file), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(`${where}: ${code === 'ENOENT' ? 'no such file' : `cannot read it (${code ?? (err as Error).message})`}`);
      return;
    }
    if (text.includes('-----BEGIN PGP PRIVATE KEY BLOCK-----')) {
      problems.push(
        `${where}: holds a secret key; list only the public part (\`gpg --armor --export KEYID\`) and keep the secret key on the approver's machine`,
      );
      return;
    }
    if (!text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) {
      problems.push(`${where}: not an armored OpenPGP public key (export one with \`gpg --armor --export KEYID > FILE\`)`);
      return;
    }
    const key = text.replace(/\s+/g, '');
    const other = seen.get(key);
    if (other !== undefined) problems.push(`${where}: the same key as ${other}; each approver needs a key of their own`);
    else seen.set(key, `approvals.approvers.${i}${typeof name === 'string' ? ` (${name})` : ''}`);
  });
  return problems;
}

/**
 * A literal password in the file (not a ${VAR} reference): still accepted, since existing files
 * hold them, but said on every run. The password itself is never repeated.
 */
function secretWarnings(raw: Record<string, unknown>, label: string): string[] {
  const connection = (raw.database as { connection?: unknown } | undefined)?.connection;
  if (typeof connection !== 'string' || !hasLiteralPassword(connection)) return [];
  return [
    `${label}: database.connection holds a literal database password; keep it out of the file: ` +
      'set connection: ${DATABASE_URL} and export DATABASE_URL with the URL (docs/configuration.md, "Secrets")',
  ];
}

/** Expand ${NAME} / ${NAME:-default} in one string; unset names become ''. */
export function expandEnv(text: string, env: NodeJS.ProcessEnv): string {
  return interpolate(text, [], env, () => undefined) as string;
}

/** Replace ${NAME} and ${NAME:-default} in every string; $${ escapes a literal ${. */
function interpolate(value: unknown, at: PropertyKey[], env: NodeJS.ProcessEnv, missing: (at: PropertyKey[], name: string) => void): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (whole, escaped, name: string, fallback?: string) => {
      if (escaped) return whole.slice(1);
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      missing(at, name);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...at, i], env, missing));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, [...at, k], env, missing)]));
  }
  return value;
}

function formatIssue(issue: z.core.$ZodIssue, input: unknown, label: string): string[] {
  const p = issue.path;
  const found = valueAt(input, p);
  const where = `${label}: ${formatPath(p)}`;
  switch (issue.code) {
    case 'invalid_type':
      if (found.present === false) return [`${where}: required ${issue.expected} is missing`];
      return [`${where}: expected ${issue.expected}, found ${describeValue(found.value)}`];
    case 'invalid_value':
      return [`${where}: expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, found ${describeValue(found.value)}`];
    case 'unrecognized_keys':
      return issue.keys.map((k) => `${label}: ${formatPath([...p, k])}: unknown key${suggestKey(k, input, p)}`);
    case 'invalid_union': {
      // A discriminated union with an unknown discriminator: point at the discriminator itself.
      const disc = (issue as { discriminator?: string }).discriminator;
      if (disc) {
        const at = p[p.length - 1] === disc ? p : [...p, disc];
        const dv = valueAt(input, at);
        const options = at[0] === 'keystore' ? KEYSTORE_PROVIDERS.map((v) => JSON.stringify(v)).join(' | ') : 'a supported value';
        if (!dv.present) return [`${label}: ${formatPath(at)}: required, expected ${options}`];
        return [`${label}: ${formatPath(at)}: expected ${options}, found ${describeValue(dv.value)}`];
      }
      return [`${where}: ${issue.message}, found ${describeValue(found.value)}`];
    }
    case 'invalid_format':
      return [
        `${where}: expected ${issue.message.replace(/^Invalid string: must match pattern .*$/, 'a different format')}, found ${describeValue(found.value)}`,
      ];
    case 'too_small':
    case 'too_big':
      return [`${where}: ${issue.message.replace(/^Too (small|big): /, '').replace(/^expected /, 'expected ')}, found ${describeValue(found.value)}`];
    default:
      return [`${where}: ${issue.message}, found ${describeValue(found.value)}`];
  }
}

/** Allowed keys per section, read from the schema so suggestions never drift from it. */
const KNOWN_KEYS: Record<string, string[]> = {
  '': Object.keys(ConfigSchema.shape),
  database: Object.keys(DatabaseSchema.shape),
  keystore: [...new Set(KeystoreSchema.options.flatMap((o) => Object.keys(o.shape)))],
  policy: Object.keys(PolicySchema.shape),
  target: Object.keys(TargetSchema.shape),
};

function suggestKey(key: string, _input: unknown, at: PropertyKey[]): string {
  const section = at.length === 0 ? '' : at[0] === 'targets' ? 'target' : String(at[0]);
  const known = KNOWN_KEYS[section];
  if (!known) return '';
  const close = closest(key, known);
  return close ? ` (did you mean "${close}"?)` : ` (allowed here: ${known.join(', ')})`;
}

function valueAt(input: unknown, p: PropertyKey[]): { present: boolean; value: unknown } {
  let cur: unknown = input;
  for (const k of p) {
    if (cur === null || typeof cur !== 'object' || !(k in (cur as object))) return { present: false, value: undefined };
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return { present: true, value: cur };
}

export function formatPath(p: readonly PropertyKey[]): string {
  if (p.length === 0) return '(top level)';
  return p.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)), '');
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null (an empty value)';
  if (typeof v === 'string') return v.length > 60 ? `a string of ${v.length} characters` : JSON.stringify(redactText(v));
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  return 'a mapping';
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

function displayName(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

/** Resolve a path from the config file relative to the config file's directory. */
export function resolveConfigPath(config: Pick<LoadedConfig, 'baseDir'>, p: string): string {
  return path.resolve(config.baseDir, p);
}
