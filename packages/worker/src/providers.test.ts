import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ortLibraryDir, providerUnavailable, supportedBackends } from './providers.js';

const BACKENDS = [
  { name: 'cpu', bundled: true },
  { name: 'webgpu', bundled: true },
  { name: 'cuda', bundled: false },
];

describe('execution provider availability', () => {
  it('finds the onnxruntime library directory in a maps listing', () => {
    const maps = [
      '7f0000000000-7f0000001000 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6',
      '7f0000002000-7f0000003000 r-xp 00000000 08:01 456 /srv/app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1',
    ].join('\n');
    expect(ortLibraryDir(maps)).toBe('/srv/app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/');
    expect(ortLibraryDir('nothing here')).toBeUndefined();
  });

  it('bundled providers are available; unknown ones are not', () => {
    expect(providerUnavailable('cpu', BACKENDS, '/x/')).toBeUndefined();
    expect(providerUnavailable('rocm', BACKENDS, '/x/')).toMatch(/no 'rocm' execution provider \(it has cpu, webgpu, cuda\)/);
  });

  it('a separate provider needs its libraries next to libonnxruntime', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-ep-'));
    try {
      expect(providerUnavailable('cuda', BACKENDS, `${dir}/`)).toMatch(
        /libonnxruntime_providers_shared\.so and libonnxruntime_providers_cuda\.so not installed/,
      );
      writeFileSync(join(dir, 'libonnxruntime_providers_shared.so'), '');
      writeFileSync(join(dir, 'libonnxruntime_providers_cuda.so'), '');
      expect(providerUnavailable('cuda', BACKENDS, `${dir}/`)).toBeUndefined();
      expect(providerUnavailable('cuda', BACKENDS, null)).toBeUndefined(); // cannot tell: let onnxruntime try
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on this host: onnxruntime-node is loaded from a directory it can name, and CPU is there', () => {
    expect(supportedBackends().map((b) => b.name)).toContain('cpu');
    expect(providerUnavailable('cpu')).toBeUndefined();
    if (process.platform === 'linux') expect(ortLibraryDir()).toMatch(/onnxruntime-node\/bin\/.*\/$/);
  });
});
