// Integration: a slowed replica gets a small share of the requests under SDK least-loaded routing,
// while plain NATS queue-group routing (what a caller without the SDK gets) splits ~evenly. The slow
// replica serves at most 20 requests/s either way, so its SDK share is 30 / (30 + what the fast one
// serves in 1.5 s): 2 % on an idle machine, 5 % when the fast one is slowed four-fold by other tests.
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { connect } from '@nats-io/transport-node';
import { PROTOCOL_VERSION, encode, fromTypedArray } from '@flotilla/protocol';

const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16) };

async function shares(cluster: LocalCluster): Promise<{ slow: number; fast: number }> {
  const st = await cluster.client().status();
  const count = (id: string) => st.workers.find((w) => w.id === id)!.replicas.reduce((n, r) => n + r.processed, 0);
  return { slow: count('w1'), fast: count('w0') };
}

/** The counts once heartbeats have carried all of a phase: two reads 600 ms apart agree (LocalCluster
 * beats every 250 ms; a late heartbeat would otherwise move one phase's requests into the next). */
async function settledShares(cluster: LocalCluster): Promise<{ slow: number; fast: number }> {
  let last = await shares(cluster);
  for (;;) {
    await new Promise((r) => setTimeout(r, 600));
    const now = await shares(cluster);
    if (now.slow === last.slow && now.fast === last.fast) return now;
    last = now;
  }
}

it('a replica slowed by 50 ms per batch gets far fewer requests than the fast one', async () => {
  const cluster = await LocalCluster.start({ workers: 2, worker: (i) => (i === 1 ? { slowdownMs: 50 } : {}) });
  try {
    const client = cluster.client();
    await client.deploy(sampleModelPath('mlp'), 'mlp', {
      replicas: 2,
      device: 'cpu',
      profile: { enabled: false },
      batching: { maxBatchSize: 1 },
    });
    const st = await client.describe('mlp');
    expect(new Set(st.replicas.map((r) => r.workerId))).toEqual(new Set(['w0', 'w1']));

    // Plain queue group (no SDK routing): NATS picks at random.
    const nc = await connect({ servers: cluster.url });
    const body = encode({ v: PROTOCOL_VERSION, inputs: { x: fromTypedArray('float32', [1, 16], new Float32Array(16)) } });
    const t0 = Date.now();
    const workers = Array.from({ length: 8 }, async () => {
      while (Date.now() - t0 < 1500) await nc.request(`flotilla.${cluster.cluster}.infer.mlp`, body, { timeout: 10_000 });
    });
    await Promise.all(workers);
    await nc.close();
    const plain = await settledShares(cluster);
    const plainShare = plain.slow / (plain.slow + plain.fast);

    // SDK: least-loaded routing.
    const t1 = Date.now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (Date.now() - t1 < 1500) await client.infer('mlp', { x });
      }),
    );
    const after = await settledShares(cluster);
    const sdk = { slow: after.slow - plain.slow, fast: after.fast - plain.fast };
    const sdkShare = sdk.slow / (sdk.slow + sdk.fast);
    process.stdout.write(
      `routing with one replica slowed 50 ms/batch, 8 callers, 1.5 s each: queue group slow share ${(plainShare * 100).toFixed(1)}% ` +
        `(${plain.slow}/${plain.slow + plain.fast}); SDK least-loaded slow share ${(sdkShare * 100).toFixed(1)}% (${sdk.slow}/${sdk.slow + sdk.fast})\n`,
    );
    expect(plainShare).toBeGreaterThan(0.03); // random routing still feeds it (and is throttled by it)
    expect(sdkShare).toBeLessThan(0.1);
    expect(sdk.fast + sdk.slow).toBeGreaterThan(plain.fast + plain.slow);
  } finally {
    await cluster.stop();
  }
}, 60_000);
