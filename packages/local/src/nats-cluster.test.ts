// Integration: NatsCluster itself — three routed nats-servers with clustered JetStream; a stream
// replicated on all three keeps its data when the node leading it is killed, and the node comes
// back with `restart`.
import { existsSync } from 'node:fs';
import { closeBus, connectBus, type NatsConnection } from '@flotilla/bus';
import { NatsCluster } from './nats-cluster.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

async function api(nc: NatsConnection, subject: string, body?: unknown): Promise<any> {
  const m = await nc.request(subject, enc.encode(body === undefined ? '' : JSON.stringify(body)), { timeout: 2000 });
  return JSON.parse(dec.decode(m.data));
}

/** Retries a JetStream API call while the cluster re-elects leaders (error replies or timeouts). */
async function retryApi(nc: NatsConnection, subject: string, body?: unknown, timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let why: string;
    try {
      const r = await api(nc, subject, body);
      if (!r.error) return r;
      why = JSON.stringify(r.error);
    } catch (err) {
      why = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${subject}: ${why}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('NatsCluster', () => {
  it('routes three servers with clustered JetStream; an R3 stream survives killing its leader; restart rejoins', async () => {
    const t0 = performance.now();
    const cluster = await NatsCluster.start({ size: 3 });
    const startMs = performance.now() - t0;
    let nc: NatsConnection | undefined;
    try {
      expect(cluster.urls).toHaveLength(3);
      expect(new Set(cluster.urls).size).toBe(3);
      expect(cluster.names).toEqual(['n0', 'n1', 'n2']);
      expect(cluster.urlsFrom(1)).toEqual([cluster.urls[1], cluster.urls[2], cluster.urls[0]]);
      for (let i = 0; i < 3; i++) {
        const routez = await cluster.monitor<{ num_routes: number }>(i, 'routez');
        expect(routez.num_routes).toBeGreaterThanOrEqual(2);
      }

      // noRandomize (e.g. the node on this host listed first) connects to the first server, every time;
      // a comma-separated list works like an array (FLOTILLA_NATS may hold one).
      for (let i = 0; i < 4; i++) {
        const c = await connectBus({ servers: cluster.urlsFrom(1).join(','), noRandomize: true, reconnectForever: false });
        expect(c.info?.server_name).toBe('n1');
        await closeBus(c);
      }

      nc = await connectBus({ servers: cluster.urls });
      await retryApi(nc, '$JS.API.STREAM.CREATE.T', { name: 'T', subjects: ['t.>'], storage: 'file', num_replicas: 3 });
      for (let i = 0; i < 10; i++) {
        const ack = JSON.parse(dec.decode((await nc.request(`t.${i}`, enc.encode(`m${i}`), { timeout: 5000 })).data));
        expect(ack).toMatchObject({ stream: 'T', seq: i + 1 });
      }
      const info = await retryApi(nc, '$JS.API.STREAM.INFO.T');
      expect(info.config.num_replicas).toBe(3);
      const leader = cluster.names.indexOf(info.cluster.leader);
      expect(leader).toBeGreaterThanOrEqual(0);

      const t1 = performance.now();
      cluster.kill(leader);
      expect(cluster.up(leader)).toBe(false);
      const after = await retryApi(nc, '$JS.API.STREAM.INFO.T');
      const failoverMs = performance.now() - t1;
      expect(after.state.messages).toBe(10);
      expect(after.cluster.leader).not.toBe(cluster.names[leader]);
      const got = await retryApi(nc, '$JS.API.STREAM.MSG.GET.T', { seq: 7 });
      expect(Buffer.from(got.message.data, 'base64').toString()).toBe('m6');

      const t2 = performance.now();
      await cluster.restart(leader);
      await cluster.waitReady(30_000);
      const rejoinMs = performance.now() - t2;
      expect(cluster.up(leader)).toBe(true);
      process.stdout.write(
        `[nats-cluster] 3 nodes ready in ${startMs.toFixed(0)} ms; stream leader ${cluster.names[leader]} killed: ` +
          `new leader ${after.cluster.leader} answering after ${failoverMs.toFixed(0)} ms, 10/10 messages kept; restart + rejoin ${rejoinMs.toFixed(0)} ms\n`,
      );
    } finally {
      if (nc) await closeBus(nc);
      await cluster.stop();
    }
    expect(existsSync(cluster.root)).toBe(false);
  }, 90_000);
});
