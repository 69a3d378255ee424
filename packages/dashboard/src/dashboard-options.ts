// Dashboard options: raw (documented) → defaults added → checked. A bad value is BAD_REQUEST before
// anything listens or connects.
import { fileURLToPath } from 'node:url';
import { BadRequestError } from '@flotilla/protocol';
import type { FlotillaClient } from '@flotilla/client';
import type { Logger } from '@flotilla/bus';
import { DEFAULT_HISTORY_POINTS } from './history.js';

/** Port of `flotilla dashboard` when none is given. */
export const DEFAULT_DASHBOARD_PORT = 8090;
/** Interface to listen on: this host only (the page shows the whole cluster; expose it on purpose). */
export const DEFAULT_DASHBOARD_HOST = '127.0.0.1';
/** How often status and events are read while a page is open, ms (the page updates within 1 s of a change). */
export const DEFAULT_POLL_MS = 500;
/** Events kept on the page. */
export const DEFAULT_EVENTS_LIMIT = 200;
/** Profiles are read again at least this often, ms (and whenever a replica's profile state changes). */
export const DEFAULT_PROFILE_REFRESH_MS = 10_000;
/** Where the built front-end lies (vite's output, `pnpm build`: dist/web). */
export const DEFAULT_STATIC_DIR = fileURLToPath(new URL('../dist/web/', import.meta.url));
/** A page whose stream falls this far behind (bytes not yet sent) is cut off; it reconnects and gets a fresh snapshot. */
export const MAX_STREAM_BACKLOG_BYTES = 8 * 1024 * 1024;

export interface DashboardOptions {
  client: FlotillaClient;
  /** Show scale and undeploy buttons and accept those actions (the connection's credentials still decide). Default false. */
  allowActions?: boolean;
  /** Status and events are read this often while a page is open, ms (50-10,000). Default 500. */
  pollMs?: number;
  /** Events kept on the page (1-1000). Default 200. */
  eventsLimit?: number;
  /** Samples kept per sparkline (2-3600). Default 120. */
  historyPoints?: number;
  /** Profiles are read again at least this often, ms (1000-3,600,000). Default 10,000. */
  profileRefreshMs?: number;
  /** Directory of the built front-end. Default the package's `dist/web`. */
  staticDir?: string;
  logger?: Logger;
}

export interface ServerOptions extends DashboardOptions {
  /** 0 picks a free port. Default 8090. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
}

export type CompiledDashboardOptions = Required<Omit<DashboardOptions, 'logger'>> & { logger?: Logger };

function bounded(name: string, v: number | undefined, def: number, min: number, max: number, integer = true): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v)))
    throw new BadRequestError(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${String(v)}`);
  return v;
}

export function parseDashboardOptions(raw: DashboardOptions): CompiledDashboardOptions {
  if (!raw || typeof raw !== 'object' || !raw.client) throw new BadRequestError('dashboard options need a client');
  return {
    client: raw.client,
    allowActions: raw.allowActions === true,
    pollMs: bounded('pollMs', raw.pollMs, DEFAULT_POLL_MS, 50, 10_000),
    eventsLimit: bounded('eventsLimit', raw.eventsLimit, DEFAULT_EVENTS_LIMIT, 1, 1000),
    historyPoints: bounded('historyPoints', raw.historyPoints, DEFAULT_HISTORY_POINTS, 2, 3600),
    profileRefreshMs: bounded('profileRefreshMs', raw.profileRefreshMs, DEFAULT_PROFILE_REFRESH_MS, 1000, 3_600_000),
    staticDir: raw.staticDir ?? DEFAULT_STATIC_DIR,
    ...(raw.logger ? { logger: raw.logger } : {}),
  };
}

export function parseServerOptions(raw: ServerOptions): CompiledDashboardOptions & { port: number; host: string } {
  const host = raw.host ?? DEFAULT_DASHBOARD_HOST;
  if (typeof host !== 'string' || host.length === 0 || host.length > 255)
    throw new BadRequestError(`host must be an interface name or address`);
  return {
    ...parseDashboardOptions(raw),
    port: bounded('port', raw.port, DEFAULT_DASHBOARD_PORT, 0, 65535),
    host,
  };
}
