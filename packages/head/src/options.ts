// Head options: raw (documented) → defaults → validated; never mutates its input.
import { hostname } from 'node:os';
import { BadRequestError, DEFAULT_CLUSTER } from '@flotilla/protocol';
import type { BusOptions, Logger, NatsConnection } from '@flotilla/bus';
import { DEFAULT_PLACEMENT_RULE, PLACEMENT_RULES, type PlacementRule } from './placement.js';
import { DEFAULT_MAX_WORKERS } from './registry.js';

export const DEFAULT_WORKER_TIMEOUT_MS = 5000;
export const DEFAULT_RECONCILE_MS = 500;
export const DEFAULT_LEASE_TTL_MS = 10_000;
export const DEFAULT_SETTLE_MS = 2500;
export const DEFAULT_PRESENCE_MS = 1000;

export interface HeadOptions {
  /** NATS connection settings (ignored when `connection` is given). */
  bus?: BusOptions;
  /** Use this connection instead of opening one (the head will not close it). */
  connection?: NatsConnection;
  /** Cluster name. Default `FLOTILLA_CLUSTER` or `default`. */
  cluster?: string;
  /** A worker silent this long is dead, ms. Default 5000 (five heartbeats). */
  workerTimeoutMs?: number;
  /** Period of the reconcile loop (desired vs. actual replicas), ms. Default 500. */
  reconcileMs?: number;
  /** Timeout of a load command sent to a worker (includes fetching the artifact), ms. Default 120 000. */
  loadTimeoutMs?: number;
  /** JetStream replicas for Flotilla's buckets (3 on a 3-node NATS cluster). Default 1. */
  storeReplicas?: number;
  /** Head id (shown in status and the leadership lease). Default `<hostname>-<pid>`. */
  id?: string;
  /**
   * Leadership lease, ms: of several heads one leads (reconciles, answers control requests), the
   * others stand by and take over within about this long after the leader is lost. A leader that
   * cannot renew it for this long (e.g. a JetStream leader election longer than that) steps down.
   * Default 10 000 (Kubernetes' leader election uses 15 s).
   */
  leaseTtlMs?: number;
  /**
   * After it starts leading, the head waits this long before placing replicas of the deployments
   * it recovered, so replicas on workers it has not heard from yet are not placed twice, ms.
   * Default 2500 (two and a half heartbeats at the workers' default period).
   */
  settleMs?: number;
  /** Most workers the head keeps track of; heartbeats from further worker ids are refused. Default 10 000. */
  maxWorkers?: number;
  /**
   * A replica a worker answered as loaded must show up in its heartbeats within this long, else the
   * placement counts as failed (the device is skipped, the deployment backs off), ms. Default: the
   * worker timeout.
   */
  confirmMs?: number;
  /**
   * Where a new replica goes among the devices of its preferred kind: `cost-aware` (a device with
   * room before one that must evict, then the cheapest eviction) or `first-fit` (the first worker
   * where it fits, evicting there even when another has room; for comparison). Default `cost-aware`.
   */
  placement?: PlacementRule;
  /**
   * Period of this head's presence message (leader and standby alike), ms; a head not heard for
   * three periods (of the listening head's setting) drops out of `status`. Default 1000.
   */
  presenceMs?: number;
  logger?: Logger;
}

export interface CompiledHeadOptions {
  bus: BusOptions;
  connection?: NatsConnection;
  cluster: string;
  workerTimeoutMs: number;
  reconcileMs: number;
  loadTimeoutMs: number;
  storeReplicas: number;
  id: string;
  leaseTtlMs: number;
  settleMs: number;
  maxWorkers: number;
  confirmMs: number;
  placement: PlacementRule;
  presenceMs: number;
  logger?: Logger;
}

export function parseHeadOptions(raw: HeadOptions = {}): CompiledHeadOptions {
  const o: CompiledHeadOptions = {
    bus: { ...raw.bus },
    connection: raw.connection,
    cluster: raw.cluster ?? process.env.FLOTILLA_CLUSTER ?? DEFAULT_CLUSTER,
    workerTimeoutMs: raw.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS,
    reconcileMs: raw.reconcileMs ?? DEFAULT_RECONCILE_MS,
    loadTimeoutMs: raw.loadTimeoutMs ?? 120_000,
    storeReplicas: raw.storeReplicas ?? 1,
    id: raw.id ?? `${(process.env.HOSTNAME ?? hostname()).replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 40) || 'head'}-${process.pid}`,
    leaseTtlMs: raw.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
    settleMs: raw.settleMs ?? DEFAULT_SETTLE_MS,
    maxWorkers: raw.maxWorkers ?? DEFAULT_MAX_WORKERS,
    confirmMs: raw.confirmMs ?? raw.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS,
    presenceMs: raw.presenceMs ?? DEFAULT_PRESENCE_MS,
    placement: raw.placement ?? DEFAULT_PLACEMENT_RULE,
    logger: raw.logger,
  };
  const bad = (k: string, v: number, min: number, max: number) => {
    if (!Number.isFinite(v) || v < min || v > max) throw new BadRequestError(`invalid head option ${k}=${v}: must be in [${min}, ${max}]`);
  };
  bad('workerTimeoutMs', o.workerTimeoutMs, 100, 600_000);
  bad('reconcileMs', o.reconcileMs, 10, 60_000);
  bad('loadTimeoutMs', o.loadTimeoutMs, 100, 3_600_000);
  bad('storeReplicas', o.storeReplicas, 1, 5);
  bad('leaseTtlMs', o.leaseTtlMs, 300, 600_000);
  bad('settleMs', o.settleMs, 0, 600_000);
  bad('maxWorkers', o.maxWorkers, 1, 1_000_000);
  bad('confirmMs', o.confirmMs, 100, 600_000);
  bad('presenceMs', o.presenceMs, 50, 60_000);
  if (!PLACEMENT_RULES.includes(o.placement))
    throw new BadRequestError(`invalid head option placement='${o.placement}': use ${PLACEMENT_RULES.join(' or ')}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(o.id))
    throw new BadRequestError(`invalid head option id='${o.id}': use 1-64 letters, digits, _ or -`);
  return o;
}
