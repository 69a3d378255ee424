// Integration: batch jobs through a real cluster (nats-server with JetStream, head, worker, mlp).
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster } from '@flotilla/local';
import { sampleModelPath } from '@flotilla/sample-models';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { PROTOCOL_VERSION, encode, subjects } from '@flotilla/protocol';
import type { FlotillaClient } from '@flotilla/client';
import { getJob, jobStatus, resumeJob, submitJob } from './jobs.js';

let cluster: LocalCluster;
let client: FlotillaClient;
const dir = mkdtempSync(join(tmpdir(), 'flotilla-jobs-'));
/** Local job records of this test file (not the user's cache dir). */
const stateDir = join(dir, 'state');
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Line i: x = [rows, 16] of values derived from i (rows 1 or 2); `bad` lines have x [1, 8]. */
function inputLine(i: number, bad = false): string {
  const cols = bad ? 8 : 16;
  const rows = bad ? 1 : 1 + (i % 2);
  const data = Array.from({ length: rows * cols }, (_, k) => ((i * 31 + k) % 17) / 17);
  return JSON.stringify({ x: { dtype: 'float32', dims: [rows, cols], data } });
}

function writeInput(name: string, n: number, bad: number[] = []): string {
  const path = join(dir, name);
  writeFileSync(path, Array.from({ length: n }, (_, i) => inputLine(i, bad.includes(i))).join('\n') + '\n');
  return path;
}

type OutLine = {
  line: number;
  outputs?: Record<string, { dtype: string; dims: number[]; data: number[] }>;
  error?: { code: string; message: string };
};
const readOutput = (path: string): OutLine[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as OutLine);

