// The HTTP gateway: the KServe v2 inference protocol over HTTP, in front of the SDK.
export { startGateway, type Gateway } from './gateway.js';
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
