/**
 * Secret hygiene without a database: URL redaction in every form a connection string takes,
 * duplicate versions in keyring JSON, YAML alias bombs and literal passwords in keyctl.yaml.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, KeystoreError } from '../../src/base/errors.js';
import { parseConfig } from '../../src/config/load.js';
import { redactText, redactUrl } from '../../src/db/redact.js';
import { parseArchiveJson, parseKeyringJson } from '../../src/keystore/document.js';

const KEY_A = Buffer.alloc(32, 1).toString('base64');
const KEY_B = Buffer.alloc(32, 2).toString('base64');

describe('redactUrl', () => {
  const cases: Array<[string, string, string]> = [
    // [url, secret that must disappear, text that must stay]
    ['postgres://u@h:5433/x?password=Leak8', 'Leak8', 'h:5433/x'],
    ['postgres://u@h/x?sslmode=require&sslpassword=Leak9', 'Leak9', 'sslmode=require'],
    ['postgres://u@h/x?PassWord=LeakA&application_name=app', 'LeakA', 'application_name=app'],
    ['postgres://u@h/x?SSLPASSWORD=LeakB', 'LeakB', 'u@h/x'],
    ['mysql://sec:p@ss#Leak1@127.0.0.1:3306/db', 'Leak1', '127.0.0.1:3306/db'],
    ['mysql://sec:p@ss#Leak1@127.0.0.1:3306/db', 'p@ss', 'sec'],
    ['mysql://u:Leak2@h/db', 'Leak2', 'mysql://u:****@h/db'],
    ['mysql://u:Le ak3@h:99999/db', 'ak3', 'h:99999/db'],
    ['postgres://u:Leak4%zz@h/db', 'Leak4', 'h/db'],
    ['postgres://:Leak5@h/db', 'Leak5', 'h/db'],
    ['postgresql://u:Le/ak6@h/db', 'ak6', 'h/db'],
    ['postgres://u:Leak7@h/db?password=Leak7b', 'Leak7b', 'h/db'],
    ['postgres://u@h/x?password=Le&ak8&sslmode=disable', 'ak8', 'sslmode=disable'],
  ];
  for (const [url, secret, kept] of cases) {
    it(`masks ${secret} in ${url}`, () => {
      const shown = redactUrl(url);
      expect(shown).not.toContain(secret);
      expect(shown).toContain(kept);
    });
  }

  it('leaves URLs without a password and SQLite paths alone', () => {
    expect(redactUrl('postgres://u@h:5432/db?sslmode=require')).toBe('postgres://u@h:5432/db?sslmode=require');
    expect(redactUrl('./keyctl.db')).toBe('./keyctl.db');
    expect(redactUrl('/var/lib/app/p@ss.db')).toBe('/var/lib/app/p@ss.db');
  });

  it('redactText masks every URL inside a message', () => {
    const text = 'Invalid URL "postgres://u:Leak9@h/db" and mysql://a:b#Leak10@h/x, then postgres://u@h/y?password=Leak11.';
    const shown = redactText(text);
    for (const s of ['Leak9', 'Leak10', 'Leak11']) expect(shown).not.toContain(s);
    expect(shown).toContain('Invalid URL');
  });
});

describe('keyring JSON', () => {
  it('rejects a version given twice instead of taking the last one', () => {
    const text = `{"keyring":"default","primary":"v1","keys":{"v1":"${KEY_A}","v1":"${KEY_B}"}}`;
    expect(() => parseKeyringJson(text, 'keyring file k.json', 'fix it')).toThrow(KeystoreError);
    expect(() => parseKeyringJson(text, 'keyring file k.json', 'fix it')).toThrow(/v1.*more than once|more than once.*v1/);
    try {
      parseKeyringJson(text, 'keyring file k.json', 'fix it');
    } catch (err) {
      expect(String((err as Error).message)).not.toContain(KEY_A);
      expect(String((err as Error).message)).not.toContain(KEY_B);
    }
  });

  it('rejects a duplicate top-level field and a duplicate archive version', () => {
    expect(() => parseKeyringJson(`{"keyring":"a","primary":"v1","primary":"v2","keys":{"v1":"${KEY_A}","v2":"${KEY_B}"}}`, 'k', 'h')).toThrow(
      /"primary".*more than once/,
    );
    const archived = (k: string) => `{"key":"${k}","status":"archived","since":"2024-01-01T00:00:00Z"}`;
    expect(() => parseArchiveJson(`{"keyring":"a","keys":{"v1":${archived(KEY_A)},"v1":${archived(KEY_B)}}}`, 'a', 'h')).toThrow(/v1.*more than once/);
  });

  it('still accepts the same name in different objects, and escaped names', () => {
    const doc = parseKeyringJson(`{"keyring":"keys","primary":"v1","keys":{"v1":"${KEY_A}","v\\u0032":"${KEY_B}"}}`, 'k', 'h');
    expect([...doc.keys.keys()]).toEqual(['v1', 'v2']);
    expect(() => parseKeyringJson(`{"keyring":"a","primary":"v1","keys":{"v1":"${KEY_A}","v\\u0031":"${KEY_B}"}}`, 'k', 'h')).toThrow(/more than once/);
  });
});

describe('keyctl.yaml', () => {
  const base = (connection: string) =>
    `database:\n  client: pg\n  connection: ${JSON.stringify(connection)}\nkeystore:\n  provider: file\n  path: k.json\nkeyring: default\ntargets: []\n`;

  it('a YAML alias bomb is a configuration error, not an internal one', () => {
    const bomb = [
      'a: &a ["x","x","x","x","x","x","x","x","x"]',
      'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
      'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
      'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
      'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
      'database: {client: sqlite, connection: ./k.db}',
    ].join('\n');
    expect(() => parseConfig(bomb, '/srv/keyctl.yaml', {})).toThrow(ConfigError);
    expect(() => parseConfig(bomb, '/srv/keyctl.yaml', {})).toThrow(/alias/);
  });

  it('notes a literal password in database.connection, not a ${VAR} reference', () => {
    expect(parseConfig(base('postgres://u:Leak1@h/db'), '/srv/keyctl.yaml', {}).warnings).toEqual([
      expect.stringMatching(/literal database password.*DATABASE_URL/),
    ]);
    expect(parseConfig(base('postgres://u:Leak1@h/db'), '/srv/keyctl.yaml', {}).warnings?.join('')).not.toContain('Leak1');
    expect(parseConfig(base('${DATABASE_URL}'), '/srv/keyctl.yaml', { DATABASE_URL: 'postgres://u:Leak1@h/db' }).warnings ?? []).toEqual([]);
    expect(parseConfig(base('postgres://u:${PGPASS}@h/db'), '/srv/keyctl.yaml', { PGPASS: 'Leak1' }).warnings ?? []).toEqual([]);
  });

  it('a config error never quotes a connection string with its password', () => {
    const text = `database:\n  client: pg\n  connection: "postgres://u:Leak3@h/db"\n  pool: {min: "Leak3"}\nkeystore:\n  provider: file\n  path: k.json\nkeyring: default\ntargets: []\nunknownKey: "mysql://u:Leak4@h/db"\n`;
    try {
      parseConfig(text, '/srv/keyctl.yaml', {});
      throw new Error('expected a ConfigError');
    } catch (err) {
      const e = err as ConfigError;
      expect([e.message, ...e.problems].join('\n')).not.toContain('Leak4');
    }
  });
});
