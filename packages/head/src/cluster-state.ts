// What the leading head knows, with no I/O and no timers: desired state (deployments), actual state
// (workers by their heartbeats, their replicas indexed by model), the event history, and the
// capacity epoch (bumped whenever capacity may have been freed; it resets placement back-off).
// The head feeds it the messages it hears and carries out the plans made from it.
import { UnknownModelError, type DeploymentStatus, type EventMessage, type Heartbeat } from '@flotilla/protocol';
import { indexReplicas, workerViews, type IndexedReplica } from './cluster-view.js';
import { transition, type Deployment } from './deployment.js';
import { EventLog } from './event-log.js';
import type { WorkerView } from './placement.js';
import { countedReplicas } from './reconcile-plan.js';
import { WorkerRegistry, type UpsertResult } from './registry.js';
import { deploymentStatus } from './status-view.js';

export class ClusterState {
  readonly deployments = new Map<string, Deployment>();
  readonly registry: WorkerRegistry;
  readonly events = new EventLog();
  /** Bumped when capacity may have been freed (a worker joined, a replica unloaded or evicted, an undeploy). */
  capacityEpoch = 0;
  /** Replicas on running workers by model; undefined when it must be rebuilt (see replicasOf). */
  private replicaIndex?: Map<string, IndexedReplica[]>;
  /** Replicas on alive workers (any state) by model, for describe/list/status; undefined when stale. */
  private aliveIndex?: Map<string, IndexedReplica[]>;

  constructor(workerTimeoutMs: number, maxWorkers: number) {
    this.registry = new WorkerRegistry(workerTimeoutMs, { maxWorkers });
  }

  /** The heartbeat-derived indexes are stale (a heartbeat arrived, liveness may have changed). */
  invalidate(): void {
    this.replicaIndex = undefined;
    this.aliveIndex = undefined;
  }

  /** Forgets every worker (a head that stops leading hears no more heartbeats). */
  forgetWorkers(): void {
    this.registry.clear();
    this.invalidate();
  }

  /**
   * Replicas of `model` on running workers, in each worker's load order. Built once and reused until
   * a heartbeat or a liveness change alters what it was built from: a round over D deployments then
   * costs O(replicas + D), not O(replicas × D) (`pnpm bench:scale` measures it).
   */
  replicasOf(model: string): readonly IndexedReplica[] {
    this.replicaIndex ??= indexReplicas(this.registry.running());
    return this.replicaIndex.get(model) ?? [];
  }

  /** Replicas that count for `d` now. */
  counted(d: Deployment): number {
    return countedReplicas(d, this.replicasOf(d.spec.name)).length;
  }

  /** The placement view, with every deployment's loads sent and not yet reported charged. */
  view(): WorkerView[] {
    const pending = [...this.deployments.values()].flatMap((d) =>
      [...d.pending].map(([replicaId, p]) => ({ replicaId, workerId: p.workerId, device: p.device, bytes: p.bytes, model: d.spec.name })),
    );
    return workerViews(this.registry.all(), pending);
  }

  describe(name: string): DeploymentStatus {
    const d = this.deployments.get(name);
    if (!d) throw new UnknownModelError(`no deployment named '${name}'`, { data: { model: name } });
    this.aliveIndex ??= indexReplicas(this.registry.all().filter((w) => w.alive));
    return deploymentStatus(d, this.aliveIndex.get(name) ?? []);
  }

  /** A heartbeat, if the registry believes it: footprints measured, a worker that joined frees capacity. */
  heartbeat(hb: Heartbeat, now: number): UpsertResult {
    const r = this.registry.upsert(hb, now);
    if (!r.accepted) return r;
    for (const rep of hb.replicas) {
      const d = this.deployments.get(rep.model);
      if (d && rep.digest === d.spec.digest) transition(d, { type: 'measured', bytes: rep.profile?.replicaBytes ?? 0 }, now);
    }
    this.invalidate();
    if (r.joined) this.capacityEpoch++;
    return r;
  }

  /**
   * An event from a worker (or the head's own): recorded; an eviction or unload frees capacity and
   * settles a load of that replica. True when a model turned dormant (evicted).
   */
  event(e: EventMessage, size: number, now: number): boolean {
    this.events.push(e, size);
    const dormant = e.type === 'evicted' && !!e.model && this.markDormant(e.model, now);
    if (e.type === 'evicted' || e.type === 'unloaded') {
      this.capacityEpoch++;
      // Gone before a heartbeat reported it: settled, not a placement that was never confirmed.
      const d = e.model ? this.deployments.get(e.model) : undefined;
      if (d && e.replica) transition(d, { type: 'gone', replicaId: e.replica }, now);
    }
    return dormant;
  }

  /** An evicted model is not re-placed by the reconcile loop (that would thrash); a request brings it back. True when it turned dormant. */
  markDormant(model: string, now: number): boolean {
    const d = this.deployments.get(model);
    return !!d && transition(d, { type: 'evicted' }, now);
  }

  /** Liveness for a round: workers silent past the timeout are dead (their ids returned), long-dead ones forgotten. */
  sweep(now: number): string[] {
    const died = this.registry.sweep(now);
    this.registry.prune(now);
    this.invalidate();
    return died;
  }
}
