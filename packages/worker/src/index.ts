// The worker: runs replicas of ONNX models on this machine's CPU and GPUs and advertises them to
// the head. Embedders (the CLI, the local cluster) start one with `Worker.start`.
export { Worker } from './worker.js';
export type { WorkerOptions } from './options.js';
export type { InventoryOverride } from './inventory.js';
export { INITIAL_OLD_SPACE_MB, WORKER_NODE_FLAGS, gcMode, initialOldSpaceMb, type GcMode } from './gc-mode.js';
export { providerUnavailable, supportedBackends, ortLibraryDir, type BackendInfo } from './providers.js';
export { THREAD_SESSION_BYTES } from './session-plan.js';
