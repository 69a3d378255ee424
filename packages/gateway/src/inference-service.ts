// What the HTTP and gRPC front ends share: server and model metadata, readiness, versions, the
// inference call and its statistics. Each front end only translates its wire format to these calls.
import { DEFAULT_INFER_TIMEOUT_MS, type FlotillaClient } from '@flotilla/client';
import {
  ErrorCode,
  FlotillaError,
  UnavailableError,
  UnknownModelError,
  type DeploymentStatus,
  type InferMeta,
  type WireTensors,
} from '@flotilla/protocol';
import { toV2Datatype, toV2Shape } from './datatypes.js';
import { ModelStats, type ModelStatistics } from './model-stats.js';
import { SignatureProbe, type TensorMetadata } from './signature.js';
import { MODEL_VERSION } from './v2-request.js';

export const GATEWAY_VERSION = '0.1.0';
/** The protocol extensions this gateway serves (and only those: clients probe this list). */
export const EXTENSIONS = ['binary_tensor_data', 'statistics'] as const;

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
  parameters: { digest: string; ready_replicas: number; replicas: number; signature_known: boolean };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UnavailableError(`${what} did not answer within ${ms} ms`)), ms);
  });
  p.catch(() => undefined); // a late rejection must not go unhandled
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The leading dim of the first input: the items of a batched request (1 for a scalar input). */
function items(inputs: WireTensors): number {
  const first = Object.values(inputs)[0];
  return first && first.dims.length > 0 ? first.dims[0]! : 1;
}

export class InferenceService {
  readonly stats = new ModelStats();
  private readonly probe?: SignatureProbe;

  constructor(
    readonly client: FlotillaClient,
    private readonly opts: { readyTimeoutMs: number; probeSignatures: boolean },
  ) {
    if (opts.probeSignatures) this.probe = new SignatureProbe(client);
  }

  serverMetadata(): { name: string; version: string; extensions: string[] } {
    return { name: 'flotilla', version: GATEWAY_VERSION, extensions: [...EXTENSIONS] };
  }

  /** Resolves when the head answers within the ready timeout; rejects (UNAVAILABLE & co) otherwise. */
  async serverReady(): Promise<void> {
    await withTimeout(this.client.status(), this.opts.readyTimeoutMs, 'the head');
  }

  /** The deployment, after checking `version` (absent or empty: the current one) is one served. */
  async describe(model: string, version?: string): Promise<DeploymentStatus> {
    const d = await this.client.describe(model);
    if (version !== undefined && version !== '' && version !== MODEL_VERSION) {
      throw new UnknownModelError(`model '${model}' has no version '${version}' (served: ${MODEL_VERSION})`, {
        data: { versions: [MODEL_VERSION] },
      });
    }
    return d;
  }

  /**
   * Model metadata. The signature comes from the deployment status (read by a replica from its
   * session; symbolic and unnamed dims are -1); for a cluster whose replicas do not report one,
   * from probing a replica (signature.ts), unless probing is off.
   */
  async modelMetadata(model: string, version?: string): Promise<ModelMetadata> {
    const d = await this.describe(model, version);
    let sig: { inputs: TensorMetadata[]; outputs: TensorMetadata[] } | undefined;
    if (d.signature) {
      const meta = (t: { name: string; dtype: Parameters<typeof toV2Datatype>[0]; shape: Array<number | string | null> }) => ({
        name: t.name,
        datatype: toV2Datatype(t.dtype),
        shape: toV2Shape(t.shape.map((x) => (typeof x === 'number' ? x : null))),
      });
      sig = { inputs: d.signature.inputs.map(meta), outputs: d.signature.outputs.map(meta) };
    } else if (this.probe && d.ready > 0) {
      sig = await this.probe.get(d.spec.name, d.spec.digest);
    }
    return {
      name: d.spec.name,
      versions: [MODEL_VERSION],
      platform: 'onnxruntime_onnx',
      inputs: sig?.inputs ?? [],
      outputs: sig?.outputs ?? [],
      parameters: { digest: d.spec.digest, ready_replicas: d.ready, replicas: d.spec.replicas, signature_known: !!sig },
    };
  }

  /** Runs the model, counting the request in its statistics (failures too, once the model is known). */
  async infer(
    model: string,
    version: string | undefined,
    inputs: WireTensors,
    opts: { timeoutMs?: number; outputs?: string[]; traceparent?: string },
  ): Promise<{ outputs: WireTensors; meta: InferMeta }> {
    if (version !== undefined && version !== '' && version !== MODEL_VERSION) await this.describe(model, version);
    const t0 = performance.now();
    try {
      const { outputs, meta } = await this.client.inferWire(model, inputs, {
        timeoutMs: opts.timeoutMs ?? DEFAULT_INFER_TIMEOUT_MS,
        ...(opts.outputs ? { outputs: opts.outputs } : {}),
        // The caller's W3C trace context goes on to the replica (a malformed one is dropped by the SDK).
        ...(opts.traceparent !== undefined ? { traceparent: opts.traceparent } : {}),
      });
      const totalMs = performance.now() - t0;
      this.stats.record(model, {
        ok: true,
        at: Date.now(),
        totalMs,
        items: items(inputs),
        queueMs: meta.queueMs,
        runMs: meta.runMs,
        batch: meta.batch,
      });
      return { outputs, meta };
    } catch (err) {
      // An unknown model has no statistics to add to (and must not grow the table).
      if (!(err instanceof FlotillaError && err.code === ErrorCode.UNKNOWN_MODEL))
        this.stats.record(model, { ok: false, at: Date.now(), totalMs: performance.now() - t0 });
      throw err;
    }
  }

  /** Statistics of one model (checked to exist), or of every deployed model. */
  async modelStatistics(model?: string, version?: string): Promise<{ model_stats: ModelStatistics[] }> {
    if (model !== undefined) {
      const d = await this.describe(model, version);
      return { model_stats: [this.stats.get(d.spec.name, MODEL_VERSION)] };
    }
    const all = await this.client.list();
    return { model_stats: all.map((d) => this.stats.get(d.spec.name, MODEL_VERSION)) };
  }
}
