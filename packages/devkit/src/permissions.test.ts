// Roles enforced by nats-server: a cluster whose nats-server runs with the config `flotilla auth
// init` writes (head and worker on their own seeds), and every role × action of docs/security.md's
// table tried for real: allowed, or FORBIDDEN within 2 s (never a hang, never another code).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlotillaClient } from '@flotilla/client';
import { jobStatus, submitJob } from '@flotilla/jobs';
import { closeBus, connectBus, mapNatsError, publishConfirmed, subscribeConfirmed, type NatsConnection } from '@flotilla/bus';
import {
  ErrorCode,
  PROTOCOL_VERSION,
  ROLES,
  decode,
  encode,
  fromTypedArray,
  inboxPrefixFor,
  objStream,
  subjects,
  type FlotillaError,
  type Role,
} from '@flotilla/protocol';
import { LocalCluster } from '@flotilla/local';
import { findCli } from './worker-process.js';
import { sampleModelPath } from '@flotilla/sample-models';

const CLUSTER = `perm${Math.random().toString(36).slice(2, 8)}`;
const s = subjects(CLUSTER);
const dir = mkdtempSync(join(tmpdir(), 'flotilla-auth-'));
let cluster: LocalCluster;
const conns = new Map<Role, NatsConnection>();
const clients = new Map<Role, FlotillaClient>();
/** Each role's client that sends bodies over max_payload through the blob bucket (`directBodies: false`). */
const stagingClients = new Map<Role, FlotillaClient>();
/** The mlp replica's id (requests to its own subject: what the SDK's router sends). */
let replicaId = '';

const x = { x: { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.5) } };
const wireX = fromTypedArray('float32', [1, 16], x.x.data);

/** What an action came to: `ok`, or the error's code (`uncoded: …` for an error without one). */
async function outcome(p: () => Promise<unknown>): Promise<string> {
  try {
    await p();
    return 'ok';
  } catch (e) {
    const code = (e as FlotillaError).code;
    return code === undefined
      ? `uncoded: ${(e as Error).message}`
      : code === 'FORBIDDEN'
        ? code
        : `${code}: ${(e as Error).message.slice(0, 300)}`;
  }
}

/** A raw request mapped like the SDK maps it (FORBIDDEN for a refused publish). */
async function request(nc: NatsConnection, subject: string, data: Uint8Array): Promise<void> {
  await requestData(nc, subject, data);
}

/** The same, returning the reply's body. */
async function requestData(nc: NatsConnection, subject: string, data: Uint8Array): Promise<Uint8Array> {
  try {
    return (await nc.request(subject, data, { timeout: 2000 })).data;
  } catch (err) {
    throw mapNatsError(err, subject, 2000);
  }
}

const other = (role: Role): Role => (role === 'caller' ? 'operator' : 'caller');

