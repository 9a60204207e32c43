/**
 * `keyctl metrics`: the state `status --check` judges, as Prometheus gauges (text exposition
 * format 0.0.4), for node_exporter's textfile collector or a scrape of `metrics --listen`
 * (docs/monitoring.md). Every sample carries `keyring` (and `tenant` with tenancy:).
 *
 * When the keystore cannot be read, the metrics still come out: `keyctl_keystore_up 0`, and what
 * the database alone tells (the open rotation, backups, recovery tests); the status-derived gauges
 * are left out rather than guessed.
 */
import { listBackups } from '../backup/files.js';
import { resolveConfigPath } from '../config/load.js';
import { PHASES } from '../rotation/machine.js';
import { latestAuditOf, openRotation } from '../rotation/store.js';
import type { CoreContext } from './context.js';
import { PROBLEM_CODES, type ProblemCode } from './health.js';
import { kekOverview } from './kek.js';
import { getStatus, type StatusReport } from './status.js';
import { liveTenants, tenantContext } from './tenants.js';

export type Labels = Record<string, string>;

export interface MetricFamily {
  name: string;
  help: string;
  type: 'gauge';
  samples: Array<{ labels: Labels; value: number }>;
}

export interface MetricsOptions {
  /** Count the values of every target column (one grouped scan per table); false skips it. */
  counts: boolean;
}

/** Every metric keyctl can expose, with its help text (the dashboard and alert tests check against this list). */
export const METRICS = {
  keyctl_keystore_up: 'Whether the keystore answered a read of the keyring (1) or not (0).',
  keyctl_keystore_probe_duration_seconds: 'How long that read of the keystore took, in seconds.',
  keyctl_kek_up: 'Envelope keystores: whether the key service answered a query about the key-encryption key (1) or not (0).',
  keyctl_kek_probe_duration_seconds: 'Envelope keystores: how long the key service took to answer about the key-encryption key, in seconds.',
  keyctl_kek_usable: 'Envelope keystores: whether the key-encryption key can decrypt (1), or is disabled, pending deletion or gone (0).',
  keyctl_kek_wrapped_keys: 'Envelope keystores: stored data keys (published and archived) the key-encryption key wraps.',
  keyctl_primary_key_age_seconds: 'Age of the primary key version in seconds (since it was created).',
  keyctl_rotation_due_seconds: 'Seconds until the next rotation is due (policy.rotationIntervalDays); negative when overdue.',
  keyctl_rotation_open: 'Whether a rotation is open (1) or not (0).',
  keyctl_rotation_phase: 'The open rotation phase: 1 for the current phase, 0 for the others (all 0 when none is open).',
  keyctl_rotation_phase_seconds: 'Seconds the open rotation has been in its current phase.',
  keyctl_rotation_emergency: 'Whether the open rotation is an emergency rotation (1) or not (0).',
  keyctl_rotation_open_seconds: 'Seconds since the open rotation was opened.',
  keyctl_break_glass_unapproved: 'Break-glass steps still lacking the approvals approvals.require asks for (1) or none (0).',
  keyctl_compromised_keys_published: 'Key versions marked compromised that the keystore still publishes.',
  keyctl_values: 'Values per key version in a target column.',
  keyctl_values_null: 'NULL values in a target column.',
  keyctl_values_unparseable: 'Values in a target column that are not ciphertext keyctl can read.',
  keyctl_values_plaintext: 'Plaintext values not yet encrypted in a target column (plaintext: encrypt targets).',
  keyctl_values_counted: 'Whether values were counted in this run (0 with --no-counts).',
  keyctl_reencrypt_rows_done: 'Rows the open rotation re-encryption pass has scanned so far, per table and shard.',
  keyctl_reencrypt_table_rows: 'Rows in the target table (counted with the values; absent with --no-counts).',
  keyctl_reencrypt_completed: 'Whether the pass over a table and shard is complete (1) or not (0).',
  keyctl_reencrypt_running: 'Whether a reencrypt process works on the table and shard now (1), or it is done or interrupted (0).',
  keyctl_reencrypt_last_batch_timestamp_seconds: 'Unix time the pass last committed a batch.',
  keyctl_backups_configured: 'Whether key backups are configured (backup.recipients set).',
  keyctl_backup_newest_age_seconds: 'Age of the newest key backup in backup.dir, in seconds (absent when there is none).',
  keyctl_recover_test_newest_age_seconds: 'Seconds since the newest recover-test that passed (absent when none has).',
  keyctl_audit_chain_ok: 'Whether the audit hash chain and its anchor verify (1) or not (0).',
  keyctl_registry_ok: 'Whether the key-version registry matches what the audit chain recorded (1) or not (0).',
  keyctl_status_check_problems: 'Problems keyctl status --check finds, per problem code (0 when none).',
  keyctl_tenants: 'Live tenants these metrics cover (metrics --all-tenants only).',
  keyctl_metrics_timestamp_seconds: 'Unix time these metrics were collected.',
  keyctl_metrics_duration_seconds: 'How long collecting these metrics took, in seconds.',
} as const;

