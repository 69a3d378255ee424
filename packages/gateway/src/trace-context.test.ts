// Integration: the caller's W3C trace context goes through the gateway to the replica (a real
// cluster, the gateway over HTTP and gRPC, and a spy beside the replica on the model's subjects):
// the HTTP `traceparent` header and the gRPC `traceparent` metadata (as OpenTelemetry propagates
// them) become the NATS request's `traceparent` header; a request without one carries no headers.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { closeBus, connectBus, type NatsConnection } from '@flotilla/bus';
import type { FlotillaClient } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { TRACEPARENT_HEADER, subjects } from '@flotilla/protocol';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { startGateway, type Gateway } from './gateway.js';
import { PROTO_PATH } from './grpc-server.js';

let cluster: LocalCluster;
let client: FlotillaClient;
let gateway: Gateway;
let spy: NatsConnection;
let grpcClient: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
/** A NATS message as the spy's subscription callback gets it. */
type Msg = Parameters<NonNullable<NonNullable<Parameters<NatsConnection['subscribe']>[1]>['callback']>>[1];
const seen: Msg[] = [];

const TRACE = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1 });
  client = cluster.client();
  await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
  gateway = await startGateway({ client, port: 0, grpcPort: 0, host: '127.0.0.1' });
  spy = await connectBus({ servers: cluster.url, name: 'trace-spy' });
  const s = subjects(cluster.cluster);
  for (const subject of [s.infer('mlp'), `${s.infer('mlp')}.*`]) spy.subscribe(subject, { callback: (err, msg) => err || seen.push(msg) });
  await spy.flush();
  const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } };
  grpcClient = new pkg.inference.GRPCInferenceService(
    `127.0.0.1:${gateway.grpcPort}`,
    grpc.credentials.createInsecure(),
  ) as unknown as typeof grpcClient;
  // The gateway's SDK client learns mlp's signature (its replies fit one message: no flag header after that).
  await client.infer('mlp', { x: { dtype: 'float32', dims: [1, 16], data: randomFloats(16, 1) } });
}, 120_000);

afterAll(async () => {
  grpcClient?.close();
  if (spy) await closeBus(spy);
  await gateway?.close();
  await cluster?.stop();
});

/** The NATS requests the gateway sent while `fn` ran. */
async function sentDuring(fn: () => Promise<unknown>): Promise<Msg[]> {
  const before = seen.length;
  await fn();
  await spy.flush();
  return seen.slice(before);
}

function httpInfer(headers: Record<string, string>): Promise<Response> {
  const x = Array.from(randomFloats(16, 2));
  return fetch(`http://127.0.0.1:${gateway.port}/v2/models/mlp/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 16], datatype: 'FP32', data: x }] }),
  }).then((r) => {
    expect(r.status).toBe(200);
    return r;
  });
}

function grpcInfer(metadata: grpc.Metadata): Promise<unknown> {
  const raw = Buffer.from(randomFloats(16, 3).buffer);
  const req = { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', '16'] }], raw_input_contents: [raw] };
  return new Promise((resolve, reject) =>
    grpcClient.ModelInfer!(req, metadata, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))),
  );
}

describe('trace context through the gateway', () => {
  it('HTTP: the traceparent header reaches the replica; without one (or with a malformed one) the request has no headers', async () => {
    // Until the gateway's client has described mlp a request may still carry the streamed-replies flag.
    const plain = await sentDuring(() => httpInfer({}));
    expect(plain).toHaveLength(1);
    expect(plain[0]!.headers?.has(TRACEPARENT_HEADER) ?? false).toBe(false);
    const traced = await sentDuring(() => httpInfer({ traceparent: TRACE }));
    expect(traced.map((m) => m.headers?.get(TRACEPARENT_HEADER))).toEqual([TRACE]);
    const bad = await sentDuring(() => httpInfer({ traceparent: 'nonsense' }));
    expect(bad[0]!.headers?.has(TRACEPARENT_HEADER) ?? false).toBe(false);
  });

  it('gRPC: the traceparent metadata reaches the replica', async () => {
    const md = new grpc.Metadata();
    md.set('traceparent', TRACE);
    const traced = await sentDuring(() => grpcInfer(md));
    expect(traced.map((m) => m.headers?.get(TRACEPARENT_HEADER))).toEqual([TRACE]);
    const plain = await sentDuring(() => grpcInfer(new grpc.Metadata()));
    expect(plain).toHaveLength(1);
    expect(plain[0]!.headers?.has(TRACEPARENT_HEADER) ?? false).toBe(false);
  });
});
