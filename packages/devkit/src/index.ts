export * from './nats-server.js';
export * from './onnx-builder.js';
export * from './sample-models.js';
export * from './local-cluster.js';
