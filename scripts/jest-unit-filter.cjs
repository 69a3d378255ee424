// `pnpm test:unit`: the tests of pure modules only. A test file is a unit test unless it starts
// real servers or sessions: it imports the local cluster or test kit, a NATS transport,
// onnxruntime, or spawns processes. Jest's `--filter` calls this with every matched path.
const { readFileSync } = require('node:fs');

const IO = [
  /from '@flotilla\/(local|devkit)'/,
  /from '@nats-io\/transport-node'/,
  /from 'onnxruntime-node'/,
  /from 'node:child_process'/,
  /from 'node:http'/,
];

module.exports = async (testPaths) => ({
  filtered: testPaths.filter((p) => {
    const src = readFileSync(p, 'utf8');
    return !IO.some((re) => re.test(src));
  }),
});
