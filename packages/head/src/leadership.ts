// The head's side of the leadership lease (lease.ts): campaigns every third of the TTL and when
// the lease is released; a leader renews and steps down when it lost the lease or could not
// renew within the TTL; a standby takes the lease when it is free. The head supplies what leading
// and standing down mean.
import type { Logger } from '@flotilla/bus';
import type { LeaderLease } from './lease.js';

export interface LeadershipHooks {
  /** Is this head leading now? */
  leading(): boolean;
  /** May it try to lead (running as a standby, connected)? */
  mayLead(): boolean;
  /** Take over; called with the lease held. */
  lead(): Promise<void>;
  /** Stop acting as leader at once. */
  stepDown(reason: string): void;
}

export class Leadership {
  private busy = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private unwatch?: () => void;

  constructor(
    readonly lease: LeaderLease,
    private readonly hooks: LeadershipHooks,
    private readonly logger: Logger,
  ) {}

  /** One campaign now, then every third of the TTL and whenever the lease is released. */
  async start(): Promise<void> {
    await this.campaign();
    this.timer = setInterval(() => void this.campaign(), Math.max(50, Math.floor(this.lease.ttlMs / 3)));
    // A leader that stops cleanly deletes the lease: take over at once rather than at the next poll.
    this.unwatch = await this.lease.watchReleases(() => void this.campaign());
  }

  /** One step; never two at once. */
  async campaign(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      if (this.hooks.leading()) {
        const r = await this.lease.renew();
        if (r === 'lost') this.hooks.stepDown('another head holds the lease');
        else if (this.lease.expired()) {
          this.hooks.stepDown(`lease not renewed within ${this.lease.ttlMs} ms`);
          // Renewals that only timed out (a busy store) leave the lease free or still ours: take it
          // back now rather than a third of the TTL later, when nobody else has it.
          if (this.hooks.mayLead() && (await this.lease.tryAcquire())) await this.hooks.lead();
        }
      } else if (this.hooks.mayLead() && (await this.lease.tryAcquire())) {
        await this.hooks.lead();
      }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'leadership step failed');
    } finally {
      this.busy = false;
    }
  }

  /** No more campaigns; the lease is released (if held) so a standby leads at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.unwatch?.();
    await this.lease.release();
  }
}
