export * from './gateway.js';
export * from './datatypes.js';
export * from './signature.js';
