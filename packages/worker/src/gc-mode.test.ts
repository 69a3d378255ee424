import { INITIAL_OLD_SPACE_MB, WORKER_NODE_FLAGS, gcMode, initialOldSpaceMb } from './gc-mode.js';

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

describe('initialOldSpaceMb', () => {
  it.each<[string[], number | undefined]>([
    [[], undefined],
    [['--max-old-space-size=4096'], undefined],
    [['--initial-old-space-size=64'], 64],
    [['--single-threaded-gc', '--initial_old_space_size=128'], 128],
    [[...WORKER_NODE_FLAGS], INITIAL_OLD_SPACE_MB],
  ])('%j → %s', (argv, mb) => {
    expect(initialOldSpaceMb(argv)).toBe(mb);
  });
});
