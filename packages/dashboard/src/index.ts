// The web dashboard: a live page of the cluster (workers, devices and memory, deployments, events,
// profiles, heads) served by fastify from the built front-end, fed over server-sent events.
export { startDashboard, dashboardPlugin, loadStaticFiles, HTTP_STATUS, type Dashboard, type DashboardPluginOptions } from './server.js';
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
