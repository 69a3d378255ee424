export * from './client.js';
export * from '@flotilla/protocol';
export * from './load-stats.js';
export * from './load-generator.js';
export * from './router.js';
export * from './jobs.js';
