// Closed-loop load generation against a deployed model (`flotilla load`, the benchmarks): C
// requests in flight for S seconds, then throughput and latency percentiles.
export { closedLoop, errorCode, runLoad, type LoadOptions } from './load-generator.js';
export { LoadStats, percentile, type LatencySummary, type LoadSummary } from './load-stats.js';
export { runMixLoad, type MixLoadOptions, type MixLoadSummary, type MixTarget } from './mix-load.js';
export { WeightedSampler, parseMix, seededRandom, shuffled, zipfWeights, type MixEntry } from './model-mix.js';
