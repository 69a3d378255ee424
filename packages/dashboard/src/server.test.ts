// The dashboard's HTTP surface with a stub SDK client (fastify's inject: no socket, no cluster): read-only
// by default, every failure a stable code, nothing a bad request can crash, mountable under a prefix.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import Fastify from 'fastify';
import { ForbiddenError, UnavailableError, UnknownModelError } from '@flotilla/protocol';
import type { FlotillaClient } from '@flotilla/client';
import { dashboardPlugin, parseServerOptions, type DashboardPluginOptions } from './index.js';

const web = mkdtempSync(join(tmpdir(), 'flotilla-dash-web-'));
mkdirSync(join(web, 'assets'));
writeFileSync(join(web, 'index.html'), '<!doctype html><title>t</title>');
writeFileSync(join(web, 'assets', 'index-abc.js'), 'export {};');
afterAll(() => rmSync(web, { recursive: true, force: true }));

function stubClient(over: Partial<Record<'status' | 'events' | 'scale' | 'undeploy', (...a: any[]) => Promise<any>>> = {}) {
  const calls: Array<[string, ...unknown[]]> = [];
  const client = {
    subjects: { cluster: 'stub', profileBucket: 'p' },
    status: over.status ?? (async () => ({ cluster: 'stub', head: { id: 'h', pid: 1, startedAt: 1 }, workers: [], deployments: [] })),
    events: over.events ?? (async () => []),
    scale: async (...a: unknown[]) => (calls.push(['scale', ...a]), (over.scale ?? (async () => ({ ok: 1 })))(...a)),
    undeploy: async (...a: unknown[]) => (calls.push(['undeploy', ...a]), (over.undeploy ?? (async () => ({ removed: true })))(...a)),
  } as unknown as FlotillaClient;
  return { client, calls };
}

interface Res {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  json(): any;
}

/** The plugin on a fastify app listening on 127.0.0.1 (fastify's inject does not load under Jest's CommonJS). */
async function app(opts: Omit<DashboardPluginOptions, 'client'> & { client?: FlotillaClient } = {}) {
  const a = Fastify();
  await dashboardPlugin(a, { client: opts.client ?? stubClient().client, staticDir: web, ...opts });
  await a.listen({ port: 0, host: '127.0.0.1' });
  const port = (a.server.address() as { port: number }).port;
  const inject = (o: string | { method?: string; url: string; payload?: string; headers?: Record<string, string> }): Promise<Res> => {
    const { method = 'GET', url, payload, headers = {} } = typeof o === 'string' ? { url: o } : o;
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path: url, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve({ statusCode: res.statusCode!, headers: res.headers, json: () => JSON.parse(body) });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  };
  return { inject, close: () => a.close() };
}

const post = (a: Awaited<ReturnType<typeof app>>, url: string, payload: unknown, headers: Record<string, string> = {}) =>
  a.inject({
    method: 'POST',
    url,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: { 'content-type': 'application/json', ...headers },
  });

describe('read-only by default', () => {
  it.each(['/api/models/m/scale', '/api/models/m/undeploy'])('POST %s is 403 FORBIDDEN and never reaches the cluster', async (url) => {
    const { client, calls } = stubClient();
    const a = await app({ client });
    const res = await post(a, url, { replicas: 2 });
    expect(res.statusCode).toBe(403);
    expect(res.json().error).toMatchObject({ code: 'FORBIDDEN', message: expect.stringContaining('--allow-actions') });
    expect(calls).toEqual([]);
    await a.close();
  });
});

describe('actions (allowActions)', () => {
  it('scale and undeploy go to the SDK with the parsed arguments', async () => {
    const { client, calls } = stubClient();
    const a = await app({ client, allowActions: true });
    expect((await post(a, '/api/models/m/scale', { replicas: 3 })).json()).toEqual({ ok: true, result: { ok: 1 } });
    expect((await post(a, '/api/models/m/undeploy', {})).statusCode).toBe(200);
    expect(calls).toEqual([
      ['scale', 'm', 3],
      ['undeploy', 'm'],
    ]);
    await a.close();
  });

  it.each([
    { name: 'bad model name', url: '/api/models/a.b/scale', body: { replicas: 1 }, status: 400, code: 'BAD_REQUEST' },
    { name: 'replicas missing', url: '/api/models/m/scale', body: {}, status: 400, code: 'BAD_REQUEST' },
    { name: 'replicas negative', url: '/api/models/m/scale', body: { replicas: -1 }, status: 400, code: 'BAD_REQUEST' },
    { name: 'replicas fractional', url: '/api/models/m/scale', body: { replicas: 1.5 }, status: 400, code: 'BAD_REQUEST' },
    { name: 'replicas too many', url: '/api/models/m/scale', body: { replicas: 1001 }, status: 400, code: 'BAD_REQUEST' },
    { name: 'replicas a string', url: '/api/models/m/scale', body: { replicas: '2' }, status: 400, code: 'BAD_REQUEST' },
    { name: 'JSON null body', url: '/api/models/m/scale', body: 'null', status: 400, code: 'BAD_REQUEST' },
    { name: 'bad JSON', url: '/api/models/m/scale', body: '{"replicas":', status: 400, code: 'BAD_REQUEST' },
    {
      name: 'body over 1 KiB',
      url: '/api/models/m/scale',
      body: JSON.stringify({ replicas: 1, pad: 'x'.repeat(2000) }),
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
    },
  ])('$name: $status $code', async ({ url, body, status, code }) => {
    const { client, calls } = stubClient();
    const a = await app({ client, allowActions: true });
    const res = await post(a, url, body);
    expect([res.statusCode, res.json().error.code]).toEqual([status, code]);
    expect(calls).toEqual([]);
    await a.close();
  });

  it('a form post (another content type) is refused, not parsed', async () => {
    const a = await app({ allowActions: true });
    const res = await a.inject({
      method: 'POST',
      url: '/api/models/m/scale',
      payload: 'replicas=2',
      headers: { 'content-type': 'text/plain' },
    });
    expect([res.statusCode, res.json().error.code]).toEqual([415, 'BAD_REQUEST']);
    expect(res.json().error.message).toContain('application/json');
    await a.close();
  });

  it('another site’s page may not act through this one (Origin)', async () => {
    const { client, calls } = stubClient();
    const a = await app({ client, allowActions: true });
    const evil = await post(a, '/api/models/m/scale', { replicas: 0 }, { origin: 'https://evil.example', host: 'localhost:8090' });
    expect([evil.statusCode, evil.json().error.code]).toEqual([403, 'FORBIDDEN']);
    const same = await post(a, '/api/models/m/scale', { replicas: 0 }, { origin: 'http://localhost:8090', host: 'localhost:8090' });
    expect(same.statusCode).toBe(200);
    expect(calls).toHaveLength(1);
    await a.close();
  });

  it.each([
    { err: new ForbiddenError('no operator role'), status: 403, code: 'FORBIDDEN' },
    { err: new UnknownModelError("no deployment named 'm'"), status: 404, code: 'UNKNOWN_MODEL' },
    { err: new UnavailableError('no head'), status: 503, code: 'UNAVAILABLE' },
    { err: new Error('boom'), status: 500, code: 'INTERNAL' },
  ])('the SDK failing with $code answers $status with that code', async ({ err, status, code }) => {
    const a = await app({ client: stubClient({ scale: async () => Promise.reject(err) }).client, allowActions: true });
    const res = await post(a, '/api/models/m/scale', { replicas: 1 });
    expect([res.statusCode, res.json().error.code]).toEqual([status, code]);
    await a.close();
  });
});

