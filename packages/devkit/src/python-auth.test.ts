// The Python client package (clients/python, `flotilla_client`) against a cluster whose nats-server
// enforces the roles of docs/security.md: `flotilla auth init` writes the seeds and nats.conf, the
// cluster runs on them (head and worker on their own seeds), `mlp` is deployed, its expected outputs
// are computed with onnxruntime-node in-process, and `pytest clients/python/tests/test_auth.py` runs
// with FLOTILLA_TEST_AUTH_NATS / _AUTH_CLUSTER / _CALLER_SEED / _REFUSED_SEED (the worker's: a role
// that may not infer) / FLOTILLA_TEST_EXPECTED. Runs where python3 is present (scripts/setup then
// installs the package, nkeys, numpy and pytest into .cache/py).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { PY, ROOT, hasPython, mlpReference, pytest, pytestVerdict } from './python.js';
import { findCli } from './worker-process.js';

(hasPython ? it : it.skip)(
  'the Python client under nats-server permissions: a caller infers, a worker seed is FORBIDDEN at once, no credentials are FORBIDDEN',
  async () => {
    expect(existsSync(PY)).toBe(true); // scripts/setup creates it when python3 is present
    expect(spawnSync(PY, ['-c', 'import flotilla_client, nkeys, numpy, pytest']).status).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-pyauth-'));
    const name = `pyauth${Math.random().toString(36).slice(2, 8)}`;
    let cluster: LocalCluster | undefined;
    try {
      const init = spawnSync(process.execPath, [findCli(), 'auth', 'init', '--out', join(dir, 'auth'), '--cluster', name], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      if (init.status !== 0) throw new Error(`flotilla auth init failed: ${init.stderr}`);
      // max_payload 128 KiB: the caller's 9000-row request and its reply go through the blob bucket.
      cluster = await LocalCluster.start({ cluster: name, authDir: join(dir, 'auth'), workers: 1, nats: { maxPayload: 128 * 1024 } });
      await cluster.client().deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu', profile: { enabled: false } }); // as operator

      const x = Array.from({ length: 4 }, (_, r) => Array.from({ length: 16 }, (_, i) => (r * 16 + i) / 64 - 0.5));
      const expected = join(dir, 'expected.json');
      writeFileSync(expected, JSON.stringify({ mlp: { x, y: await mlpReference(x) } }));

      const t0 = performance.now();
      const { code, output } = await pytest(
        [resolve(ROOT, 'clients/python/tests/test_auth.py')],
        {
          FLOTILLA_TEST_AUTH_NATS: cluster.url,
          FLOTILLA_TEST_AUTH_CLUSTER: name,
          FLOTILLA_TEST_CALLER_SEED: join(dir, 'auth', 'caller.nk'),
          FLOTILLA_TEST_REFUSED_SEED: join(dir, 'auth', 'worker.nk'),
          FLOTILLA_TEST_EXPECTED: expected,
        },
        60_000,
      );
      const ms = performance.now() - t0;
      if (code !== 0) throw new Error(`pytest failed (exit ${code}):\n${output.slice(-8000)}`);
      const verdict = pytestVerdict(output);
      expect(verdict).toEqual({ summary: expect.stringMatching(/^4 passed in /), notPassed: [] });
      process.stdout.write(`[python-auth] pytest ${verdict.summary} (${ms.toFixed(0)} ms)\n`);
    } finally {
      await cluster?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  60_000,
);
