// The head: keeps the desired deployments, places replicas on workers, scales them, and answers
// the control plane. Embedders (the CLI, the local cluster) start one with `Head.start`.
export { Head } from './head.js';
export type { HeadOptions } from './options.js';
export { PLACEMENT_RULES, type PlacementRule } from './placement.js';
export { headMetrics } from './metrics.js';
