import { measureInventory, parseNvidiaSmi } from './inventory.js';

describe('inventory', () => {
  it('parses nvidia-smi CSV (MiB) into bytes', () => {
    const gpus = parseNvidiaSmi('0, NVIDIA H100 80GB HBM3, 81559, 80000\n1, NVIDIA L4, 23034, 22000\n');
    expect(gpus).toEqual([
      { index: 0, vendor: 'NVIDIA', model: 'NVIDIA H100 80GB HBM3', vramTotalBytes: 81559 * 1048576, vramFreeBytes: 80000 * 1048576 },
      { index: 1, vendor: 'NVIDIA', model: 'NVIDIA L4', vramTotalBytes: 23034 * 1048576, vramFreeBytes: 22000 * 1048576 },
    ]);
    expect(parseNvidiaSmi('')).toEqual([]);
  });

  it('measures this host for real', async () => {
    const inv = await measureInventory();
    expect(inv.source).toBe('measured');
    expect(inv.cpu.cores).toBeGreaterThanOrEqual(1);
    expect(inv.memory.totalBytes).toBeGreaterThan(256 * 1048576);
    expect(inv.memory.availableBytes).toBeLessThanOrEqual(inv.memory.totalBytes);
    expect(Array.isArray(inv.gpus)).toBe(true);
  });

  it('lets config override parts of what it measured', async () => {
    const gpu = { index: 0, vendor: 'NVIDIA', model: 'Fake A100', vramTotalBytes: 40e9, vramFreeBytes: 39e9 };
    const inv = await measureInventory({ gpus: [gpu], memory: { totalBytes: 1e9 } });
    expect(inv.source).toBe('override');
    expect(inv.gpus).toEqual([gpu]);
    expect(inv.memory.totalBytes).toBe(1e9);
    expect(inv.cpu.cores).toBeGreaterThanOrEqual(1);
  });
});
