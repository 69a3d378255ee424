// `pnpm demo`: the main job on the embedded default. A local cluster (own nats-server on a free
// port, a head, a worker), two sample models built on the spot, inferences with outputs and
// latency printed, then everything shut down.
import { LocalCluster } from '@flotilla/local';
import { randomFloats, sampleModelPath } from '@flotilla/sample-models';
import type { Tensor } from '@flotilla/client';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export async function demo(): Promise<void> {
  const out = (s: string) => process.stdout.write(s + '\n');
  const t0 = performance.now();
  const cluster = await LocalCluster.start({ cluster: 'demo', workers: 1 });
  try {
    out(`local cluster up in ${(performance.now() - t0).toFixed(0)} ms: nats ${cluster.url}, head + 1 worker`);
    const client = cluster.client();

    let t = performance.now();
    await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'any' });
    out(`deployed mlp (16→32→4, 3 KB) in ${(performance.now() - t).toFixed(0)} ms`);
    t = performance.now();
    await client.deploy(sampleModelPath('wide-mlp'), 'wide-mlp', { device: 'any' });
    out(`deployed wide-mlp (1024→4096→1024→10, 32 MiB of weights) in ${(performance.now() - t).toFixed(0)} ms`);

    const x: Tensor = { dtype: 'float32', dims: [2, 16], data: randomFloats(32, 42) };
    const { outputs, meta } = await client.inferWithMeta('mlp', { x });
    const y = outputs.y!;
    out(`\nmlp(x[2,16]) → y[${y.dims.join(',')}] = ${JSON.stringify(Array.from(y.data as Float32Array, (v) => +v.toFixed(4)))}`);
    out(`  served by ${meta.worker}/${meta.replica} on ${meta.device} (queue ${meta.queueMs} ms, run ${meta.runMs} ms)`);

    for (const [model, width] of [
      ['mlp', 16],
      ['wide-mlp', 1024],
    ] as const) {
      const lat: number[] = [];
      for (let i = 0; i < 200; i++) {
        const s = performance.now();
        await client.infer(model, { x: { dtype: 'float32', dims: [1, width], data: randomFloats(width, i) } });
        lat.push(performance.now() - s);
      }
      const n = 256;
      const c0 = performance.now();
      const metas = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          client.inferWithMeta(model, { x: { dtype: 'float32', dims: [1, width], data: randomFloats(width, i) } }),
        ),
      );
      const secs = (performance.now() - c0) / 1000;
      const avgBatch = metas.reduce((a, m) => a + m.meta.batch, 0) / n;
      out(
        `\n${model}: sequential latency p50 ${pct(lat, 50).toFixed(2)} ms, p99 ${pct(lat, 99).toFixed(2)} ms (200 requests)` +
          `\n${model}: ${n} concurrent requests in ${(secs * 1000).toFixed(0)} ms = ${(n / secs).toFixed(0)} req/s, mean batch ${avgBatch.toFixed(1)}`,
      );
    }
  } finally {
    await cluster.stop();
    out('\ncluster stopped');
  }
}
