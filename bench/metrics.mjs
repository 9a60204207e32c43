#!/usr/bin/env node
// `keyctl metrics` on a large table (docs/monitoring.md "Cost"), three measurements:
//   collect   one `keyctl metrics` run (counts every value: one grouped scan of the table), and
//             `keyctl metrics --no-counts` (no table scan), as whole commands.
//   scrape    `keyctl metrics --listen`: latency of scrapes answered from the cache (sequential,
//             then a burst of concurrent ones), after the listener's first collection.
//   storm     a burst of scrapes on an expired cache: answered from the old text at once while one
//             collection runs behind them; when the new text is served.
// Usage: npm run bench:metrics -- [--db sqlite|pg|mysql] [--rows 1000000] [--scrapes 500] [--burst 100]
import { spawn } from 'node:child_process';
import { benchProject, bin, runKeyctl as keyctl } from './lib.mjs';
import { programEnv } from './program.mjs';

const args = process.argv.slice(2);
/** @param {string} name @param {string} def */
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] ?? def) : def;
};
const dbKind = opt('db', 'sqlite');
const rows = Number(opt('rows', '1000000'));
const scrapes = Number(opt('scrapes', '500'));
const burst = Number(opt('burst', '100'));

/** @param {number[]} xs @param {number} q */
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? Number.NaN;
/** @param {number} ms */
const ms = (ms) => `${ms.toFixed(2)} ms`;

/** Start the listener; resolves with its base URL once its first collection is cached. @param {string} dir @param {string[]} extra */
function listen(dir, extra) {
  const child = spawn(bin, ['metrics', '--listen', '127.0.0.1:0', ...extra], {
    cwd: dir,
    env: { ...programEnv, KEYCTL_LOG_TIMESTAMPS: '0' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const t0 = performance.now();
  const ready = new Promise((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
      const m = /serving (http:\/\/\S+)\/metrics/.exec(stderr);
      if (m) resolve({ base: m[1], startSecs: (performance.now() - t0) / 1000 });
    });
    child.on('close', (code) => reject(new Error(`listener exited ${code}: ${stderr}`)));
    child.on('error', (err) => reject(new Error(`the listener did not start: ${err.message}`)));
  });
  const stop = () =>
    new Promise((resolve) => {
      child.on('close', resolve);
      child.kill('SIGTERM');
    });
  return { ready, stop, stderr: () => stderr };
}

/** One scrape: milliseconds and the collection timestamp it carries. @param {string} base */
async function scrape(base) {
  const t0 = performance.now();
  const res = await fetch(`${base}/metrics`);
  const text = await res.text();
  const took = performance.now() - t0;
  if (res.status !== 200) throw new Error(`scrape: HTTP ${res.status}: ${text}`);
  const stamp = /^keyctl_metrics_timestamp_seconds\{[^}]*\} (\S+)$/m.exec(text)?.[1];
  return { took, stamp, bytes: text.length };
}

const p = await benchProject(dbKind, 'keyctl-bench-metrics-');
try {
  console.log(`# ${dbKind}: ${rows.toLocaleString('en-US')} rows (demo table, 3 encrypted columns)`);
  const setup = keyctl(p.dir, 'init', '--demo', '--rows', String(rows), '--database', p.url);
  console.log(`setup (init --demo): ${setup.toFixed(1)} s`);

  const full = keyctl(p.dir, 'metrics');
  const noCounts = keyctl(p.dir, 'metrics', '--no-counts');
  console.log(`collect: keyctl metrics ${full.toFixed(2)} s; keyctl metrics --no-counts ${noCounts.toFixed(2)} s (whole commands)`);

  const l = listen(p.dir, ['--cache-seconds', '3600']);
  const { base, startSecs } = await l.ready;
  console.log(`listener: first collection and listening after ${startSecs.toFixed(2)} s`);
  const seq = [];
  const stamps = new Set();
  let bytes = 0;
  for (let i = 0; i < scrapes; i++) {
    const s = await scrape(base);
    seq.push(s.took);
    stamps.add(s.stamp);
    bytes = s.bytes;
  }
  console.log(
    `scrape (cached, ${scrapes} sequential, ${bytes} bytes): p50 ${ms(quantile(seq, 0.5))}, p99 ${ms(quantile(seq, 0.99))}, max ${ms(Math.max(...seq))}; collections seen: ${stamps.size}`,
  );
  const t0 = performance.now();
  const par = await Promise.all(Array.from({ length: burst }, () => scrape(base)));
  const wall = performance.now() - t0;
  console.log(
    `scrape (cached, ${burst} concurrent): all answered in ${ms(wall)}, slowest ${ms(Math.max(...par.map((s) => s.took)))}; collections seen: ${new Set(par.map((s) => s.stamp)).size}`,
  );
  await l.stop();

  // An expired cache under a storm: the old text answers at once, one collection runs behind it.
  const l2 = listen(p.dir, ['--cache-seconds', '1']);
  const r2 = await l2.ready;
  const before = (await scrape(r2.base)).stamp;
  await new Promise((r) => setTimeout(r, 1200));
  const t1 = performance.now();
  const storm = await Promise.all(Array.from({ length: burst }, () => scrape(r2.base)));
  const stormMs = performance.now() - t1;
  let next = before;
  while (next === before) {
    await new Promise((r) => setTimeout(r, 100));
    next = (await scrape(r2.base)).stamp;
  }
  console.log(
    `storm (${burst} concurrent on an expired cache): answered in ${ms(stormMs)}, slowest ${ms(Math.max(...storm.map((s) => s.took)))}, ` +
      `all from the old collection: ${storm.every((s) => s.stamp === before)}; the new collection served ${((performance.now() - t1) / 1000).toFixed(2)} s after`,
  );
  await l2.stop();
} finally {
  await p.drop();
}
