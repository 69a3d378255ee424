// Integration: a replica whose session is still opening is advertised as `loading` with only what
// the worker knows then (its device, the memory it reserved, whether it is pinned, no requests
// taken), never a provider, batching or load times it does not have; the head's heartbeat schema
// takes it, and the same replica is advertised loaded once its session is open.
import { decode, parseHeartbeat, type ReplicaState } from '@flotilla/protocol';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { until } from './until.js';

describe('a loading replica in heartbeats', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ workers: 1 });
  }, 30_000);
  afterAll(() => cluster?.stop());

  it('is advertised with the loading shape, then loaded', async () => {
    const w = cluster.workers[0]!;
    const seen: ReplicaState[] = [];
    const refused: string[] = [];
    // Parsed by the schema the head parses heartbeats with: a heartbeat it would refuse fails the test.
    const sub = w.nc.subscribe(w.subjects.heartbeat(w.id), {
      callback: (err, msg) => {
        try {
          if (!err) seen.push(...parseHeartbeat(decode(msg.data)).replicas.filter((r) => r.model === 'opening'));
        } catch (e) {
          refused.push((e as Error).message);
        }
      },
    });
    await w.nc.flush();
    const client = cluster.client();
    // Profiling keeps the replica loading for a while; the worker advertises it as soon as it reserves its memory.
    await client.deploy(sampleModelPath('mlp'), 'opening', { device: 'cpu', pin: true, profile: { budgetMs: 200 } });
    await until(() => refused.length > 0 || seen.some((r) => r.state === 'ready'), { what: 'a heartbeat with the replica ready' });
    sub.unsubscribe();
    expect(refused).toEqual([]);

    const loading = seen.find((r) => r.state === 'loading');
    expect(loading).toBeDefined();
    expect(Object.keys(loading!).sort()).toEqual([
      'bytes',
      'device',
      'digest',
      'failed',
      'id',
      'inFlight',
      'model',
      'pinned',
      'processed',
      'queueDepth',
      'state',
    ]);
    expect(loading).toMatchObject({ device: 'cpu', pinned: true, queueDepth: 0, inFlight: 0, processed: 0, failed: 0 });
    expect(loading!.bytes).toBeGreaterThan(0);

    const ready = seen.find((r) => r.state === 'ready');
    expect(ready?.id).toBe(loading!.id);
    expect(ready).toMatchObject({ executionProvider: 'cpu', pinned: true, batching: { batchAxis: true }, profile: { source: 'measured' } });
    if (ready?.state !== 'ready') throw new Error('unreachable: found by state');
    expect(ready.batching.maxBatchSize).toBeGreaterThanOrEqual(1);
    expect(ready.loadedAt).toBeGreaterThan(0);
    // The head took those heartbeats: it reports the replica ready.
    const status = await client.status();
    expect(status.workers[0]!.replicas.find((r) => r.id === loading!.id)?.state).toBe('ready');
  }, 60_000);
});
