// Model compilation (ahead-of-time graph optimisation) cached on disk: the first load of a model
// on a device class runs onnxruntime's optimiser at the highest level and saves the optimised
// graph; later loads open that file with optimisation off. The key is (model digest, execution
// provider, device class, onnxruntime version), as optimised graphs can be hardware specific.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { toToken, type SessionHost } from '@flotilla/protocol';
import { openSession, type ModelSession } from './session-thread.js';

export interface CompiledSession {
  session: ModelSession;
  /** `hit`: opened the cached optimised graph; `miss`: optimised now and saved; `off`: not compiled. */
  compile: 'hit' | 'miss' | 'off';
  createMs: number;
}

export function compiledPath(dir: string, digest: string, provider: string, deviceClass: string, ortVersion: string): string {
  return join(dir, `${digest}.${toToken(provider)}.${toToken(deviceClass)}.${toToken(ortVersion)}.onnx`);
}

export async function createCompiledSession(
  modelPath: string,
  options: ort.InferenceSession.SessionOptions,
  cache: { path: string } | undefined,
  host: SessionHost = 'event-loop',
): Promise<CompiledSession> {
  const t0 = performance.now();
  if (!cache) {
    const session = await openSession(host, modelPath, { graphOptimizationLevel: 'all', ...options });
    return { session, compile: 'off', createMs: performance.now() - t0 };
  }
  if (existsSync(cache.path)) {
    try {
      const session = await openSession(host, cache.path, { ...options, graphOptimizationLevel: 'disabled' });
      return { session, compile: 'hit', createMs: performance.now() - t0 };
    } catch {
      rmSync(cache.path, { force: true }); // unreadable (e.g. another onnxruntime build): rebuild it
    }
  }
  mkdirSync(join(cache.path, '..'), { recursive: true });
  const tmp = `${cache.path}.${process.pid}.${Date.now()}.tmp`;
  try {
    // onnxruntime warns that an 'all'-level graph may be hardware specific: the cache key holds the
    // device class for that reason, so the warning is expected; errors still surface.
    const session = await openSession(host, modelPath, {
      logSeverityLevel: 3,
      ...options,
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: tmp,
    });
    if (existsSync(tmp)) renameSync(tmp, cache.path);
    return { session, compile: 'miss', createMs: performance.now() - t0 };
  } finally {
    rmSync(tmp, { force: true });
  }
}
