// The Python client package (clients/python, `flotilla_client`) against a real cluster: this test
// starts nats-server + head + worker, deploys the models its pytest suite calls, computes the
// expected outputs with onnxruntime-node in-process, and runs `pytest clients/python/tests`
// with FLOTILLA_TEST_NATS / FLOTILLA_TEST_CLUSTER / FLOTILLA_TEST_EXPECTED. Runs where python3 is
// present (scripts/setup then installs the package, numpy and pytest into .cache/py).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { PY, ROOT, hasPython, mlpReference, pytest, pytestVerdict } from './python.js';

const MiB = 1024 * 1024;

(hasPython ? it : it.skip)(
  'the Python client package passes its pytest suite against a real cluster',
  async () => {
    expect(existsSync(PY)).toBe(true); // scripts/setup creates it when python3 is present
    expect(spawnSync(PY, ['-c', 'import flotilla_client, numpy, pytest']).status).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-py-'));
    // 150 MiB of budget: victim (60) + mlp, affine, tight (20 each) fit; hog (60) evicts victim.
    const cluster = await LocalCluster.start({ workers: 1, worker: { memoryBudgetBytes: 150 * MiB } });
    try {
      const client = cluster.client();
      const opts = { device: 'cpu' as const, memoryBytes: 20 * MiB, profile: { enabled: false } };
      await client.deploy(sampleModelPath('mlp'), 'victim', { ...opts, memoryBytes: 60 * MiB });
      await client.deploy(sampleModelPath('mlp'), 'mlp', opts);
      await client.deploy(sampleModelPath('affine'), 'affine', opts);
      // One request at a time and a queue of one: concurrent callers are refused OVERLOADED.
      await client.deploy(sampleModelPath('affine'), 'tight', {
        ...opts,
        batching: { maxBatchSize: 1, maxQueueLength: 1, maxQueueDelayMs: 0 },
      });
      await client.deploy(sampleModelPath('mlp'), 'gone', opts);
      await client.undeploy('gone');
      // Not ONNX: every load fails (MODEL_LOAD_FAILED), so no replica is ever subscribed.
      await client.deploy(new TextEncoder().encode('not an onnx model'), 'broken', { ...opts, wait: false });
      await client.deploy(sampleModelPath('mlp'), 'hog', { ...opts, memoryBytes: 60 * MiB });
      expect((await client.describe('victim')).ready).toBe(0);
      expect((await client.events({ model: 'victim', limit: 20 })).map((e) => e.type)).toEqual(['loaded', 'evicted']);

      const x = Array.from({ length: 4 }, (_, r) => Array.from({ length: 16 }, (_, i) => (r * 16 + i) / 64 - 0.5));
      const expected = join(dir, 'expected.json');
      writeFileSync(expected, JSON.stringify({ mlp: { x, y: await mlpReference(x) } }));
      const report = join(dir, 'report.json');

      const t0 = performance.now();
      // test_auth.py needs a cluster with nats-server permissions: python-auth.test.ts runs it.
      const tests = [`--ignore=${resolve(ROOT, 'clients/python/tests/test_auth.py')}`, resolve(ROOT, 'clients/python/tests')];
      const { code, output } = await pytest(
        tests,
        {
          FLOTILLA_TEST_NATS: cluster.url,
          FLOTILLA_TEST_CLUSTER: cluster.cluster,
          FLOTILLA_TEST_EXPECTED: expected,
          FLOTILLA_TEST_REPORT: report,
        },
        240_000,
      );
      const ms = performance.now() - t0;
      if (code !== 0) throw new Error(`pytest failed (exit ${code}):\n${output.slice(-8000)}`);
      const verdict = pytestVerdict(output);
      expect(verdict).toEqual({ summary: expect.stringMatching(/^\d+ passed in /), notPassed: [] });
      const figures = existsSync(report) ? readFileSync(report, 'utf8') : '{}';
      process.stdout.write(`[python-client] pytest ${verdict.summary} (${ms.toFixed(0)} ms); ${figures}\n`);

      // The TypeScript SDK's time for the same staged 12 MiB round trip, for comparison.
      const big = { dtype: 'float32' as const, dims: [1, 3, 1024, 1024], data: new Float32Array(3 * MiB).fill(0.5) };
      await client.infer('affine', { x: big }, { timeoutMs: 60_000 });
      const t1 = performance.now();
      expect((await client.infer('affine', { x: big }, { timeoutMs: 60_000 })).y!.data[7]).toBe(2);
      process.stdout.write(`[python-client] TypeScript SDK, same staged 12 MiB round trip: ${(performance.now() - t1).toFixed(0)} ms\n`);

      // The evicted model came back through ensure, and nothing was left in the blob bucket.
      expect((await client.events({ model: 'victim', limit: 20 })).map((e) => e.type)).toEqual(['loaded', 'evicted', 'loaded']);
    } finally {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  300_000,
);
