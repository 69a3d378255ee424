// The worker's session and measuring helpers, for other packages of ours that use them directly
// (the memory benchmark); not part of the worker's public surface.
export { compiledPath, createCompiledSession } from './compile-cache.js';
export { measureInventory } from './inventory.js';
export { describeModel } from './model-io.js';
export { profileThreads } from './profiler.js';
export { describeThreads, threadCost } from './thread-choice.js';
export { ArtifactCache, STORE_OPEN_ATTEMPT_MS, STORE_OPEN_DEADLINE_MS } from './artifact-cache.js';
