// HTTP health endpoints for orchestrators (Kubernetes probes): GET /livez answers 200 while the
// process runs; GET /readyz answers 200 only when the process is connected to NATS and serving.
// Plain node:http: two fixed routes need no framework.
import { createServer, type Server } from 'node:http';
import type { NatsConnection } from '@nats-io/nats-core';
import { connectionLink } from './connection-lost.js';

export interface HealthServerOptions {
  port: number;
  host?: string;
  /** Returns null when ready, or the reason it is not. */
  notReady: () => string | null;
  /** Prometheus text for GET /metrics (absent: 404). */
  metrics?: () => Promise<string>;
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (code: number, body: object) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'method not allowed' });
    if (path === '/livez') return send(200, { live: true });
    if (path === '/metrics' && opts.metrics) {
      opts.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
          res.end(text);
        },
        (err: unknown) => send(500, { error: (err as Error).message }),
      );
      return;
    }
    if (path === '/readyz') {
      const reason = opts.notReady();
      return reason === null ? send(200, { ready: true }) : send(503, { ready: false, reason });
    }
    send(404, { error: 'not found', paths: ['/livez', '/readyz', '/metrics'] });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  let closed: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })),
  };
}

/** Follows a connection's disconnect/reconnect events (its ConnectionLink); `connected()` is what readiness needs. */
export function connectionTracker(nc: NatsConnection): { connected: () => boolean } {
  const link = connectionLink(nc);
  return { connected: () => link.up };
}

/** Readiness of a process with a lifecycle state: null when running and connected, else why not. */
export function notReadyReason(what: string, state: string, link: { connected: () => boolean }): string | null {
  if (state !== 'running') return `${what} is ${state}`;
  if (!link.connected()) return 'not connected to NATS';
  return null;
}