/** Each action, for one role. Allowed actions leave the cluster as it was (the next role finds it the same). */
const ACTIONS: Record<string, (role: Role) => Promise<unknown>> = {
  infer: (role) => clients.get(role)!.infer('mlp', x, { timeoutMs: 5000 }),
  // What the SDK's least-loaded router sends: a raw request to the replica's own subject must be
  // answered (no responders would mean the replica could not subscribe there under its role).
  "infer on a replica's own subject": async (role) => {
    const reply = decode<{ ok: boolean }>(
      await requestData(conns.get(role)!, s.inferReplica('mlp', replicaId), encode({ v: PROTOCOL_VERSION, inputs: { x: wireX } })),
    );
    if (!reply.ok) throw new Error(`the replica answered ${JSON.stringify(reply)}`);
  },
  // Request (576 KB) and reply (144 KB) over max_payload (128 KiB here): both go through the blob bucket,
  'infer, staged both ways': (role) =>
    stagingClients
      .get(role)!
      .infer('mlp', { x: { dtype: 'float32', dims: [9000, 16], data: new Float32Array(9000 * 16) } }, { timeoutMs: 10_000 }),
  // or straight between the client and the replica it routed to, on the replica's body channel (no new permission).
  'infer, direct both ways': (role) =>
    clients
      .get(role)!
      .infer('mlp', { x: { dtype: 'float32', dims: [9000, 16], data: new Float32Array(9000 * 16) } }, { timeoutMs: 10_000 }),
  list: (role) => clients.get(role)!.list(),
  'status, describe, events': async (role) => {
    const c = clients.get(role)!;
    await c.status();
    await c.describe('mlp');
    await c.events({ limit: 5 });
  },
  'read profiles (flotilla profile)': async (role) => {
    if ((await clients.get(role)!.profiles('mlp')).length === 0) throw new Error('no profile read');
  },
  deploy: async (role) => {
    await clients.get(role)!.deploy(sampleModelPath('affine'), `aff-${role}`, { device: 'cpu', waitTimeoutMs: 20_000 });
    await cluster.client().undeploy(`aff-${role}`);
  },
  undeploy: async (role) => {
    await cluster.client().deploy(sampleModelPath('affine'), `und-${role}`, { device: 'cpu', wait: false });
    try {
      await clients.get(role)!.undeploy(`und-${role}`);
    } finally {
      await cluster
        .client()
        .undeploy(`und-${role}`)
        .catch(() => undefined); // gone already where the role could undeploy it
    }
  },
  scale: (role) => clients.get(role)!.scale('mlp', 1),
  'submit a batch job, read its status': async (role) => {
    const input = join(dir, `job-${role}.jsonl`);
    writeFileSync(input, `${JSON.stringify({ x: { dtype: 'float32', dims: [1, 16], data: Array(16).fill(0.5) } })}\n`);
    const job = await submitJob(clients.get(role)!, {
      model: 'mlp',
      input,
      output: join(dir, `job-${role}.out.jsonl`),
      stateDir: join(dir, 'jobs'),
    });
    await jobStatus(clients.get(role)!, job.id);
  },
  // An empty body: the head drops it as invalid, whoever may send it (no fake worker appears).
  heartbeat: (role) => publishConfirmed(conns.get(role)!, s.heartbeat('fake')),
  // An empty body too: the heads drop it as invalid (no fake head appears in status).
  'publish head presence': (role) => publishConfirmed(conns.get(role)!, s.headPresence('fake')),
  'join the replica queue group': async (role) =>
    (await subscribeConfirmed(conns.get(role)!, s.infer('mlp'), { queue: 'replicas' })).unsubscribe(),
  'listen to all inference requests': async (role) =>
    (await subscribeConfirmed(conns.get(role)!, `flotilla.${CLUSTER}.infer.>`)).unsubscribe(),
  // Another key than the leader's: an allowed write must not disturb the leadership.
  'write the lease KV': (role) => request(conns.get(role)!, `$KV.${s.leaseBucket}.probe-${role}`, new Uint8Array([1])),
  'write the state KV': (role) => request(conns.get(role)!, `$KV.${s.stateBucket}.probe-${role}`, new Uint8Array([1])),
  'read all replies (_INBOX.>)': async (role) => (await subscribeConfirmed(conns.get(role)!, '_INBOX.>')).unsubscribe(),
  "read another role's replies": async (role) =>
    (await subscribeConfirmed(conns.get(role)!, `${inboxPrefixFor(other(role))}.>`)).unsubscribe(),
  "read its own role's replies": async (role) => (await subscribeConfirmed(conns.get(role)!, `${inboxPrefixFor(role)}.>`)).unsubscribe(),
};

// docs/security.md, "What each role can do" (✓ = ok, ✗ = FORBIDDEN), in ROLES order: caller, operator, worker, head.
const EXPECTED: Record<keyof typeof ACTIONS, string> = {
  infer: '✓✓✗✗',
  "infer on a replica's own subject": '✓✓✗✗',
  'infer, staged both ways': '✓✓✗✗',
  'infer, direct both ways': '✓✓✗✗',
  list: '✓✓✗✗',
  'status, describe, events': '✓✓✗✗',
  'read profiles (flotilla profile)': '✓✓✗✗',
  deploy: '✗✓✗✗',
  undeploy: '✗✓✗✗',
  scale: '✗✓✗✗',
  'submit a batch job, read its status': '✗✓✗✗',
  heartbeat: '✗✗✓✗',
  'publish head presence': '✗✗✗✓',
  'join the replica queue group': '✗✗✓✗',
  'listen to all inference requests': '✗✗✗✗',
  'write the lease KV': '✗✗✗✓',
  'write the state KV': '✗✗✗✓',
  'read all replies (_INBOX.>)': '✗✗✗✗',
  "read another role's replies": '✗✗✗✗',
  "read its own role's replies": '✓✓✓✓',
};

