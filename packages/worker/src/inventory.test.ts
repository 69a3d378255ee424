import { measureInventory, parseComputeApps, parseNvidiaSmi, usableCores } from './inventory.js';

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

  it('bounds usable cores by affinity and the cgroup quota (rounded up)', () => {
    expect(usableCores(64, 64, {})).toBe(64);
    expect(usableCores(64, 16, {})).toBe(16);
    expect(usableCores(64, 64, { cpus: 3.5 })).toBe(4);
    expect(usableCores(64, 64, { cpus: 0.25 })).toBe(1);
  });

  it('a container memory limit below the host memory becomes the capacity', async () => {
    const inv = await measureInventory({}, { memoryBytes: 512 * 1048576, cpus: 1 });
    expect(inv.memory.totalBytes).toBe(512 * 1048576);
    expect(inv.memory.cgroupLimitBytes).toBe(512 * 1048576);
    expect(inv.memory.availableBytes).toBeLessThanOrEqual(512 * 1048576);
    expect(inv.cpu.usableCores).toBe(1);
    const free = await measureInventory({}, {});
    expect(free.memory.cgroupLimitBytes).toBeUndefined();
    expect(free.cpu.usableCores).toBeLessThanOrEqual(free.cpu.cores);
  });
});

describe('parseComputeApps', () => {
  it('reads each process on each GPU (used memory in MiB), skipping what is not a row', () => {
    const csv = 'GPU-aaa, 1234, 692\nGPU-aaa, 99, 3000\nGPU-bbb, 1234, 10\n[Not Supported]\n';
    expect(parseComputeApps(csv)).toEqual([
      { gpuUuid: 'GPU-aaa', pid: 1234, usedBytes: 692 * 2 ** 20 },
      { gpuUuid: 'GPU-aaa', pid: 99, usedBytes: 3000 * 2 ** 20 },
      { gpuUuid: 'GPU-bbb', pid: 1234, usedBytes: 10 * 2 ** 20 },
    ]);
    expect(parseComputeApps('')).toEqual([]);
  });
});
