// KServe's gRPC `inference.GRPCInferenceService` (the vendored proto/grpc_predict_v2.proto) over the
// same InferenceService as the HTTP routes. Inputs come as raw_input_contents or typed contents;
// outputs go back the way the inputs came (raw for raw, typed for typed where the datatype has a
// field). Errors are gRPC statuses whose details read "<CODE>: message", the code also in the
// trailing metadata `flotilla-code`.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DEFAULT_INFER_TIMEOUT_MS } from '@flotilla/client';
import { BadRequestError, ErrorCode, TRACEPARENT_HEADER, toFlotillaError, type WireTensors } from '@flotilla/protocol';
import type { CompiledGatewayOptions } from './gateway-options.js';
import { toV2Datatype } from './datatypes.js';
import { CONTENTS_FIELD, contentsToWire, grpcShape, wireToContents, type TensorContents } from './grpc-contents.js';
import type { InferenceService } from './inference-service.js';
import { MODEL_VERSION, binaryInputToWire } from './v2-request.js';

export const PROTO_PATH = fileURLToPath(new URL('../proto/grpc_predict_v2.proto', import.meta.url));
/** Longest deadline a call may ask for, ms (as the HTTP timeout header). */
const MAX_DEADLINE_MS = 3_600_000;
/** How long close() lets in-flight calls finish before cutting them, ms. */
const SHUTDOWN_GRACE_MS = 5_000;

/** gRPC status of each Flotilla error code; others are INTERNAL. */
export const GRPC_STATUS: Readonly<Record<string, grpc.status>> = {
  [ErrorCode.UNKNOWN_MODEL]: grpc.status.NOT_FOUND,
  [ErrorCode.NOT_FOUND]: grpc.status.NOT_FOUND,
  [ErrorCode.BAD_REQUEST]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.INPUT_MISMATCH]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.DECODE_ERROR]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.PAYLOAD_TOO_LARGE]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.OVERLOADED]: grpc.status.UNAVAILABLE,
  [ErrorCode.UNAVAILABLE]: grpc.status.UNAVAILABLE,
  [ErrorCode.NO_CAPACITY]: grpc.status.UNAVAILABLE,
  [ErrorCode.DEADLINE_EXCEEDED]: grpc.status.DEADLINE_EXCEEDED,
  [ErrorCode.FORBIDDEN]: grpc.status.PERMISSION_DENIED,
};

export function grpcStatusForCode(code: string): grpc.status {
  return GRPC_STATUS[code] ?? grpc.status.INTERNAL;
}

interface InputTensor {
  name: string;
  datatype: string;
  shape: Array<string | number>;
  parameters?: Record<string, unknown>;
  contents?: TensorContents | null;
}

interface InferRequestMessage {
  model_name: string;
  model_version: string;
  id: string;
  inputs: InputTensor[];
  outputs: Array<{ name: string; parameters?: Record<string, unknown> }>;
  raw_input_contents: Buffer[];
}

/** The request's inputs as wire tensors, and whether they came as raw contents. */
export function grpcInputsToWire(req: Pick<InferRequestMessage, 'inputs' | 'raw_input_contents'>): { inputs: WireTensors; raw: boolean } {
  if (req.inputs.length === 0) throw new BadRequestError('`inputs` must name at least one tensor');
  const raw = req.raw_input_contents.length > 0;
  if (raw && req.raw_input_contents.length !== req.inputs.length) {
    throw new BadRequestError(
      `raw_input_contents has ${req.raw_input_contents.length} entries for ${req.inputs.length} inputs (one each, in order)`,
    );
  }
  const inputs: WireTensors = {};
  req.inputs.forEach((input, i) => {
    const dims = grpcShape(input.shape, `input '${input.name}'`);
    let tensor;
    if (raw) {
      const field = Object.entries(input.contents ?? {}).find(([, v]) => Array.isArray(v) && v.length > 0);
      if (field) throw new BadRequestError(`input '${input.name}': has ${field[0]} while raw_input_contents is used`);
      tensor = binaryInputToWire({ name: input.name, datatype: input.datatype, shape: dims }, i, req.raw_input_contents[i]!).tensor;
    } else {
      if (!input.name) throw new BadRequestError(`inputs[${i}].name must be a non-empty string`);
      tensor = contentsToWire(input.name, input.datatype, dims, input.contents);
    }
    if (Object.prototype.hasOwnProperty.call(inputs, input.name)) throw new BadRequestError(`input '${input.name}' is given twice`);
    inputs[input.name] = tensor;
  });
  return { inputs, raw };
}

