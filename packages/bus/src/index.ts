export * from './connect.js';
export * from './blob-store.js';
export * from './rpc.js';
export type { NatsConnection, Msg, Subscription } from '@nats-io/nats-core';
export * from './logger.js';
export * from './health-server.js';
export * from './profile-store.js';
export * from './serve.js';
