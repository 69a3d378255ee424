// `flotilla gateway`: the KServe v2 / Open Inference Protocol over HTTP (and gRPC with --grpc-port),
// forwarding to the cluster over NATS. Runs until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { FlotillaClient } from '@flotilla/client';
import {
  parseGatewayOptions,
  startGateway,
  type GatewayOptions,
  DEFAULT_BODY_LIMIT_BYTES,
  DEFAULT_CONNECTION_TIMEOUT_MS,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  DEFAULT_MAX_JSON_DEPTH,
  DEFAULT_REQUEST_TIMEOUT_MS,
} from '@flotilla/gateway';
import { BadRequestError } from '@flotilla/protocol';
import { createLogger } from '@flotilla/bus';
import { dashboardPlugin } from '@flotilla/dashboard';
import { busOptions, withConnectionOptions } from './connection-options.js';
import { parseSize, reportError } from './format.js';
import { untilSignal } from './signals.js';

const num = (v: string) => Number(v);

function port(v: string, flag = '--http-port'): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535)
    throw new BadRequestError(`${flag} must be a port number (0-65535), got ${v}`);
  return n;
}

export function gatewayCommand(program: Command): void {
  withConnectionOptions(
    program
      .command('gateway')
      .description(
        'serve the KServe v2 (Open Inference Protocol) API over HTTP: /v2/health/*, /v2/models/<name>[/versions/1][/ready|/infer|/stats] ' +
          '(JSON or binary tensors, gzip/deflate), and over gRPC with --grpc-port',
      )
      .option('--http-port <port>', 'HTTP port (0: any free port)', '8080')
      .option('--grpc-port <port>', "also serve KServe's gRPC inference.GRPCInferenceService on this port (0: any free port)")
      .option('--host <host>', 'interface to listen on', '0.0.0.0')
      .option('--body-limit <size>', `largest request body, e.g. 64MiB (default ${DEFAULT_BODY_LIMIT_BYTES / 1024 / 1024}MiB)`)
      .option(
        '--max-json-depth <n>',
        `deepest nesting of arrays/objects in a body; deeper is 400 BAD_REQUEST (default ${DEFAULT_MAX_JSON_DEPTH})`,
        num,
      )
      .option('--headers-timeout <ms>', `request line and headers must arrive within this (default ${DEFAULT_HEADERS_TIMEOUT_MS})`, num)
      .option(
        '--request-timeout <ms>',
        `the whole request must arrive within this, 0: no limit (default ${DEFAULT_REQUEST_TIMEOUT_MS})`,
        num,
      )
      .option('--keep-alive-timeout <ms>', `idle keep-alive connections close after this (default ${DEFAULT_KEEP_ALIVE_TIMEOUT_MS})`, num)
      .option(
        '--connection-timeout <ms>',
        `a connection idle this long closes, 0: never; longer inference deadlines extend it (default ${DEFAULT_CONNECTION_TIMEOUT_MS})`,
        num,
      )
      .option('--no-probe', 'do not run models on zero inputs to learn their outputs for model metadata')
      .option('--dashboard', 'also serve the live dashboard (read-only) at /dashboard/'),
  ).action(async (o) => {
    const { cluster, ...bus } = busOptions(o);
    const client = new FlotillaClient({ ...bus, cluster });
    const logger = createLogger('gateway');
    let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
    try {
      const httpPort = port(String(o.httpPort));
      const grpcPort = o.grpcPort === undefined ? undefined : port(String(o.grpcPort), '--grpc-port');
      const options: GatewayOptions = {
        client,
        port: httpPort,
        ...(grpcPort !== undefined ? { grpcPort } : {}),
        host: o.host,
        bodyLimitBytes: o.bodyLimit ? parseSize(o.bodyLimit) : undefined,
        maxJsonDepth: o.maxJsonDepth,
        headersTimeoutMs: o.headersTimeout,
        requestTimeoutMs: o.requestTimeout,
        keepAliveTimeoutMs: o.keepAliveTimeout,
        connectionTimeoutMs: o.connectionTimeout,
        probeSignatures: o.probe,
        logger,
        ...(o.dashboard ? { mount: (app) => dashboardPlugin(app, { client, prefix: '/dashboard', logger }) } : {}),
      };
      parseGatewayOptions(options); // a bad flag is BAD_REQUEST before anything connects
      await client.connection();
      gateway = await startGateway(options).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE')
          throw new BadRequestError(`HTTP port ${httpPort} on ${o.host} is already in use (choose another with --http-port)`);
        if (grpcPort !== undefined && /No address added/.test(err.message))
          throw new BadRequestError(`gRPC port ${grpcPort} on ${o.host} cannot be bound (in use?): ${err.message}`);
        throw err;
      });
      const grpcNote =
        (gateway.grpcPort !== undefined ? ` grpc=${o.host}:${gateway.grpcPort}` : '') +
        (o.dashboard ? ` dashboard=http://${o.host}:${gateway.port}/dashboard/` : '');
      process.stdout.write(
        `flotilla gateway: listening on http://${o.host}:${gateway.port}${grpcNote} cluster=${cluster} nats=${String(bus.servers)}\n`,
      );
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
