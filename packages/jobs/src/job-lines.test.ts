// Input line reading (pure file I/O): the splitting rules, oversized lines, and time linear in the
// line length.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OversizedLine, countJobLines, readJobLines } from './job-lines.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-job-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(content: string | Buffer): string {
  const path = join(dir, `f${n++}.jsonl`);
  writeFileSync(path, content);
  return path;
}

async function lines(path: string, maxLineBytes?: number): Promise<Array<string | OversizedLine>> {
  const out: Array<string | OversizedLine> = [];
  for await (const l of readJobLines(path, { maxLineBytes })) out.push(l);
  return out;
}

describe('readJobLines', () => {
  it.each([
    ['', []],
    ['a', ['a']],
    ['a\n', ['a']],
    ['a\nb', ['a', 'b']],
    ['a\r\nb\r\n', ['a', 'b']],
    ['a\n\nb\n', ['a', '', 'b']],
    ['\n', ['']],
    ['\r', ['']],
    ['x\ry\n', ['x\ry']], // only a trailing \r is dropped
  ])('%j → %j', async (content, expected) => {
    const path = file(content);
    expect(await lines(path)).toEqual(expected);
    expect(await countJobLines(path)).toBe(expected.length);
  });

  it('decodes multi-byte characters split across read chunks (1 MiB) and lines of several chunks', async () => {
    const long = '€'.repeat(1_500_000); // 4.5 MB, '€' is 3 bytes: chunk edges fall inside characters
    const path = file(`héllo\n${long}\r\nend`);
    const got = await lines(path);
    expect(got).toHaveLength(3);
    expect(got[0]).toBe('héllo');
    expect(got[1]).toBe(long);
    expect(got[2]).toBe('end');
    expect(await countJobLines(path)).toBe(3);
  });

  it('reports a line over the limit as OversizedLine (without keeping it) and goes on', async () => {
    const path = file(`short\n${'x'.repeat(5000)}\nnext\n${'y'.repeat(1000)}`);
    const got = await lines(path, 1000);
    expect(got).toEqual(['short', new OversizedLine(5000, 1000), 'next', 'y'.repeat(1000)]);
  });

  it('feeds the hash every byte', async () => {
    const content = 'one\r\ntwo\nthree';
    const path = file(content);
    const a = createHash('sha256');
    const b = createHash('sha256');
    for await (const _ of readJobLines(path, { hash: a })) void _;
    await countJobLines(path, b);
    const want = createHash('sha256').update(content).digest('hex');
    expect(a.digest('hex')).toBe(want);
    expect(b.digest('hex')).toBe(want);
  });

  it('reads a 32 MiB line in time linear in its length (less than 16× a 4 MiB line)', async () => {
    // Was quadratic: 8/16/32 MiB lines took 0.3/1.2/4.3 s (64× for 8× the length).
    const line = (mib: number) => `{"x":{"dtype":"float32","dims":[1],"data":[${'0.5,'.repeat((mib * 1024 * 1024) / 4 - 20)}0.5]}}`;
    const small = file(`${line(4)}\nshort\n`);
    const large = file(`${line(32)}\nshort\n`);
    // Medians of 7 interleaved reads, each after a full GC (tests run with --expose-gc): a 4 MiB
    // read takes 3-9 ms here, so one sample is too noisy to divide by.
    const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
    const once = async (path: string) => {
      gc();
      const t0 = performance.now();
      let chars = 0;
      for await (const l of readJobLines(path)) chars += (l as string).length;
      const ms = performance.now() - t0;
      expect(chars).toBeGreaterThan(4_000_000);
      return ms;
    };
    await once(small); // warm-up
    await once(large);
    const small4: number[] = [];
    const large32: number[] = [];
    for (let i = 0; i < 7; i++) {
      small4.push(await once(small));
      large32.push(await once(large));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const [t4, t32] = [median(small4), median(large32)];
    process.stdout.write(
      `readJobLines: 4 MiB line ${t4.toFixed(1)} ms, 32 MiB line ${t32.toFixed(1)} ms (×${(t32 / t4).toFixed(1)}; quadratic was ×50)\n`,
    );
    expect(t32).toBeLessThan(16 * t4);
  }, 60_000);
});
