// Leadership among heads: one JetStream KV key (`leader`) in a bucket whose entries expire after
// the lease TTL. A head leads while it holds the key: it creates it (only possible when no live
// holder exists), renews it with a compare-and-set on its own revision every third of the TTL,
// and deletes it on a clean stop so a standby takes over at once. If a leader cannot renew (cut
// off, paused), the key expires and a standby creates it; the old leader sees its revision gone
// and steps down. Needs nothing newer than nats-server 2.9 (bucket max_age, not per-key TTL).
import type { KV } from '@nats-io/kv';
import { PROTOCOL_VERSION, decode, encode, parseLeaseHolder, type LeaseHolder } from '@flotilla/protocol';

export type { LeaseHolder };

export const LEASE_KEY = 'leader';

/** The lease value in a KV entry, parsed by its schema; undefined when absent or not a valid value. */
function holderOf(e: { operation: string; value: Uint8Array } | null): LeaseHolder | undefined {
  if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
  try {
    return parseLeaseHolder(decode(e.value));
  } catch {
    return undefined;
  }
}

export type RenewResult = 'held' | 'lost' | 'error';

export class LeaderLease {
  private revision?: number;
  /** When the lease was last created or renewed (epoch ms); 0 when not held. */
  renewedAt = 0;
  private since = 0;

  constructor(
    private readonly kv: KV,
    readonly id: string,
    readonly ttlMs: number,
  ) {}

  get held(): boolean {
    return this.revision !== undefined;
  }

  private value(): Uint8Array {
    return encode({ v: PROTOCOL_VERSION, id: this.id, pid: process.pid, since: this.since } satisfies LeaseHolder);
  }

  /**
   * Takes the lease if no one holds it, or if the holder is this very head (ids are unique per
   * process: an earlier term of ours, e.g. after a spurious step-down). True when this head leads.
   */
  async tryAcquire(now = Date.now()): Promise<boolean> {
    try {
      this.since = now;
      this.revision = await this.kv.create(LEASE_KEY, this.value());
      this.renewedAt = now;
      return true;
    } catch {
      // Held by someone (wrong last sequence), or JetStream unavailable: ours, or try again later.
      if (!(await this.adoptOwn())) return false;
      return (await this.renew(now)) === 'held';
    }
  }

  /** Extends the lease; `lost` when another head holds it now, `error` when the store did not answer. */
  async renew(now = Date.now()): Promise<RenewResult> {
    if (this.revision === undefined) return 'lost';
    for (let attempt = 0; ; attempt++) {
      try {
        this.revision = await this.kv.update(LEASE_KEY, this.value(), this.revision);
        this.renewedAt = now;
        return 'held';
      } catch (err) {
        if (!/wrong last sequence/i.test((err as Error).message)) return 'error';
        // A renewal that timed out here may still have been applied (the client sends buffered
        // messages after a reconnect): if the key still names this head, carry on from there.
        if (attempt === 0 && (await this.adoptOwn())) continue;
        this.revision = undefined;
        this.renewedAt = 0;
        return 'lost';
      }
    }
  }

  /** Takes the key's current revision when it names this head. */
  private async adoptOwn(): Promise<boolean> {
    const e = await this.kv.get(LEASE_KEY).catch(() => null);
    if (holderOf(e)?.id !== this.id) return false;
    this.revision = e!.revision;
    return true;
  }

  /** Not renewed within the TTL: a standby may already lead, so this head must not act as leader. */
  expired(now = Date.now()): boolean {
    return this.revision === undefined || now - this.renewedAt >= this.ttlMs;
  }

  /** Gives the lease up (only if still ours), so a standby leads without waiting for the TTL. */
  async release(): Promise<void> {
    const rev = this.revision;
    this.revision = undefined;
    this.renewedAt = 0;
    if (rev !== undefined) await this.kv.delete(LEASE_KEY, { previousSeq: rev }).catch(() => undefined);
  }

  /**
   * Calls `onRelease` whenever the lease is given up (deleted); expiry leaves no marker, so the
   * caller still polls. Returns a function that stops watching.
   */
  async watchReleases(onRelease: () => void): Promise<() => void> {
    const watch = await this.kv.watch({ key: LEASE_KEY, include: 'updates' });
    void (async () => {
      for await (const e of watch) if (e.operation === 'DEL' || e.operation === 'PURGE') onRelease();
    })().catch(() => undefined);
    return () => watch.stop();
  }

  /** Who leads now, if anyone. */
  async holder(): Promise<LeaseHolder | undefined> {
    return holderOf(await this.kv.get(LEASE_KEY).catch(() => null));
  }
}
