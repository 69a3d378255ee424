// The dashboard over HTTP: the built page and its assets (from memory, no CDN), the snapshot as
// JSON, the live feed as server-sent events, and — only when started with `allowActions` — scale
// and undeploy. Mountable in another fastify app (`dashboardPlugin`, under a prefix) or on its own
// (`startDashboard`). Every failure is `{ error: { code, message } }` with a stable code.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import type { ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { BadRequestError, ErrorCode, ForbiddenError, FlotillaError, isValidName } from '@flotilla/protocol';
import {
  MAX_STREAM_BACKLOG_BYTES,
  parseDashboardOptions,
  parseServerOptions,
  type CompiledDashboardOptions,
  type DashboardOptions,
  type ServerOptions,
} from './dashboard-options.js';
import { DashboardFeed, codedError } from './feed.js';
import type { DashboardSnapshot } from './view-model.js';

/** HTTP status of each error code (others: 500). */
export const HTTP_STATUS: Readonly<Record<string, number>> = {
  [ErrorCode.UNKNOWN_MODEL]: 404,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.BAD_REQUEST]: 400,
  [ErrorCode.DECODE_ERROR]: 400,
  [ErrorCode.PAYLOAD_TOO_LARGE]: 413,
  [ErrorCode.FORBIDDEN]: 403,
  [ErrorCode.OVERLOADED]: 503,
  [ErrorCode.UNAVAILABLE]: 503,
  [ErrorCode.NO_CAPACITY]: 503,
  [ErrorCode.DEADLINE_EXCEEDED]: 504,
};

/** Largest action body (`{"replicas": N}`), bytes. */
const ACTION_BODY_LIMIT = 1024;
/** Most replicas an action may ask for (the deploy spec's own bound). */
const MAX_REPLICAS = 1000;
/** A comment line keeps idle proxies from closing the stream, ms. */
const STREAM_PING_MS = 15_000;

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
  '.woff2': 'font/woff2',
};

interface StaticFile {
  body: Buffer;
  type: string;
}

/** Every file of the built front-end, by its path under the directory (`index.html`, `assets/index-abc.js`). Empty when not built. */
export function loadStaticFiles(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  const walk = (d: string, depth: number): void => {
    if (depth > 4) return;
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p, depth + 1);
      else if (st.isFile() && TYPES[extname(name)])
        files.set(relative(dir, p).split(sep).join('/'), { body: readFileSync(p), type: TYPES[extname(name)]! });
    }
  };
  walk(dir, 0);
  return files;
}

function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  const e = codedError(err);
  return reply.code(HTTP_STATUS[e.code] ?? 500).send(errorBody(e.code, e.message));
}

export interface DashboardPluginOptions extends DashboardOptions {
  /** Mount point in the app (`/dashboard`); fastify's own `prefix`. */
  prefix?: string;
}

/**
 * Registers the dashboard's routes on `app` (inside its own encapsulated context). Returns the feed
 * so the caller can stop it when the app closes (done by an onClose hook too).
 */
export async function dashboardPlugin(app: FastifyInstance, raw: DashboardPluginOptions): Promise<DashboardFeed> {
  const opts = parseDashboardOptions(raw);
  const feed = new DashboardFeed({
    client: opts.client,
    pollMs: opts.pollMs,
    eventsLimit: opts.eventsLimit,
    historyPoints: opts.historyPoints,
    profileRefreshMs: opts.profileRefreshMs,
    allowActions: opts.allowActions,
    logger: opts.logger,
  });
  await app.register(
    async (scope) => {
      routes(scope, opts, feed);
    },
    { prefix: raw.prefix ?? '' },
  );
  return feed;
}

