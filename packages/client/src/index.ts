export * from './client.js';
export * from '@flotilla/protocol';
