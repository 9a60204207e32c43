#!/usr/bin/env node
// MariaDB/MySQL write-path benchmark: several ways for a client to hand the server one batch of a
// compare-and-set rewrite of two text columns (what `keyctl reencrypt` does per batch), each batch in
// one transaction together with a checkpoint row update. For every method, on a fresh database with
// a table of N rows (email ~60 chars, note ~300 chars), it times the write loop alone and reports:
//   wall s        seconds of the batch loop (BEGIN … method's write … checkpoint … COMMIT per batch)
//   rows/s        N / wall
//   server CPU    utime+stime of the local mariadbd/mysqld process (/proc/<pid>/stat, 100 Hz ticks)
//                 over the loop: everything that server did meanwhile, other clients' work included
//   client CPU    this process (process.cpuUsage()) over the loop
// Methods:
//   union_all            UPDATE … JOIN (SELECT ? … UNION ALL SELECT ? …) v, text protocol (keyctl before the prepared statement; still its path for rows of over 8 KB)
//   prepared_union_all   the same statement through the binary protocol (conn.execute, cached per SQL text): keyctl before 2026-12-07
//   prepared_straight    the same with the derived table driving the join (UPDATE (…) v STRAIGHT_JOIN t): keyctl's per-column statement
//   prepared_in_list     prepared_straight's derived table joined to t read first by the batch's keys as an IN list
//   prepared_row_cas     the same with a row-level compare-and-set (every column null-safe equal to the value read, in
//                        WHERE) and a SET that reads nothing of t, so MariaDB updates t as it reads it; a row changed
//                        in any column is left whole (the check expects that for this method); keyctl's first
//                        statement for a batch with integer keys
//   prepared_row_cas_binary
//                        prepared_row_cas with the values sent as Buffers (binary strings) instead of text
//   prepared_typed       prepared_union_all with every value typed as ASCII VARCHAR(1024), so the derived table may stay in memory
//   values               UPDATE … JOIN (WITH v(…) AS (VALUES (?, …), …) SELECT * FROM v) v, text protocol (MariaDB 10.3+)
//   json_table           UPDATE … JOIN JSON_TABLE(?, '$[*]' COLUMNS(…)) v: the batch as one JSON parameter, binary protocol (MariaDB 10.6+, MySQL 8.0.4+)
//   json_straight        the same with JSON_TABLE driving the join (STRAIGHT_JOIN)
//   load_data            LOAD DATA LOCAL INFILE of the batch into an InnoDB session temporary table, then UPDATE … JOIN it
//   load_data_memory     the same with an ENGINE=MEMORY temporary table (VARBINARY(1024) columns)
//   insert_memory        a prepared multi-row INSERT of the batch into the MEMORY staging table, then UPDATE cas_batch STRAIGHT_JOIN t
//   insert_aria          the same into an Aria (TRANSACTIONAL=0) staging table of LONGBLOB columns: no width limit (MariaDB only)
//   multi_statement      one UPDATE per row (row-level compare-and-set), all of a batch's statements in one text packet
//   bulk_row_cas         the same per-row UPDATE prepared once and run for every row of the batch in one round trip by
//                        MariaDB's bulk execution (COM_STMT_BULK_EXECUTE, MariaDB 10.2.7+, not in MySQL) through the
//                        mariadb connector's batch(); only when named in --only, after `npm i --no-save mariadb@3`
//   pipelined_row_cas    bulk_row_cas with the connector's bulk execution off (bulk: false): one execution of the
//                        prepared statement per row, sent one after the other without waiting; like bulk_row_cas,
//                        only when named in --only
//   two_connections      union_all with each batch split in halves written at once on two connections
// After each method every row must hold its next values, and a 50-row check (values changed by the
// application after they were read must be left alone; binary comparison; NULL = column not rewritten;
// tabs, newlines, backslashes and non-ASCII text) must pass.
// The server is KEYCTL_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test); server CPU is only
// meaningful when that server runs on this machine.
// Usage: node bench/mysql-write.mjs [--rows 100000] [--batch 3000] [--runs 1] [--only name,name] [--json]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';

/** @typedef {import('mysql2/promise').Connection} Connection */
/** @typedef {import('mysql2/promise').ResultSetHeader} ResultSetHeader */
/** @typedef {[string, string]} Pair [email, note] */
/** @typedef {[string | null, string | null]} NextPair [email, note]; null: leave that column alone */
/**
 * One batch in id order: `old[i][c]` is the value read for column c (0 = email, 1 = note) of row
 * `ids[i]`, `next[i][c]` the value to write if the row still holds it; `first` and `last` are its
 * first and last ids (the keyset range).
 * @typedef {{ ids: number[], old: Pair[], next: NextPair[], first: number, last: number }} Batch
 */
/** @typedef {{ conn: Connection, conn2: Connection }} Conns */
/**
 * @typedef {object} Method
 * @property {string} name
 * @property {(c: Conns) => Promise<void>} [prepare] once per run, before the timed loop
 * @property {(c: Conns, b: Batch) => Promise<number>} batch one batch with its checkpoint, committed; returns matched rows
 * @property {boolean} [rowLevel] a row changed in any column is left whole (the check expects that instead of per column)
 * @property {() => Promise<void>} [close] after the method's run, whether it passed or not
 * @property {boolean} [onlyWhenNamed] not in a run without --only (it needs a package keyctl does not depend on)
 */

const { values: argv } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '3000' },
    runs: { type: 'string', default: '1' },
    only: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const ROWS = Number(argv.rows);
const BATCH = Number(argv.batch);
const RUNS = Number(argv.runs);
if (!(ROWS > 0 && BATCH > 0 && RUNS > 0)) throw new Error('--rows, --batch and --runs must be positive numbers');
// MariaDB allows at most 65535 placeholders in a prepared statement: n*5 + 2 for the UNION ALL statement.
if (BATCH * 5 + 2 > 65535) throw new Error(`--batch ${BATCH} needs ${BATCH * 5 + 2} placeholders; the limit is 65535`);

