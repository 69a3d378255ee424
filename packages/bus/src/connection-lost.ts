// A connection's losses, as one status watcher per connection. nats.js reconnects by itself and
// resends its subscriptions, but whatever was in the socket when it broke is gone, both ways, and
// so is whatever is published before it dials again (each dial starts with an empty outbound
// buffer). So a request in flight at the loss may never be answered and would wait for its whole
// timeout; the transfers of a large body would wait for their stall time; and a request or reply
// sent during the gap would vanish. Those that care register here: what was in flight fails at
// once (as a gRPC channel fails its calls when its connection drops, UNAVAILABLE, and the caller
// sends them again), and what is sent during the gap waits until the connection is back.
import type { NatsConnection, Status } from '@nats-io/nats-core';

/** A request that was in flight when its connection was lost (its message or its reply may be gone). */
export class ConnectionLostError extends Error {
  override readonly name = 'ConnectionLostError';
  constructor(readonly subject: string) {
    super(`the connection to NATS was lost while a request on ${subject} was in flight`);
  }
}

/** Whether `err` (or its cause) is a ConnectionLostError. */
export function isConnectionLost(err: unknown): boolean {
  return err instanceof ConnectionLostError || (err as Error | undefined)?.cause instanceof ConnectionLostError;
}

/** Most sends held while a connection is down; past it they go out at once (and may be lost). */
export const MAX_HELD_SENDS = 100_000;

export interface ConnectionLink {
  /** False from a lost connection until it is back (nats.js's `disconnect` to its `reconnect`), and once closed. */
  readonly up: boolean;
  /** Calls `fn` each time the connection is lost; returns the function that stops it. */
  onLost(fn: () => void): () => void;
  /**
   * Runs `send` now when the connection is up; else once it is back, in the order given (dropped
   * if it closes first). At most MAX_HELD_SENDS wait: past that, `send` runs at once.
   */
  whenUp(send: () => void): void;
}

/** Runs each of `fns`; one that throws does not stop the others. */
function runAll(fns: Iterable<() => void>): void {
  for (const f of fns) {
    try {
      f();
    } catch {
      // its own failure
    }
  }
}

class Link implements ConnectionLink {
  private down = false;
  private readonly lost = new Set<() => void>();
  private held: Array<() => void> = [];

  constructor(private readonly nc: NatsConnection) {
    void (async () => {
      for await (const s of nc.status() as AsyncIterable<Status>) {
        if (s.type === 'disconnect') {
          this.down = true;
          runAll([...this.lost]);
        } else if (s.type === 'reconnect') {
          this.down = false;
          const held = this.held;
          this.held = [];
          runAll(held);
        }
      }
    })()
      .catch(() => undefined)
      .finally(() => (this.held = []));
  }

  get up(): boolean {
    return !this.down && !this.nc.isClosed();
  }

  onLost(fn: () => void): () => void {
    this.lost.add(fn);
    return () => void this.lost.delete(fn);
  }

  whenUp(send: () => void): void {
    if (!this.down || this.held.length >= MAX_HELD_SENDS) send();
    else this.held.push(send);
  }
}

const links = new WeakMap<NatsConnection, Link>();

/** `nc`'s link: one status iterator per connection, however many use it. */
export function connectionLink(nc: NatsConnection): ConnectionLink {
  let l = links.get(nc);
  if (!l) links.set(nc, (l = new Link(nc)));
  return l;
}
