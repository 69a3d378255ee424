// HTTP gateway: the KServe v2 / Open Inference Protocol REST API in front of a Flotilla cluster.
// Each request is forwarded over NATS with the SDK (inference straight to a replica, metadata
// and readiness from the head). JSON tensors only (no binary tensor extension).
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyReply } from 'fastify';
import { DEFAULT_INFER_TIMEOUT_MS } from '@flotilla/client';
import {
  BadRequestError,
  ErrorCode,
  FlotillaError,
  PayloadTooLargeError,
  UnavailableError,
  toFlotillaError,
  type DeploymentStatus,
  type WireTensors,
} from '@flotilla/protocol';
import { v2InputToWire, wireToV2Output, type V2Tensor } from './datatypes.js';
import { SignatureProbe } from './signature.js';
import { parseGatewayOptions, type GatewayOptions } from './gateway-options.js';
import { jsonDepthExceeded } from './json-depth.js';

export const GATEWAY_VERSION = '0.1.0';
/** Request header with the inference deadline in ms (default: the SDK's, 30 s). */
export const TIMEOUT_HEADER = 'x-flotilla-timeout-ms';
const MAX_TIMEOUT_MS = 3_600_000;
/** Time a reply may take to leave after the inference deadline before an idle connection is cut, ms. */
const REPLY_SLACK_MS = 5_000;

export interface Gateway {
  port: number;
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

interface InferBody {
  id?: string;
  inputs: unknown[];
  outputs?: Array<{ name: string }>;
}

function checkInferBody(body: unknown): InferBody {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new BadRequestError('the body must be a JSON object { inputs: [...] }');
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.inputs) || b.inputs.length === 0) throw new BadRequestError('`inputs` must be a non-empty array of tensors');
  if (b.id !== undefined && typeof b.id !== 'string') throw new BadRequestError('`id` must be a string');
  if (b.outputs !== undefined) {
    if (
      !Array.isArray(b.outputs) ||
      !b.outputs.every((o) => o && typeof o === 'object' && typeof (o as { name?: unknown }).name === 'string')
    ) {
      throw new BadRequestError('`outputs` must be an array of { name }');
    }
  }
  return b as unknown as InferBody;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UnavailableError(`${what} did not answer within ${ms} ms`)), ms);
  });
  p.catch(() => undefined); // a late rejection must not go unhandled
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const shortDigest = (d: DeploymentStatus) => d.spec.digest.slice(0, 12);

export async function startGateway(raw: GatewayOptions): Promise<Gateway> {
  const opts = parseGatewayOptions(raw);
  const { client, readyTimeoutMs } = opts;
  const probe = opts.probeSignatures ? new SignatureProbe(client) : undefined;
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

  // JSON whatever the content type says (some v2 clients send none); proto poisoning is refused,
  // and so is nesting deeper than maxJsonDepth (checked on the text first: walking such a value recurses).
  app.removeAllContentTypeParsers();
  const json = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, body: string, done) => {
    if (body.length === 0) return done(new BadRequestError('empty body: expected a JSON object { inputs: [...] }'), undefined);
    const deep = jsonDepthExceeded(body, opts.maxJsonDepth);
    if (deep >= 0) {
      return done(
        new BadRequestError(`invalid JSON body: nested deeper than ${opts.maxJsonDepth} levels (at character ${deep})`, {
          data: { maxDepth: opts.maxJsonDepth },
        }),
        undefined,
      );
    }
    json(req, body, (err, value) => {
      if (!err) return done(null, value);
      let why = 'keys __proto__ and constructor.prototype are refused';
      try {
        JSON.parse(body);
      } catch (e) {
        why = (e as Error).message;
      }
      done(new BadRequestError(`invalid JSON body: ${why}`), undefined);
    });
  });

  const fail = (reply: FastifyReply, err: unknown) => {
    const f = toFlotillaError(err);
    const status = httpStatusForCode(f.code);
    if (status >= 500) opts.logger?.warn({ code: f.code, err: f.message, url: reply.request.url }, 'gateway request failed');
    if (status === 503) void reply.header('retry-after', '1');
    return reply.code(status).send(errorBody(f));
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
      await withTimeout(client.status(), readyTimeoutMs, 'the head');
      return { ready: true };
    } catch (err) {
      const f = toFlotillaError(err);
      return reply.code(503).send({ ready: false, ...errorBody(f) });
    }
  });

  app.get('/v2', async () => ({ name: 'flotilla', version: GATEWAY_VERSION, extensions: [] }));

  // ---------- models ----------

  app.get('/v2/models', async (_req, reply) => {
    try {
      const ds = await client.list();
      return {
        models: ds.map((d) => ({
          name: d.spec.name,
          versions: [shortDigest(d)],
          ready: d.ready > 0,
          readyReplicas: d.ready,
          replicas: d.spec.replicas,
        })),
      };
    } catch (err) {
      return fail(reply, err);
    }
  });

  app.get<{ Params: { name: string } }>('/v2/models/:name', async (req, reply) => {
    try {
      const d = await client.describe(req.params.name);
      const sig = probe && d.ready > 0 ? await probe.get(d.spec.name, d.spec.digest) : undefined;
      return {
        name: d.spec.name,
        versions: [shortDigest(d)],
        platform: 'onnxruntime',
        inputs: sig?.inputs ?? [],
        outputs: sig?.outputs ?? [],
        parameters: { digest: d.spec.digest, ready_replicas: d.ready, replicas: d.spec.replicas, signature_known: !!sig },
      };
    } catch (err) {
      return fail(reply, err);
    }
  });

  app.get<{ Params: { name: string } }>('/v2/models/:name/ready', async (req, reply) => {
    try {
      const d = await client.describe(req.params.name);
      return reply.code(d.ready > 0 ? 200 : 503).send({ name: d.spec.name, ready: d.ready > 0, readyReplicas: d.ready });
    } catch (err) {
      return fail(reply, err);
    }
  });

  app.post<{ Params: { name: string } }>('/v2/models/:name/infer', async (req, reply) => {
    try {
      const model = req.params.name;
      const timeoutMs = parseTimeoutHeader(req.headers[TIMEOUT_HEADER]);
      // The socket is idle while the model runs: a deadline longer than the idle timeout extends it.
      const needMs = (timeoutMs ?? DEFAULT_INFER_TIMEOUT_MS) + REPLY_SLACK_MS;
      if (opts.connectionTimeoutMs > 0 && needMs > opts.connectionTimeoutMs) req.raw.socket.setTimeout(needMs);
      const body = checkInferBody(req.body);
      const inputs: WireTensors = {};
      body.inputs.forEach((raw, i) => {
        const { name, tensor } = v2InputToWire(raw, i);
        if (name in inputs) throw new BadRequestError(`input '${name}' is given twice`);
        inputs[name] = tensor;
      });
      const wanted = body.outputs?.map((o) => o.name);
      const { outputs, meta } = await client.inferWire(model, inputs, { timeoutMs, outputs: wanted });
      const names = wanted ?? Object.keys(outputs);
      const out: V2Tensor[] = names.filter((n) => outputs[n]).map((n) => wireToV2Output(n, outputs[n]!));
      void reply.headers({ 'x-flotilla-worker': meta.worker, 'x-flotilla-replica': meta.replica, 'x-flotilla-batch': String(meta.batch) });
      return { model_name: model, id: body.id ?? randomUUID(), outputs: out };
    } catch (err) {
      return fail(reply, err);
    }
  });

  await app.listen({ port: opts.port, host: opts.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  let closed: Promise<void> | undefined;
  return { port, close: () => (closed ??= app.close().then(() => undefined)) };
}