export type MetricName = keyof typeof METRICS;

class Families {
  private readonly by = new Map<MetricName, MetricFamily>();
  constructor(private readonly base: Labels) {}
  set(name: MetricName, value: number, labels: Labels = {}): void {
    let f = this.by.get(name);
    if (!f) {
      f = { name, help: METRICS[name], type: 'gauge', samples: [] };
      this.by.set(name, f);
    }
    f.samples.push({ labels: { ...this.base, ...labels }, value });
  }
  list(): MetricFamily[] {
    return [...this.by.values()];
  }
}

const secondsSince = (now: Date, then: Date): number => (now.getTime() - then.getTime()) / 1000;

export async function collectMetrics(ctx: CoreContext, opts: MetricsOptions): Promise<MetricFamily[]> {
  const started = performance.now();
  const now = ctx.now();
  const keyring = ctx.config.keyring;
  const m = new Families({ keyring, ...(ctx.config.tenant !== undefined ? { tenant: ctx.config.tenant } : {}) });

  // The keystore probe: one read, timed. A keystore that does not answer is a metric, not a failure.
  const probeStart = performance.now();
  let keystoreUp = true;
  try {
    if (!(await ctx.keystore.read())) keystoreUp = false;
  } catch {
    keystoreUp = false;
  }
  m.set('keyctl_keystore_up', keystoreUp ? 1 : 0, { provider: ctx.keystore.provider });
  m.set('keyctl_keystore_probe_duration_seconds', (performance.now() - probeStart) / 1000);

  const report: StatusReport | null = keystoreUp ? await getStatus(ctx, { counts: opts.counts }) : null;
  // Envelope keystores: the KEKs, also when the keyring could not be read (a disabled KEK is why).
  const keks = report ? report.keystore.keks : (await kekOverview(ctx.keystore).catch(() => null))?.keks;
  for (const k of keks ?? []) {
    m.set('keyctl_kek_up', k.reachable ? 1 : 0, { kek: k.kek });
    if (k.latencyMs !== null) m.set('keyctl_kek_probe_duration_seconds', k.latencyMs / 1000, { kek: k.kek });
    m.set('keyctl_kek_usable', k.state === 'enabled' ? 1 : 0, { kek: k.kek, state: k.state });
    m.set('keyctl_kek_wrapped_keys', k.versions.length, { kek: k.kek });
  }

  // The open rotation, from the database (also when the keystore is down).
  const rotation = await openRotation(ctx.db, keyring);
  m.set('keyctl_rotation_open', rotation ? 1 : 0);
  for (const phase of PHASES) m.set('keyctl_rotation_phase', rotation?.phase === phase ? 1 : 0, { phase });
  if (rotation) {
    m.set('keyctl_rotation_phase_seconds', secondsSince(now, rotation.phaseChangedAt));
    m.set('keyctl_rotation_open_seconds', secondsSince(now, rotation.openedAt));
    m.set('keyctl_rotation_emergency', rotation.emergency ? 1 : 0);
  } else m.set('keyctl_rotation_emergency', 0);

  if (report) {
    const primary = report.versions.find((v) => v.version === report.primary);
    if (primary) m.set('keyctl_primary_key_age_seconds', secondsSince(now, new Date(primary.createdAt)), { version: primary.version });
    m.set('keyctl_rotation_due_seconds', (Date.parse(report.nextRotationDue) - now.getTime()) / 1000);
    m.set('keyctl_compromised_keys_published', report.versions.filter((v) => v.compromised && v.inKeystore).length);

    m.set('keyctl_values_counted', opts.counts ? 1 : 0);
    const rowsByTable = new Map<string, number>();
    for (const t of report.targets) {
      const at = { table: t.table, column: t.column };
      for (const [version, n] of Object.entries(t.counts)) m.set('keyctl_values', n, { ...at, version });
      m.set('keyctl_values_null', t.null, at);
      m.set('keyctl_values_unparseable', t.unparseable, at);
      m.set('keyctl_values_plaintext', t.plaintext, at);
      rowsByTable.set(t.table, Math.max(rowsByTable.get(t.table) ?? 0, t.total));
    }
    for (const [table, rows] of rowsByTable) m.set('keyctl_reencrypt_table_rows', rows, { table });
    for (const c of report.rotation?.reencrypt ?? []) {
      const at = { table: c.table, shard: c.shard };
      m.set('keyctl_reencrypt_rows_done', c.rowsScanned, at);
      m.set('keyctl_reencrypt_completed', c.completed ? 1 : 0, at);
      m.set('keyctl_reencrypt_running', c.state === 'running' ? 1 : 0, at);
      if (c.lastBatchAt) m.set('keyctl_reencrypt_last_batch_timestamp_seconds', Date.parse(c.lastBatchAt) / 1000, at);
    }

    const counted = new Map<ProblemCode, number>();
    for (const p of report.problems) counted.set(p.code, (counted.get(p.code) ?? 0) + 1);
    for (const code of Object.keys(PROBLEM_CODES) as ProblemCode[]) m.set('keyctl_status_check_problems', counted.get(code) ?? 0, { code });
    m.set('keyctl_audit_chain_ok', counted.has('audit-chain-broken') ? 0 : 1);
    m.set('keyctl_registry_ok', counted.has('registry-tampered') ? 0 : 1);
    m.set('keyctl_break_glass_unapproved', counted.has('break-glass-unapproved') ? 1 : 0);
  }

  // Backups and recovery tests: files in backup.dir and audit rows, whatever the keystore says.
  const { backup } = ctx.config;
  m.set('keyctl_backups_configured', backup.recipients.length > 0 ? 1 : 0);
  const newest = (await listBackups(resolveConfigPath(ctx.config, backup.dir), keyring).catch(() => []))[0];
  if (newest) m.set('keyctl_backup_newest_age_seconds', secondsSince(now, newest.createdAt));
  const passed = (await latestAuditOf(ctx.db, keyring, 'recover-test', 1).catch(() => []))[0];
  if (passed) m.set('keyctl_recover_test_newest_age_seconds', secondsSince(now, passed.createdAt));

  m.set('keyctl_metrics_timestamp_seconds', now.getTime() / 1000);
  m.set('keyctl_metrics_duration_seconds', (performance.now() - started) / 1000);
  return m.list();
}

