import { ErrorCode } from '@flotilla/protocol';
import { formatBytes, parseFraction, parseSize, table } from './format.js';

describe('CLI formatting', () => {
  it.each([
    ['512MiB', 512 * 1024 ** 2],
    ['2GiB', 2 * 1024 ** 3],
    ['1.5GB', 1.5e9],
    ['1048576', 1048576],
    ['64 mib', 64 * 1024 ** 2],
  ])('parses %s', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(['', 'lots', '12XB', '-1GiB'])('refuses %j with BAD_REQUEST', (text) => {
    expect(() => parseSize(text)).toThrow(expect.objectContaining({ code: ErrorCode.BAD_REQUEST }));
  });

  it.each([
    ['0.25', 0.25],
    ['1/4', 0.25],
    [' 1 / 3 ', 1 / 3],
    ['25%', 0.25],
    ['1', 1],
    ['.5', 0.5],
    ['2/2', 1],
  ])('parses the share %j', (text, share) => expect(parseFraction(text)).toBe(share));

  it.each(['', '0', '0/4', '1/0', '1.5', '5/4', '150%', '-0.5', 'half', '1/4/2', 'NaN'])(
    'refuses the share %j with BAD_REQUEST',
    (text) => {
      expect(() => parseFraction(text)).toThrow(
        expect.objectContaining({ code: ErrorCode.BAD_REQUEST, message: expect.stringContaining(text) }),
      );
    },
  );

  it('formats bytes and tables', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.0 GiB');
    expect(table(['a', 'bb'], [['xxx', 1]])).toBe('a    bb\nxxx  1');
  });
});
