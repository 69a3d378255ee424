// A worker's model artifacts (worker/src/artifact-cache.ts) on a real nats-server: opening the
// model store rides out a moment when JetStream answers nothing (a leader election after a NATS
// node is lost, a broker restarting) in short attempts, instead of failing the load after nats.js's
// 5 s default; a failure that another attempt cannot mend (no such bucket) still fails at once, and
// a store that never comes back fails by the deadline.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { closeBus, connectBus, objectStores, type NatsConnection } from '@flotilla/bus';
import { NatsServer, freePort, type NatsServerOptions } from '@flotilla/local';
import { ArtifactCache } from '@flotilla/worker/internal';

const BUCKET = 'artifact-cache-test';
const bytes = randomBytes(64 * 1024);
const digest = createHash('sha256').update(bytes).digest('hex');

let natsOpts: NatsServerOptions;
let nats: NatsServer;
let nc: NatsConnection;
const dirs: string[] = [];
const cacheDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'flotilla-artifacts-'));
  dirs.push(d);
  return d;
};

/** The server again on the same port and store. */
async function restart(): Promise<void> {
  nats = await NatsServer.restart({ port: natsOpts.port!, dir: natsOpts.dir! });
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-artifact-store-'));
  dirs.push(dir);
  natsOpts = { port: await freePort(), dir };
  nats = await NatsServer.start(natsOpts);
  nc = await connectBus({ servers: nats.url });
  const os = await (await objectStores(jetstream(nc))).create(BUCKET);
  await os.putBlob({ name: digest }, bytes);
}, 30_000);

afterAll(async () => {
  await closeBus(nc);
  await nats.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('a store that answers nothing for 2 s (its broker restarting): the artifact arrives once it is back, not a failed load', async () => {
  const cache = new ArtifactCache(nc, BUCKET, cacheDir());
  nats.kill();
  const t0 = Date.now();
  const path = cache.path(digest);
  await sleep(2000);
  await restart();
  const file = await path;
  const ms = Date.now() - t0;
  expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(digest);
  // One 5 s attempt would have failed; short attempts find the store within about one of them.
  expect(ms).toBeLessThan(2000 + 4000);
}, 30_000);

test('no such bucket fails at once: another attempt would not mend it', async () => {
  const cache = new ArtifactCache(nc, 'no-such-bucket', cacheDir());
  const t0 = Date.now();
  await expect(cache.path(digest)).rejects.toThrow();
  expect(Date.now() - t0).toBeLessThan(1500);
}, 30_000);

test('a store that does not come back fails by the deadline, not later', async () => {
  const cache = new ArtifactCache(nc, BUCKET, cacheDir(), 2500);
  nats.kill();
  try {
    const t0 = Date.now();
    await expect(cache.path(digest)).rejects.toThrow(/timeout/i);
    const ms = Date.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(2000);
    expect(ms).toBeLessThan(2500 + 1500);
  } finally {
    await restart();
  }
}, 30_000);
