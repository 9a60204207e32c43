/**
 * The third-party moto server (`python3 -m moto.server`) as a second, independent KMS: tests that
 * use it are skipped with a notice where it is not installed, and fail where .ci/run found it
 * (KEYCTL_TEST_MOTO=required) but it does not start.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import net from 'node:net';

export const motoInstalled = spawnSync('python3', ['-c', 'import moto.server'], { stdio: 'ignore' }).status === 0;
export const motoRequired = process.env.KEYCTL_TEST_MOTO === 'required';
/** Run the moto tests: installed, or required (then a missing moto fails them). */
export const motoEnabled = motoInstalled || motoRequired;

export function motoNotice(what: string): void {
  if (!motoEnabled) console.warn(`NOTICE: python3 -m moto.server is not available here: ${what} runs against the local KMS only (pip install "moto[server]")`);
}

/** A free TCP port on 127.0.0.1 for moto (which does not report a port it picked itself). */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export async function startMoto(): Promise<{ endpoint: string; stop(): void }> {
  const port = await freePort();
  const child: ChildProcess = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const up = await fetch(`${endpoint}/moto-api/`).then(
      () => true,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('moto did not answer within 30 s');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { endpoint, stop: () => child.kill('SIGTERM') };
}
