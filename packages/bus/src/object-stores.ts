// The JetStream object store API (model artifacts, job files, staged bodies' bucket) with Node's
// own SHA-256. @nats-io/obj hashes every put and get, and its default hasher is pure JavaScript
// (js-sha256, so that it runs in a browser): 59 MB/s on this VM against 1,469 MB/s for
// node:crypto's (a 74.5 MB model: 1,255 ms against 51 ms). A deploy hashes the artifact twice
// that way, the client's put and the worker's get, so a 1 GB model spent about 34 s hashing.
// The library has a process-wide switch for it (setSha256Backend, since 3.4); every Flotilla
// process opens its object stores here, and the switch is thrown before the first one opens.
import type { JetStreamClient } from '@nats-io/jetstream';
import { Objm, setSha256Backend } from '@nats-io/obj';

let nativeHashing = false;

/** `new Objm(js)`, with the library's hashing switched to node:crypto first. */
export function objectStores(js: JetStreamClient): Objm {
  if (!nativeHashing) {
    setSha256Backend('native');
    nativeHashing = true;
  }
  return new Objm(js);
}
