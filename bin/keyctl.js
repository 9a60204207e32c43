#!/usr/bin/env node
// Tiny launcher: the CLI is compiled to dist/ by `npm ci` / `npm run build`.
let cli;
try {
  cli = await import('../dist/cli/main.js');
} catch (err) {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    process.stderr.write('keyctl: error: keyctl is not built yet\nkeyctl: hint: run `npm ci` (or `npm run build`) in the keyctl directory\n');
    process.exit(1);
  }
  throw err;
}
process.exitCode = await cli.main({
  argv: process.argv,
  env: process.env,
  cwd: process.cwd(),
  stdout: process.stdout,
  stderr: process.stderr,
  stdinIsTTY: Boolean(process.stdin.isTTY),
});
