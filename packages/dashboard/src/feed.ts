// The live feed: while anyone listens, reads the cluster's status and recent events through the SDK
// every `pollMs` (and at once after an action), profiles when a model's digest or profile state
// changes, and hands each listener a fresh snapshot (shape.ts) whenever it differs from the last.
// One poll at a time; a failed read keeps the last good state and says why in `error`.
import { ProfileStore, mapNatsError, type Logger } from '@flotilla/bus';
import type { FlotillaClient } from '@flotilla/client';
import { ErrorCode, FlotillaError, type ClusterStatus, type EventMessage, type ModelProfile } from '@flotilla/protocol';
import { EMPTY_HISTORY, advanceHistory, type History } from './history.js';
import { buildSnapshot } from './shape.js';
import type { DashboardSnapshot } from './view-model.js';

export interface FeedOptions {
  client: FlotillaClient;
  /** Status and events are read this often while a page is open, ms. */
  pollMs: number;
  /** Events kept on the page. */
  eventsLimit: number;
  /** Samples kept per sparkline. */
  historyPoints: number;
  /** Profiles are read again at least this often, ms (also whenever a replica's profile state changes). */
  profileRefreshMs: number;
  allowActions: boolean;
  logger?: Logger;
}

export type SnapshotListener = (s: DashboardSnapshot) => void;

/** A failure as the page shows it: a stable code and a message. */
export function codedError(err: unknown, subject = 'the cluster'): { code: string; message: string } {
  const e = err instanceof FlotillaError ? err : mapNatsError(err, subject, 0);
  if (e instanceof FlotillaError) return { code: e.code, message: e.message };
  return { code: ErrorCode.INTERNAL, message: e.message };
}

export class DashboardFeed {
  private readonly listeners = new Set<SnapshotListener>();
  private history: History = EMPTY_HISTORY;
  private rates: Record<string, number> = {};
  private status?: ClusterStatus;
  private events: EventMessage[] = [];
  private error?: { code: string; message: string };
  private readonly profiles = new Map<string, ModelProfile[]>();
  private readonly profileErrors = new Map<string, { code: string; message: string }>();
  /** Per model: what its profiles were read for (digest and replicas' profile states) and when. */
  private readonly profileKeys = new Map<string, { key: string; at: number }>();
  private profileStore?: ProfileStore;
  private last?: DashboardSnapshot;
  private lastJson = '';
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = false;

  constructor(private readonly o: FeedOptions) {}

  /** The latest snapshot; read afresh when nobody is streaming and the last one is older than a poll. */
  async snapshot(): Promise<DashboardSnapshot> {
    if (!this.last || (this.listeners.size === 0 && Date.now() - this.last.at >= this.o.pollMs)) await this.refresh();
    return this.last!;
  }

  /** Calls `listener` with every new snapshot (and the current one, if any) until the returned function is called. */
  subscribe(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    if (this.last) listener(this.last);
    if (this.listeners.size === 1) this.schedule(0);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Reads the cluster now (after an action); resolves once the new snapshot went out. */
  refresh(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.poll().finally(() => {
      this.running = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.refresh();
      }
    });
    return this.running;
  }

  /** Stops polling. Safe to call twice. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private schedule(delayMs: number): void {
    if (this.stopped || this.timer || this.listeners.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh().finally(() => this.schedule(this.o.pollMs));
    }, delayMs);
  }

  /** One round; never rejects (a failure the reads did not expect becomes the snapshot's error). */
  private async poll(): Promise<void> {
    try {
      await this.read();
    } catch (err) {
      this.error = codedError(err);
      this.o.logger?.warn({ err }, 'dashboard: a poll failed');
      this.last = { ...(this.last ?? this.emptySnapshot()), at: Date.now(), error: this.error };
    }
  }

