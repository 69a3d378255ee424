export * from './gateway.js';
export * from './gateway-options.js';
export * from './json-depth.js';
export * from './datatypes.js';
export * from './signature.js';