function routes(app: FastifyInstance, opts: CompiledDashboardOptions, feed: DashboardFeed): void {
  const files = loadStaticFiles(opts.staticDir);
  const streams = new Set<ServerResponse>();

  app.addHook('onSend', async (_req, reply, payload) => {
    void reply.header('x-content-type-options', 'nosniff');
    void reply.header('referrer-policy', 'no-referrer');
    void reply.header('x-frame-options', 'DENY');
    void reply.header(
      'content-security-policy',
      "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    );
    return payload;
  });
  // preClose: open streams never finish by themselves, and onClose waits for every request to.
  app.addHook('preClose', async () => {
    feed.stop();
    for (const s of streams) s.end();
    streams.clear();
  });
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (err instanceof FlotillaError) return sendError(reply, err);
    // fastify's own: bad JSON, wrong content type, body too large, ...
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    const code = status === 413 ? ErrorCode.PAYLOAD_TOO_LARGE : status < 500 ? ErrorCode.BAD_REQUEST : ErrorCode.INTERNAL;
    if (status >= 500) opts.logger?.error({ err }, 'dashboard: request failed');
    return reply.code(status).send(errorBody(code, status >= 500 ? 'internal error' : err.message));
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send(errorBody(ErrorCode.NOT_FOUND, `no such page: ${req.method} ${req.url.slice(0, 200)}`)),
  );

  const page = (req: FastifyRequest, reply: FastifyReply) => {
    const path = req.url.split('?')[0]!;
    // The page loads its assets and API by relative URLs: it must be at a path ending in '/'.
    if (!path.endsWith('/')) return reply.redirect(`${path}/${req.url.slice(path.length)}`);
    const index = files.get('index.html');
    if (!index)
      return reply
        .code(503)
        .send(
          errorBody(ErrorCode.UNAVAILABLE, `the dashboard's front-end is not built (no index.html in ${opts.staticDir}): run pnpm build`),
        );
    return reply.header('cache-control', 'no-cache').type(index.type).send(index.body);
  };
  app.get('/', page);

  app.get<{ Params: { '*': string } }>('/assets/*', (req, reply) => {
    const f = files.get(`assets/${req.params['*']}`);
    if (!f) return reply.code(404).send(errorBody(ErrorCode.NOT_FOUND, 'no such asset'));
    // Vite names assets by content hash: they never change under one name.
    return reply.header('cache-control', 'public, max-age=31536000, immutable').type(f.type).send(f.body);
  });

  app.get('/api/snapshot', async (_req, reply) => reply.header('cache-control', 'no-store').send(await feed.snapshot()));

  app.get('/api/stream', (req, reply) => {
    void reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store, no-transform',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    res.write('retry: 1000\n\n');
    streams.add(res);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      clearInterval(ping);
      unsubscribe();
      streams.delete(res);
      res.end();
    };
    const send = (s: DashboardSnapshot) => {
      if (closed) return;
      // A page that does not read falls behind: cut it off (it reconnects and starts from a fresh snapshot).
      if (res.writableLength > MAX_STREAM_BACKLOG_BYTES) return close();
      res.write(`event: snapshot\ndata: ${JSON.stringify(s)}\n\n`);
    };
    const ping = setInterval(() => !closed && res.write(': ping\n\n'), STREAM_PING_MS);
    const unsubscribe = feed.subscribe(send);
    req.raw.on('close', close);
    res.on('error', close);
  });

  const action = (run: (name: string, body: unknown) => Promise<unknown>) => async (req: FastifyRequest, reply: FastifyReply) => {
    try {
      if (!opts.allowActions)
        throw new ForbiddenError('actions are off: this dashboard is read-only (start it with --allow-actions to scale and undeploy)');
      checkOrigin(req);
      // JSON only: a cross-site form can send text/plain without asking first.
      if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? ''))
        return reply.code(415).send(errorBody(ErrorCode.BAD_REQUEST, 'actions take a JSON body (content-type: application/json)'));
      const name = (req.params as { name?: unknown }).name;
      if (!isValidName(name)) throw new BadRequestError('invalid model name');
      const result = await run(name, req.body);
      await feed.refresh();
      return reply.send({ ok: true, result });
    } catch (err) {
      return sendError(reply, err);
    }
  };
  app.post(
    '/api/models/:name/scale',
    { bodyLimit: ACTION_BODY_LIMIT },
    action(async (name, body) => {
      const replicas = (body as { replicas?: unknown } | null)?.replicas;
      if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS)
        throw new BadRequestError(`replicas must be an integer from 0 to ${MAX_REPLICAS}`);
      return opts.client.scale(name, replicas);
    }),
  );
  app.post(
    '/api/models/:name/undeploy',
    { bodyLimit: ACTION_BODY_LIMIT },
    action((name) => opts.client.undeploy(name)),
  );
}

/** A browser sends Origin on a POST: another site's page may not act through this one. */
function checkOrigin(req: FastifyRequest): void {
  const origin = req.headers.origin;
  if (origin === undefined) return; // not a browser (curl, tests)
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    throw new ForbiddenError('bad Origin header');
  }
  if (host !== req.headers.host) throw new ForbiddenError(`cross-origin action refused (Origin ${origin.slice(0, 200)})`);
}

export interface Dashboard {
  readonly port: number;
  readonly host: string;
  /** `http://host:port/` (the host as given; 0.0.0.0 shows as 127.0.0.1). */
  readonly url: string;
  readonly feed: DashboardFeed;
  /** Stops the feed, ends open streams, closes the server. Safe to call twice. */
  close(): Promise<void>;
}

/** The dashboard on its own HTTP server. */
export async function startDashboard(raw: ServerOptions): Promise<Dashboard> {
  const opts = parseServerOptions(raw);
  const app = Fastify({ logger: false, forceCloseConnections: true, routerOptions: { ignoreTrailingSlash: false } });
  const feed = await dashboardPlugin(app, opts);
  await app.listen({ port: opts.port, host: opts.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const shown = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  let closing: Promise<void> | undefined;
  return {
    port,
    host: opts.host,
    url: `http://${shown}:${port}/`,
    feed,
    close: () => (closing ??= app.close().then(() => undefined)),
  };
}