  private emptySnapshot(): DashboardSnapshot {
    return buildSnapshot({
      now: Date.now(),
      cluster: this.o.client.subjects.cluster,
      allowActions: this.o.allowActions,
      events: [],
      rates: {},
      series: {},
      profiles: new Map(),
      profileErrors: new Map(),
    });
  }

  private async read(): Promise<void> {
    const c = this.o.client;
    const [status, events] = await Promise.allSettled([c.status(), c.events({ limit: this.o.eventsLimit })]);
    const now = Date.now();
    if (status.status === 'fulfilled') {
      this.status = status.value;
      const adv = advanceHistory(this.history, status.value, now, this.o.historyPoints);
      this.history = adv.history;
      this.rates = adv.rates;
      await this.readProfiles(status.value, now);
    }
    if (events.status === 'fulfilled') this.events = events.value;
    const failed = status.status === 'rejected' ? status.reason : events.status === 'rejected' ? events.reason : undefined;
    this.error = failed === undefined ? undefined : codedError(failed);
    if (failed !== undefined) this.o.logger?.debug({ err: this.error }, 'dashboard: cannot read the cluster');
    const snap = buildSnapshot({
      now,
      cluster: c.subjects.cluster,
      allowActions: this.o.allowActions,
      status: this.status,
      error: this.error,
      events: this.events,
      rates: this.rates,
      series: this.history.series,
      replicaSeries: this.history.replicaSeries,
      profiles: this.profiles,
      profileErrors: this.profileErrors,
    });
    this.last = snap;
    // `at` moves on every poll; only a change of the rest goes out.
    const json = JSON.stringify({ ...snap, at: 0 });
    if (json === this.lastJson) return;
    this.lastJson = json;
    for (const l of this.listeners) {
      try {
        l(snap);
      } catch (err) {
        this.o.logger?.warn({ err }, 'dashboard: a listener failed');
      }
    }
  }

  /** Re-reads the profiles of models whose digest or replicas' profile state changed, or that are due. */
  private async readProfiles(status: ClusterStatus, now: number): Promise<void> {
    const names = new Set(status.deployments.map((d) => d.spec.name));
    for (const m of [...this.profiles.keys(), ...this.profileErrors.keys()]) {
      if (!names.has(m)) {
        this.profiles.delete(m);
        this.profileErrors.delete(m);
        this.profileKeys.delete(m);
      }
    }
    const states = new Map<string, string[]>();
    for (const w of status.workers) {
      for (const r of w.replicas) {
        const p = r.profile;
        const shapes = p?.shapes?.map((s) => `${s.shape}=${s.state}`).join(',') ?? '';
        (states.get(r.model) ?? states.set(r.model, []).get(r.model)!).push(`${r.digest}:${p?.source ?? '-'}:${p?.tookMs ?? 0}:${shapes}`);
      }
    }
    const due = status.deployments.filter((d) => {
      const key = `${d.spec.digest}|${(states.get(d.spec.name) ?? []).sort().join(';')}`;
      const seen = this.profileKeys.get(d.spec.name);
      if (seen && seen.key === key && now - seen.at < this.o.profileRefreshMs) return false;
      this.profileKeys.set(d.spec.name, { key, at: now });
      return true;
    });
    if (due.length === 0) return;
    try {
      this.profileStore ??= new ProfileStore(await this.o.client.connection(), this.o.client.subjects.profileBucket);
    } catch (err) {
      for (const d of due) this.profileErrors.set(d.spec.name, codedError(err, this.o.client.subjects.profileBucket));
      return;
    }
    const store = this.profileStore;
    await Promise.all(
      due.map(async (d) => {
        try {
          this.profiles.set(d.spec.name, await store.forDigest(d.spec.digest));
          this.profileErrors.delete(d.spec.name);
        } catch (err) {
          this.profileKeys.delete(d.spec.name); // try again next poll
          this.profileErrors.set(d.spec.name, codedError(err, this.o.client.subjects.profileBucket));
        }
      }),
    );
  }
}
