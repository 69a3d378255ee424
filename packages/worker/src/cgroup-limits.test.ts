import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCpuMax, parseMemoryLimit, quotaCores, readCgroupLimits } from './cgroup-limits.js';

describe('cgroup limits', () => {
  it.each([
    ['max 100000', undefined],
    ['400000 100000', 4],
    ['50000 100000\n', 0.5],
    ['', undefined],
  ])('cpu.max %j → %p cores', (text, cores) => expect(parseCpuMax(text)).toBe(cores));

  it('v1 quota -1 is no limit', () => {
    expect(quotaCores('-1', '100000')).toBeUndefined();
    expect(quotaCores('150000', '100000')).toBe(1.5);
    expect(quotaCores(undefined, '100000')).toBeUndefined();
  });

  it.each([
    ['max', undefined],
    ['8589934592\n', 8589934592],
    ['9223372036854771712', undefined], // v1 "unlimited"
    ['garbage', undefined],
  ])('memory limit %j → %p', (text, bytes) => expect(parseMemoryLimit(text)).toBe(bytes));

  it('reads a v2 hierarchy, then a v1 one, from files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-cgroup-'));
    try {
      writeFileSync(join(dir, 'cpu.max'), '200000 100000\n');
      writeFileSync(join(dir, 'memory.max'), `${8 * 2 ** 30}\n`);
      expect(readCgroupLimits(dir)).toEqual({ cpus: 2, memoryBytes: 8 * 2 ** 30 });
      rmSync(join(dir, 'cpu.max'));
      rmSync(join(dir, 'memory.max'));
      mkdirSync(join(dir, 'cpu'));
      mkdirSync(join(dir, 'memory'));
      writeFileSync(join(dir, 'cpu', 'cpu.cfs_quota_us'), '300000\n');
      writeFileSync(join(dir, 'cpu', 'cpu.cfs_period_us'), '100000\n');
      writeFileSync(join(dir, 'memory', 'memory.limit_in_bytes'), '9223372036854771712\n');
      expect(readCgroupLimits(dir)).toEqual({ cpus: 3 });
      expect(readCgroupLimits(join(dir, 'absent'))).toEqual({});
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads this host without throwing', () => {
    const limits = readCgroupLimits();
    if (limits.cpus !== undefined) expect(limits.cpus).toBeGreaterThan(0);
    if (limits.memoryBytes !== undefined) expect(limits.memoryBytes).toBeGreaterThan(0);
  });
});
