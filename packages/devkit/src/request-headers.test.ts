// Integration: what headers the SDK's inference requests carry (a real nats-server, head and
// worker, real onnxruntime sessions). A request with headers costs a lone request 10–15 µs more
// and the replica a quarter more CPU per request on a small model (bench:overhead), so the SDK
// sends none unless they say something: the caller's trace context, or that it reads streamed or
// direct replies when the model's reply to this request may not fit one message.
import { connect } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/nats-core';
import { STREAMED_BLOBS_HEADER, TRACEPARENT_HEADER, isTraceparent, subjects } from '@flotilla/protocol';
import type { FlotillaClient, Tensor } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

let cluster: LocalCluster;
let client: FlotillaClient;
let spy: NatsConnection;
/** Every inference request seen on the bus, by model (the spy subscribes beside the replicas). */
const seen = new Map<string, Msg[]>();

const mlpInput = (n: number): Tensor => ({ dtype: 'float32', dims: [n, 16], data: randomFloats(n * 16, 7) });
const affineInput = (n: number): Tensor => ({ dtype: 'float32', dims: [1, 1, 1, n], data: randomFloats(n, 5) });

/** The requests for `model` sent while `fn` ran. */
async function requestsDuring(model: string, fn: () => Promise<unknown>): Promise<Msg[]> {
  const before = seen.get(model)?.length ?? 0;
  await fn();
  await spy.flush();
  await until(() => (seen.get(model)?.length ?? 0) > before, { timeoutMs: 5_000, what: `a request for ${model}` });
  return seen.get(model)!.slice(before);
}

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1 });
  client = cluster.client();
  await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
  await client.deploy(sampleModelPath('affine'), 'affine', { device: 'cpu' });
  spy = await connect({ servers: cluster.url });
  const s = subjects(cluster.cluster);
  for (const model of ['mlp', 'affine']) {
    const cb = (err: Error | null, msg: Msg) => {
      if (err || msg.subject.endsWith('~body')) return;
      seen.set(model, [...(seen.get(model) ?? []), msg]);
    };
    spy.subscribe(s.infer(model), { callback: cb });
    spy.subscribe(`${s.infer(model)}.*`, { callback: cb });
  }
  await spy.flush();
}, 120_000);

afterAll(async () => {
  await spy?.close();
  await cluster?.stop();
});

describe('the headers of an SDK request', () => {
  it('none once the signature says every reply fits one message; before that, the streamed-replies flag', async () => {
    const fresh = cluster.client();
    try {
      // The first request goes before the head has described the model: the flag, no trace.
      const [first] = await requestsDuring('mlp', () => fresh.infer('mlp', { x: mlpInput(2) }));
      expect(first!.headers?.get(STREAMED_BLOBS_HEADER)).toBe('direct');
      expect(first!.headers?.has(TRACEPARENT_HEADER)).toBe(false);
      // The description it asked for arrives: mlp's reply is [N, 4] float32, 16 bytes per item.
      let bare: Msg[] = [];
      await until(
        async () => {
          bare = await requestsDuring('mlp', () => fresh.infer('mlp', { x: mlpInput(3) }));
          return bare.every((m) => m.headers === undefined);
        },
        { timeoutMs: 10_000, what: 'a request without headers' },
      );
      const out = await fresh.infer('mlp', { x: mlpInput(3) });
      expect(out.y!.dims).toEqual([3, 4]);
    } finally {
      await fresh.close();
    }
  });

  it('the caller’s trace context when it gives one (a malformed one is not sent); a new one per request with traceRequests', async () => {
    await client.infer('mlp', { x: mlpInput(1) }); // the client has described mlp
    await until(async () => (await requestsDuring('mlp', () => client.infer('mlp', { x: mlpInput(1) })))[0]!.headers === undefined, {
      timeoutMs: 10_000,
    });
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const [given] = await requestsDuring('mlp', () => client.infer('mlp', { x: mlpInput(1) }, { traceparent: tp }));
    expect(given!.headers?.get(TRACEPARENT_HEADER)).toBe(tp);
    expect(given!.headers?.has(STREAMED_BLOBS_HEADER)).toBe(false);
    const [malformed] = await requestsDuring('mlp', () => client.infer('mlp', { x: mlpInput(1) }, { traceparent: 'not-a-trace' }));
    expect(malformed!.headers).toBeUndefined();

    const tracing = cluster.client({ traceRequests: true });
    try {
      const msgs = await requestsDuring('mlp', async () => {
        await tracing.infer('mlp', { x: mlpInput(1) });
        await tracing.infer('mlp', { x: mlpInput(1) });
      });
      const traces = msgs.map((m) => m.headers?.get(TRACEPARENT_HEADER));
      expect(traces.every((t) => isTraceparent(t))).toBe(true);
      expect(new Set(traces).size).toBe(2);
    } finally {
      await tracing.close();
    }
  });

  it('the flag whenever a reply may not fit one message: an output dim the signature leaves open, or a fixed one times many items', async () => {
    // affine: y = 2x + 1 over any [N, C, H, W]: its reply's size is not known ahead.
    await client.infer('affine', { x: affineInput(4) });
    const [open] = await requestsDuring('affine', () => client.infer('affine', { x: affineInput(4) }));
    expect(open!.headers?.get(STREAMED_BLOBS_HEADER)).toBe('direct');
    // mlp at 70,000 items: a reply of 1.1 MB, over the server's 1 MiB max_payload, held for this client to read.
    const n = 70_000;
    let out: Record<string, Tensor> = {};
    const [big] = await requestsDuring('mlp', async () => (out = await client.infer('mlp', { x: mlpInput(n) }, { timeoutMs: 60_000 })));
    expect(big!.headers?.get(STREAMED_BLOBS_HEADER)).toBe('direct');
    expect(out.y!.dims).toEqual([n, 4]);
    expect(out.y!.data.length).toBe(n * 4);
  }, 60_000);
});
