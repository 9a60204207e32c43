/**
 * The shipped monitoring files (docs/monitoring/): the alert rules pass `promtool test rules`, every
 * rule has a case that fires and one that must not, every rule and dashboard query names only
 * metrics keyctl exposes, and every runbook link lands on a heading of docs/monitoring.md.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { formatExposition, METRICS } from '../../src/core/metrics.js';

const dir = fileURLToPath(new URL('../../docs/monitoring/', import.meta.url));
const rulesFile = `${dir}keyctl-alerts.yaml`;
const testsFile = `${dir}keyctl-alerts.test.yaml`;

interface Rule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (parse(readFileSync(rulesFile, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);
const ruleTests = (
  parse(readFileSync(testsFile, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }> }
).tests.flatMap((t) => t.alert_rule_test ?? []);

/** keyctl_… names in a PromQL expression. */
const metricsIn = (expr: string) => [...expr.matchAll(/\bkeyctl_[a-z_]+\b/g)].map((m) => m[0]);

function promtool(args: string[], input?: string) {
  const r = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8', input });
  if (r.error) throw new Error(`promtool is needed (Debian: apt-get install prometheus; .ci/run installs it): ${r.error.message}`);
  return r;
}

describe('alert rules (docs/monitoring/keyctl-alerts.yaml)', () => {
  it('pass promtool check rules and promtool test rules', () => {
    const check = promtool(['check', 'rules', 'keyctl-alerts.yaml']);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const test = promtool(['test', 'rules', 'keyctl-alerts.test.yaml']);
    expect(test.status, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toMatch(/SUCCESS/);
  });

  it('cover the ten situations the procedures alert on, each with a firing and a non-firing case', () => {
    expect(rules.map((r) => r.alert).sort()).toEqual(
      [
        'KeyctlAuditChainBroken',
        'KeyctlBackupStale',
        'KeyctlCompromisedKeyPublished',
        'KeyctlEmergencyRotationOverdue',
        'KeyctlKeystoreUnreachable',
        'KeyctlMetricsStale',
        'KeyctlRecoveryTestOverdue',
        'KeyctlRotationOverdue',
        'KeyctlRotationStalled',
        'KeyctlUnparseableValues',
      ].sort(),
    );
    for (const r of rules) {
      const cases = ruleTests.filter((t) => t.alertname === r.alert);
      expect(
        cases.some((t) => (t.exp_alerts ?? []).length > 0),
        `${r.alert} has a case that fires`,
      ).toBe(true);
      expect(
        cases.some((t) => (t.exp_alerts ?? []).length === 0),
        `${r.alert} has a case that must not fire`,
      ).toBe(true);
    }
  });

  it('each has a severity, a summary and a runbook link to a section of docs/monitoring.md, and queries only metrics keyctl exposes', () => {
    const doc = readFileSync(`${dir}../monitoring.md`, 'utf8');
    const anchors = new Set(
      [...doc.matchAll(/^#+ (.+)$/gm)].map((m) =>
        m[1]!
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    for (const r of rules) {
      expect(['warning', 'critical']).toContain(r.labels?.severity);
      expect(r.annotations?.summary).toBeTruthy();
      const link = r.annotations?.runbook_url ?? '';
      expect(link).toMatch(/^docs\/monitoring\.md#/);
      expect(anchors.has(link.split('#')[1]!), `${r.alert}: ${link} names a heading of docs/monitoring.md`).toBe(true);
      for (const name of metricsIn(r.expr)) expect(Object.keys(METRICS), `${r.alert} queries ${name}`).toContain(name);
    }
  });
});

describe('Grafana dashboard (docs/monitoring/keyctl-dashboard.json)', () => {
  const dash = JSON.parse(readFileSync(`${dir}keyctl-dashboard.json`, 'utf8')) as {
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    templating: { list: Array<{ query: string }> };
  };

  it('has the panels operators asked for, each querying only metrics keyctl exposes', () => {
    const titles = dash.panels.map((p) => p.title.toLowerCase()).join('\n');
    for (const want of ['key age', 'rotation phase', 're-encryption progress', 'values per key version', 'backup', 'recovery test'])
      expect(titles).toContain(want);
    const queried = [...dash.panels.flatMap((p) => p.targets.map((t) => t.expr)), ...dash.templating.list.map((v) => v.query)].flatMap(metricsIn);
    expect(queried.length).toBeGreaterThan(10);
    for (const name of queried) expect(Object.keys(METRICS), `the dashboard queries ${name}`).toContain(name);
  });
});

describe('text exposition format', () => {
  it('escapes label values and passes promtool check metrics', () => {
    const text = formatExposition([
      {
        name: 'keyctl_values',
        help: METRICS.keyctl_values,
        type: 'gauge',
        samples: [
          { labels: { keyring: 'default', table: 'we"ird\\name', column: 'a\nb', version: 'v1' }, value: 3 },
          { labels: { keyring: 'default', table: 't', column: 'c', version: 'v2' }, value: 0.5 },
        ],
      },
    ]);
    expect(text).toContain('table="we\\"ird\\\\name",column="a\\nb"');
    const r = promtool(['check', 'metrics'], text);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});
