// `flotilla dashboard`: the live web page of the cluster (workers, memory, deployments, events,
// profiles, heads), read-only unless started with --allow-actions. Runs until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { FlotillaClient } from '@flotilla/client';
import { DEFAULT_DASHBOARD_HOST, DEFAULT_DASHBOARD_PORT, parseServerOptions, startDashboard, type Dashboard } from '@flotilla/dashboard';
import { BadRequestError } from '@flotilla/protocol';
import { createLogger } from '@flotilla/bus';
import { busOptions, withConnectionOptions } from './connection-options.js';
import { reportError } from './format.js';
import { untilSignal } from './signals.js';

function port(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535)
    throw new BadRequestError(`--http-port must be a port number (0-65535), got ${v}`);
  return n;
}

export function dashboardCommand(program: Command): void {
  withConnectionOptions(
    program
      .command('dashboard')
      .description('serve a live web dashboard of the cluster: workers, device memory, deployments, events, profiles, heads')
      .option('--http-port <port>', 'HTTP port (0: any free port)', String(DEFAULT_DASHBOARD_PORT))
      .option('--host <host>', 'interface to listen on (0.0.0.0: every interface)', DEFAULT_DASHBOARD_HOST)
      .option('--allow-actions', "show scale and undeploy buttons (the connection's credentials still decide: a caller gets FORBIDDEN)")
      .option('--poll-ms <ms>', 'how often status and events are read while a page is open', (v) => Number(v)),
  ).action(async (o) => {
    const { cluster, ...bus } = busOptions(o);
    const client = new FlotillaClient({ ...bus, cluster });
    let dashboard: Dashboard | undefined;
    try {
      const httpPort = port(String(o.httpPort));
      const options = {
        client,
        port: httpPort,
        host: o.host,
        allowActions: o.allowActions === true,
        pollMs: o.pollMs,
        logger: createLogger('dashboard'),
      };
      parseServerOptions(options); // a bad flag is BAD_REQUEST before anything connects
      await client.connection();
      dashboard = await startDashboard(options).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE')
          throw new BadRequestError(`HTTP port ${httpPort} on ${o.host} is already in use (choose another with --http-port)`);
        throw err;
      });
      process.stdout.write(
        `flotilla dashboard: open ${dashboard.url} (cluster=${cluster} nats=${String(bus.servers)}${o.allowActions ? ', actions on' : ', read-only'})\n`,
      );
      await untilSignal();
    } catch (err) {
      process.exitCode = reportError(err, false);
    } finally {
      await dashboard?.close();
      await client.close();
    }
  });
}
