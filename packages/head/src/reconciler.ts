// The leading head's reconcile loop, a shell: each round it settles pending loads, takes an
// autoscaling step and asks reconcile-plan.ts what to load and unload, then carries that out as
// load/unload commands to workers and applies the outcomes as deployment transitions. Every
// decision is in a pure module; what is here is I/O, logging and the bounds on commands in flight.
import type { NatsConnection } from '@nats-io/nats-core';
import { nuid } from '@nats-io/nats-core';
import {
  BadRequestError,
  FlotillaError,
  PROTOCOL_VERSION,
  encode,
  parseLoadResult,
  toFlotillaError,
  type Subjects,
} from '@flotilla/protocol';
import { call, type Logger } from '@flotilla/bus';
import type { ClusterState } from './cluster-state.js';
import { transition, type Deployment, type DeploymentEvent } from './deployment.js';
import type { DeploymentStore } from './deployment-store.js';
import type { CompiledHeadOptions } from './options.js';
import { settlePending } from './placement-retry.js';
import type { ReadyWaiters } from './ready-waiters.js';
import { planAutoscale, planOrphans, planReconcile, type LoadAction } from './reconcile-plan.js';

/** Most unload commands awaiting their reply (or their dedupe window) at once. */
export const MAX_UNLOADS_IN_FLIGHT = 256;

export interface ReconcilerDeps {
  nc: NatsConnection;
  subjects: Subjects;
  options: CompiledHeadOptions;
  logger: Logger;
  store: DeploymentStore;
  readyWaiters: ReadyWaiters;
  /** Is the head leading (rounds and commands only then)? */
  leading(): boolean;
  /** Is the head's NATS connection up? */
  connected(): boolean;
}

export class Reconciler {
  /** Time the last round over all deployments took, ms. */
  lastTickMs = 0;
  private readonly unloading = new Set<string>();
  private tickScheduled = false;
  private wasCutOff = false;

  constructor(
    private readonly cluster: ClusterState,
    private readonly deps: ReconcilerDeps,
  ) {}

  /** One round over every deployment. */
  tick(): void {
    const { cluster, deps } = this;
    if (!deps.leading()) return;
    // Cut off from NATS, the head hears no heartbeats: that says nothing about the workers.
    if (!deps.connected()) {
      this.wasCutOff = true;
      return;
    }
    if (this.wasCutOff) cluster.registry.touchAll(Date.now());
    this.wasCutOff = false;
    for (const id of cluster.sweep(Date.now()))
      deps.logger.warn({ worker: id }, 'worker timed out: marked dead, its replicas will be placed elsewhere');
    const t0 = performance.now();
    for (const [name, d] of cluster.deployments) {
      this.settle(d);
      this.autoscale(name, d);
      this.reconcile(name);
    }
    this.reconcileOrphans();
    this.lastTickMs = performance.now() - t0;
  }

  /** One round soon (coalesced: 10,000 workers joining at once cause one round, not 10,000). */
  scheduleTick(): void {
    if (this.tickScheduled) return;
    this.tickScheduled = true;
    setImmediate(() => {
      this.tickScheduled = false;
      this.tick();
    });
  }

  /** One deployment: carries out its plan. */
  reconcile(name: string): void {
    const d = this.cluster.deployments.get(name);
    if (!d || !this.deps.leading()) return;
    const now = Date.now();
    transition(d, { type: 'capacity', epoch: this.cluster.capacityEpoch }, now);
    const plan = planReconcile(
      d,
      this.cluster.replicasOf(name),
      { workers: () => this.cluster.view(), placement: this.deps.options.placement },
      now,
    );
    for (const load of plan.loads) this.sendLoad(d, load);
    if (plan.failure) this.apply(d, { type: 'unplaced', error: plan.failure, epoch: this.cluster.capacityEpoch });
    if (plan.satisfied) transition(d, { type: 'satisfied' }, now);
    for (const u of plan.unloads) this.sendUnload(u.workerId, u.replicaId);
  }

  /** Replicas of models no longer deployed are unloaded. */
  reconcileOrphans(): void {
    for (const u of planOrphans(this.cluster.registry.running(), this.cluster.deployments)) this.sendUnload(u.workerId, u.replicaId);
  }

  markDormant(model: string): void {
    if (this.cluster.markDormant(model, Date.now())) this.deps.logger.info({ model }, 'evicted: dormant until requested');
  }