beforeAll(async () => {
  const r = spawnSync(process.execPath, [findCli(), 'auth', 'init', '--out', dir, '--cluster', CLUSTER], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`flotilla auth init failed: ${r.stderr}`);
  cluster = await LocalCluster.start({ cluster: CLUSTER, authDir: dir, workers: 1, nats: { maxPayload: 128 * 1024 } });
  replicaId = (await cluster.client().deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' })).replicas[0]!.id;
  for (const role of ROLES) {
    const seed = join(dir, `${role}.nk`);
    conns.set(role, await connectBus({ servers: cluster.url, nkeySeedFile: seed, name: `probe-${role}` }));
    clients.set(role, new FlotillaClient({ servers: cluster.url, cluster: CLUSTER, nkeySeedFile: seed }));
    stagingClients.set(role, new FlotillaClient({ servers: cluster.url, cluster: CLUSTER, nkeySeedFile: seed, directBodies: false }));
  }
}, 60_000);

afterAll(async () => {
  await Promise.allSettled([...clients.values(), ...stagingClients.values()].map((c) => c.close()));
  await Promise.allSettled([...conns.values()].map((c) => closeBus(c)));
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('roles enforced by nats-server permissions', () => {
  it('each role × action is allowed or FORBIDDEN exactly as documented, each within 2 s', async () => {
    const got: Record<string, string> = {};
    const slow: string[] = [];
    for (const [action, run] of Object.entries(ACTIONS)) {
      let row = '';
      for (const role of ROLES) {
        const start = Date.now();
        const o = await outcome(() => run(role));
        const ms = Date.now() - start;
        row += o === 'ok' ? '✓' : o === 'FORBIDDEN' ? '✗' : `[${o}]`;
        // Allowed deploys wait for a replica; a refusal is always prompt.
        if (o !== 'ok' && ms > 2000) slow.push(`${action}/${role}: ${o} after ${ms} ms`);
      }
      got[action] = row;
    }
    expect(got).toEqual(EXPECTED);
    expect(slow).toEqual([]);
  }, 50_000);

  it('a caller’s bodies over max_payload go direct under its role: nothing is staged once the SDK knows the replica', async () => {
    const caller = conns.get('caller')!;
    const staged = async () => {
      const info = JSON.parse(
        new TextDecoder().decode(await requestData(caller, `$JS.API.STREAM.INFO.${objStream(s.blobBucket)}`, new Uint8Array(0))),
      );
      return (info as { state?: { last_seq: number } }).state?.last_seq ?? 0;
    };
    const big = { x: { dtype: 'float32' as const, dims: [9000, 16], data: new Float32Array(9000 * 16) } };
    let direct = false;
    for (let i = 0; i < 30 && !direct; i++) {
      const before = await staged();
      await clients.get('caller')!.infer('mlp', big, { timeoutMs: 10_000 });
      direct = (await staged()) === before;
      if (!direct) await new Promise((r) => setTimeout(r, 100));
    }
    expect(direct).toBe(true);
  });

  it('the cluster still serves after the matrix: the lease and the head are untouched', async () => {
    expect(cluster.head.state).toBe('running');
    const y = await clients.get('caller')!.infer('mlp', x);
    expect(y.y!.dims).toEqual([1, 4]);
    expect((await clients.get('caller')!.list()).map((d) => d.spec.name)).toEqual(['mlp']);
  });

  it('connections use their role’s inbox prefix', async () => {
    const nc = conns.get('caller')!;
    const sub = await subscribeConfirmed(nc, `${inboxPrefixFor('caller')}.probe`);
    sub.unsubscribe();
    expect((nc as unknown as { options: { inboxPrefix?: string } }).options.inboxPrefix).toBe('_INBOX_caller');
  });

  it('the server refuses a connection without a seed, and the config is the one auth init wrote', async () => {
    await expect(connectBus({ servers: cluster.url, reconnectForever: false, timeoutMs: 2000 })).rejects.toThrow(/auth/i);
    // Through the SDK: FORBIDDEN (a coded, non-retryable error), not UNAVAILABLE.
    const anonymous = new FlotillaClient({ servers: cluster.url, cluster: cluster.cluster, reconnectForever: false, timeoutMs: 2000 });
    const refused = await anonymous.describe('mlp').catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: ErrorCode.FORBIDDEN, retryable: false });
    expect((refused as Error).message).toMatch(/refused this connection's credentials/);
    expect(readFileSync(join(cluster.nats.dir, 'server.conf'), 'utf8')).toContain(readFileSync(join(dir, 'nats.conf'), 'utf8'));
  });
});
