import { cpus } from 'node:os';
import { DEFAULT_EVICTION, inventoryUsableCores, parseWorkerOptions } from './options.js';

const twoCores = { cpu: { usableCores: 2 } };

describe('parseWorkerOptions: threads', () => {
  it('accepts 0 (onnxruntime decides) and up to the usable cores', () => {
    expect(parseWorkerOptions({ threads: 0, inventory: twoCores }).threads).toBe(0);
    expect(parseWorkerOptions({ threads: 2, inventory: twoCores }).threads).toBe(2);
    expect(parseWorkerOptions({ inventory: twoCores }).threads).toBe(0);
  });

  it('refuses more threads than usable cores with BAD_REQUEST', () => {
    expect(() => parseWorkerOptions({ threads: 3, inventory: twoCores })).toThrow(
      expect.objectContaining({
        code: 'BAD_REQUEST',
        message: expect.stringContaining("threads 3 exceeds this worker's 2 usable cores"),
        data: { threads: 3, usableCores: 2 },
      }),
    );
    // --threads 1024 on this machine (fewer cores than that): refused, not 1,035 threads spawned.
    expect(cpus().length).toBeLessThan(1024);
    expect(() => parseWorkerOptions({ threads: 1024 })).toThrow(
      expect.objectContaining({
        code: 'BAD_REQUEST',
        message: expect.stringMatching(/threads 1024 exceeds this worker's \d+ usable core/),
      }),
    );
    expect(() => parseWorkerOptions({ threads: -1 })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => parseWorkerOptions({ threads: 1.5 })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it('estimates usable cores as the inventory will (override bounds them, never above the measured)', () => {
    const measured = inventoryUsableCores();
    expect(measured).toBeGreaterThanOrEqual(1);
    expect(measured).toBeLessThanOrEqual(cpus().length);
    expect(inventoryUsableCores({ cpu: { usableCores: 1 } })).toBe(1);
    expect(inventoryUsableCores({ cpu: { cores: 1 } })).toBe(1);
  });
});

describe('parseWorkerOptions: eviction', () => {
  it('defaults to cost (the bench:models favourite); fifo, lru and lfu stay available; unknown is BAD_REQUEST', () => {
    expect(DEFAULT_EVICTION).toBe('cost');
    expect(parseWorkerOptions({ inventory: twoCores }).eviction).toBe('cost');
    for (const eviction of ['fifo', 'lru', 'lfu', 'cost'])
      expect(parseWorkerOptions({ eviction, inventory: twoCores }).eviction).toBe(eviction);
    expect(() => parseWorkerOptions({ eviction: 'mru', inventory: twoCores })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

describe('parseWorkerOptions: ortSpinning', () => {
  it('is off unless asked for; only a boolean', () => {
    expect(parseWorkerOptions({ inventory: twoCores }).ortSpinning).toBe(false);
    expect(parseWorkerOptions({ ortSpinning: true, inventory: twoCores }).ortSpinning).toBe(true);
    expect(() => parseWorkerOptions({ ortSpinning: 'yes' as never })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

describe('parseWorkerOptions: gpuShare', () => {
  it('defaults to the whole GPU; a share in (0, 1]; anything else is BAD_REQUEST', () => {
    expect(parseWorkerOptions({ inventory: twoCores }).gpuShare).toBe(1);
    expect(parseWorkerOptions({ gpuShare: 0.25, inventory: twoCores }).gpuShare).toBe(0.25);
    for (const gpuShare of [0, -0.5, 1.5, Number.NaN])
      expect(() => parseWorkerOptions({ gpuShare, inventory: twoCores })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});
