// Least-loaded routing, pure: the SDK sends each request to one replica chosen by "power of two
// choices" over its own view of each replica's load (requests it has in flight there plus the
// queue depth the replica reported in its last reply). A slow replica accumulates in-flight
// requests and so gets fewer new ones; NATS queue groups alone would pick at random.

export interface ReplicaLoad {
  inFlight: number;
  /** Queue depth the replica reported in its latest reply. */
  reportedQueue: number;
}

export class ReplicaRouter {
  private readonly models = new Map<string, { replicas: Map<string, ReplicaLoad>; refreshedAt: number }>();

  constructor(
    /** How long a replica list is trusted before the SDK asks the head again, ms. */
    readonly refreshMs = 2000,
  ) {}

  /** Replaces the model's replica list, keeping the load of replicas still present. */
  update(model: string, replicaIds: readonly string[], now: number): void {
    const prev = this.models.get(model)?.replicas ?? new Map<string, ReplicaLoad>();
    const replicas = new Map<string, ReplicaLoad>();
    for (const id of replicaIds) replicas.set(id, prev.get(id) ?? { inFlight: 0, reportedQueue: 0 });
    this.models.set(model, { replicas, refreshedAt: now });
  }

  /** Marks the list fresh without changing it (a failed refresh should not be retried at once). */
  touch(model: string, now: number): void {
    const m = this.models.get(model);
    if (m) m.refreshedAt = now;
    else this.models.set(model, { replicas: new Map(), refreshedAt: now });
  }

  stale(model: string, now: number): boolean {
    const m = this.models.get(model);
    return !m || now - m.refreshedAt >= this.refreshMs;
  }

  /** The less loaded of two random replicas (all of them when there are two or fewer); undefined if none known. */
  pick(model: string, random: () => number = Math.random): string | undefined {
    const m = this.models.get(model);
    if (!m || m.replicas.size === 0) return undefined;
    const ids = [...m.replicas.keys()];
    if (ids.length === 1) return ids[0];
    const i = Math.floor(random() * ids.length);
    let j = Math.floor(random() * (ids.length - 1));
    if (j >= i) j++;
    const load = (id: string) => {
      const l = m.replicas.get(id)!;
      return l.inFlight + l.reportedQueue;
    };
    const a = ids[i]!;
    const b = ids[j]!;
    return load(b) < load(a) ? b : a;
  }

  started(model: string, replica: string): void {
    const l = this.models.get(model)?.replicas.get(replica);
    if (l) l.inFlight++;
  }

  finished(model: string, replica: string, reportedQueue?: number): void {
    const l = this.models.get(model)?.replicas.get(replica);
    if (!l) return;
    l.inFlight = Math.max(0, l.inFlight - 1);
    if (reportedQueue !== undefined) l.reportedQueue = reportedQueue;
  }

  /** Drops a replica that did not answer (gone or dead) until the next refresh lists it again. */
  forget(model: string, replica: string): void {
    this.models.get(model)?.replicas.delete(replica);
  }

  load(model: string, replica: string): ReplicaLoad | undefined {
    return this.models.get(model)?.replicas.get(replica);
  }
}
