// The head's pure policies, for other packages of ours that drive them directly (the scale
// benchmark); not part of the head's public surface.
export { Autoscaler, observe } from './autoscaler.js';
export { place } from './placement.js';
export { WorkerRegistry } from './registry.js';
