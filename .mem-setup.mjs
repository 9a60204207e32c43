import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, rmSync, cpSync } from 'node:fs';
import path from 'node:path';
import knexFactory from 'knex';
import { AesGcmV1Codec } from './dist/crypto/codec.js';
import { generateKey } from './dist/crypto/keys.js';
const rows = Number(process.argv[2] ?? 1000000);
const dir = process.argv[3] ?? '/tmp/mem-snap';
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir);
const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'bench.db') }, useNullAsDefault: true });
await knex.schema.createTable('bench', (t) => { t.bigIncrements('id').primary(); t.text('email'); t.text('note'); t.integer('visits').defaultTo(0); });
const codec = new AesGcmV1Codec(); const k1 = generateKey();
const words = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua'.split(' ');
const note = (i) => { let s = `Customer ${i}:`; while (s.length < 200) s += ` ${words[(i * 7 + s.length) % words.length]}`; return s.slice(0, 200); };
for (let i = 1; i <= rows; i += 400) {
  const b = []; for (let j = i; j < Math.min(i + 400, rows + 1); j++) b.push({ email: codec.encrypt(`user.${j}@example.com`, 'v1', k1), note: codec.encrypt(note(j), 'v1', k1) });
  await knex('bench').insert(b);
}
await knex.destroy();
mkdirSync(path.join(dir, '.keyctl'), { mode: 0o700 });
writeFileSync(path.join(dir, '.keyctl', 'keyring.json'), JSON.stringify({ keyring: 'default', primary: 'v1', keys: { v1: k1.toString('base64') } }), { mode: 0o600 });
writeFileSync(path.join(dir, 'keyctl.yaml'), `database:\n  client: sqlite\n  connection: ./bench.db\nkeystore:\n  provider: file\n  path: .keyctl/keyring.json\ntargets:\n  - table: bench\n    columns: [email, note]\npolicy:\n  minPropagationSeconds: 0\n`);
for (const c of ['generate', 'dual-key']) { const r = spawnSync(process.execPath, ['/work/main/bin/keyctl.js', c], { cwd: dir, encoding: 'utf8', env: process.env }); if (r.status) throw new Error(r.stderr); }
