// The HTTP gateway: the KServe v2 inference protocol over HTTP, in front of the SDK.
import type { Gateway, startGateway as start } from './gateway.js';
export type { Gateway } from './gateway.js';

/**
 * Starts the gateway. Its servers (fastify, grpc-js, the proto definitions) load on the first call,
 * so a process that imports this package for its options only (the CLI, running a worker) does not
 * carry them: 5 MB less heap for V8 to mark in every major collection.
 */
export async function startGateway(...args: Parameters<typeof start>): Promise<Gateway> {
  return (await import('./gateway.js')).startGateway(...args);
}
export {
  DEFAULT_BODY_LIMIT_BYTES,
  DEFAULT_CONNECTION_TIMEOUT_MS,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  DEFAULT_MAX_JSON_DEPTH,
  DEFAULT_READY_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  parseGatewayOptions,
  type GatewayOptions,
} from './gateway-options.js';
