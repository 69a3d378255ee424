// Request/reply for the inference hot path: one wildcard inbox subscription per connection, a
// counter token per request, one timer each. nats.js's own `request` does the same multiplexing
// but, per successful request, builds a throw-away RequestError (with its stack trace) when it
// cancels the already-resolved request, races two promises and allocates a deferred timer: a fifth
// of the SDK's CPU per request under load (bench:overhead). The errors are nats.js's own types,
// so `isNoResponders`, `isTimeout` and `mapNatsError` read them as before.
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/nats-core';
import { createInbox, errors as natsErrors } from '@nats-io/nats-core';
import { ConnectionLostError, connectionLink, type ConnectionLink } from './connection-lost.js';

interface Pending {
  subject: string;
  resolve: (msg: Msg) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export interface RequestOptions {
  /** No reply within this many ms: rejected with nats.js's TimeoutError. */
  timeout: number;
  headers?: MsgHdrs;
}

export class Requester {
  private sub?: Subscription;
  private base = '';
  private next = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly link: ConnectionLink;

  constructor(private readonly nc: NatsConnection) {
    // A closed connection answers every pending request at once (as nats.js's own requests are).
    void nc.closed().then(() => this.failAll(() => new natsErrors.ClosedConnectionError()));
    // A lost connection loses what was in its socket, requests and replies alike: every request in
    // flight then fails at once (ConnectionLostError), instead of waiting for a reply that may be
    // gone. Those sent while it is down wait until it is back (nats.js would drop them).
    this.link = connectionLink(nc);
    this.link.onLost(() => this.failAll((subject) => new ConnectionLostError(subject)));
    void this.watchPermissions();
  }

  /**
   * nats-server refuses a publish the connection's permissions deny asynchronously, naming the
   * subject: the oldest request to that subject fails with it (FORBIDDEN for the SDK), as nats.js
   * does for its own requests, instead of waiting for its timeout.
   */
  private async watchPermissions(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type !== 'error' || !(s.error instanceof natsErrors.PermissionViolationError) || s.error.operation !== 'publish') continue;
      for (const [token, p] of this.pending) {
        if (p.subject !== s.error.subject) continue;
        this.pending.delete(token);
        clearTimeout(p.timer);
        p.reject(s.error);
        break;
      }
    }
  }

  /** Requests in flight (for tests and metrics). */
  get size(): number {
    return this.pending.size;
  }

  request(subject: string, data: Uint8Array, opts: RequestOptions): Promise<Msg> {
    if (this.nc.isClosed()) return Promise.reject(new natsErrors.ClosedConnectionError());
    if (!this.sub) this.subscribe();
    const token = (this.next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(token)) reject(new natsErrors.TimeoutError());
      }, opts.timeout);
      this.pending.set(token, { subject, resolve, reject, timer });
      if (this.link.up) this.publish(token, data, opts.headers);
      else this.link.whenUp(() => this.publish(token, data, opts.headers));
    });
  }

  /** Publishes pending request `token` (unless it timed out while the connection was down); a refused publish rejects it. */
  private publish(token: string, data: Uint8Array, headers: MsgHdrs | undefined): void {
    const p = this.pending.get(token);
    if (!p) return;
    try {
      this.nc.publish(p.subject, data, { reply: `${this.base}.${token}`, headers });
    } catch (err) {
      clearTimeout(p.timer);
      this.pending.delete(token);
      p.reject(err as Error);
    }
  }

  private subscribe(): void {
    // The connection's own inbox prefix (a role's `_INBOX_<role>` under auth), so permissions hold.
    this.base = createInbox((this.nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    this.sub = this.nc.subscribe(`${this.base}.*`, {
      callback: (err, msg) => {
        if (err) {
          // The subscription itself failed (e.g. a permission violation): the next request subscribes again.
          this.sub = undefined;
          return this.failAll(() => err);
        }
        const token = msg.subject.slice(this.base.length + 1);
        const p = this.pending.get(token);
        if (!p) return; // a reply after its timeout, or to nobody
        this.pending.delete(token);
        clearTimeout(p.timer);
        // nats-server answers "no responders" with an empty 503 status message.
        if (msg.data.length === 0 && msg.headers?.code === 503) p.reject(new natsErrors.NoRespondersError(p.subject));
        else p.resolve(msg);
      },
    });
  }

  private failAll(error: (subject: string) => Error): void {
    for (const [token, p] of this.pending) {
      this.pending.delete(token);
      clearTimeout(p.timer);
      p.reject(error(p.subject));
    }
  }
}

const requesters = new WeakMap<NatsConnection, Requester>();

/** The connection's Requester (one wildcard inbox subscription, made on the first request). */
export function requesterFor(nc: NatsConnection): Requester {
  let r = requesters.get(nc);
  if (!r) requesters.set(nc, (r = new Requester(nc)));
  return r;
}
