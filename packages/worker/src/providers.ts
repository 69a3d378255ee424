// Which onnxruntime execution providers this install can actually load. The npm package bundles
// CPU (and WebGPU); CUDA and TensorRT live in separate shared libraries that its install script
// downloads only where allowed. Creating a session with a provider whose library is absent makes
// onnxruntime log an error and fail, so the worker checks first and falls back with a reason.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

export interface BackendInfo {
  name: string;
  /** Part of the main onnxruntime library; otherwise a separate `libonnxruntime_providers_<name>.so`. */
  bundled: boolean;
}

/** Directory holding the loaded libonnxruntime.so (Linux: read from /proc/self/maps), or undefined. */
export function ortLibraryDir(maps?: string): string | undefined {
  let text = maps;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/maps', 'utf8');
    } catch {
      return undefined;
    }
  }
  return /\s(\/\S*\/)libonnxruntime\.so[^\s/]*$/m.exec(text)?.[1];
}

let backends: BackendInfo[] | undefined;
/** What this onnxruntime-node build supports (asked once: it does not change while running). */
export function supportedBackends(): BackendInfo[] {
  const list = (ort as unknown as { listSupportedBackends?: () => BackendInfo[] }).listSupportedBackends;
  backends ??= list ? list() : [{ name: 'cpu', bundled: true }];
  return backends;
}

let loadedFrom: string | null | undefined;
/** ortLibraryDir() of this process, read once (null: cannot tell). */
function ownLibraryDir(): string | null {
  loadedFrom ??= ortLibraryDir() ?? null;
  return loadedFrom;
}

/**
 * Why execution provider `name` cannot load here, or undefined when it can (or when that cannot
 * be told: then creating the session is the test).
 */
export function providerUnavailable(
  name: string,
  backends: readonly BackendInfo[] = supportedBackends(),
  libDir: string | null = ownLibraryDir(),
): string | undefined {
  const b = backends.find((x) => x.name === name);
  if (!b) return `this onnxruntime-node build has no '${name}' execution provider (it has ${backends.map((x) => x.name).join(', ')})`;
  if (b.bundled || !libDir) return undefined;
  const missing = ['libonnxruntime_providers_shared.so', `libonnxruntime_providers_${name}.so`].filter(
    (lib) => !existsSync(join(libDir, lib)),
  );
  return missing.length
    ? `${missing.join(' and ')} not installed in ${libDir} (GPU nodes need onnxruntime-node's ${name} binaries)`
    : undefined;
}
