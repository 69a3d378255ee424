// Job records and stored results read back (anything on the bus may have written them), and the
// local record that says which files a job reads and writes.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '@flotilla/protocol';
import {
  localRecordPath,
  parseJobRecord,
  parseJobResult,
  readLocalRecord,
  resultStatus,
  writeLocalRecord,
  type JobLocalRecord,
} from './job-records.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-job-records-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const good = {
  id: 'J1',
  model: 'mlp',
  input: '/data/in.jsonl',
  output: '/data/out.jsonl',
  total: 10,
  inputSha256: 'a'.repeat(64),
  created: '2026-12-01T00:00:00.000Z',
  concurrency: 32,
};

describe('parseJobRecord', () => {
  it('accepts a valid record, optional fields included', () => {
    expect(parseJobRecord(JSON.stringify(good), 'J1')).toEqual(good);
    const full = { ...good, timeoutMs: 5000, finished: '2026-12-01T00:01:00.000Z' };
    expect(parseJobRecord(JSON.stringify(full), 'J1')).toEqual(full);
  });

  it.each<[string, string, RegExp]>([
    ['not JSON', '{"id":', /not JSON/],
    ['an array', '[]', /\$: .*expected object/],
    ['a missing field', JSON.stringify({ ...good, total: undefined }), /\$\.total: .*expected number/],
    ['a huge line count', JSON.stringify({ ...good, total: 1e15 }), /\$\.total: Too big: .*100000000/],
    ['a fractional line count', JSON.stringify({ ...good, total: 1.5 }), /\$\.total/],
    ['a bad model name', JSON.stringify({ ...good, model: '../x' }), /\$\.model/],
    ['a path of 5,000 characters', JSON.stringify({ ...good, output: 'x'.repeat(5000) }), /\$\.output: .*4096 characters/],
    ['a bad hash', JSON.stringify({ ...good, inputSha256: 'zz' }), /\$\.inputSha256/],
    ['zero concurrency', JSON.stringify({ ...good, concurrency: 0 }), /\$\.concurrency/],
    ['a negative timeout', JSON.stringify({ ...good, timeoutMs: -1 }), /\$\.timeoutMs/],
    ['an unknown key', JSON.stringify({ ...good, extra: 'x'.repeat(600_000) }), /\$\.extra: unknown key/],
    ['another job id', JSON.stringify({ ...good, id: 'J2' }), /\$\.id: is 'J2', stored under 'J1'/],
  ])('refuses %s with BAD_REQUEST', (_what, text, message) => {
    expect(() => parseJobRecord(text, 'J1')).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringMatching(message) }),
    );
  });

  it('keeps error messages bounded', () => {
    try {
      parseJobRecord(JSON.stringify({ ...good, ['k'.repeat(100_000)]: 1 }), 'J1');
      throw new Error('accepted');
    } catch (e) {
      expect((e as Error).message.length).toBeLessThan(200);
    }
  });
});

describe('parseJobResult', () => {
  const t = { dtype: 'float32', dims: [1, 2], data: new Uint8Array(8) };
  const ok = (r: object) => parseJobResult({ v: PROTOCOL_VERSION, ...r }, 'J1', 10, 1024);

  it('accepts outputs, an error, or an object of this job and line', () => {
    expect(ok({ line: 3, outputs: { y: t } })).toEqual({ line: 3, outputs: { y: t } });
    expect(ok({ line: 0, error: { code: 'INPUT_MISMATCH', message: 'no' } })).toEqual({
      line: 0,
      error: { code: 'INPUT_MISMATCH', message: 'no' },
    });
    expect(ok({ line: 9, object: { name: 'J1.9', size: 1000 } })).toEqual({ line: 9, object: { name: 'J1.9', size: 1000 } });
  });

  it.each<[string, object, RegExp]>([
    ['another version', { v: 99, line: 0, outputs: {} }, /\$\.v/],
    ['a line out of range', { line: 10, outputs: {} }, /\$\.line/],
    ['no result', { line: 1 }, /exactly one/],
    ['two results', { line: 1, outputs: {}, error: { code: 'X', message: '' } }, /exactly one/],
    ['a lowercase error code', { line: 1, error: { code: '__proto__', message: '' } }, /\$\.error/],
    ["another job's object", { line: 1, object: { name: 'J2.1', size: 10 } }, /\$\.object\.name: must be 'J1\.1'/],
    ['an object over the limit', { line: 1, object: { name: 'J1.1', size: 2048 } }, /\$\.object\.size/],
    ['a negative object size', { line: 1, object: { name: 'J1.1', size: -1 } }, /\$\.object\.size/],
    [
      'a tensor whose bytes do not match dims',
      { line: 1, outputs: { y: { ...t, dims: [1, 3] } } },
      /\$\.outputs\.y: .*dims \[1,3\] of float32 need 12/,
    ],
    ['a tensor of an unknown dtype', { line: 1, outputs: { y: { ...t, dtype: 'complex' } } }, /unsupported dtype/],
    ['an unknown key', { line: 1, outputs: {}, more: 1 }, /\$\.more: unknown key/],
  ])('refuses %s with BAD_REQUEST', (_what, r, message) => {
    expect(() => ok(r)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringMatching(message) }));
  });

  it('reads status headers as ok or an error code, anything else as INTERNAL', () => {
    expect(resultStatus('ok')).toBe('ok');
    expect(resultStatus('INPUT_MISMATCH')).toBe('INPUT_MISMATCH');
    for (const bad of [undefined, '', '__proto__', 'constructor', 'x'.repeat(100)]) expect(resultStatus(bad)).toBe('INTERNAL');
  });
});

describe('local job records', () => {
  const rec: JobLocalRecord = {
    v: 1,
    id: 'J1',
    cluster: 'c1',
    model: 'mlp',
    input: '/a/in',
    output: '/a/out',
    total: 3,
    inputSha256: 'b'.repeat(64),
    created: 'now',
  };

  it('round-trips, owner-only, under <state dir>/<cluster>/<id>.json', async () => {
    const stateDir = join(dir, 'state');
    const path = await writeLocalRecord(stateDir, rec);
    expect(path).toBe(join(stateDir, 'c1', 'J1.json'));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await readLocalRecord(stateDir, 'c1', 'J1')).toEqual(rec);
    expect(await readLocalRecord(stateDir, 'c1', 'J2')).toBeUndefined();
    expect(await readLocalRecord(stateDir, 'c2', 'J1')).toBeUndefined();
  });

  it('refuses a malformed or misplaced local record with BAD_REQUEST', async () => {
    const stateDir = join(dir, 'state2');
    await writeLocalRecord(stateDir, rec);
    writeFileSync(localRecordPath(stateDir, 'c1', 'J1'), '{');
    await expect(readLocalRecord(stateDir, 'c1', 'J1')).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/not JSON/),
    });
    writeFileSync(localRecordPath(stateDir, 'c1', 'J1'), JSON.stringify({ ...rec, id: 'J9' }));
    await expect(readLocalRecord(stateDir, 'c1', 'J1')).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/it is job 'J9'/),
    });
    writeFileSync(localRecordPath(stateDir, 'c1', 'J1'), JSON.stringify({ ...rec, total: 'many' }));
    await expect(readLocalRecord(stateDir, 'c1', 'J1')).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/\$\.total/),
    });
  });

  it('an unwritable state dir is BAD_REQUEST', async () => {
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, 'x');
    await expect(writeLocalRecord(join(blocker, 'jobs'), rec)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });
});
