// Buffers for message payloads that span socket reads, reused instead of allocated per message.
// nats.js gathers such a payload (every request of more than a few KB: Node reads 64 KiB at a
// time) into a buffer of its own; fresh each time, that buffer is cold memory the allocator may
// just have taken from the kernel, and the collector frees it whenever it next runs. A replica
// hands each request's buffer back once it has answered it (`recycle`), so the next request of
// that size is gathered into memory the cache still holds. Gathering a 49 KB request and copying
// it into a batch of 16 took 4.6–4.7 µs fresh against 2.3 µs reused (this VM, 2026-12-01,
// `taskset -c 1 node scripts/payload-gather-cost.mjs`).
//
// Only buffers this pool handed out come back, each once: a payload that did not span reads is a
// view of the socket's own buffer and is never taken. A buffer may be recycled only when nothing
// reads its message any more (its data, its headers): the next message of its size overwrites it.
import { setPayloadAllocator } from '@nats-io/nats-core/internal';

/** Sizes are rounded up to this, so requests whose headers differ by a few bytes share buffers. */
export const PAYLOAD_GRANULE = 4096;
/** Largest payload pooled: larger ones are rare (bodies move in chunks of at most max_payload). */
export const MAX_POOLED_PAYLOAD = 8 * 1024 * 1024;
/** Most bytes kept free in the pool; buffers recycled past it are left to the collector. */
export const DEFAULT_POOL_BYTES = 32 * 1024 * 1024;

export interface PayloadPoolStats {
  /** Buffers handed out from the free lists. */
  reused: number;
  /** Buffers allocated because none of the size was free. */
  allocated: number;
  /** Buffers taken back. */
  recycled: number;
  /** Bytes held free now. */
  freeBytes: number;
}

export class PayloadPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Buffers this pool handed out: true while out, false while free (others are not ours). */
  private readonly out = new WeakMap<ArrayBuffer, boolean>();
  private freeBytes = 0;
  private reused = 0;
  private allocated = 0;
  private recycled = 0;

  constructor(private readonly maxFreeBytes = DEFAULT_POOL_BYTES) {}

  /** A buffer of at least `size` bytes, its contents undefined. */
  take(size: number): ArrayBuffer {
    const rounded = Math.ceil(Math.max(size, 1) / PAYLOAD_GRANULE) * PAYLOAD_GRANULE;
    if (rounded > MAX_POOLED_PAYLOAD) return Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer;
    const b = this.free.get(rounded)?.pop();
    if (b) {
      this.freeBytes -= rounded;
      this.out.set(b, true);
      this.reused++;
      return b;
    }
    // allocUnsafeSlow: a whole ArrayBuffer of its own (not a slice of Node's shared pool), unzeroed.
    const fresh = Buffer.allocUnsafeSlow(rounded).buffer as ArrayBuffer;
    this.out.set(fresh, true);
    this.allocated++;
    return fresh;
  }

  /**
   * Takes back the buffer under `data` when this pool handed it out and it is out; anything else
   * (a view of a socket read, a buffer already back) is left alone. True when taken back.
   */
  recycle(data: Uint8Array | undefined): boolean {
    const b = data?.buffer as ArrayBuffer | undefined;
    if (!b || this.out.get(b) !== true) return false;
    if (this.freeBytes + b.byteLength > this.maxFreeBytes) {
      this.out.delete(b); // the collector's now
      return false;
    }
    this.out.set(b, false);
    let list = this.free.get(b.byteLength);
    if (!list) this.free.set(b.byteLength, (list = []));
    list.push(b);
    this.freeBytes += b.byteLength;
    this.recycled++;
    return true;
  }

  stats(): PayloadPoolStats {
    return { reused: this.reused, allocated: this.allocated, recycled: this.recycled, freeBytes: this.freeBytes };
  }
}

let installed: PayloadPool | undefined;

/**
 * The process's payload pool, installed as nats.js's allocator for spanning payloads on first use
 * (every connection of the process gathers into it; only what is recycled is ever reused).
 */
export function payloadPool(): PayloadPool {
  if (!installed) {
    const pool = new PayloadPool();
    setPayloadAllocator((size) => pool.take(size));
    installed = pool;
  }
  return installed;
}
