// What the Moleculer peer's service (peer-moleculer.ts) and its load generator
// (peer-moleculer-load.ts) agree on: the action's name, its params and reply, the broker options.
import type { BrokerOptions } from 'moleculer';
import type { TurnArgs } from './load-windows.js';

/** The service, and the action the load generator calls. */
export const MOLECULER_SERVICE = 'bench-model';
export const MOLECULER_ACTION = `${MOLECULER_SERVICE}.infer`;

/** One tensor on the wire: raw little-endian float32 bytes (msgpack bin) and its dims. */
export interface MoleculerTensor {
  dims: number[];
  data: Buffer;
}

export interface MoleculerInferParams {
  inputs: Record<string, MoleculerTensor>;
}

export interface MoleculerInferReply {
  outputs: Record<string, MoleculerTensor>;
}

/** Broker options both sides share: NATS, MsgPack, no logging, metrics or tracing. */
export function moleculerBrokerOptions(natsUrl: string, namespace: string, nodeID: string): BrokerOptions {
  return {
    namespace,
    nodeID,
    transporter: { type: 'NATS', options: { url: natsUrl } },
    serializer: 'MsgPack',
    logger: false,
    requestTimeout: 30_000,
    metrics: false,
    tracing: false,
  };
}

/** What peers.ts passes the load generator (JSON in argv[2]). */
export interface MoleculerLoadArgs extends TurnArgs {
  natsUrl: string;
  namespace: string;
  inputs: Array<{ name: string; dims: number[] }>;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

/** The load generator's one JSON line; peers.ts adds the service's affinity. */
export interface MoleculerRun {
  itemsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  sent: number;
  ok: number;
  errored: number;
  errors: Record<string, number>;
  concurrency: number;
  moleculerVersion: string;
  serializer: string;
  transporter: string;
  loadAffinity: string;
  serviceAffinity?: string;
  /** items/s of each window taken in turns with Flotilla's load (load-windows.ts). */
  turns?: number[];
}
