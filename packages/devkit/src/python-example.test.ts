// The Python example (examples/python_client.py: nats-py + msgpack, no Flotilla code) calls a
// model and gets the same outputs as the TypeScript SDK. Runs where python3 is present (the
// setup script then creates .cache/py with the two packages).
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { LocalCluster } from './local-cluster.js';
import { sampleModelPath } from './sample-models.js';

const ROOT = resolve(__dirname, '../../..');
const PY = resolve(ROOT, '.cache/py/bin/python');
const hasPython = spawnSync('python3', ['--version']).status === 0;

(hasPython ? it : it.skip)('a Python service calls a model over NATS with nats-py and msgpack', async () => {
  expect(existsSync(PY)).toBe(true); // scripts/setup creates it when python3 is present
  const cluster = await LocalCluster.start({ workers: 1 });
  try {
    const client = cluster.client();
    await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
    const { stdout } = await promisify(execFile)(PY, [resolve(ROOT, 'examples/python_client.py'), cluster.url, cluster.cluster, 'mlp'], { timeout: 30_000 });
    const fromPython = JSON.parse(stdout) as { y: { dims: number[]; data: number[] } };
    const x = new Float32Array(16).map((_, i) => i / 16);
    const fromSdk = await client.infer('mlp', { x: { dtype: 'float32', dims: [1, 16], data: x } });
    expect(fromPython.y.dims).toEqual([1, 4]);
    expect(fromPython.y.data).toEqual(Array.from(fromSdk.y!.data as Float32Array));
  } finally {
    await cluster.stop();
  }
}, 60_000);
