import { MemoryLedger, measuredFootprint, vramDelta, workerDevices } from './memory-ledger.js';

describe('MemoryLedger', () => {
  const mk = () =>
    new MemoryLedger([
      { id: 'cpu', kind: 'cpu', capacityBytes: 1000, budgetBytes: 900 },
      { id: 'gpu:0', kind: 'gpu', capacityBytes: 500, budgetBytes: 400 },
    ]);

  it('takes charges that fit and refuses those that do not, never exceeding the budget', () => {
    const l = mk();
    expect(l.tryCharge('gpu:0', { owner: 'a', model: 'm', bytes: 300, at: 1 })).toBe(true);
    expect(l.tryCharge('gpu:0', { owner: 'b', model: 'm', bytes: 101, at: 2 })).toBe(false);
    expect(l.tryCharge('gpu:0', { owner: 'c', model: 'm', bytes: 100, at: 3 })).toBe(true);
    expect(l.used('gpu:0')).toBe(400);
    expect(l.free('gpu:0')).toBe(0);
    expect(l.chargesOn('gpu:0').map((c) => c.owner)).toEqual(['a', 'c']);
    expect(l.used('cpu')).toBe(0);
  });

  it('releases by owner and refuses unknown devices', () => {
    const l = mk();
    l.tryCharge('cpu', { owner: 'a', model: 'm', bytes: 500, at: 1 });
    expect(l.release('a')).toBe(500);
    expect(l.release('a')).toBe(0);
    expect(l.used('cpu')).toBe(0);
    expect(l.tryCharge('gpu:7', { owner: 'x', model: 'm', bytes: 1, at: 1 })).toBe(false);
  });

  it('resizes a charge, refusing growth past the budget', () => {
    const l = mk();
    l.tryCharge('gpu:0', { owner: 'a', model: 'm', bytes: 100, at: 1 });
    l.tryCharge('gpu:0', { owner: 'b', model: 'm', bytes: 200, at: 2 });
    expect(l.resize('a', 201)).toBe(false);
    expect(l.resize('a', 200)).toBe(true);
    expect(l.used('gpu:0')).toBe(400);
    expect(l.resize('a', 50)).toBe(true);
    expect(l.used('gpu:0')).toBe(250);
    expect(l.resize('nobody', 1)).toBe(false);
  });
});

describe('measuredFootprint', () => {
  it.each([
    [{ onGpu: false, rssDeltaBytes: 90e6, fileBytes: 33e6 }, 90e6],
    [{ onGpu: false, rssDeltaBytes: 1e6, fileBytes: 33e6 }, 33e6], // never below the file
    [{ onGpu: false, rssDeltaBytes: -5e6, fileBytes: 33e6 }, undefined], // RSS shrank (GC): no reading
    [{ onGpu: true, rssDeltaBytes: 500e6, vramDeltaBytes: 70e6, fileBytes: 33e6 }, 70e6], // VRAM, not RSS
    [{ onGpu: true, rssDeltaBytes: 500e6, fileBytes: 33e6 }, undefined], // no nvidia-smi reading
  ])('%j → %p', (m, bytes) => expect(measuredFootprint(m)).toBe(bytes));
});

describe('workerDevices', () => {
  const GiB = 2 ** 30;
  const inv = { memoryTotalBytes: 64 * GiB, gpus: [{ index: 0, vramTotalBytes: 80 * GiB }] };
  it.each<[string, { memoryBudgetBytes?: number; headroom: number; gpuShare: number }, [number, number], [number, number]]>([
    ['the whole GPU, 10 % headroom', { headroom: 0.1, gpuShare: 1 }, [64 * GiB, 57.6 * GiB], [80 * GiB, 72 * GiB]],
    [
      'half the GPU (two workers share it): the CPU as before',
      { headroom: 0.1, gpuShare: 0.5 },
      [64 * GiB, 57.6 * GiB],
      [40 * GiB, 36 * GiB],
    ],
    ['a quarter, no headroom', { headroom: 0, gpuShare: 0.25 }, [64 * GiB, 64 * GiB], [20 * GiB, 20 * GiB]],
    [
      'a fixed budget applies to every device',
      { memoryBudgetBytes: 2 * GiB, headroom: 0.1, gpuShare: 0.5 },
      [64 * GiB, 2 * GiB],
      [40 * GiB, 2 * GiB],
    ],
  ])('%s', (_what, o, [cpuCap, cpuBudget], [gpuCap, gpuBudget]) => {
    const [cpu, gpu] = workerDevices(inv, o);
    expect(cpu).toEqual({ id: 'cpu', kind: 'cpu', capacityBytes: cpuCap, budgetBytes: Math.floor(cpuBudget) });
    expect(gpu).toEqual({ id: 'gpu:0', kind: 'gpu', capacityBytes: gpuCap, budgetBytes: Math.floor(gpuBudget) });
  });
  it('no GPU: memory alone', () => {
    expect(workerDevices({ memoryTotalBytes: GiB, gpus: [] }, { headroom: 0.1, gpuShare: 0.5 }).map((d) => d.id)).toEqual(['cpu']);
  });
});

describe('vramDelta', () => {
  const MiB = 2 ** 20;
  it.each<[string, { ownBytes?: number; freeBytes?: number }, { ownBytes?: number; freeBytes?: number }, number | undefined]>([
    // Another worker on the GPU loaded 2.7 GiB meanwhile: free fell by 2.9 GiB, this process grew by 192 MiB.
    [
      'this process listed after: its own growth, not the GPU’s',
      { ownBytes: 500 * MiB, freeBytes: 10_000 * MiB },
      { ownBytes: 692 * MiB, freeBytes: 7_030 * MiB },
      192 * MiB,
    ],
    [
      'first session (no CUDA context before): all it holds after',
      { freeBytes: 10_000 * MiB },
      { ownBytes: 692 * MiB, freeBytes: 9_308 * MiB },
      692 * MiB,
    ],
    ['processes hidden (a PID namespace): the fall of free memory', { freeBytes: 10_000 * MiB }, { freeBytes: 9_808 * MiB }, 192 * MiB],
    ['no readings', {}, {}, undefined],
  ])('%s', (_what, before, after, delta) => {
    expect(vramDelta(before, after)).toBe(delta);
  });
});
