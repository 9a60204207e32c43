/**
 * The worker-thread planner splits each batch across its workers and each worker's share into
 * messages of a few hundred rows, then merges the answers. The merged plan must be the one the
 * main thread computes itself: the same values to write at the same positions, the same failures
 * at the same rows, the same counts.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { decryptForRow, encryptForRow } from '../../src/crypto/context.js';
import { generateKey } from '../../src/crypto/keys.js';
import type { FieldSpec } from '../../src/crypto/field.js';
import type { BatchInput, BatchPlan } from '../../src/reencrypt/plan.js';
import { InlinePlanner, ThreadPlanner, type Planner } from '../../src/reencrypt/planner.js';

const aes = new AesGcmV1Codec();
const keys = new Map([
  ['v1', generateKey()],
  ['v2', generateKey()],
]);
const AAD = '{table}.{column}:{id}';
const spec = (context: boolean): FieldSpec => ({
  fernetVersions: [],
  fernetPrefix: '',
  plaintext: false,
  context: context ? { aad: AAD } : null,
  unboundVersions: [],
  table: 'users',
});
const COLUMNS = ['email', 'note'];
const names = (column: string) => ({ table: 'users', column });
const plain = (row: number, c: number): string => `${COLUMNS[c]} of ${row} ünï`;

/**
 * ROWS rows of two columns: most under v1, some under the target already, some NULL, and some
 * that fail (not ciphertext, or a number), spread over every worker's share and message.
 */
function batch(rows: number, context: boolean): BatchInput {
  const values: unknown[] = [];
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < COLUMNS.length; c++) {
      const version = i % 11 === 3 ? 'v2' : 'v1';
      if (i % 97 === 5 && c === 1) values.push(null);
      else if (i % 131 === 7) values.push(c === 0 ? 'not ciphertext' : 42);
      else if (context) values.push(encryptForRow(plain(i, c), version, keys.get(version)!, { aad: AAD }, { id: i }, names(COLUMNS[c]!)));
      else values.push(aes.encrypt(plain(i, c), version, keys.get(version)!));
    }
  }
  return {
    values,
    columns: COLUMNS.length,
    spec: spec(context),
    columnNames: COLUMNS,
    ...(context ? { context: { names: ['id'], values: Array.from({ length: rows }, (_, i) => i) } } : {}),
  };
}

/** The plan with each new value replaced by its plaintext (ciphertexts differ by their nonces). */
function opened(plan: BatchPlan, context: boolean) {
  return {
    ...plan,
    next: plan.next.map((v, at) => {
      if (v === null) return null;
      const row = Math.floor(at / COLUMNS.length);
      const column = COLUMNS[at % COLUMNS.length]!;
      expect(typeof v).toBe('string');
      return context
        ? decryptForRow(v as string, (ver) => keys.get(ver), { aad: AAD }, { id: row }, names(column))
        : aes.decrypt(v as string, (ver) => keys.get(ver));
    }),
  };
}

describe('ThreadPlanner', () => {
  const planners: Planner[] = [];
  afterAll(async () => {
    await Promise.all(planners.map((p) => p.close()));
  });

  for (const context of [false, true]) {
    it(`merges its workers' answers into the plan the main thread computes (${context ? 'row context' : 'no context'})`, async () => {
      const threads = ThreadPlanner.create(2, keys, 'v2');
      planners.push(threads);
      expect(threads).toBeInstanceOf(ThreadPlanner);
      const inline = new InlinePlanner(keys, 'v2');
      // 2,345 rows: two shares of 1,173 and 1,172 rows, each in five messages, the last ones short.
      for (const rows of [1, 499, 2345]) {
        const input = batch(rows, context);
        const want = await inline.plan(input);
        const got = await threads.plan(input);
        expect(opened(got, context)).toEqual(opened(want, context));
        if (rows === 2345) {
          expect(got.next.filter((v) => v !== null)).toHaveLength(want.planned);
          expect(want.failures.length).toBeGreaterThan(20);
          expect(Math.max(...want.failures.map((f) => f.index))).toBeGreaterThan(2000);
          expect(want.planned).toBeGreaterThan(4000);
        }
      }
    });
  }

  it('cuts a share of large values into messages by size, and merges them at the right rows', async () => {
    const threads = ThreadPlanner.create(2, keys, 'v2');
    planners.push(threads);
    expect(threads).toBeInstanceOf(ThreadPlanner);
    const inline = new InlinePlanner(keys, 'v2');
    // Every third row holds 40 KB values: a message reaches its byte cap after a few rows, so the
    // messages hold different numbers of rows; the failures sit in different messages.
    const rows = 90;
    const values: unknown[] = [];
    for (let i = 0; i < rows; i++)
      for (let c = 0; c < COLUMNS.length; c++) {
        if (i % 29 === 13) values.push('not ciphertext');
        else values.push(aes.encrypt(i % 3 === 0 ? `${plain(i, c)} ${'x'.repeat(40_000)}` : plain(i, c), 'v1', keys.get('v1')!));
      }
    const input: BatchInput = { values, columns: COLUMNS.length, spec: spec(false), columnNames: COLUMNS };
    const want = await inline.plan(input);
    const got = await threads.plan(input);
    expect(opened(got, false)).toEqual(opened(want, false));
    expect(want.failures.map((f) => f.index)).toEqual([13, 13, 42, 42, 71, 71]);
  });

  it('merges per-row keyrings: each row is planned with its own ring, rows of an unknown ring are left alone', async () => {
    const ringKeys = { a: generateKey(), b: generateKey(), target: generateKey() };
    const rings = new Map([
      [
        'a',
        {
          keys: new Map([
            ['v1', ringKeys.a],
            ['v2', ringKeys.target],
          ]),
          target: 'v2',
        },
      ],
      [
        'b',
        {
          keys: new Map([
            ['v1', ringKeys.b],
            ['v3', ringKeys.target],
          ]),
          target: 'v3',
        },
      ],
    ]);
    const threads = ThreadPlanner.create(2, keys, 'v2', rings);
    planners.push(threads);
    const rows = 1503;
    const of = Array.from({ length: rows }, (_, i) => (i % 17 === 4 ? 'unknown' : i % 2 ? 'a' : 'b'));
    const values = of.flatMap((r, i) => COLUMNS.map((_, c) => aes.encrypt(plain(i, c), 'v1', r === 'b' ? ringKeys.b : ringKeys.a)));
    const input: BatchInput = { values, columns: COLUMNS.length, spec: spec(false), columnNames: COLUMNS, rings: of };
    const want = await new InlinePlanner(keys, 'v2', rings).plan(input);
    const got = await threads.plan(input);
    const open = (p: BatchPlan) => ({
      ...p,
      next: p.next.map((v) => (v === null ? null : [aes.versionOf(v as string), aes.decrypt(v as string, () => ringKeys.target)])),
    });
    expect(open(got)).toEqual(open(want));
    expect(got.next.filter((v) => v === null)).toHaveLength(of.filter((r) => r === 'unknown').length * COLUMNS.length);
  });
});
