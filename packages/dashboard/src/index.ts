// The web dashboard: a live page of the cluster (workers, devices and memory, deployments, events,
// profiles, heads) served by fastify from the built front-end, fed over server-sent events.
import type { FastifyInstance } from 'fastify';
import type { Dashboard, DashboardPluginOptions } from './server.js';
import type { DashboardFeed } from './feed.js';
import type { ServerOptions } from './dashboard-options.js';
export type { Dashboard, DashboardPluginOptions } from './server.js';

// The server (fastify and its plugins) loads on first use, so a process that imports this package
// for its options only (the CLI, running a worker) does not carry it (see @flotilla/gateway's).

/** Serves the dashboard on its own port. */
export async function startDashboard(raw: ServerOptions): Promise<Dashboard> {
  return (await import('./server.js')).startDashboard(raw);
}

/** Mounts the dashboard's routes on an existing fastify app (the gateway's `--dashboard`). */
export async function dashboardPlugin(app: FastifyInstance, raw: DashboardPluginOptions): Promise<DashboardFeed> {
  return (await import('./server.js')).dashboardPlugin(app, raw);
}
export {
  DEFAULT_DASHBOARD_HOST,
  DEFAULT_DASHBOARD_PORT,
  DEFAULT_EVENTS_LIMIT,
  DEFAULT_POLL_MS,
  DEFAULT_PROFILE_REFRESH_MS,
  DEFAULT_STATIC_DIR,
  parseDashboardOptions,
  parseServerOptions,
  type DashboardOptions,
  type ServerOptions,
} from './dashboard-options.js';
export { DashboardFeed } from './feed.js';
export type { DashboardSnapshot } from './view-model.js';
