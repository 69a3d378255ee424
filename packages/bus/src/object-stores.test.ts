import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSha256Backend, setSha256Backend } from '@nats-io/obj';
import { objectStores } from './object-stores.js';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
/** A client the store only keeps until it is called. */
const js = { nc: {} } as never;

it('in plain Node (a worker, the CLI, a service): the object store hashes with node:crypto', () => {
  const script = `
    import { getSha256Backend } from '@nats-io/obj';
    import { objectStores } from './dist/object-stores.js';
    const before = getSha256Backend();
    await objectStores({ nc: {} });
    console.log(before, getSha256Backend());`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: pkg, encoding: 'utf8' });
  expect(out.trim()).toBe('js native');
});

it('where the library’s dynamic import cannot work (Jest without --experimental-vm-modules) it keeps the pure-JS hasher', async () => {
  setSha256Backend('js');
  const stores = await objectStores(js);
  expect(typeof stores.create).toBe('function');
  expect(getSha256Backend()).toBe('js');
});