  /**
   * Pending loads against the heartbeats: a replica its worker reports counts from there on; one
   * the worker answered as loaded but never reported within `confirmMs` is a failed placement (a
   * load reply alone is not believed), its device skipped and the deployment backing off.
   */
  private settle(d: Deployment): void {
    if (d.pending.size === 0) return;
    const now = Date.now();
    const { confirmMs } = this.deps.options;
    const v = settlePending(
      d.pending,
      (w, id) => this.cluster.registry.get(w)?.hb.replicas.some((r) => r.id === id) ?? false,
      now,
      confirmMs,
    );
    for (const id of v.seen) transition(d, { type: 'confirmed', replicaId: id }, now);
    for (const id of v.unconfirmed) {
      const { workerId } = d.pending.get(id)!;
      this.apply(d, { type: 'unconfirmed', replicaId: id, confirmMs, epoch: this.cluster.capacityEpoch });
      this.sendUnload(workerId, id);
    }
  }

  /** Applies an event that may be a failed placement; each failure code is logged once until something changes. */
  private apply(d: Deployment, e: DeploymentEvent): void {
    const now = Date.now();
    if (!transition(d, e, now)) return;
    const error = d.pendingReason!;
    this.deps.logger.warn(
      { model: d.spec.name, code: error.code, err: error.message.slice(0, 300), retryInMs: d.retryAt - now },
      'replicas not placed (reported once until something changes)',
    );
  }

  private autoscale(name: string, d: Deployment): void {
    const { deps } = this;
    const now = Date.now();
    const step = planAutoscale(d, this.cluster.replicasOf(name), now);
    if (!step) return;
    transition(d, { type: 'sampled', total: step.total }, now);
    const from = d.spec.replicas;
    if (step.desired === from) return;
    transition(d, { type: 'autoscaled', replicas: step.desired }, now);
    void deps.store.put(d.spec, d.createdAt).catch(() => undefined);
    deps.logger.info({ model: name, from, to: step.desired, reason: step.reason, capacity: step.capacity }, 'autoscale');
    try {
      // The head hears its own event back on eventAll and records it like the workers' events.
      const event = { v: PROTOCOL_VERSION, type: 'scaled', model: name, at: now, reason: step.reason, data: { from, to: step.desired } };
      deps.nc.publish(deps.subjects.event('scaled'), encode(event));
    } catch {
      // best effort
    }
  }

  private sendLoad(d: Deployment, { workerId, device, bytes }: LoadAction): void {
    const { deps, cluster } = this;
    const spec = d.spec;
    const replicaId = `${spec.name}-${nuid.next().slice(-10).toLowerCase()}`;
    transition(d, { type: 'load-sent', replicaId, workerId, device, bytes }, Date.now());
    deps.logger.debug({ model: spec.name, replica: replicaId, worker: workerId, device }, 'placing replica');
    call(deps.nc, deps.subjects.worker(workerId, 'load'), { replicaId, device, spec, bytes }, deps.options.loadTimeoutMs, {
      parse: parseLoadResult,
    })
      .then((r) => {
        if (r.replicaId !== replicaId) throw new BadRequestError(`load reply names replica ${r.replicaId}, not ${replicaId}`);
        // Not yet counted: the replica counts once the worker's heartbeats report it (settle()).
        transition(d, { type: 'load-answered', replicaId }, Date.now());
        if (r.fallbackFrom) deps.logger.warn({ replica: replicaId, from: r.fallbackFrom }, 'replica fell back to CPU');
        for (const e of r.evicted ?? []) {
          this.markDormant(e.model);
          const other = cluster.deployments.get(e.model);
          if (other) transition(other, { type: 'gone', replicaId: e.replica }, Date.now());
        }
      })
      .catch((err: unknown) => {
        const error = (err instanceof FlotillaError ? err : toFlotillaError(err)).toWire();
        this.apply(d, { type: 'load-failed', replicaId, workerId, device, error, epoch: cluster.capacityEpoch });
      })
      .finally(() => {
        // A stale deployment object (undeployed/redeployed meanwhile) is reconciled by the orphan sweep.
        if (cluster.deployments.get(spec.name) === d) this.reconcile(spec.name);
        deps.readyWaiters.wake(spec.name);
      });
  }

  private sendUnload(workerId: string, replicaId: string): void {
    const { deps } = this;
    // Bounded: heartbeats claiming thousands of unknown replicas must not turn into thousands of requests.
    if (this.unloading.has(replicaId) || this.unloading.size >= MAX_UNLOADS_IN_FLIGHT) return;
    this.unloading.add(replicaId);
    deps.logger.info({ replica: replicaId, worker: workerId }, 'unloading replica');
    call(deps.nc, deps.subjects.worker(workerId, 'unload'), { replicaId }, deps.options.loadTimeoutMs)
      .catch((err: unknown) => deps.logger.warn({ replica: replicaId, err: (err as Error).message }, 'unload failed'))
      .finally(() => setTimeout(() => this.unloading.delete(replicaId), deps.options.reconcileMs * 4).unref());
  }
}
