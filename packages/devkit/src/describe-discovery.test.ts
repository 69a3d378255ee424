// Integration (a real nats-server, head and worker with real onnxruntime sessions): what a deployment
// says about itself. `describe` carries the model signature its replica read at load, symbolic dim
// names kept; each replica's NATS micro service lists exactly the subjects and queue groups it
// subscribes ($SRV.INFO, checked against the server's own subscription list) and counts every
// request and every error it answered on either ($SRV.STATS).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { connect } from '@nats-io/transport-node';
import { Svcm } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/nats-core';
import { PROTOCOL_VERSION, decode, encode, fromTypedArray, toTypedArray, type InferReply, type ModelSignature } from '@flotilla/protocol';
import type { FlotillaClient } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';

let cluster: LocalCluster;
let client: FlotillaClient;
let nc: NatsConnection;

beforeAll(async () => {
  // Monitoring on a free port: the test reads the server's subscription list (/connz) to compare with $SRV.INFO.
  cluster = await LocalCluster.start({ workers: 1, nats: { extraConfig: 'http: "127.0.0.1:-1"' } });
  client = cluster.client();
  await client.deploy(sampleModelPath('token-embedding'), 'emb', { device: 'cpu' });
  await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
  nc = await connect({ servers: cluster.url });
}, 120_000);

afterAll(async () => {
  await nc?.close();
  await client?.close();
  await cluster?.stop();
});

describe('model signature', () => {
  const emb: ModelSignature = {
    inputs: [{ name: 'input_ids', dtype: 'int64', shape: ['batch', 'seq'] }],
    outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', 'seq', 8] }],
    batchAxis: true,
  };

  it('describe, ls and the heartbeats carry the signature with its symbolic dim names', async () => {
    expect((await client.describe('emb')).signature).toEqual(emb);
    expect((await client.describe('mlp')).signature).toEqual({
      inputs: [{ name: 'x', dtype: 'float32', shape: ['N', 16] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: ['N', 4] }],
      batchAxis: true,
    });
    expect((await client.list()).find((d) => d.spec.name === 'emb')!.signature).toEqual(emb);
    const replica = (await client.status()).workers[0]!.replicas.find((r) => r.model === 'emb')!;
    expect(replica.state === 'loading' ? undefined : replica.signature).toEqual(emb);
  });

  it('the dynamic sequence dim takes any length, with outputs equal to onnxruntime in-process', async () => {
    const session = await ort.InferenceSession.create(sampleModelPath('token-embedding'));
    try {
      for (const seq of [3, 7]) {
        const ids = BigInt64Array.from({ length: 2 * seq }, (_, i) => BigInt((i * 7) % 64));
        const { outputs } = await client.inferWire('emb', { input_ids: fromTypedArray('int64', [2, seq], ids) });
        expect(outputs.y!.dims).toEqual([2, seq, 8]);
        const want = (await session.run({ input_ids: new ort.Tensor('int64', ids, [2, seq]) })).y!.data as Float32Array;
        expect(Array.from(toTypedArray(outputs.y!) as Float32Array)).toEqual(Array.from(want));
      }
    } finally {
      await session.release();
    }
  });
});

interface EndpointStats {
  name: string;
  subject: string;
  num_requests: number;
  num_errors: number;
  last_error?: string;
  queue_group?: string;
}

describe('micro service discovery', () => {
  const svc = () => new Svcm(nc as never).client();

  async function mlpService<T extends { metadata: Record<string, string> }>(verb: 'info' | 'stats'): Promise<T> {
    const found: T[] = [];
    for await (const x of await svc()[verb]('flotilla-replica')) found.push(x as never);
    const mine = found.filter((x) => x.metadata.cluster === cluster.cluster && x.metadata.model === 'mlp');
    expect(mine).toHaveLength(1);
    return mine[0]!;
  }

  async function ask(subject: string, good: boolean): Promise<InferReply> {
    const x = good ? fromTypedArray('float32', [1, 16], new Float32Array(16)) : fromTypedArray('float32', [1, 3], new Float32Array(3));
    const msg = await nc.request(subject, encode({ v: PROTOCOL_VERSION, inputs: { x } }), { timeout: 10_000 });
    return decode<InferReply>(msg.data);
  }

  it('INFO lists exactly the subjects and queue groups the replica subscribes (its endpoints, and its body channel in the metadata)', async () => {
    const info = await mlpService<{ metadata: Record<string, string>; endpoints: EndpointStats[] }>('info');
    const group = `flotilla.${cluster.cluster}.infer.mlp`;
    const own = `${group}.${info.metadata.replica}`;
    const listed = info.endpoints.map((e) => ({ name: e.name, subject: e.subject, queue: e.queue_group ?? '' }));
    expect(listed).toEqual([
      { name: 'infer', subject: own, queue: 'q' },
      { name: 'infer-group', subject: group, queue: 'replicas' },
    ]);
    // What the server itself has subscribed on the model's subjects, by any connection.
    const dir = cluster.nats.dir;
    const ports = JSON.parse(readFileSync(join(dir, `nats-server_${cluster.nats.pid}.ports`), 'utf8')) as { monitoring: string[] };
    const connz = (await (await fetch(`${ports.monitoring[0]}/connz?subs=detail`)).json()) as {
      connections: Array<{ subscriptions_list_detail?: Array<{ subject: string; qgroup?: string }> }>;
    };
    const real = connz.connections
      .flatMap((c) => c.subscriptions_list_detail ?? [])
      .filter((s) => s.subject === group || s.subject.startsWith(`${group}.`))
      .map((s) => ({ subject: s.subject, queue: s.qgroup ?? '' }))
      .sort((a, b) => a.subject.localeCompare(b.subject));
    // The body channel (direct bodies) is a plain subscription, not an endpoint: it outlives the endpoints in a drain.
    expect(info.metadata.body).toBe(`${own}~body`);
    const described = [...listed.map(({ subject, queue }) => ({ subject, queue })), { subject: info.metadata.body!, queue: 'q' }];
    expect(real).toEqual(described.sort((a, b) => a.subject.localeCompare(b.subject)));
  });

  it('STATS counts every request and every error, on the replica subject and on the queue-group subject', async () => {
    const N = 3;
    const M = 2;
    const byName = (s: { endpoints: EndpointStats[] }) => Object.fromEntries(s.endpoints.map((e) => [e.name, e]));
    const before = byName(await mlpService<{ metadata: Record<string, string>; endpoints: EndpointStats[] }>('stats'));
    for (const name of ['infer', 'infer-group']) {
      for (let i = 0; i < N; i++) expect((await ask(before[name]!.subject, true)).ok).toBe(true);
      for (let i = 0; i < M; i++) expect((await ask(before[name]!.subject, false)).ok).toBe(false);
    }
    const after = byName(await mlpService<{ metadata: Record<string, string>; endpoints: EndpointStats[] }>('stats'));
    for (const name of ['infer', 'infer-group']) {
      expect([after[name]!.num_requests - before[name]!.num_requests, after[name]!.num_errors - before[name]!.num_errors]).toEqual([
        N + M,
        M,
      ]);
      expect(after[name]!.last_error).toMatch(/^INPUT_MISMATCH: /);
    }
    expect(after['infer-group']!.queue_group).toBe('replicas');
  });
});
