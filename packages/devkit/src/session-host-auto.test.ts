// Integration: `--session-host auto` (the default) on a worker with cores to spare (8 usable
// cores, from the inventory override; one intra-op thread per session). A model whose runs take
// milliseconds at its chosen batch moves to a thread of its own once its first profile says so,
// and opens there directly on later loads (the stored profile); one whose runs take microseconds
// stays on the event loop, where the crossing would cost more than it saves. A profile measured
// on a thread (a deployment that said `thread`) says so, and the thread is charged once.
import type { FlotillaClient, Tensor } from '@flotilla/client';
import { LocalCluster } from '@flotilla/local';
import type { LoadedReplicaState } from '@flotilla/protocol';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import { THREAD_SESSION_BYTES } from '@flotilla/worker';
import { until } from './until.js';

let cluster: LocalCluster;
let client: FlotillaClient;
const QUICK_PROFILE = { profile: { budgetMs: 1000, tuneThreads: false } } as const;

beforeAll(async () => {
  cluster = await LocalCluster.start({
    workers: 1,
    worker: { threads: 1, inventory: { cpu: { cores: 8, usableCores: 8 } } },
  });
  client = cluster.client();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

async function replicasOf(model: string): Promise<LoadedReplicaState[]> {
  const status = await client.status();
  return status.workers.flatMap((w) => w.replicas).filter((r): r is LoadedReplicaState => r.model === model && r.state === 'ready');
}

describe('session host auto', () => {
  it('puts a model with millisecond runs on a thread after its first profile, and later loads straight there', async () => {
    await client.deploy(sampleModelPath('convnet'), 'convnet', { device: 'cpu', ...QUICK_PROFILE });
    const [first] = await replicasOf('convnet');
    expect(first!.profile?.source).toBe('measured');
    expect(first!.sessionHost).toBe('thread');
    const x: Tensor = { dtype: 'float32', dims: [1, 3, 64, 64], data: randomFloats(3 * 64 * 64, 1) };
    expect((await client.infer('convnet', { x })).y!.dims[0]).toBe(1);
    await client.scale('convnet', 2);
    const both = await until(
      async () => {
        const rs = await replicasOf('convnet');
        return rs.length === 2 ? rs : undefined;
      },
      { timeoutMs: 60_000, what: 'two ready convnet replicas' },
    );
    expect(both.map((r) => r.profile?.source).sort()).toEqual(['cache', 'measured']);
    expect(both.map((r) => r.sessionHost)).toEqual(['thread', 'thread']);
    // Both profiles were measured on the event loop (the first load's): the thread's own memory is charged on top.
    for (const r of both) expect(r.bytes).toBe(r.profile!.replicaBytes + THREAD_SESSION_BYTES);
  }, 120_000);

  it('a profile measured on a thread says so, and its replica is charged the thread once', async () => {
    // The deployment puts the session on a thread from its first load: the profile's memory figures include the thread.
    await client.deploy(sampleModelPath('wide-mlp'), 'wide', { device: 'cpu', sessionHost: 'thread', ...QUICK_PROFILE });
    const [r] = await replicasOf('wide');
    expect(r!.profile?.source).toBe('measured');
    expect(r!.sessionHost).toBe('thread');
    expect((await client.profiles('wide'))[0]?.sessionHost).toBe('thread');
    expect(r!.bytes).toBe(r!.profile!.replicaBytes);
  }, 60_000);

  it('keeps a model with microsecond runs on the event loop', async () => {
    await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', ...QUICK_PROFILE });
    const [r] = await replicasOf('mlp');
    expect(r!.profile?.source).toBe('measured');
    expect(r!.sessionHost).toBe('event-loop');
    expect(r!.bytes).toBe(r!.profile!.replicaBytes);
  }, 60_000);
});
