// The control operations the leading head answers (deploy, undeploy, scale, ensure, describe, list,
// status, events), each already parsed by its schema: validate against the model store, write
// desired state, apply the deployment's transition, and ask the head for a reconcile round. The
// head supplies its state and actions through ControlHost.
import {
  BadRequestError,
  MAX_ENSURE_WAIT_MS,
  UnknownModelError,
  isFatalLoadCode,
  parseDeploySpec,
  type ClusterStatus,
  type ControlRequest,
  type DeploymentStatus,
} from '@flotilla/protocol';
import type { Logger } from '@flotilla/bus';
import { newDeployment, transition } from './deployment.js';
import type { DeploymentStore } from './deployment-store.js';
import type { ClusterState } from './cluster-state.js';
import type { ReadyWaiters } from './ready-waiters.js';

export interface ControlHost {
  readonly cluster: ClusterState;
  readonly store: DeploymentStore;
  readonly readyWaiters: ReadyWaiters;
  readonly logger: Logger;
  /** Bytes of an artifact in the model store; undefined when it is not there. */
  artifactSize(digest: string): Promise<number | undefined>;
  leading(): boolean;
  status(): ClusterStatus;
  reconcile(name: string): void;
  /** Unloads replicas of models no longer deployed. */
  reconcileOrphans(): void;
}

export class ControlPlane {
  constructor(private readonly host: ControlHost) {}

  handle(req: ControlRequest): Promise<unknown> | unknown {
    const h = this.host;
    const c = h.cluster;
    switch (req.op) {
      case 'deploy':
        return this.deploy(req.spec);
      case 'undeploy':
        return this.undeploy(req.name);
      case 'scale':
        return this.scale(req.name, req.replicas);
      case 'list':
        return [...c.deployments.keys()].sort().map((n) => c.describe(n));
      case 'describe':
        return c.describe(req.name);
      case 'ensure':
        return this.ensure(req.name, req.waitMs ?? 0);
      case 'events':
        return c.events.query({ model: req.model, type: req.type, limit: req.limit ?? 100 });
      case 'status':
        return h.status();
    }
  }

  async deploy(raw: unknown): Promise<DeploymentStatus> {
    const h = this.host;
    const spec = parseDeploySpec(raw);
    const size = await h.artifactSize(spec.digest);
    if (size === undefined)
      throw new BadRequestError(`artifact ${spec.digest} is not in the model store: upload it first (the client's deploy does)`);
    if (size !== spec.sizeBytes) throw new BadRequestError(`artifact ${spec.digest} has ${size} bytes, the spec says ${spec.sizeBytes}`);
    const prev = h.cluster.deployments.get(spec.name);
    const createdAt = Date.now();
    await h.store.put(spec, createdAt);
    // A redeploy keeps the previous loads pending: they still take room until reported or failed.
    h.cluster.deployments.set(spec.name, newDeployment(spec, createdAt, 0, h.cluster.capacityEpoch, undefined, prev?.pending));
    h.logger.info({ model: spec.name, replicas: spec.replicas, device: spec.device }, prev ? 'redeploy' : 'deploy');
    h.reconcile(spec.name);
    return h.cluster.describe(spec.name);
  }

  async undeploy(name: string): Promise<{ name: string; removed: boolean }> {
    const h = this.host;
    if (!h.cluster.deployments.has(name)) throw new UnknownModelError(`no deployment named '${name}'`);
    await h.store.delete(name);
    h.cluster.deployments.delete(name);
    h.cluster.capacityEpoch++;
    h.reconcileOrphans();
    return { name, removed: true };
  }

  async scale(name: string, replicas: number): Promise<DeploymentStatus> {
    const h = this.host;
    const d = h.cluster.deployments.get(name);
    if (!d) throw new UnknownModelError(`no deployment named '${name}'`);
    const spec = parseDeploySpec({ ...d.spec, replicas });
    await h.store.put(spec, d.createdAt);
    transition(d, { type: 'scaled', spec, epoch: h.cluster.capacityEpoch }, Date.now());
    h.reconcile(name);
    return h.cluster.describe(name);
  }

  /**
   * A caller found no replica of `name`: bring one back (evicted, scaled to zero, or lost). With
   * `waitMs` the reply waits until a replica is ready (or its load failed, or the wait ran out),
   * so the caller's retry goes straight to it instead of polling.
   */
  async ensure(name: string, waitMs: number): Promise<DeploymentStatus> {
    const h = this.host;
    h.cluster.describe(name); // throws UNKNOWN_MODEL
    const d = h.cluster.deployments.get(name)!;
    transition(d, { type: 'requested', counted: h.cluster.counted(d), epoch: h.cluster.capacityEpoch }, Date.now());
    h.reconcile(name);
    const wait = Math.min(waitMs, MAX_ENSURE_WAIT_MS);
    const settled = (s: DeploymentStatus) => s.ready > 0 || isFatalLoadCode(s.pendingReason?.code);
    const now = h.cluster.describe(name);
    if (wait === 0 || settled(now)) return now;
    await h.readyWaiters.wait(name, wait, () => !h.leading() || !h.cluster.deployments.has(name) || settled(h.cluster.describe(name)));
    return h.cluster.describe(name);
  }
}
