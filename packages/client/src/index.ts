export * from './client.js';
export * from '@flotilla/protocol';
export * from './router.js';
