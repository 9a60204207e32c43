/**
 * Demo data for `keyctl init --demo`: a `customers` table with realistic fake contact data,
 * encrypted under the keyring's primary key, so a newcomer can try a whole rotation.
 * Deterministic (seeded) so test runs are reproducible; the names are invented.
 */
import type { Codec } from '../crypto/codec.js';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import type { TargetConfig } from '../config/schema.js';

export const DEMO_TARGET: TargetConfig = {
  table: 'customers',
  primaryKey: 'id',
  columns: ['email', 'phone', 'notes'],
  plaintext: 'error',
  codec: 'aes-gcm',
  blindIndexes: [],
};

const FIRST = [
  'Ada',
  'Bruno',
  'Chiara',
  'Dmitri',
  'Elif',
  'Farah',
  'Gustav',
  'Hana',
  'Ines',
  'Jonas',
  'Kofi',
  'Lena',
  'Mateo',
  'Nadia',
  'Oskar',
  'Priya',
  'Quentin',
  'Rosa',
  'Sven',
  'Tomás',
  'Uma',
  'Viktor',
  'Wen',
  'Yusuf',
  'Zoé',
];
const LAST = [
  'Andersen',
  'Barros',
  'Chen',
  'Dubois',
  'Eriksen',
  'Fischer',
  'García',
  'Haddad',
  'Ivanova',
  'Jensen',
  'Kowalski',
  'Lindqvist',
  'Moreau',
  'Nakamura',
  'Okafor',
  'Petrov',
  'Rossi',
  'Schmidt',
  'Takahashi',
  'Varga',
  'Weber',
  'Yilmaz',
  'Zhang',
];
const DOMAINS = ['example.com', 'example.org', 'example.net', 'mail.example', 'post.example'];
const NOTES = [
  'Prefers contact by email after 6pm.',
  'Asked to be removed from the quarterly newsletter.',
  'Disputed invoice #{n}; resolved with a partial refund.',
  'VIP since {y}; route escalations to the account team.',
  'Moved to the annual plan, renewal reminder 30 days ahead.',
  'Requested a copy of stored personal data (GDPR art. 15).',
  'Allergic to peanuts — relevant for on-site event catering.',
  'Speaks Portuguese and Spanish; English is fine by email.',
  'Shipping address changed twice this year, verify before dispatch.',
  'Café order: flat white, oat milk. Très important ☕.',
];

/** A small fast seeded PRNG (mulberry32): reproducible demo data without a dependency. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface DemoRow {
  email: string;
  phone: string;
  notes: string;
}

export function* demoRows(count: number, seed = 42): Generator<DemoRow> {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  for (let i = 1; i <= count; i++) {
    const first = pick(FIRST);
    const last = pick(LAST);
    const local = `${first}.${last}`
      .normalize('NFD')
      .replace(/[\u0300-\u036f]/g, '')
      .toLowerCase();
    const notes: string[] = [];
    const want = 60 + Math.floor(rnd() * 160);
    while (notes.join(' ').length < want) {
      notes.push(
        pick(NOTES)
          .replace('{n}', String(1000 + Math.floor(rnd() * 9000)))
          .replace('{y}', String(2015 + Math.floor(rnd() * 10))),
      );
    }
    yield {
      email: `${local}${i}@${pick(DOMAINS)}`,
      phone: `+1-555-${String(Math.floor(rnd() * 10000)).padStart(4, '0')}`,
      notes: notes.join(' '),
    };
  }
}

/** The column `init --demo --tenants N` writes each row's tenant to (tenancy.column). */
export const DEMO_TENANT_COLUMN = 'tenant_id';

export interface DemoTenant {
  id: string;
  version: string;
  key: Buffer;
}

export interface CreateDemoOptions {
  rows: number;
  version: string;
  key: Buffer;
  codec: Codec;
  /** Drop an existing customers table first. */
  replace: boolean;
  /** Per-tenant keyrings: row i belongs to tenants[i mod n] (column tenant_id) and is under its primary. */
  tenants?: DemoTenant[];
  onProgress?: (done: number) => void;
}

/** Create and fill the demo table in batches (one multi-row INSERT per batch, in one transaction). */
export async function createDemoTable(db: Db, opts: CreateDemoOptions): Promise<void> {
  const { knex } = db;
  const table = DEMO_TARGET.table;
  try {
    if (opts.replace) await knex.schema.dropTableIfExists(table);
    await knex.schema.createTable(table, (t) => {
      t.bigIncrements('id').primary();
      if (opts.tenants) {
        t.string(DEMO_TENANT_COLUMN, 48).notNullable();
        t.index([DEMO_TENANT_COLUMN], `${table}_${DEMO_TENANT_COLUMN}`);
      }
      t.text('email');
      t.text('phone');
      t.text('notes');
    });
    const batchSize = 500;
    await knex.transaction(async (trx) => {
      let batch: Array<Record<string, unknown>> = [];
      let done = 0;
      let i = 0;
      for (const row of demoRows(opts.rows)) {
        const tenant = opts.tenants?.[i++ % opts.tenants.length];
        const [version, key] = tenant ? [tenant.version, tenant.key] : [opts.version, opts.key];
        batch.push({
          ...(tenant ? { [DEMO_TENANT_COLUMN]: tenant.id } : {}),
          email: opts.codec.encrypt(row.email, version, key),
          phone: opts.codec.encrypt(row.phone, version, key),
          notes: opts.codec.encrypt(row.notes, version, key),
        });
        if (batch.length === batchSize) {
          await trx(table).insert(batch);
          done += batch.length;
          batch = [];
          opts.onProgress?.(done);
        }
      }
      if (batch.length > 0) {
        await trx(table).insert(batch);
        opts.onProgress?.(done + batch.length);
      }
    });
  } catch (err) {
    throw translateDbError(err, db.endpoint, 'create the demo table in');
  }
}
