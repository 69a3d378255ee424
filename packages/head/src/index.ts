export * from './head.js';
export * from './options.js';
export * from './placement.js';
export * from './registry.js';
export * from './autoscaler.js';
export * from './metrics.js';
