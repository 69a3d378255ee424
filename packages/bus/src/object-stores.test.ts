import { getSha256Backend, setSha256Backend } from '@nats-io/obj';
import { objectStores } from './object-stores.js';

it('switches the object store’s SHA-256 to node:crypto before the first store is opened', () => {
  setSha256Backend('js'); // the library's default
  expect(getSha256Backend()).toBe('js');
  const stores = objectStores({ nc: {} } as never); // a client the store only keeps until a call
  expect(typeof stores.create).toBe('function');
  expect(getSha256Backend()).toBe('native');
});