/**
 * `metrics --all-tenants`: the metrics of every live tenant (in id order) as one exposition, each
 * family once with the samples of all tenants (told apart by their `tenant` and `keyring` labels).
 * Counting costs one scan of the tenant's rows per tenant; `--no-counts` skips them.
 */
export async function collectTenantsMetrics(ctx: CoreContext, opts: MetricsOptions): Promise<MetricFamily[]> {
  const started = performance.now();
  const merged = new Map<string, MetricFamily>();
  const tenants = await liveTenants(ctx);
  for (const id of tenants) {
    for (const f of await collectMetrics(tenantContext(ctx, id), opts)) {
      if (f.name === 'keyctl_metrics_timestamp_seconds' || f.name === 'keyctl_metrics_duration_seconds') continue;
      const into = merged.get(f.name);
      if (into) into.samples.push(...f.samples);
      else merged.set(f.name, { ...f, samples: [...f.samples] });
    }
  }
  const whole = new Families({});
  whole.set('keyctl_tenants', tenants.length);
  whole.set('keyctl_metrics_timestamp_seconds', ctx.now().getTime() / 1000);
  whole.set('keyctl_metrics_duration_seconds', (performance.now() - started) / 1000);
  return [...merged.values(), ...whole.list()];
}

/** The metrics of one keyring, or with `allTenants` of every live tenant. */
export function collectAll(ctx: CoreContext, opts: MetricsOptions & { allTenants: boolean }): Promise<MetricFamily[]> {
  return opts.allTenants ? collectTenantsMetrics(ctx, opts) : collectMetrics(ctx, opts);
}

/** A label value in the text format: backslash, double quote and newline escaped. */
function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function sampleValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(Math.round(v * 1000) / 1000);
}

/** The Prometheus text exposition format (version 0.0.4): HELP, TYPE, then the samples of each family. */
export function formatExposition(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
    lines.push(`# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels)
        .map(([k, v]) => `${k}="${labelValue(v)}"`)
        .join(',');
      lines.push(`${f.name}${labels ? `{${labels}}` : ''} ${sampleValue(s.value)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
