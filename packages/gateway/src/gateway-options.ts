// Gateway options: raw (documented) → defaults added → checked. The timeouts keep slow or
// stalled clients from holding connections (a slow-loris client sending half its headers used
// to be held for node's 60 s, plus up to 30 s until its check ran); the depth limit keeps deeply
// nested JSON a 400, not a stack overflow.
import { BadRequestError } from '@flotilla/protocol';
import type { FlotillaClient } from '@flotilla/client';
import type { Logger } from '@flotilla/bus';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_MAX_JSON_DEPTH } from './json-depth.js';

export { DEFAULT_MAX_JSON_DEPTH };
/** Largest request body (JSON text), bytes. */
export const DEFAULT_BODY_LIMIT_BYTES = 64 * 1024 * 1024;
/** Time a client has to send the request line and all headers, ms (node's default: 60 s). */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
/** Time a client has to send the whole request, body included, ms (64 MiB at ≥ 0.55 MiB/s). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;
/** Idle keep-alive connection kept open between requests, ms (node's default; fastify's is 72 s). */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 5_000;
/**
 * Socket inactivity (no byte either way) after which a connection is closed, ms. An inference
 * whose deadline is longer extends it for that request.
 */
export const DEFAULT_CONNECTION_TIMEOUT_MS = 60_000;
/** How long /v2/health/ready waits for the head, ms. */
export const DEFAULT_READY_TIMEOUT_MS = 2_000;
/** Upper bound of every timeout option, ms (1 hour, the longest inference deadline). */
const MAX_TIMEOUT_OPTION_MS = 3_600_000;

export interface GatewayOptions {
  client: FlotillaClient;
  /** 0 picks a free port. */
  port: number;
  /** Default 0.0.0.0 (HTTP and gRPC). */
  host?: string;
  /** Serve KServe's gRPC GRPCInferenceService on this port too (0: any free port). Default: no gRPC. */
  grpcPort?: number;
  /** Largest request body (JSON text and binary data, after inflating; a gRPC message too), bytes. Default 64 MiB. */
  bodyLimitBytes?: number;
  /** Deepest nesting of arrays/objects in a body; deeper is 400 BAD_REQUEST. Default 64. */
  maxJsonDepth?: number;
  /** Request line and headers must arrive within this, ms; else 408 and the connection closes. Default 10,000. */
  headersTimeoutMs?: number;
  /** The whole request must arrive within this, ms (0: no limit); else 408 and close. Default 120,000. */
  requestTimeoutMs?: number;
  /** Idle keep-alive connections close after this, ms. Default 5,000. */
  keepAliveTimeoutMs?: number;
  /** A connection idle this long closes, ms (0: never); longer inference deadlines extend it per request. Default 60,000. */
  connectionTimeoutMs?: number;
  /** How long /v2/health/ready waits for the head, ms. Default 2000. */
  readyTimeoutMs?: number;
  /** Learn model inputs/outputs for metadata by probing replicas (see signature.ts). Default true. */
  probeSignatures?: boolean;
  /** 5xx answers are logged here. */
  logger?: Logger;
  /** Registers more routes on the gateway's HTTP app before it listens (`flotilla gateway --dashboard` mounts the dashboard). */
  mount?: (app: FastifyInstance) => Promise<unknown>;
}

export type CompiledGatewayOptions = Required<Omit<GatewayOptions, 'logger' | 'grpcPort' | 'mount'>> & {
  logger?: Logger;
  mount?: GatewayOptions['mount'];
  grpcPort: number | undefined;
  /** How often node checks the headers and request timeouts, ms (derived: a quarter of the shorter, 50-1000). */
  timeoutCheckIntervalMs: number;
};

/** Adds defaults and checks every option; BAD_REQUEST names the first bad one. Never mutates `raw`. */
export function parseGatewayOptions(raw: GatewayOptions): CompiledGatewayOptions {
  const o = {
    client: raw.client,
    port: raw.port,
    host: raw.host ?? '0.0.0.0',
    grpcPort: raw.grpcPort,
    bodyLimitBytes: raw.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    maxJsonDepth: raw.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH,
    headersTimeoutMs: raw.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: raw.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: raw.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
    connectionTimeoutMs: raw.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
    readyTimeoutMs: raw.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
    probeSignatures: raw.probeSignatures ?? true,
    ...(raw.logger ? { logger: raw.logger } : {}),
    ...(raw.mount ? { mount: raw.mount } : {}),
  };
  const int = (name: string, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max)
      throw new BadRequestError(`gateway option ${name} must be an integer in [${min}, ${max}], got ${v}`);
  };
  int('port', o.port, 0, 65535);
  if (o.grpcPort !== undefined) int('grpcPort', o.grpcPort, 0, 65535);
  int('bodyLimitBytes', o.bodyLimitBytes, 1, 2 ** 31);
  int('maxJsonDepth', o.maxJsonDepth, 1, 10_000);
  int('headersTimeoutMs', o.headersTimeoutMs, 1, MAX_TIMEOUT_OPTION_MS);
  int('requestTimeoutMs', o.requestTimeoutMs, 0, MAX_TIMEOUT_OPTION_MS);
  int('keepAliveTimeoutMs', o.keepAliveTimeoutMs, 1, MAX_TIMEOUT_OPTION_MS);
  int('connectionTimeoutMs', o.connectionTimeoutMs, 0, MAX_TIMEOUT_OPTION_MS);
  int('readyTimeoutMs', o.readyTimeoutMs, 1, MAX_TIMEOUT_OPTION_MS);
  if (o.requestTimeoutMs > 0 && o.headersTimeoutMs > o.requestTimeoutMs) {
    throw new BadRequestError(
      `gateway option headersTimeoutMs (${o.headersTimeoutMs}) must not exceed requestTimeoutMs (${o.requestTimeoutMs})`,
    );
  }
  const shortest = Math.min(o.headersTimeoutMs, o.requestTimeoutMs || Infinity);
  return { ...o, timeoutCheckIntervalMs: Math.max(50, Math.min(1000, Math.floor(shortest / 4))) };
}
