// The gateway: the KServe v2 / Open Inference Protocol in front of a Flotilla cluster, over HTTP
// (this file: JSON, the binary tensor data extension, compression, statistics) and optionally gRPC
// (grpc-server.ts). Requests are forwarded over NATS with the SDK (inference straight to a
// replica, metadata and readiness from the head) through the shared InferenceService.
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import compress from '@fastify/compress';
import { DEFAULT_INFER_TIMEOUT_MS } from '@flotilla/client';
import { BadRequestError, ErrorCode, FlotillaError, PayloadTooLargeError, TRACEPARENT_HEADER, toFlotillaError } from '@flotilla/protocol';
import { INFERENCE_HEADER, frameBody, parseHeaderLength, splitBody } from './binary-data.js';
import { parseGatewayOptions, type GatewayOptions } from './gateway-options.js';
import { startGrpcServer } from './grpc-server.js';
import { InferenceService } from './inference-service.js';
import { jsonDepthExceeded } from './json-depth.js';
import { quoteNonFinite } from './json-nonfinite.js';
import { buildV2InferResponse, parseV2InferRequest } from './v2-request.js';

export { GATEWAY_VERSION } from './inference-service.js';

/** Request header with the inference deadline in ms (default: the SDK's, 30 s). */
export const TIMEOUT_HEADER = 'x-flotilla-timeout-ms';
const MAX_TIMEOUT_MS = 3_600_000;
/** Time a reply may take to leave after the inference deadline before an idle connection is cut, ms. */
const REPLY_SLACK_MS = 5_000;

export interface Gateway {
  /** The HTTP port. */
  port: number;
  /** The gRPC port, when gRPC is served. */
  grpcPort?: number;
  /** Stops both servers (in-flight requests finish); safe to call twice. */
  close(): Promise<void>;
}

/** HTTP status of each Flotilla error code; others are 500. */
export const HTTP_STATUS: Readonly<Record<string, number>> = {
  [ErrorCode.UNKNOWN_MODEL]: 404,
  [ErrorCode.BAD_REQUEST]: 400,
  [ErrorCode.INPUT_MISMATCH]: 400,
  [ErrorCode.DECODE_ERROR]: 400,
  [ErrorCode.PAYLOAD_TOO_LARGE]: 413,
  [ErrorCode.OVERLOADED]: 503,
  [ErrorCode.UNAVAILABLE]: 503,
  [ErrorCode.NO_CAPACITY]: 503,
  [ErrorCode.DEADLINE_EXCEEDED]: 504,
  [ErrorCode.FORBIDDEN]: 403,
};

export function httpStatusForCode(code: string): number {
  return HTTP_STATUS[code] ?? 500;
}

/** The v2 error body: `{ error: "<CODE>: message", code, data? }`. */
export function errorBody(err: FlotillaError): { error: string; code: string; data?: unknown } {
  return err.data === undefined
    ? { error: `${err.code}: ${err.message}`, code: err.code }
    : { error: `${err.code}: ${err.message}`, code: err.code, data: err.data };
}

/** Parses the timeout header: undefined when absent, else a positive number of ms. */
export function parseTimeoutHeader(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const raw = Array.isArray(value) ? value[0] : value;
  const ms = Number(raw);
  if (raw === undefined || raw.trim() === '' || !Number.isFinite(ms) || ms <= 0 || ms > MAX_TIMEOUT_MS) {
    throw new BadRequestError(`${TIMEOUT_HEADER} must be a number of ms in (0, ${MAX_TIMEOUT_MS}], got ${JSON.stringify(raw)}`);
  }
  return ms;
}

/** A request body as the content parser leaves it: the JSON value and the binary section after it. */
interface ParsedBody {
  json: unknown;
  binary: Buffer;
}

type ModelParams = { Params: { name: string; version?: string } };

