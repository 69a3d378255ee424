import { WORKER_NODE_FLAGS, gcMode } from './gc-mode.js';

describe('gcMode', () => {
  it.each([
    [[], 'concurrent'],
    [['--max-old-space-size=4096'], 'concurrent'],
    [['--single-threaded-gc'], 'single-threaded'],
    [['--cpu-prof', '--single-threaded-gc'], 'single-threaded'],
    [[...WORKER_NODE_FLAGS], 'single-threaded'],
  ])('%j → %s', (argv, mode) => {
    expect(gcMode(argv)).toBe(mode);
  });
});