beforeAll(async () => {
  cluster = await LocalCluster.start({ workers: 1 });
  client = cluster.client();
  await client.deploy(sampleModelPath('mlp'), 'mlp', { device: 'cpu' });
  await client.deploy(sampleModelPath('affine'), 'affine', { device: 'cpu' });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('batch jobs', () => {
  it('a cluster that never had a job answers NOT_FOUND (runs first: no bucket yet)', async () => {
    await expect(jobStatus(client, 'abc')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(resumeJob(client, 'abc', { stateDir })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(jobStatus(client, 'a.b')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });

  it('runs 50 lines, records the 2 bad ones as INPUT_MISMATCH and writes the output in input order', async () => {
    const input = writeInput('in50.jsonl', 50, [7, 33]);
    const output = join(dir, 'out50.jsonl');
    let started = '';
    let progressCalls = 0;
    const s = await submitJob(client, {
      stateDir,
      model: 'mlp',
      input,
      output,
      concurrency: 8,
      onStart: (m) => (started = m.id),
      onProgress: () => progressCalls++,
    });
    expect(s).toMatchObject({ total: 50, ok: 48, failed: 2, remaining: 0, complete: true, interrupted: false, sent: 50, recorded: 50 });
    expect(s.errored).toEqual({ INPUT_MISMATCH: 2 });
    expect(s.id).toBe(started);
    expect(progressCalls).toBe(50);

    const out = readOutput(output);
    expect(out.map((o) => o.line)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(out.filter((o) => o.error).map((o) => [o.line, o.error!.code])).toEqual([
      [7, 'INPUT_MISMATCH'],
      [33, 'INPUT_MISMATCH'],
    ]);
    for (const o of out.filter((o) => !o.error)) {
      expect(o.outputs!.y!.dims).toEqual([1 + (o.line % 2), 4]);
      expect(o.outputs!.y!.data).toHaveLength(4 * (1 + (o.line % 2)));
    }
    // Each line's outputs belong to that line: compare a few with direct calls.
    for (const i of [0, 1, 20, 49]) {
      const x = JSON.parse(inputLine(i)).x;
      const direct = await client.infer('mlp', { x: { dtype: 'float32', dims: x.dims, data: new Float32Array(x.data) } });
      const got = out[i]!.outputs!.y!.data;
      Array.from(direct.y!.data as Float32Array).forEach((v, k) => expect(got[k]).toBeCloseTo(v, 5));
    }

    const st = await jobStatus(client, s.id);
    expect(st).toMatchObject({
      id: s.id,
      model: 'mlp',
      input,
      output,
      total: 50,
      done: 50,
      ok: 48,
      failed: 2,
      remaining: 0,
      state: 'complete',
    });
    expect(st.errored).toEqual({ INPUT_MISMATCH: 2 });
    expect(st.finished).toBeDefined();

    // Where it is kept: job record in KV, results on the job's subject of the results stream.
    const names = subjects(cluster.cluster);
    const meta = await getJob(client, s.id);
    expect(meta).toMatchObject({ model: 'mlp', input, output, total: 50 });
    const jsm = await jetstreamManager(await client.connection());
    const si = await jsm.streams.info(names.jobStream, { subjects_filter: names.jobResults(s.id) });
    expect(si.config.storage).toBe('file');
    expect(si.state.subjects?.[names.jobResults(s.id)]).toBe(50);
  });

  it('records malformed lines as BAD_REQUEST without sending them', async () => {
    const input = join(dir, 'malformed.jsonl');
    writeFileSync(input, [inputLine(0), 'not json', '', '{"x":{"dtype":"float32","dims":[1,16],"data":[1]}}', inputLine(4)].join('\r\n'));
    const output = join(dir, 'malformed.out.jsonl');
    const sentLines: number[] = [];
    const s = await submitJob(client, { stateDir, model: 'mlp', input, output, onRequest: (l) => sentLines.push(l) });
    expect(s).toMatchObject({ total: 5, ok: 2, failed: 3, complete: true, errored: { BAD_REQUEST: 3 } });
    expect(sentLines.sort()).toEqual([0, 4]);
    expect(readOutput(output).map((o) => o.error?.code ?? 'ok')).toEqual(['ok', 'BAD_REQUEST', 'BAD_REQUEST', 'BAD_REQUEST', 'ok']);
  });

  it('resumes a crashed job: sends only the lines without a result and writes the whole file in order', async () => {
    const input = writeInput('in-resume.jsonl', 60, [12]);
    const output = join(dir, 'out-resume.jsonl');
    const firstRun: number[] = [];
    const s1 = await submitJob(client, {
      stateDir,
      model: 'mlp',
      input,
      output,
      concurrency: 4,
      stopAfter: 20,
      onRequest: (l) => firstRun.push(l),
    });
    expect(s1).toMatchObject({ complete: false, interrupted: true });
    expect(s1.recorded).toBeGreaterThanOrEqual(20);
    expect(s1.recorded).toBeLessThan(60);
    expect(() => readFileSync(output)).toThrow(); // no output until the job is complete

    const mid = await jobStatus(client, s1.id);
    expect(mid).toMatchObject({ total: 60, done: s1.recorded, remaining: 60 - s1.recorded, state: 'incomplete' });
    expect(mid.finished).toBeUndefined();

    const secondRun: number[] = [];
    const s2 = await resumeJob(client, s1.id, { stateDir, onRequest: (l) => secondRun.push(l) });
    expect(s2).toMatchObject({ id: s1.id, total: 60, ok: 59, failed: 1, remaining: 0, complete: true, errored: { INPUT_MISMATCH: 1 } });
    expect(s2.sent).toBe(60 - mid.done);
    expect(secondRun).toHaveLength(60 - mid.done);
    expect(secondRun.filter((l) => firstRun.includes(l))).toEqual([]); // nothing resent
    expect([...firstRun, ...secondRun].sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i));

    const out = readOutput(output);
    expect(out.map((o) => o.line)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(out[12]!.error!.code).toBe('INPUT_MISMATCH');
    expect(out.filter((o) => o.outputs)).toHaveLength(59);
    expect((await jobStatus(client, s1.id)).state).toBe('complete');

    // Resuming a complete job sends nothing and rewrites the output from the stream.
    unlinkSync(output);
    const s3 = await resumeJob(client, s1.id, {
      stateDir,
      onRequest: () => {
        throw new Error('nothing should be sent');
      },
    });
    expect(s3).toMatchObject({ complete: true, sent: 0, ok: 59, failed: 1 });
    expect(readOutput(output)).toEqual(out);
  });

  it('stops at an abort signal and a resume finishes the job', async () => {
    const input = writeInput('in-abort.jsonl', 30);
    const output = join(dir, 'out-abort.jsonl');
    const ac = new AbortController();
    const s1 = await submitJob(client, {
      stateDir,
      model: 'mlp',
      input,
      output,
      concurrency: 2,
      onProgress: (p) => p.done >= 5 && ac.abort(),
      signal: ac.signal,
    });
    expect(s1.interrupted).toBe(true);
    const s2 = await resumeJob(client, s1.id, { stateDir });
    expect(s2).toMatchObject({ ok: 30, failed: 0, complete: true, sent: 30 - s1.recorded });
    expect(readOutput(output).map((o) => o.line)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it('refuses to resume when the input changed, an unknown job, an unknown model, a missing input', async () => {
    const input = writeInput('in-changed.jsonl', 10);
    const output = join(dir, 'out-changed.jsonl');
    const s = await submitJob(client, { stateDir, model: 'mlp', input, output, stopAfter: 2, concurrency: 1 });
    writeInput('in-changed.jsonl', 11);
    await expect(resumeJob(client, s.id, { stateDir })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(jobStatus(client, 'nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(submitJob(client, { stateDir, model: 'nope', input, output })).rejects.toMatchObject({ code: 'UNKNOWN_MODEL' });
    await expect(submitJob(client, { stateDir, model: 'mlp', input: join(dir, 'missing.jsonl'), output })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
    });
  });
  it('resume writes only to the output given to it or recorded locally at submit, never to a path from the cluster record', async () => {
    const input = writeInput('in-tamper.jsonl', 20);
    const output = join(dir, 'out-tamper.jsonl');
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'precious');
    const s1 = await submitJob(client, { stateDir, model: 'mlp', input, output, stopAfter: 5, concurrency: 1 });
    expect(s1.complete).toBe(false);
    // Any client on the bus rewrites the job's record: both paths point at another file.
    const kv = await new Kvm(jetstream(await client.connection())).open(subjects(cluster.cluster).jobBucket);
    const rec = JSON.parse((await kv.get(s1.id))!.string());
    await kv.put(s1.id, JSON.stringify({ ...rec, input: victim, output: victim }));

    const s2 = await resumeJob(client, s1.id, { stateDir });
    expect(s2).toMatchObject({ complete: true, ok: 20, input, output });
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(readOutput(output).map((o) => o.line)).toEqual(range(20));

    // --output on the resuming command wins.
    const other = join(dir, 'out-tamper-other.jsonl');
    await kv.put(s1.id, JSON.stringify({ ...rec, input: victim, output: victim }));
    expect(await resumeJob(client, s1.id, { stateDir, output: other })).toMatchObject({ complete: true, output: other });
    expect(readOutput(other)).toEqual(readOutput(output));
    expect(readFileSync(victim, 'utf8')).toBe('precious');

    // On another machine (no local record) both files must be given.
    const elsewhere = join(dir, 'elsewhere');
    await expect(resumeJob(client, s1.id, { stateDir: elsewhere })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/no local record .*give the input file/),
    });
    await expect(resumeJob(client, s1.id, { stateDir: elsewhere, input })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/give the output file/),
    });
    expect(await resumeJob(client, s1.id, { stateDir: elsewhere, input, output: other })).toMatchObject({ complete: true, sent: 0 });

    // A record rewritten to send the data to another model disagrees with the local one: refused.
    await kv.put(s1.id, JSON.stringify({ ...rec, model: 'affine' }));
    await expect(resumeJob(client, s1.id, { stateDir })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/differs from the one kept at submit/),
    });
  });

  it('a malformed job record read back is a coded BAD_REQUEST, not a crash', async () => {
    const kv = await new Kvm(jetstream(await client.connection())).open(subjects(cluster.cluster).jobBucket);
    const valid = {
      id: 'x',
      model: 'mlp',
      input: '/i',
      output: '/o',
      total: 3,
      inputSha256: 'a'.repeat(64),
      created: 'now',
      concurrency: 1,
    };
    const cases: Array<[string, string]> = [
      ['badjson', '{"id":'],
      ['hugetotal', JSON.stringify({ ...valid, id: 'hugetotal', total: 1e15 })],
      ['wrongtypes', JSON.stringify({ ...valid, id: 'wrongtypes', model: 42, concurrency: 'all' })],
      ['other', JSON.stringify({ ...valid, id: 'someone-else' })],
    ];
    for (const [id, value] of cases) {
      await kv.put(id, value);
      await expect(jobStatus(client, id)).rejects.toMatchObject({
        code: 'BAD_REQUEST',
        message: expect.stringContaining(`invalid job record '${id}'`),
      });
      await expect(resumeJob(client, id, { stateDir })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    }
  });

  it("a forged or malformed stored result becomes that line's DECODE_ERROR; the job still completes", async () => {
    const input = writeInput('in-forged.jsonl', 6);
    const output = join(dir, 'out-forged.jsonl');
    const s1 = await submitJob(client, { stateDir, model: 'mlp', input, output, stopAfter: 1, concurrency: 1 });
    const js = jetstream(await client.connection());
    const subject = subjects(cluster.cluster).jobResults(s1.id);
    const forge = async (line: number, status: string, body: Uint8Array) => {
      const h = natsHeaders();
      h.set('Flotilla-Line', String(line));
      h.set('Flotilla-Status', status);
      await js.publish(subject, body, { headers: h });
    };
    await forge(4, 'ok', new Uint8Array([0xc1])); // not msgpack
    await forge(
      5,
      '__proto__',
      encode({ v: PROTOCOL_VERSION, line: 5, outputs: { y: { dtype: 'float32', dims: [1, 4], data: new Uint8Array(3) } } }),
    );
    const mid = await jobStatus(client, s1.id);
    expect(mid.errored).toEqual({ INTERNAL: 1 }); // an odd status header counts as INTERNAL

    const s2 = await resumeJob(client, s1.id, { stateDir });
    expect(s2).toMatchObject({ complete: true, ok: 4, failed: 2, errored: { DECODE_ERROR: 2 }, sent: 6 - 1 - 2 });
    const out = readOutput(output);
    expect(out.map((o) => o.error?.code ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'ok', 'DECODE_ERROR', 'DECODE_ERROR']);
  });

  it('keeps results over the server max_payload, up to the inference body limit, in the job object store', async () => {
    const dims = [1, 5, 256, 256]; // 327,680 float32: a 1.25 MiB result, over the 1 MiB max_payload
    const n = 5 * 256 * 256;
    const line = JSON.stringify({ x: { dtype: 'float32', dims, data: new Array(n).fill(0.5) } });
    const input = join(dir, 'in-large.jsonl');
    writeFileSync(input, `${line}\n${line}\n`);
    const output = join(dir, 'out-large.jsonl');
    const s = await submitJob(client, { stateDir, model: 'affine', input, output, concurrency: 2 });
    expect(s).toMatchObject({ total: 2, ok: 2, failed: 0, complete: true });
    const out = readOutput(output);
    for (const o of out) {
      expect(o.outputs!.y!.dims).toEqual(dims);
      expect(o.outputs!.y!.data).toHaveLength(n);
      expect(o.outputs!.y!.data.every((v) => v === 2)).toBe(true); // 2 × 0.5 + 1
    }
    const os = await new Objm(jetstream(await client.connection())).open(subjects(cluster.cluster).jobObjectBucket);
    expect((await os.info(`${s.id}.0`))!.size).toBeGreaterThan(n * 4);

    // Above the job's result limit: recorded as PAYLOAD_TOO_LARGE, coded.
    const capped = await submitJob(client, {
      stateDir,
      model: 'affine',
      input,
      output: join(dir, 'out-capped.jsonl'),
      maxResultBytes: 1024 * 1024,
    });
    expect(capped).toMatchObject({ ok: 0, failed: 2, errored: { PAYLOAD_TOO_LARGE: 2 }, complete: true });
  }, 60_000);
});
