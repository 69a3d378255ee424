import { ErrorCode } from '@flotilla/protocol';
import { formatBytes, parseSize, table } from './format.js';

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

  it('formats bytes and tables', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.0 GiB');
    expect(table(['a', 'bb'], [['xxx', 1]])).toBe('a    bb\nxxx  1');
  });
});
