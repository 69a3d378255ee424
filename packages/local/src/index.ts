// A Flotilla cluster on this machine: real nats-servers (one, or a routed JetStream cluster) in
// temp dirs, and a head, workers and clients in one process. `flotilla up` and `flotilla demo` run
// on it; so do the integration tests and the benchmarks.
export { NatsServer, findNatsServer, killOnExit, type NatsServerOptions } from './nats-server.js';
export { NatsCluster, freePort, type NatsClusterOptions } from './nats-cluster.js';
export { LocalCluster, type LocalClusterOptions } from './local-cluster.js';