describe('pages, assets and the snapshot', () => {
  it('serves the page with security headers, hashed assets as immutable, and 404 NOT_FOUND for the rest', async () => {
    const a = await app();
    const page = await a.inject('/');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    const asset = await a.inject('/assets/index-abc.js');
    expect([asset.statusCode, asset.headers['cache-control']]).toEqual([200, 'public, max-age=31536000, immutable']);
    for (const url of ['/nope', '/assets/missing.js', '/assets/../index.html', '/assets/%2e%2e/%2e%2e/package.json']) {
      const res = await a.inject(url);
      expect([url, res.statusCode, res.json().error.code]).toEqual([url, 404, 'NOT_FOUND']);
    }
    await a.close();
  });

  it('without a built front-end the page is 503 UNAVAILABLE saying how to build it', async () => {
    const a = await app({ staticDir: join(web, 'none') });
    const res = await a.inject('/');
    expect([res.statusCode, res.json().error.code]).toEqual([503, 'UNAVAILABLE']);
    expect(res.json().error.message).toContain('pnpm build');
    await a.close();
  });

  it('mounted under a prefix: /dashboard redirects to /dashboard/ (relative asset URLs), the API is under it', async () => {
    const a = await app({ prefix: '/dashboard' });
    const bare = await a.inject('/dashboard');
    expect([bare.statusCode, bare.headers.location]).toEqual([302, '/dashboard/']);
    expect((await a.inject('/dashboard/?model=m')).statusCode).toBe(200);
    expect((await a.inject('/dashboard/api/snapshot')).json()).toMatchObject({ cluster: 'stub', workers: [] });
    await a.close();
  });

  it('a cluster that cannot be read is a snapshot with the coded error, not a failed request', async () => {
    const a = await app({
      client: stubClient({ status: async () => Promise.reject(new UnavailableError('no head is answering')) }).client,
    });
    const res = await a.inject('/api/snapshot');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ error: { code: 'UNAVAILABLE', message: 'no head is answering' }, workers: [], deployments: [] });
    await a.close();
  });
});

describe('the feed behind the snapshot', () => {
  it('a status it cannot shape is the coded error INTERNAL in the snapshot, and the server goes on', async () => {
    const a = await app({ client: stubClient({ status: async () => ({ cluster: 'x' }) }).client });
    const res = await a.inject('/api/snapshot');
    expect([res.statusCode, res.json().error.code]).toEqual([200, 'INTERNAL']);
    expect((await a.inject('/api/snapshot')).statusCode).toBe(200);
    await a.close();
  });

  it('with nobody streaming, a snapshot older than one poll is read afresh', async () => {
    let reads = 0;
    const status = async () => ({ cluster: `read${++reads}`, head: { id: 'h', pid: 1, startedAt: 1 }, workers: [], deployments: [] });
    const a = await app({ client: stubClient({ status }).client, pollMs: 50 });
    expect((await a.inject('/api/snapshot')).json().cluster).toBe('read1');
    await new Promise((r) => setTimeout(r, 80));
    expect((await a.inject('/api/snapshot')).json().cluster).toBe('read2');
    await a.close();
  });
});

describe('parseServerOptions', () => {
  const client = stubClient().client;
  it.each([{ port: -1 }, { port: 70000 }, { port: 1.5 }, { pollMs: 0 }, { eventsLimit: 5000 }, { host: '' }])(
    'refuses %j with BAD_REQUEST',
    (o) => {
      expect(() => parseServerOptions({ client, ...o })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    },
  );
  it('defaults: 127.0.0.1:8090, read-only, 500 ms', () => {
    expect(parseServerOptions({ client })).toMatchObject({
      host: '127.0.0.1',
      port: 8090,
      allowActions: false,
      pollMs: 500,
      eventsLimit: 200,
    });
  });
});
