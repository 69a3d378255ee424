// The sample ONNX models (built in TypeScript, no model hub) that the demo, the benchmarks and the
// tests deploy, and the seeded random inputs they send.
export { SAMPLE_MODELS, defaultModelDir, sampleModelPath, type SampleModel } from './sample-models.js';
export { GraphBuilder, buildMlp, randomFloats } from './onnx-builder.js';
