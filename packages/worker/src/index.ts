export * from './worker.js';
export * from './options.js';
export * from './inventory.js';
export * from './batcher.js';
export * from './memory-ledger.js';
export * from './model-io.js';
export { Replica, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_QUEUE_DELAY_MS, DEFAULT_MAX_QUEUE_LENGTH, DEFAULT_REQUEST_TIMEOUT_MS } from './replica.js';
