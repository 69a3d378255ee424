export * from './version.js';
export * from './errors.js';
export * from './subjects.js';
export * from './tensor.js';
export * from './codec.js';
export * from './messages.js';
export * from './limits.js';
export * from './data-schemas.js';
