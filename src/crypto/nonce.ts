/**
 * Nonces for AES-GCM drawn from a large CSPRNG buffer: one randomFillSync per `poolSize`
 * nonces instead of one randomBytes call (~3 µs) per encrypted value. Each nonce is a copy,
 * so callers may keep it; a slice of the pool is never handed out twice.
 */
import { randomFillSync } from 'node:crypto';

export class NonceSource {
  private readonly pool: Buffer;
  private offset: number;
  private readonly size: number;

  constructor(size = 12, poolSize = 4096) {
    this.size = size;
    this.pool = Buffer.alloc(size * poolSize);
    this.offset = this.pool.length;
  }

  next(): Buffer {
    if (this.offset + this.size > this.pool.length) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const nonce = Buffer.from(this.pool.subarray(this.offset, this.offset + this.size));
    this.offset += this.size;
    return nonce;
  }
}
