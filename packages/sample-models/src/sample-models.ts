// The sample models every test, the demo and the benchmarks use, written once into a cache dir.
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  buildAffine,
  buildConvClassifier,
  buildConvNet,
  buildDynamicHwConvNet,
  buildFixedBatch,
  buildMlp,
  buildTinyEncoder,
  buildTokenEmbedding,
} from './onnx-builder.js';

export const SAMPLE_MODELS = {
  /** 16 → 32 → 4 MLP, a few KB: µs of compute per item. */
  mlp: () => buildMlp([16, 32, 4], 1, 'mlp'),
  /** 1024 → 4096 → 1024 → 10 MLP, 32 MiB of weights: batching pays (weights reused per batch). */
  'wide-mlp': () => buildMlp([1024, 4096, 1024, 10], 2, 'wide-mlp'),
  /** Conv stack + 68 MB dense head on 3×64×64 images. */
  convnet: () => buildConvNet('convnet'),
  /** y = 2x + 1 over any [N, C, H, W]: for large tensors. */
  affine: () => buildAffine('affine'),
  /** Detector-like conv net over [N, 3, H, W] with dynamic H and W → [N, 1, H/4, W/4] (per-shape profiling). */
  'dynamic-hw-convnet': () => buildDynamicHwConvNet('dynamic-hw-convnet'),
  /**
   * Image classifier over [N, 3, H, W] with dynamic H and W → `logits` [N, 10]; ≈ 0.5 ms per 64×64
   * item on one core, where batching does not pay (no large weights to reuse across a batch).
   */
  'conv-classifier': () => buildConvClassifier('conv-classifier'),
  /** No batch axis: fixed [1, 8]. */
  fixed: () => buildFixedBatch('fixed'),
  /** int64 `input_ids` [batch, seq] (ids < 64) → float32 `y` [batch, seq, 8]: dynamic sequence length. */
  'token-embedding': () => buildTokenEmbedding(64, 8, 'token-embedding'),
  /**
   * BERT-like encoder: int64 `input_ids` (ids < 256) and `attention_mask` [batch, seq] → one
   * self-attention block, feed-forward, masked mean pool → `logits` [batch, 2]; ~200 KB of weights.
   */
  'tiny-encoder': () => buildTinyEncoder(256, 64, 'tiny-encoder'),
} as const;
export type SampleModel = keyof typeof SAMPLE_MODELS;

export function defaultModelDir(): string {
  return resolve(process.env.FLOTILLA_SAMPLE_DIR ?? join(process.cwd(), '.cache', 'sample-models'));
}

/** Path of the sample model's .onnx file, building it on first use. */
export function sampleModelPath(name: SampleModel, dir = defaultModelDir()): string {
  const file = join(dir, `${name}.onnx`);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, SAMPLE_MODELS[name]());
    renameSync(tmp, file);
  }
  return file;
}
