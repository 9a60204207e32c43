/**
 * Crash-safe file replacement: a temp file in the same directory (created with the final mode),
 * fsync, rename over the target, fsync of the directory. A reader sees the old file or the new
 * one, never half of either; on failure the temp file is removed.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsync, openSync, renameSync, unlinkSync, writeSync, constants as fsc } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';

const fsyncAsync = promisify(fsync);

export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  // Open, write, close and rename are synchronous (small local calls; a command over many tenants
  // makes thousands, and each asynchronous one costs a thread-pool round trip); the fsyncs, which
  // wait for the disk, are not, so several writes can wait at once.
  let fd: number | undefined;
  try {
    fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode);
    writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data);
    await fsyncAsync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) tryClose(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // Never created, or gone.
    }
    throw err;
  }
  try {
    const d = openSync(dir, fsc.O_RDONLY);
    try {
      await fsyncAsync(d);
    } finally {
      closeSync(d);
    }
  } catch {
    // Some filesystems cannot fsync a directory; the rename itself is still atomic.
  }
}

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
}

function tryClose(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already failed; the write's error is the one to report.
  }
}
