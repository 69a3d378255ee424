// `flotilla gateway`: the KServe v2 / Open Inference Protocol REST API over HTTP, forwarding to
// the cluster over NATS. Runs until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { FlotillaClient } from '@flotilla/client';
import { startGateway, DEFAULT_BODY_LIMIT_BYTES } from '@flotilla/gateway';
import { BadRequestError } from '@flotilla/protocol';
import { createLogger } from '@flotilla/bus';
import { busOptions, withConnectionOptions } from './connection-options.js';
import { parseSize, reportError } from './format.js';
import { untilSignal } from './signals.js';

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new BadRequestError(`--http-port must be a port number (0-65535), got ${v}`);
  return n;
}

export function gatewayCommand(program: Command): void {
  withConnectionOptions(
    program
      .command('gateway')
      .description('serve the KServe v2 (Open Inference Protocol) REST API over HTTP: /v2/health/*, /v2/models/<name>[/ready|/infer]')
      .option('--http-port <port>', 'HTTP port (0: any free port)', '8080')
      .option('--host <host>', 'interface to listen on', '0.0.0.0')
      .option('--body-limit <size>', `largest request body, e.g. 64MiB (default ${DEFAULT_BODY_LIMIT_BYTES / 1024 / 1024}MiB)`)
      .option('--no-probe', 'do not run models on zero inputs to learn their outputs for model metadata'),
  ).action(async (o) => {
    const { cluster, ...bus } = busOptions(o);
    const client = new FlotillaClient({ ...bus, cluster });
    const logger = createLogger('gateway');
    let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
    try {
      await client.connection();
      const httpPort = port(String(o.httpPort));
      gateway = await startGateway({
        client,
        port: httpPort,
        host: o.host,
        bodyLimitBytes: o.bodyLimit ? parseSize(o.bodyLimit) : undefined,
        probeSignatures: o.probe,
        logger,
      }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE') throw new BadRequestError(`HTTP port ${httpPort} on ${o.host} is already in use (choose another with --http-port)`);
        throw err;
      });
      process.stdout.write(`flotilla gateway: listening on http://${o.host}:${gateway.port} cluster=${cluster} nats=${String(bus.servers)}\n`);
      const sig = await untilSignal();
      logger.info({ signal: sig }, 'stopping');
    } catch (err) {
      process.exitCode = reportError(err, false);
    } finally {
      await gateway?.close();
      await client.close();
    }
  });
}
