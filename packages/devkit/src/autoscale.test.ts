// Integration: the head scales a deployment up on queue depth within its bounds, the new replica
// serves, and after the load stops the deployment returns to its minimum.
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';

const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16) };

it('scales up under load (reaction time printed) and back down after the downscale window', async () => {
  // Every batch takes ≥ 15 ms (slowdown knob): one replica cannot keep 16 callers' queue short.
  const cluster = await LocalCluster.start({ workers: 2, worker: { slowdownMs: 15 } });
  try {
    const client = cluster.client();
    await client.deploy(sampleModelPath('mlp'), 'mlp', {
      device: 'cpu',
      replicas: 1,
      minReplicas: 1,
      maxReplicas: 3,
      autoscale: { targetPerReplica: 2, upscaleStabilizationMs: 1000, downscaleStabilizationMs: 3000, cooldownMs: 500 },
      batching: { maxBatchSize: 1 },
      profile: { enabled: false },
    });
    const first = (await client.describe('mlp')).replicas[0]!.id;
    const t0 = Date.now();
    let stop = false;
    let reactionMs = -1;
    const served = new Set<string>();
    const callers = Array.from({ length: 16 }, async () => {
      while (!stop) {
        const r = await client.inferWithMeta('mlp', { x }, { timeoutMs: 20_000 });
        served.add(r.meta.replica);
        if (reactionMs < 0 && r.meta.replica !== first) reactionMs = Date.now() - t0;
        if (Date.now() - t0 > 15_000) stop = true;
        if (reactionMs >= 0 && Date.now() - t0 > reactionMs + 2000) stop = true;
      }
    });
    await Promise.all(callers);
    const peak = await client.describe('mlp');
    process.stdout.write(
      `autoscale: load step (16 callers) → a new replica answering after ${reactionMs} ms; replicas at peak ${peak.ready}\n`,
    );
    expect(reactionMs).toBeGreaterThan(0);
    expect(reactionMs).toBeLessThan(5000);
    expect(served.size).toBeGreaterThan(1);
    expect(peak.spec.replicas).toBeLessThanOrEqual(3);

    const t1 = Date.now();
    let down = -1;
    while (Date.now() - t1 < 15_000) {
      const d = await client.describe('mlp');
      if (d.spec.replicas === 1 && d.ready === 1) {
        down = Date.now() - t1;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    process.stdout.write(`autoscale: load stopped → back to 1 replica after ${down} ms (downscale window 3000 ms)\n`);
    expect(down).toBeGreaterThanOrEqual(2500);
    const scaled = (await client.events({ model: 'mlp' })).filter((e) => e.type === 'scaled');
    expect(scaled.length).toBeGreaterThanOrEqual(2);
    expect((await client.infer('mlp', { x })).y!.dims).toEqual([1, 4]);
  } finally {
    await cluster.stop();
  }
}, 60_000);