function fail(callback: (err: Partial<grpc.StatusObject>) => void, err: unknown) {
  const f = toFlotillaError(err);
  const metadata = new grpc.Metadata();
  metadata.set('flotilla-code', f.code);
  callback({ code: grpcStatusForCode(f.code), details: `${f.code}: ${f.message}`, metadata });
}

/** A unary handler whose every failure is answered with a coded status (it never throws into grpc-js). */
function unary<Req, Res>(fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request, call).then(
      (res) => callback(null, res),
      (err: unknown) => fail(callback, err),
    );
  };
}

function deadlineMs(call: grpc.ServerUnaryCall<unknown, unknown>): number {
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : Number(d);
  if (!Number.isFinite(at)) return DEFAULT_INFER_TIMEOUT_MS;
  return Math.min(MAX_DEADLINE_MS, Math.max(1, at - Date.now()));
}

export interface GrpcServer {
  port: number;
  close(): Promise<void>;
}

export async function startGrpcServer(service: InferenceService, opts: CompiledGatewayOptions): Promise<GrpcServer> {
  const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  };
  const server = new grpc.Server({
    'grpc.max_receive_message_length': opts.bodyLimitBytes,
    'grpc.max_send_message_length': -1,
  });

  server.addService(pkg.inference.GRPCInferenceService.service, {
    ServerLive: unary(async () => ({ live: true })),
    ServerReady: unary(async () => {
      try {
        await service.serverReady();
        return { ready: true };
      } catch {
        return { ready: false };
      }
    }),
    ServerMetadata: unary(async () => service.serverMetadata()),
    ModelReady: unary(async (req: { name: string; version: string }) => {
      const d = await service.describe(req.name, req.version);
      return { ready: d.ready > 0 };
    }),
    ModelMetadata: unary(async (req: { name: string; version: string }) => {
      const m = await service.modelMetadata(req.name, req.version);
      return { name: m.name, versions: m.versions, platform: m.platform, inputs: m.inputs, outputs: m.outputs };
    }),
    ModelInfer: unary(async (req: InferRequestMessage, call) => {
      const { inputs, raw } = grpcInputsToWire(req);
      req.outputs.forEach((o, i) => {
        if (!o.name) throw new BadRequestError(`outputs[${i}].name must be a non-empty string`);
        if (o.parameters?.classification !== undefined)
          throw new BadRequestError(`outputs[${i}]: the classification extension is not supported`);
      });
      const wanted = req.outputs.length > 0 ? req.outputs.map((o) => o.name) : undefined;
      // W3C trace context in the call's metadata (as OpenTelemetry's gRPC propagation sends it).
      const traceparent = call.metadata.get(TRACEPARENT_HEADER)[0];
      const { outputs } = await service.infer(req.model_name, req.model_version, inputs, {
        timeoutMs: deadlineMs(call),
        ...(wanted ? { outputs: wanted } : {}),
        ...(typeof traceparent === 'string' ? { traceparent } : {}),
      });
      const names = (wanted ?? Object.keys(outputs)).filter((n) => Object.prototype.hasOwnProperty.call(outputs, n));
      // Typed contents only when the caller sent typed contents and every output has a field for its type.
      const typed = !raw && names.every((n) => CONTENTS_FIELD[outputs[n]!.dtype] !== undefined);
      return {
        model_name: req.model_name,
        model_version: MODEL_VERSION,
        id: req.id || randomUUID(),
        outputs: names.map((n) => {
          const t = outputs[n]!;
          return { name: n, datatype: toV2Datatype(t.dtype), shape: t.dims, ...(typed ? { contents: wireToContents(t) } : {}) };
        }),
        raw_output_contents: typed
          ? []
          : names.map((n) => Buffer.from(outputs[n]!.data.buffer, outputs[n]!.data.byteOffset, outputs[n]!.data.byteLength)),
      };
    }),
  });

  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${opts.grpcPort ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  let closed: Promise<void> | undefined;
  const close = () =>
    new Promise<void>((resolve) => {
      const force = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  return { port, close: () => (closed ??= close()) };
}
