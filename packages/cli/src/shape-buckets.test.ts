import { parseShapeBuckets } from './shape-buckets.js';

describe('parseShapeBuckets (deploy --shape-buckets)', () => {
  it.each<[string, string, Record<string, number[]> | undefined, Record<string, number[]>]>([
    ['one dim', 'seq=16,32,64', undefined, { seq: [16, 32, 64] }],
    ['sorted, duplicates dropped, spaces allowed', 'seq = 64, 16,16 ,32', undefined, { seq: [16, 32, 64] }],
    ['two dims in one flag', 'H=32,64;W=128', undefined, { H: [32, 64], W: [128] }],
    ['a repeated flag adds', 'W=128,256', { H: [32] }, { H: [32], W: [128, 256] }],
    ['an unnamed dim by input and axis', 'x[3]=10', undefined, { 'x[3]': [10] }],
  ])('%s', (_what, text, previous, expected) => {
    expect(parseShapeBuckets(text, previous)).toEqual(expected);
  });

  it.each([
    ['no =', 'seq', /not DIM=B1,B2/],
    ['no bounds', 'seq=', /not DIM=B1,B2/],
    ['zero', 'seq=0,16', /positive integers/],
    ['not a number', 'seq=16,big', /positive integers/],
    ['a fraction', 'seq=1.5', /positive integers/],
    ['a dim twice', 'seq=16;seq=32', /given twice/],
  ])('refuses %s', (_what, text, message) => {
    expect(() => parseShapeBuckets(text)).toThrow(message);
  });
});
