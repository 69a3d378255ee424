// The test kit: helpers only tests use (poll-until, a worker as a real OS process). The local
// cluster launcher and the sample models the tests also use are product packages
// (`@flotilla/local`, `@flotilla/sample-models`); no runtime package depends on this one.
export { until } from './until.js';
export { WorkerProcess, findCli, type ProcessExit, type WorkerProcessOptions } from './worker-process.js';
