// The Python quickstart (examples/python_client.py, through the flotilla_client package in
// clients/python) calls a model and gets the same outputs as the TypeScript SDK. Runs where
// python3 is present (the setup script then creates .cache/py with the package installed).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { PY, ROOT, hasPython } from './python.js';

const MiB = 1024 * 1024;

(hasPython ? it : it.skip)(
  'a Python service calls a model over NATS with nats-py and msgpack, and brings it back after eviction',
  async () => {
    expect(existsSync(PY)).toBe(true); // scripts/setup creates it when python3 is present
    // The budget fits one of the two models: deploying the second evicts the first.
    const cluster = await LocalCluster.start({ workers: 1, worker: { memoryBudgetBytes: 100 * MiB } });
    try {
      const client = cluster.client();
      const opts = { device: 'cpu' as const, memoryBytes: 60 * MiB, profile: { enabled: false } };
      await client.deploy(sampleModelPath('mlp'), 'mlp', opts);
      const python = async () => {
        const { stdout } = await promisify(execFile)(
          PY,
          [resolve(ROOT, 'examples/python_client.py'), cluster.url, cluster.cluster, 'mlp'],
          { timeout: 30_000 },
        );
        return JSON.parse(stdout) as { y: { dims: number[]; data: number[] } };
      };
      const fromPython = await python();
      const x = new Float32Array(16).map((_, i) => i / 16);
      const fromSdk = await client.infer('mlp', { x: { dtype: 'float32', dims: [1, 16], data: x } });
      expect(fromPython.y.dims).toEqual([1, 4]);
      expect(fromPython.y.data).toEqual(Array.from(fromSdk.y!.data as Float32Array));

      await client.deploy(sampleModelPath('affine'), 'other', opts);
      expect((await client.describe('mlp')).ready).toBe(0);
      // No replica of mlp is subscribed: the Python caller gets "no responders", asks the head to
      // ensure the model, and its retry is answered.
      const afterEviction = await python();
      expect(afterEviction.y.data).toEqual(fromPython.y.data);
      const events = (await client.events({ model: 'mlp', limit: 20 })).map((e) => e.type);
      expect(events).toEqual(['loaded', 'evicted', 'loaded']);
    } finally {
      await cluster.stop();
    }
  },
  60_000,
);
