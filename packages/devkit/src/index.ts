export * from './nats-server.js';
export * from './onnx-builder.js';
export * from './sample-models.js';
export * from './local-cluster.js';
export * from './nats-cluster.js';
export * from './worker-process.js';
export * from './until.js';
