// The load-time thread check (pure): a deployment's threads, or the worker's, beyond its usable cores.
import { checkThreads } from './session-loader.js';

describe('checkThreads at load', () => {
  it('lets settings within the usable cores through', () => {
    expect(() => checkThreads({}, 0, 2)).not.toThrow();
    expect(() => checkThreads({ threads: { intraOp: 2, interOp: 1, mode: 'sequential' } }, 2, 2)).not.toThrow();
    expect(() => checkThreads({ threads: { intraOp: 1, interOp: 2, mode: 'parallel' } }, 0, 2)).not.toThrow();
  });

  it("refuses a deployment's threads beyond the worker's cores with BAD_REQUEST", () => {
    expect(() => checkThreads({ threads: { intraOp: 1024, interOp: 1, mode: 'sequential' } }, 0, 2)).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST', message: "threads.intraOp 1024 exceeds this worker's 2 usable cores" }),
    );
    expect(() => checkThreads({ threads: { intraOp: 1, interOp: 64, mode: 'parallel' } }, 0, 2)).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST', message: "threads.interOp 64 exceeds this worker's 2 usable cores" }),
    );
  });

  it("refuses the worker's own --threads beyond the measured cores", () => {
    expect(() => checkThreads({}, 8, 2)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST', message: "the worker's --threads 8 exceeds its 2 usable cores" }));
  });
});
