// Jest gives each test file its own realm, with its own Float32Array, ArrayBuffer, ... classes.
// onnxruntime-node checks `data instanceof Float32Array` against the host's classes (and throws
// "A float32 tensor's data must be type of function Float32Array()"), and msgpackr packs a
// foreign-realm Uint8Array as a plain map. Sharing the host's constructors fixes both.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer',
  'SharedArrayBuffer',
  'DataView',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
];

class FlotillaEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) {
      if (globalThis[name]) this.global[name] = globalThis[name];
    }
    this.global.Buffer = Buffer;
  }
}

module.exports = FlotillaEnvironment;