const URL_ = new URL(process.env.KEYCTL_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test');
const CLK_TCK = 100;
/** Progress goes to stderr; stdout holds the table, or JSON lines with --json. @param {string} s */
const log = (s) => process.stderr.write(`${s}\n`);

/** Where and as whom to connect (KEYCTL_TEST_MYSQL_URL), for mysql2 and the mariadb connector alike. @param {string} [database] */
const serverOptions = (database) => ({
  host: URL_.hostname,
  port: Number(URL_.port || 3306),
  user: decodeURIComponent(URL_.username || 'root'),
  password: decodeURIComponent(URL_.password),
  database,
  charset: 'utf8mb4',
});

/** @param {string} [database] */
function connect(database) {
  return mysql.createConnection({
    ...serverOptions(database),
    supportBigNumbers: true,
    // LOAD DATA LOCAL needs the LOCAL_FILES capability; it is among mysql2's default flags, named here to be explicit.
    flags: ['+LOCAL_FILES'],
    // multi_statement sends a batch's per-row UPDATEs in one text packet.
    multipleStatements: true,
  });
}

/**
 * Run a statement and return its result header (UPDATE, INSERT, LOAD DATA …).
 * @param {Connection} conn
 * @param {string | import('mysql2/promise').QueryOptions} sql
 * @param {unknown[]} [values]
 */
async function run(conn, sql, values) {
  const [r] = typeof sql === 'string' ? await conn.query(sql, values) : await conn.query(sql);
  return /** @type {ResultSetHeader} */ (r);
}

/**
 * Rows of a SELECT.
 * @param {Connection} conn
 * @param {string} sql
 * @param {unknown[]} [values]
 */
async function select(conn, sql, values) {
  const [rows] = await conn.query(sql, values);
  return /** @type {Record<string, any>[]} */ (rows);
}

/**
 * The one row of a SELECT.
 * @param {Connection} conn
 * @param {string} sql
 */
async function selectOne(conn, sql) {
  return at(await select(conn, sql), 0);
}

/**
 * `a[i]`, which must exist.
 * @template T
 * @param {T[]} a
 * @param {number} i
 * @returns {T}
 */
function at(a, i) {
  const v = a[i];
  if (v === undefined) throw new RangeError(`no element ${i}`);
  return v;
}

// ---- server CPU ----

/** The pid of the local server process, or null. */
function serverPid() {
  for (const name of ['mariadbd', 'mysqld']) {
    try {
      const out = execFileSync('pgrep', ['-x', name], { encoding: 'utf8' }).trim().split('\n');
      if (out[0]) {
        if (out.length > 1) log(`warning: several ${name} processes (${out.join(', ')}); measuring ${out[0]}`);
        return Number(out[0]);
      }
    } catch {
      // pgrep exits 1 when nothing matches
    }
  }
  return null;
}

/** utime + stime of a process in clock ticks (fields 14 and 15 of /proc/<pid>/stat). @param {number | null} pid */
function cpuTicks(pid) {
  if (pid === null) return Number.NaN;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces: count fields after its closing one.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

// ---- data ----

/** `prefix` + base64 of `bytes` random bytes. @param {string} prefix @param {number} bytes */
const randomValue = (prefix, bytes) => prefix + randomBytes(bytes).toString('base64');
/** @returns {Pair} */
const randomPair = (prefix = 'v1:') => [randomValue(prefix, EMAIL_BYTES), randomValue(prefix, NOTE_BYTES)];
const EMAIL_BYTES = 42; // 'v1:' + 56 base64 characters = 59
const NOTE_BYTES = 222; // 'v1:' + 296 base64 characters = 299

/**
 * Create `t` and `checkpoint` (dropping earlier ones) and insert rows 1..old.length.
 * @param {Connection} conn
 * @param {Pair[]} old [email, note] per row
 */
async function createTables(conn, old) {
  await conn.query('DROP TABLE IF EXISTS t');
  await conn.query('CREATE TABLE t (id BIGINT PRIMARY KEY, email TEXT, note TEXT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4');
  await conn.query('CREATE TABLE IF NOT EXISTS checkpoint (id INT PRIMARY KEY, last_id BIGINT) ENGINE=InnoDB');
  await conn.query('REPLACE INTO checkpoint (id, last_id) VALUES (1, 0)');
  for (let i = 0; i < old.length; i += 1000) {
    const rows = old.slice(i, i + 1000).map(([email, note], j) => [i + j + 1, email, note]);
    await conn.query('INSERT INTO t (id, email, note) VALUES ?', [rows]);
  }
}

/** Split rows 1..old.length into batches of `size`. @param {Pair[]} old @param {NextPair[]} next @param {number} size */
function toBatches(old, next, size) {
  /** @type {Batch[]} */
  const out = [];
  for (let i = 0; i < old.length; i += size) {
    const end = Math.min(old.length, i + size);
    const ids = Array.from({ length: end - i }, (_, j) => i + j + 1);
    out.push({ ids, old: old.slice(i, end), next: next.slice(i, end), first: i + 1, last: end });
  }
  return out;
}

/** Rows [from, to) of a batch. @param {Batch} b @param {number} from @param {number} to @returns {Batch} */
const sliceBatch = (b, from, to) => {
  const ids = b.ids.slice(from, to);
  return { ids, old: b.old.slice(from, to), next: b.next.slice(from, to), first: ids[0] ?? 0, last: ids[ids.length - 1] ?? 0 };
};

// ---- the compare-and-set statement ----

/** Column c of t is rewritten only if it still holds, byte for byte, the value read. @param {string} col @param {number} c */
const cas = (col, c) => `v.n${c} IS NOT NULL AND CAST(t.${col} AS BINARY) = CAST(v.o${c} AS BINARY)`;
/** @param {string} col @param {number} c */
const setCol = (col, c) => `t.${col} = CASE WHEN ${cas(col, c)} THEN v.n${c} ELSE t.${col} END`;
const SET = `${setCol('email', 0)}, ${setCol('note', 1)}`;
const WHERE = `t.id BETWEEN ? AND ? AND ((${cas('email', 0)}) OR (${cas('note', 1)}))`;

/** The batch as a derived table's rows, `pk, o0, n0, o1, n1` each, for n rows. @param {number} n */
const unionRows = (n) => `SELECT ? AS pk, ? AS o0, ? AS n0, ? AS o1, ? AS n1${' UNION ALL SELECT ?, ?, ?, ?, ?'.repeat(n - 1)}`;

/** @type {Map<string, string>} */
const unionSqlCache = new Map();
/** `UPDATE t JOIN v`, or with `v` driving the join: `UPDATE v STRAIGHT_JOIN t`. @param {string} v the batch as a table, aliased v @param {boolean} straight */
const joinUpdate = (v, straight) => `UPDATE ${straight ? `${v} STRAIGHT_JOIN t AS t` : `t AS t JOIN ${v}`} ON t.id = v.pk SET ${SET} WHERE ${WHERE}`;
/**
 * The UNION ALL statement for n rows (the same text for the same n, so prepared statements are reused).
 * @param {number} n @param {boolean} [straight] the derived table drives the join
 */
function unionAllSql(n, straight = false) {
  const key = `${n}${straight ? 's' : ''}`;
  let sql = unionSqlCache.get(key);
  if (!sql) {
    sql = joinUpdate(`(${unionRows(n)}) AS v`, straight);
    unionSqlCache.set(key, sql);
  }
  return sql;
}

/**
 * The batch's rows as placeholder values, `id, o0, n0, o1, n1` each; `readBack`: a column not
 * rewritten gets its old value as the new one.
 * @param {Batch} b @param {boolean} [readBack]
 */
function rowValues(b, readBack = false) {
  /** @type {(string | number | null)[]} */
  const values = [];
  for (let i = 0; i < b.ids.length; i++) {
    const [o, n] = [at(b.old, i), at(b.next, i)];
    values.push(at(b.ids, i), o[0], readBack ? (n[0] ?? o[0]) : n[0], o[1], readBack ? (n[1] ?? o[1]) : n[1]);
  }
  return values;
}

/** Placeholder values for unionAllSql(b.ids.length): the rows, then the key range. @param {Batch} b */
function unionAllValues(b) {
  const values = rowValues(b);
  values.push(b.first, b.last);
  return values;
}

/** Text protocol: mysql2 inlines the escaped values client-side. @param {Connection} conn @param {Batch} b */
async function writeUnionAll(conn, b) {
  return (await run(conn, unionAllSql(b.ids.length), unionAllValues(b))).affectedRows;
}

/** A statement through the binary protocol (prepared once per SQL text and cached by mysql2); its matched rows. @param {Connection} conn @param {string} sql @param {(string | number | Buffer | null)[]} values */
async function execute(conn, sql, values) {
  const [r] = await conn.execute(sql, values);
  return /** @type {ResultSetHeader} */ (r).affectedRows;
}

/** Binary protocol: prepared once per SQL text (i.e. per batch size). @param {Connection} conn @param {Batch} b */
async function writePreparedUnionAll(conn, b) {
  return execute(conn, unionAllSql(b.ids.length), unionAllValues(b));
}

/** The same with the derived table driving the join: each of its rows looks its row of t up by key. @param {Connection} conn @param {Batch} b */
async function writePreparedStraight(conn, b) {
  return execute(conn, unionAllSql(b.ids.length, true), unionAllValues(b));
}

/** @type {Map<string, string>} */
const inListSqlCache = new Map();
/**
 * t first, read by the batch's keys as an IN list (one equality range per key), the derived table
 * joined to it through an index the server builds on it. Per column (`rowLevel` false), the SET
 * reads t, so MariaDB still copies the rows to update into a temporary table. `rowLevel`: a row is
 * rewritten only where every column still holds the value read (null-safe), and the SET reads
 * nothing of t (a column not rewritten gets the value read back), so t is updated as it is read;
 * a row changed in any column is left whole for the next pass.
 * @param {number} n @param {boolean} rowLevel
 */
function inListSql(n, rowLevel) {
  const key = `${n}${rowLevel ? 'r' : ''}`;
  let sql = inListSqlCache.get(key);
  if (!sql) {
    const ids = `t.id IN (${Array.from({ length: n }, () => '?').join(', ')})`;
    /** @param {string} col @param {number} c */
    const same = (col, c) => `CAST(t.${col} AS BINARY) <=> CAST(v.o${c} AS BINARY)`;
    const [set, where] = rowLevel
      ? ['t.email = v.n0, t.note = v.n1', `${ids} AND ${same('email', 0)} AND ${same('note', 1)}`]
      : [SET, `${ids} AND ((${cas('email', 0)}) OR (${cas('note', 1)}))`];
    sql = `UPDATE t AS t STRAIGHT_JOIN (${unionRows(n)}) AS v ON t.id = v.pk SET ${set} WHERE ${where}`;
    inListSqlCache.set(key, sql);
  }
  return sql;
}

/**
 * The IN-list statement through the binary protocol: the rows, then the keys. `binary`: the values
 * go as Buffers (binary strings: no conversion or character count of the parameters on the server;
 * the column store still checks them).
 * @param {boolean} rowLevel @param {boolean} [binary] @returns {(conn: Connection, b: Batch) => Promise<number>}
 */
const writeInList =
  (rowLevel, binary = false) =>
  async (conn, b) => {
    const rows = rowValues(b, rowLevel);
    /** @type {(string | number | Buffer | null)[]} */
    const values = binary ? rows.map((v) => (typeof v === 'string' ? Buffer.from(v) : v)) : rows;
    for (let i = 0; i < b.ids.length; i++) values.push(at(b.ids, i));
    return execute(conn, inListSql(b.ids.length, rowLevel), values);
  };

/** @type {Map<number, string>} */
const valuesSqlCache = new Map();
/**
 * The statement with the batch as a table value constructor, `VALUES (…), (…)` named by a CTE's
 * column list (MariaDB 10.3+; MySQL 8.0.19+ spells the rows `ROW(…)`), for n rows.
 * @param {number} n
 */
function valuesSql(n) {
  let sql = valuesSqlCache.get(n);
  if (!sql) {
    const rows = `WITH v(pk, o0, n0, o1, n1) AS (VALUES (?, ?, ?, ?, ?)${', (?, ?, ?, ?, ?)'.repeat(n - 1)}) SELECT * FROM v`;
    sql = joinUpdate(`(${rows}) AS v`, false);
    valuesSqlCache.set(n, sql);
  }
  return sql;
}

/**
 * Text protocol, the batch as VALUES rows. (As a prepared statement MariaDB 10.11 types each VALUES
 * column from the first row's parameter and fails the next rows: "Data too long for column 'pk' at row 2".)
 * @param {Connection} conn @param {Batch} b
 */
async function writeValues(conn, b) {
  return (await run(conn, valuesSql(b.ids.length), unionAllValues(b))).affectedRows;
}

/**
 * The batch as one JSON document, `[[id, o0, n0, o1, n1], …]`, read by JSON_TABLE (MariaDB 10.6+,
 * MySQL 8.0.4+): one parameter, so one statement text for every batch size. JSON null reads as NULL.
 */
const JSON_TABLE = `JSON_TABLE(?, '$[*]' COLUMNS(pk BIGINT PATH '$[0]', o0 VARCHAR(2048) PATH '$[1]', n0 VARCHAR(2048) PATH '$[2]', o1 VARCHAR(2048) PATH '$[3]', n1 VARCHAR(2048) PATH '$[4]')) AS v`;
/** @param {Batch} b */
function jsonTableValues(b) {
  const rows = [];
  for (let i = 0; i < b.ids.length; i++) {
    const [o, n] = [at(b.old, i), at(b.next, i)];
    rows.push([at(b.ids, i), o[0], n[0], o[1], n[1]]);
  }
  return [JSON.stringify(rows), b.first, b.last];
}
/**
 * Binary protocol, the JSON document one string parameter; `straight`: JSON_TABLE drives the join.
 * @param {boolean} straight @returns {(conn: Connection, b: Batch) => Promise<number>}
 */
const writeJsonTable = (straight) => {
  const sql = joinUpdate(JSON_TABLE, straight);
  return (conn, b) => execute(conn, sql, jsonTableValues(b));
};

/** @type {Map<number, string>} */
const typedSqlCache = new Map();
const TYPED_WIDTH = 1024;
/**
 * The UNION ALL statement with each value typed as VARCHAR(TYPED_WIDTH) in ASCII: the derived table
 * has no TEXT/BLOB column, so the server may keep it in a MEMORY temporary table (values must be
 * ASCII and at most TYPED_WIDTH long, which base64 ciphertexts are).
 * @param {number} n
 */
function typedSql(n) {
  let sql = typedSqlCache.get(n);
  if (!sql) {
    const v = `CAST(? AS CHAR(${TYPED_WIDTH}) CHARACTER SET ascii)`;
    const rows = `SELECT CAST(? AS UNSIGNED) AS pk, ${v} AS o0, ${v} AS n0, ${v} AS o1, ${v} AS n1${` UNION ALL SELECT ?, ?, ?, ?, ?`.repeat(n - 1)}`;
    sql = joinUpdate(`(${rows}) AS v`, false);
    typedSqlCache.set(n, sql);
  }
  return sql;
}

/** Every value of the batch is ASCII and at most TYPED_WIDTH long. @param {Batch} b */
const fitsTyped = (b) => [...b.old, ...b.next].every((pair) => pair.every((v) => v === null || (v.length <= TYPED_WIDTH && Buffer.byteLength(v) === v.length)));

/**
 * Binary protocol, values typed as ASCII VARCHAR (typedSql); a batch that does not fit goes as
 * prepared_union_all does.
 * @param {Connection} conn @param {Batch} b
 */
async function writePreparedTyped(conn, b) {
  if (!fitsTyped(b)) return writePreparedUnionAll(conn, b);
  return execute(conn, typedSql(b.ids.length), unionAllValues(b));
}

/** Room for the typed derived table in memory: the session's temporary tables may use 64 MiB. @param {Connection} conn */
async function allowMemoryTemp(conn) {
  await conn.query('SET SESSION tmp_table_size = ?, max_heap_table_size = ?', [64 << 20, 64 << 20]);
}

// ---- LOAD DATA LOCAL INFILE into a session temporary table ----

const LOAD_SQL = [
  "LOAD DATA LOCAL INFILE 'batch' INTO TABLE cas_batch CHARACTER SET binary",
  "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (pk, o0, n0, o1, n1)",
].join(' ');
const JOIN_SQL = joinUpdate('cas_batch AS v', false);
/** @type {Record<string, string>} */
const TSV_ESCAPES = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0' };
/** A field of the LOAD DATA file: \N for NULL, else the value with \, tab, LF, CR and NUL escaped. @param {string | null} v */
const tsvField = (v) => (v === null ? '\\N' : v.replace(/[\\\t\n\r\0]/g, (ch) => TSV_ESCAPES[ch] ?? ch));
const CHUNK = 1 << 20;

/** The batch as a LOAD DATA file (UTF-8 bytes, loaded as binary), in chunks of at most 1 MiB. @param {Batch} b */
function tsvChunks(b) {
  const lines = [];
  for (let i = 0; i < b.ids.length; i++) {
    const [o, n] = [at(b.old, i), at(b.next, i)];
    lines.push(`${at(b.ids, i)}\t${tsvField(o[0])}\t${tsvField(n[0])}\t${tsvField(o[1])}\t${tsvField(n[1])}\n`);
  }
  const buf = Buffer.from(lines.join(''), 'utf8');
  const chunks = [];
  // mysql2 sends each chunk of the stream as one protocol packet.
  for (let i = 0; i < buf.length; i += CHUNK) chunks.push(buf.subarray(i, i + CHUNK));
  return chunks;
}

/**
 * A longer value would be truncated by a VARBINARY(maxBytes) staging column, and a truncated next
 * value would be written: refuse the batch.
 * @param {Batch} b @param {number | null} maxBytes (null: unlimited)
 */
function refuseWider(b, maxBytes) {
  if (maxBytes === null) return;
  for (const row of [...b.old, ...b.next]) {
    for (const v of row) {
      const bytes = v === null ? 0 : Buffer.byteLength(v, 'utf8');
      if (bytes > maxBytes) throw new Error(`a value of ${bytes} bytes exceeds ${maxBytes}`);
    }
  }
}

/**
 * Stage the batch with LOAD DATA LOCAL, then one UPDATE … JOIN. mysql2 answers the server's request for
 * the file 'batch' with the stream returned by the query's `infileStreamFactory` option.
 * @param {number | null} maxBytes widest value the staging table can hold (null: unlimited)
 * @returns {(conn: Connection, b: Batch) => Promise<number>}
 */
const writeLoadData = (maxBytes) => async (conn, b) => {
  refuseWider(b, maxBytes);
  // DELETE, not TRUNCATE: TRUNCATE may commit the open transaction implicitly.
  await conn.query('DELETE FROM cas_batch');
  const chunks = tsvChunks(b);
  const loaded = await run(conn, { sql: LOAD_SQL, infileStreamFactory: () => Readable.from(chunks) });
  if (loaded.affectedRows !== b.ids.length || loaded.warningStatus !== 0) {
    throw new Error(`LOAD DATA: ${loaded.affectedRows} of ${b.ids.length} rows, ${loaded.warningStatus} warnings (${loaded.info})`);
  }
  return (await run(conn, JOIN_SQL, [b.first, b.last])).affectedRows;
};

/** @type {Map<number, string>} */
const insertSqlCache = new Map();
/** A multi-row INSERT of n rows into the staging table (prepared once per n). @param {number} n */
function insertSql(n) {
  let sql = insertSqlCache.get(n);
  if (!sql) {
    sql = `INSERT INTO cas_batch (pk, o0, n0, o1, n1) VALUES (?, ?, ?, ?, ?)${', (?, ?, ?, ?, ?)'.repeat(n - 1)}`;
    insertSqlCache.set(n, sql);
  }
  return sql;
}
const STAGE_JOIN_SQL = joinUpdate('cas_batch AS v', true);
/**
 * Stage the batch with one prepared multi-row INSERT (binary protocol), then the UPDATE driven by the
 * staging table (STRAIGHT_JOIN: each staged row looks its row of t up by key).
 * @param {number | null} maxBytes widest value the staging table can hold (null: unlimited)
 * @returns {(conn: Connection, b: Batch) => Promise<number>}
 */
const writeInsertStage = (maxBytes) => async (conn, b) => {
  refuseWider(b, maxBytes);
  await conn.query('DELETE FROM cas_batch');
  await execute(conn, insertSql(b.ids.length), rowValues(b));
  return (await run(conn, STAGE_JOIN_SQL, [b.first, b.last])).affectedRows;
};

/** The staging table's DDL. @param {string} type of the value columns @param {string} engine */
function stageSql(type, engine) {
  const cols = ['o0', 'n0', 'o1', 'n1'].map((c) => `${c} ${type}`).join(', ');
  return `CREATE TEMPORARY TABLE IF NOT EXISTS cas_batch (pk BIGINT PRIMARY KEY, ${cols}) ENGINE=${engine}`;
}

/** @param {Connection} conn */
async function createAriaStage(conn) {
  await conn.query(`${stageSql('LONGBLOB', 'Aria')} TRANSACTIONAL=0`);
}
/** @param {Connection} conn */
async function createInnodbStage(conn) {
  await conn.query(stageSql('LONGBLOB', 'InnoDB'));
}

// MEMORY tables cannot hold BLOB/TEXT, so the values are VARBINARY(1024): at most 1024 bytes each
// (checked before loading). MEMORY rows are fixed-width (~4 KiB here), so the session's
// max_heap_table_size is raised to fit a batch (the default 16 MiB holds ~4,000 rows).
const MEMORY_WIDTH = 1024;
/** @param {Connection} conn */
async function createMemoryStage(conn) {
  await conn.query('SET SESSION max_heap_table_size = ?', [Math.max(64 << 20, BATCH * 5 * (MEMORY_WIDTH + 8))]);
  await conn.query(stageSql(`VARBINARY(${MEMORY_WIDTH})`, 'MEMORY'));
}

// ---- transactions and methods ----

/** One row's compare-and-set: rewritten only where every column still holds the value read (null-safe). */
const ROW_UPDATE =
  'UPDATE t SET email = ?, note = ? WHERE id = ? AND CAST(email AS BINARY) <=> CAST(? AS BINARY) AND CAST(note AS BINARY) <=> CAST(? AS BINARY)';
/**
 * Text protocol, one packet: a statement per row, separated by `;` (the connection allows multiple
 * statements). A column not rewritten gets its value read back, so the compare-and-set is row-level.
 * @param {Connection} conn @param {Batch} b
 */
async function writeMultiStatement(conn, b) {
  const [results] = await conn.query(Array.from({ length: b.ids.length }, () => ROW_UPDATE).join(';\n'), rowUpdateParams(b).flat());
  return sumAffected(results);
}

/**
 * ROW_UPDATE's parameters for each row of the batch: the new values (a column not rewritten gets
 * its value read back), the key, the values read.
 * @param {Batch} b @returns {(string | number | null)[][]}
 */
function rowUpdateParams(b) {
  return b.ids.map((id, i) => {
    const [o, n] = [at(b.old, i), at(b.next, i)];
    return [n[0] ?? o[0], n[1] ?? o[1], id, o[0], o[1]];
  });
}

/** The rows matched over one result header or a list of them (one per statement). @param {unknown} results */
const sumAffected = (results) =>
  (Array.isArray(results) ? results : [results]).reduce((sum, r) => sum + Number(/** @type {ResultSetHeader} */ (r).affectedRows), 0);

/**
 * ROW_UPDATE prepared once, then executed for each row of the batch in one round trip by MariaDB's
 * bulk execution (array binding), with the checkpoint in the same transaction, all on a connection
 * of the mariadb connector (mysql2 does not speak COM_STMT_BULK_EXECUTE). Row-level, like
 * multi_statement. The server reports the rows updated over the whole batch. With `bulk` false the
 * connector sends one execution per row instead, without waiting for each answer.
 * @param {string} name @param {boolean} bulk
 * @returns {Method}
 */
function rowCasByConnector(name, bulk) {
  /** @type {any} a connection of the mariadb connector */
  let mconn = null;
  return {
    name,
    rowLevel: true,
    onlyWhenNamed: true,
    async prepare({ conn }) {
      /** @type {any} */
      let mariadb;
      try {
        // An optional package, installed by hand for this method only (a name in a variable: not resolved by the typecheck).
        const connector = 'mariadb';
        const mod = await import(connector);
        mariadb = mod.default ?? mod;
      } catch (e) {
        throw new Error(`${name} needs the mariadb connector: npm i --no-save mariadb@3`, { cause: e });
      }
      const { database } = /** @type {{ config: { database: string } }} */ (/** @type {unknown} */ (conn)).config;
      // foundRows (the connector's default, as mysql2's): affectedRows counts the rows matched.
      mconn = await mariadb.createConnection({ ...serverOptions(database), bulk, foundRows: true });
    },
    // The connector's query() takes the same SQL and values as mysql2's: the same transaction and checkpoint.
    batch: (_c, b) =>
      inTransaction(mconn, async () => {
        // One result for the batch, or one per row where the connector ran the statement row by row.
        const matched = sumAffected(await mconn.batch(ROW_UPDATE, rowUpdateParams(b)));
        await checkpoint(mconn, b.last);
        return matched;
      }),
    async close() {
      await mconn?.end();
      mconn = null;
    },
  };
}

/** @param {Connection} conn @param {number} lastId */
const checkpoint = (conn, lastId) => conn.query('UPDATE checkpoint SET last_id = ? WHERE id = 1', [lastId]);

/** @template T @param {Connection} conn @param {() => Promise<T>} fn */
async function inTransaction(conn, fn) {
  await conn.query('BEGIN');
  try {
    const r = await fn();
    await conn.query('COMMIT');
    return r;
  } catch (e) {
    await conn.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

/**
 * A method whose write and checkpoint share one transaction on one connection.
 * @param {string} name
 * @param {(conn: Connection, b: Batch) => Promise<number>} write
 * @param {(conn: Connection) => Promise<void>} [prepare]
 * @returns {Method}
 */
const singleTransaction = (name, write, prepare) => ({
  name,
  prepare: prepare && ((c) => prepare(c.conn)),
  batch: (c, b) =>
    inTransaction(c.conn, async () => {
      const n = await write(c.conn, b);
      await checkpoint(c.conn, b.last);
      return n;
    }),
});

/**
 * union_all with the batch split in halves written at once, each half in its own transaction on its
 * own connection. This gives up the single-transaction guarantee between the halves (one may commit
 * while the other fails or the client dies): that trade is what this method measures. The checkpoint
 * goes into the first connection's transaction after both UPDATEs succeeded, and the second
 * connection commits first, so a committed checkpoint never covers uncommitted rows.
 * Both sessions run in READ COMMITTED: under REPEATABLE READ, when the optimizer scans t by the
 * `t.id BETWEEN` range, InnoDB also locks the first row past the range (next-key lock), i.e. the
 * first row of the other half, whose transaction waits for this one while the client waits for both
 * statements before committing either: a lock wait that only innodb_lock_wait_timeout ends. The
 * compare-and-set is unchanged by the isolation level (UPDATE reads the latest committed row and locks it).
 * @type {Method}
 */
const twoConnections = {
  name: 'two_connections',
  async prepare({ conn, conn2 }) {
    for (const c of [conn, conn2]) {
      await c.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
      await c.query('SET SESSION innodb_lock_wait_timeout = 10'); // fail fast rather than after 50 s
    }
  },
  async batch({ conn, conn2 }, b) {
    const half = Math.ceil(b.ids.length / 2);
    const first = sliceBatch(b, 0, half);
    const second = sliceBatch(b, half, b.ids.length);
    await Promise.all([conn.query('BEGIN'), conn2.query('BEGIN')]);
    try {
      const [n1, n2] = await Promise.all([writeUnionAll(conn, first), second.ids.length ? writeUnionAll(conn2, second) : 0]);
      await checkpoint(conn, b.last);
      await conn2.query('COMMIT');
      await conn.query('COMMIT');
      return n1 + n2;
    } catch (e) {
      await Promise.allSettled([conn.query('ROLLBACK'), conn2.query('ROLLBACK')]);
      throw e;
    }
  },
};

/** @type {Method[]} */
const METHODS = [
  singleTransaction('union_all', writeUnionAll),
  singleTransaction('prepared_union_all', writePreparedUnionAll),
  singleTransaction('values', writeValues),
  singleTransaction('json_table', writeJsonTable(false)),
  singleTransaction('json_straight', writeJsonTable(true)),
  singleTransaction('prepared_straight', writePreparedStraight),
  singleTransaction('prepared_in_list', writeInList(false)),
  { ...singleTransaction('prepared_row_cas', writeInList(true)), rowLevel: true },
  { ...singleTransaction('prepared_row_cas_binary', writeInList(true, true)), rowLevel: true },
  { ...singleTransaction('multi_statement', writeMultiStatement), rowLevel: true },
  rowCasByConnector('bulk_row_cas', true),
  rowCasByConnector('pipelined_row_cas', false),
  singleTransaction('prepared_typed', writePreparedTyped, allowMemoryTemp),
  singleTransaction('load_data', writeLoadData(null), createInnodbStage),
  singleTransaction('load_data_memory', writeLoadData(MEMORY_WIDTH), createMemoryStage),
  singleTransaction('insert_memory', writeInsertStage(MEMORY_WIDTH), createMemoryStage),
  singleTransaction('insert_aria', writeInsertStage(null), createAriaStage),
  twoConnections,
];

// ---- checks ----

/** The [email, note] of every row of t, by id. @param {Connection} conn */
async function readAll(conn) {
  const rows = await select(conn, 'SELECT id, email, note FROM t ORDER BY id');
  return new Map(rows.map((r) => [Number(r.id), [r.email, r.note]]));
}

/** A value for a problem report, shortened. @param {unknown} v */
const show = (v) => {
  const s = JSON.stringify(v) ?? 'undefined';
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
};

/**
 * 50 rows read, then 10 of them changed by "the application" before the method writes (in batches of
 * 20): those columns must keep the application's value. Returns a list of problems (empty: pass).
 * @param {Method} method
 * @param {Conns} conns
 */
async function correctnessCheck(method, conns) {
  const { conn } = conns;
  const n = 50;
  const old = Array.from({ length: n }, () => randomPair());
  /** @type {NextPair[]} */
  const next = Array.from({ length: n }, () => randomPair('v2:'));
  // Separators, the escape character, NUL and non-ASCII text in old and next values.
  old[0] = ['v1:tab\there', 'v1:line\nbreak\\back\rslash'];
  next[0] = ['v2:é ✓ 🔑', 'v2:a\\b\tc\nd\re\0f'];
  old[1] = ['v1:ünïcödé', 'v1:\\N'];
  next[1] = ['v2:\\N', 'v2:plain'];
  at(next, 2)[0] = null; // email not rewritten
  at(next, 3)[1] = null; // note not rewritten
  await createTables(conn, old);
  /** @type {Pair[]} the values the application leaves in rows 11..20 (index 10..19) */
  const app = old.map(([email, note]) => [email, note]);
  for (const i of [10, 11, 12]) at(app, i)[0] = at(old, i)[0].toUpperCase(); // equal under a case-insensitive collation
  for (const i of [13, 14, 15]) at(app, i)[1] = `${at(old, i)[1]}  `; // equal under a PAD SPACE collation
  for (const i of [16, 17, 18, 19]) app[i] = randomPair('app:');
  for (let i = 10; i < 20; i++) await conn.query('UPDATE t SET email = ?, note = ? WHERE id = ?', [...at(app, i), i + 1]);

  let matched = 0;
  for (const b of toBatches(old, next, 20)) matched += await method.batch(conns, b);

  /** @type {string[]} */
  const problems = [];
  const got = await readAll(conn);
  for (let i = 0; i < n; i++) {
    const changed = i >= 10 && i < 20;
    const [a, o, x] = [at(app, i), at(old, i), at(next, i)];
    // Per column, a changed column keeps the application's value; row-level, a changed row keeps all of it.
    const want = [0, 1].map((c) => (changed && (method.rowLevel || a[c] !== o[c]) ? a[c] : (x[c] ?? o[c])));
    const have = got.get(i + 1);
    for (const c of [0, 1]) {
      if (have?.[c] !== want[c]) problems.push(`row ${i + 1} ${c ? 'note' : 'email'}: ${show(have?.[c])} != ${show(want[c])}`);
    }
  }
  // Rows 17..20 changed in both columns match nothing; row-level, no changed row does.
  const expectedMatched = method.rowLevel ? n - 10 : n - 4;
  if (matched !== expectedMatched) problems.push(`matched ${matched} rows, expected ${expectedMatched}`);
  const cp = await selectOne(conn, 'SELECT last_id FROM checkpoint WHERE id = 1');
  if (Number(cp.last_id) !== n) problems.push(`checkpoint ${cp.last_id}, expected ${n}`);
  return problems;
}

// ---- one method, one run ----

/**
 * @typedef {object} Result
 * @property {string} method
 * @property {number} run
 * @property {number} rows
 * @property {number} batch
 * @property {number} wall_s
 * @property {number} rows_per_s
 * @property {number} server_cpu_s
 * @property {number} server_cpu_us_per_row
 * @property {number} client_cpu_s
 * @property {boolean} pass
 * @property {string[]} problems
 */

/** @param {Connection} admin @param {Method} method @param {number} runNo @param {number | null} pid @returns {Promise<Result>} */
async function measure(admin, method, runNo, pid) {
  const db = `keyctl_mw_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE \`${db}\``);
  /** @type {Connection[]} */
  const open = [];
  /** @type {Result} */
  const result = {
    method: method.name,
    run: runNo,
    rows: ROWS,
    batch: BATCH,
    wall_s: Number.NaN,
    rows_per_s: Number.NaN,
    server_cpu_s: Number.NaN,
    server_cpu_us_per_row: Number.NaN,
    client_cpu_s: Number.NaN,
    pass: false,
    problems: [],
  };
  try {
    const conn = await connect(db);
    open.push(conn);
    const conn2 = await connect(db);
    open.push(conn2);
    const conns = { conn, conn2 };

    const old = Array.from({ length: ROWS }, () => randomPair());
    await createTables(conn, old);
    /** @type {NextPair[]} */
    const next = old.map(([email, note]) => [
      randomValue('v2:', (email.length - 3) * 0.75), // same length as the old value
      randomValue('v2:', (note.length - 3) * 0.75),
    ]);
    const batches = toBatches(old, next, BATCH);
    await method.prepare?.(conns);

    const cpu0 = process.cpuUsage();
    const ticks0 = cpuTicks(pid);
    const t0 = performance.now();
    let matched = 0;
    for (const b of batches) matched += await method.batch(conns, b);
    const wall = (performance.now() - t0) / 1000;
    const ticks = cpuTicks(pid) - ticks0;
    const cpu = process.cpuUsage(cpu0);

    result.wall_s = wall;
    result.rows_per_s = ROWS / wall;
    result.server_cpu_s = ticks / CLK_TCK;
    result.server_cpu_us_per_row = ((ticks / CLK_TCK) * 1e6) / ROWS;
    result.client_cpu_s = (cpu.user + cpu.system) / 1e6;

    if (matched !== ROWS) result.problems.push(`matched ${matched} rows, expected ${ROWS}`);
    const got = await readAll(conn);
    let rewritten = 0;
    for (let i = 0; i < ROWS; i++) {
      const [x, have] = [at(next, i), got.get(i + 1)];
      if (have?.[0] === x[0] && have?.[1] === x[1]) rewritten++;
    }
    if (rewritten !== ROWS) result.problems.push(`${rewritten} of ${ROWS} rows hold their next values`);
    const cp = await selectOne(conn, 'SELECT last_id FROM checkpoint WHERE id = 1');
    if (Number(cp.last_id) !== ROWS) result.problems.push(`checkpoint ${cp.last_id}, expected ${ROWS}`);

    result.problems.push(...(await correctnessCheck(method, conns)));
  } catch (e) {
    result.problems.push(`error: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await method.close?.().catch(() => {});
    await Promise.allSettled(open.map((c) => c.end()));
    await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
  }
  result.pass = result.problems.length === 0;
  return result;
}

// ---- main ----

/** @param {number[]} xs */
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? at(s, mid) : (at(s, mid - 1) + at(s, mid)) / 2;
};
/** @param {number} x @param {number} digits */
const fmt = (x, digits) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
/** @param {number} x */
const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');

const names = argv.only ? argv.only.split(',').map((s) => s.trim()) : METHODS.filter((m) => !m.onlyWhenNamed).map((m) => m.name);
const unknown = names.filter((n) => !METHODS.some((m) => m.name === n));
if (unknown.length) throw new Error(`unknown method(s) ${unknown.join(', ')}; known: ${METHODS.map((m) => m.name).join(', ')}`);
const methods = METHODS.filter((m) => names.includes(m.name));

const admin = await connect();
try {
  const variables = ['version', 'local_infile', 'innodb_flush_log_at_trx_commit', 'max_allowed_packet', 'log_bin'];
  const vars = await selectOne(admin, `SELECT ${variables.map((n) => `@@${n} AS ${n}`).join(', ')}`);
  /** @type {string[]} */
  const notes = [];
  if (Number(vars.local_infile) !== 1 && methods.some((m) => m.name.startsWith('load_data'))) {
    try {
      await admin.query('SET GLOBAL local_infile = 1');
      notes.push('local_infile was OFF: set ON with SET GLOBAL local_infile = 1');
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      notes.push(`local_infile is OFF and SET GLOBAL local_infile = 1 failed (${why}): load_data methods will fail`);
    }
  }
  const pid = serverPid();
  if (pid === null) notes.push('no local mariadbd/mysqld process: server CPU not measured');
  const server = { ...vars, server_pid: pid, notes };
  if (argv.json) console.log(JSON.stringify({ kind: 'server', ...server }));
  else {
    const settings = variables.slice(1).map((n) => `${n}=${vars[n]}`);
    console.log(`server ${vars.version}: ${settings.join(' ')} pid=${pid ?? 'n/a'}`);
    for (const n of notes) console.log(`note: ${n}`);
    console.log(`${ROWS.toLocaleString('en-US')} rows, batches of ${BATCH}, ${RUNS} run(s)\n`);
  }

  /** @type {Result[]} */
  const results = [];
  for (let r = 1; r <= RUNS; r++) {
    for (const m of methods) {
      log(`${m.name} run ${r}…`);
      const res = await measure(admin, m, r, pid);
      results.push(res);
      if (argv.json) console.log(JSON.stringify({ kind: 'result', ...res }));
      const cpu = `server CPU ${fmt(res.server_cpu_s, 2)} s, client CPU ${fmt(res.client_cpu_s, 2)} s`;
      log(`  ${fmt(res.wall_s, 2)} s, ${fmtInt(res.rows_per_s)} rows/s, ${cpu}: ${res.pass ? 'PASS' : 'FAIL'}`);
      for (const p of res.problems.slice(0, 10)) log(`    ${p}`);
    }
  }

  if (!argv.json) {
    if (RUNS > 1) console.log(`medians of ${RUNS} runs\n`);
    console.log('| method | wall s | rows/s | server CPU s | server CPU µs/row | client CPU s | check |');
    console.log('|---|---:|---:|---:|---:|---:|---|');
    for (const m of methods) {
      const rs = results.filter((x) => x.method === m.name);
      /** @param {(x: Result) => number} f */
      const med = (f) => median(rs.map(f));
      const cells = [
        m.name,
        fmt(
          med((x) => x.wall_s),
          2,
        ),
        fmtInt(med((x) => x.rows_per_s)),
        fmt(
          med((x) => x.server_cpu_s),
          2,
        ),
        fmt(
          med((x) => x.server_cpu_us_per_row),
          1,
        ),
        fmt(
          med((x) => x.client_cpu_s),
          2,
        ),
        rs.every((x) => x.pass) ? 'PASS' : 'FAIL',
      ];
      console.log(`| ${cells.join(' | ')} |`);
    }
  }
  if (results.some((x) => !x.pass)) process.exitCode = 1;
} finally {
  await admin.end();
}