export async function startGateway(raw: GatewayOptions): Promise<Gateway> {
  const opts = parseGatewayOptions(raw);
  const service = new InferenceService(opts.client, { readyTimeoutMs: opts.readyTimeoutMs, probeSignatures: opts.probeSignatures });
  const app = Fastify({
    logger: false,
    bodyLimit: opts.bodyLimitBytes,
    routerOptions: { ignoreTrailingSlash: true },
    return503OnClosing: true,
    // Slow clients: idle sockets, idle keep-alives, and requests (headers, then the whole request)
    // that do not arrive in time are cut (node answers 408 to the last two).
    connectionTimeout: opts.connectionTimeoutMs,
    keepAliveTimeout: opts.keepAliveTimeoutMs,
    requestTimeout: opts.requestTimeoutMs,
    http: {
      headersTimeout: opts.headersTimeoutMs,
      requestTimeout: opts.requestTimeoutMs,
      // Node checks both timeouts on this interval (default 30 s): a 10 s limit would otherwise hold 40 s.
      connectionsCheckingInterval: opts.timeoutCheckIntervalMs,
    },
  });

  // kserve's REST client reads an error's text only when the content type is exactly application/json.
  app.addHook('onSend', async (_req, reply, payload) => {
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith('application/json;')) void reply.header('content-type', 'application/json');
    return payload;
  });
  // gzip/deflate request bodies (Content-Encoding; the body limit applies to the inflated bytes; a
  // body that does not inflate is 400, another encoding 415) and responses compressed on
  // Accept-Encoding, binary tensor bodies included.
  await app.register(compress, {
    global: true,
    encodings: ['gzip', 'deflate'],
    requestEncodings: ['gzip', 'deflate'],
    customTypes: /^application\/(json|octet-stream)/,
  });

  // The body: JSON whatever the content type says (some v2 clients send none), optionally followed
  // by binary tensor data (Inference-Header-Content-Length gives the JSON's length). Bare NaN and
  // Infinity are accepted as Triton writes them; proto poisoning is refused, and so is nesting
  // deeper than maxJsonDepth (checked on the text first: walking such a value recurses).
  app.removeAllContentTypeParsers();
  const json = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, raw: Buffer, done) => {
    try {
      if (raw.length === 0) throw new BadRequestError('empty body: expected a JSON object { inputs: [...] }');
      const { json: text0, binary } = splitBody(raw, parseHeaderLength(req.headers[INFERENCE_HEADER], raw.length));
      const deep = jsonDepthExceeded(text0, opts.maxJsonDepth);
      if (deep >= 0) {
        throw new BadRequestError(`invalid JSON body: nested deeper than ${opts.maxJsonDepth} levels (at character ${deep})`, {
          data: { maxDepth: opts.maxJsonDepth },
        });
      }
      const text = quoteNonFinite(text0);
      json(req, text, (err, value) => {
        if (!err) return done(null, { json: value, binary } satisfies ParsedBody);
        let why = 'keys __proto__ and constructor.prototype are refused';
        try {
          JSON.parse(text);
        } catch (e) {
          why = (e as Error).message;
        }
        done(new BadRequestError(`invalid JSON body: ${why}`), undefined);
      });
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  const fail = (reply: FastifyReply, err: unknown) => {
    const f = toFlotillaError(err);
    const status = httpStatusForCode(f.code);
    if (status >= 500) opts.logger?.warn({ code: f.code, err: f.message, url: reply.request.url }, 'gateway request failed');
    if (status === 503) void reply.header('retry-after', '1');
    return reply.code(status).type('application/json').send(errorBody(f));
  };

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    // Framework errors: body too large, bad content length, ...
    if (err instanceof FlotillaError) return fail(reply, err);
    const status = err.statusCode ?? 500;
    if (status === 413)
      return fail(
        reply,
        new PayloadTooLargeError(`request body exceeds ${opts.bodyLimitBytes} bytes`, { data: { limitBytes: opts.bodyLimitBytes } }),
      );
    if (status >= 400 && status < 500)
      return reply.code(status).send({ error: `${ErrorCode.BAD_REQUEST}: ${err.message}`, code: ErrorCode.BAD_REQUEST });
    return fail(reply, err);
  });

  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `${ErrorCode.NOT_FOUND}: no route ${req.method} ${req.url.split('?')[0]}`, code: ErrorCode.NOT_FOUND }),
  );

  // ---------- health and server metadata ----------

  app.get('/v2/health/live', async () => ({ live: true }));

  app.get('/v2/health/ready', async (_req, reply) => {
    try {
      await service.serverReady();
      return { ready: true };
    } catch (err) {
      const f = toFlotillaError(err);
      return reply.code(503).send({ ready: false, ...errorBody(f) });
    }
  });

  app.get('/v2', async () => service.serverMetadata());

  // ---------- models (each route also under /versions/{v}: "1" is served, others are 404) ----------

  app.get('/v2/models', async (_req, reply) => {
    try {
      const ds = await opts.client.list();
      return {
        models: ds.map((d) => ({
          name: d.spec.name,
          versions: ['1'],
          ready: d.ready > 0,
          readyReplicas: d.ready,
          replicas: d.spec.replicas,
        })),
      };
    } catch (err) {
      return fail(reply, err);
    }
  });

  app.get('/v2/models/stats', async (_req, reply) => {
    try {
      return await service.modelStatistics();
    } catch (err) {
      return fail(reply, err);
    }
  });

  const metadata = async (req: FastifyRequest<ModelParams>, reply: FastifyReply) => {
    try {
      return await service.modelMetadata(req.params.name, req.params.version);
    } catch (err) {
      return fail(reply, err);
    }
  };
  const ready = async (req: FastifyRequest<ModelParams>, reply: FastifyReply) => {
    try {
      const d = await service.describe(req.params.name, req.params.version);
      return reply.code(d.ready > 0 ? 200 : 503).send({ name: d.spec.name, ready: d.ready > 0, readyReplicas: d.ready });
    } catch (err) {
      return fail(reply, err);
    }
  };
  const stats = async (req: FastifyRequest<ModelParams>, reply: FastifyReply) => {
    try {
      return await service.modelStatistics(req.params.name, req.params.version);
    } catch (err) {
      return fail(reply, err);
    }
  };
  const infer = async (req: FastifyRequest<ModelParams>, reply: FastifyReply) => {
    try {
      const model = req.params.name;
      const timeoutMs = parseTimeoutHeader(req.headers[TIMEOUT_HEADER]);
      // The socket is idle while the model runs: a deadline longer than the idle timeout extends it.
      const needMs = (timeoutMs ?? DEFAULT_INFER_TIMEOUT_MS) + REPLY_SLACK_MS;
      if (opts.connectionTimeoutMs > 0 && needMs > opts.connectionTimeoutMs) req.raw.socket.setTimeout(needMs);
      const body = req.body as ParsedBody | undefined;
      const request = parseV2InferRequest(body?.json, body?.binary);
      const traceparent = req.headers[TRACEPARENT_HEADER];
      const { outputs, meta } = await service.infer(model, req.params.version, request.inputs, {
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        ...(request.outputs ? { outputs: request.outputs } : {}),
        ...(typeof traceparent === 'string' ? { traceparent } : {}),
      });
      const names = request.outputs ?? Object.keys(outputs);
      const res = buildV2InferResponse(model, request.id ?? randomUUID(), outputs, names, request.binaryOutput);
      const framed = frameBody(res.header, res.chunks);
      void reply.headers({ 'x-flotilla-worker': meta.worker, 'x-flotilla-replica': meta.replica, 'x-flotilla-batch': String(meta.batch) });
      if (framed.headerLength === undefined) return reply.type('application/json').send(framed.body);
      return reply.header(INFERENCE_HEADER, String(framed.headerLength)).type('application/octet-stream').send(framed.body);
    } catch (err) {
      return fail(reply, err);
    }
  };
  for (const prefix of ['/v2/models/:name', '/v2/models/:name/versions/:version']) {
    app.get(prefix, metadata);
    app.get(`${prefix}/ready`, ready);
    app.get(`${prefix}/stats`, stats);
    app.post(`${prefix}/infer`, infer);
  }

  if (opts.mount) await opts.mount(app);
  await app.listen({ port: opts.port, host: opts.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  let grpc: Awaited<ReturnType<typeof startGrpcServer>> | undefined;
  try {
    if (opts.grpcPort !== undefined) grpc = await startGrpcServer(service, opts);
  } catch (err) {
    await app.close();
    throw err;
  }
  let closed: Promise<void> | undefined;
  const close = async () => {
    // Both servers stop, even when one of them fails to.
    const results = await Promise.allSettled([app.close(), grpc?.close()]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  return { port, ...(grpc ? { grpcPort: grpc.port } : {}), close: () => (closed ??= close()) };
}
