// Flotilla's NATS plumbing, shared by the head, the workers and the SDK: connecting, request/reply
// with coded errors, serving subjects with a total handler, the one retry module, staging of
// large bodies in the object store, the profile store, logging and the health endpoint.
export type { NatsConnection } from '@nats-io/nats-core';
export { DEFAULT_NATS_URL, closeBus, connectBus, publishConfirmed, subscribeConfirmed, type BusOptions } from './connect.js';
export { BlobStore, objectChunkSize, type BlobStoreOptions } from './blob-store.js';
export { objectStores } from './object-stores.js';
export type { StreamFloorOptions } from './blob-chunks.js';
export { NO_RESPONDERS_GRACE_MS, call, isNoResponders, isTimeout, mapNatsError, okReply } from './rpc.js';
export { Requester, requesterFor, type RequestOptions } from './requester.js';
export { ConnectionLostError, MAX_HELD_SENDS, connectionLink, isConnectionLost, type ConnectionLink } from './connection-lost.js';
export { createLogger, silentLogger, type Logger } from './logger.js';
export { connectionTracker, notReadyReason, startHealthServer, type HealthServer } from './health-server.js';
export { ProfileStore } from './profile-store.js';
export { PayloadPool, payloadPool, type PayloadPoolStats } from './payload-pool.js';
export { ThrottledLog, fitReply, listen, respondSafely, serve, type Stager } from './serve.js';
export {
  DEFAULT_RETRY_POLICY,
  STORE_WRITE_RETRY_POLICY,
  parseRetryPolicy,
  retry,
  type RetryEvent,
  type RetryPolicy,
  type RetryVerdict,
} from './retry.js';
export { decodeStaged, maxPayload, stageIfLarge, stagedRef, takeStaged, unstage } from './staging.js';
export { DirectBodies, directId, pullBody, pushBody, type DirectBodiesOptions, type DirectSendOptions } from './direct-body.js';
