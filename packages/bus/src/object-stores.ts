// The JetStream object store API (model artifacts, job files, staged bodies' bucket) with Node's
// own SHA-256. @nats-io/obj hashes every put and get, and its default hasher is pure JavaScript
// (js-sha256, so that it runs in a browser): 59 MB/s on this VM against 1,469 MB/s for
// node:crypto's (a 74.5 MB model: 1,255 ms against 51 ms). A deploy hashes the artifact twice
// that way, the client's put and the worker's get, so a 1 GB model spent about 34 s hashing.
// The library has a process-wide switch for it (setSha256Backend, since 3.4), and its native
// hasher loads node:crypto with a dynamic import() the first time it hashes. Some hosts cannot
// do that: Jest's module sandbox without --experimental-vm-modules rejects it, and every put and
// get would then fail. So the switch is thrown only once such an import has worked here; where
// it cannot, the library keeps its pure-JS hasher. Every Flotilla process opens its stores here.
import type { JetStreamClient } from '@nats-io/jetstream';
import { Objm, setSha256Backend } from '@nats-io/obj';

let hashing: Promise<void> | undefined;

/** Whether this host can do what the library's native hasher does: a dynamic import of a builtin, from code it did not compile. */
function dynamicImportWorks(): Promise<boolean> {
  // A Function body is compiled by the host as the library's code is (an import() written here
  // would be compiled away by a test transform into require, and would prove nothing).
  const load = new Function('return import("node:crypto")') as () => Promise<unknown>;
  try {
    return load().then(
      () => true,
      () => false,
    );
  } catch {
    return Promise.resolve(false);
  }
}

/** `new Objm(js)`, with the library's hashing switched to node:crypto first where this host allows it. */
export async function objectStores(js: JetStreamClient): Promise<Objm> {
  hashing ??= dynamicImportWorks().then((works) => {
    if (works) setSha256Backend('native');
  });
  await hashing;
  return new Objm(js);
}
