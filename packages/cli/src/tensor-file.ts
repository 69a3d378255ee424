// Tensor JSON files for `infer`: `{ "<name>": { "dtype": "float32", "dims": [1, 3], "data": [..] } }`.
import { readFile, writeFile } from 'node:fs/promises';
import { BadRequestError, fromJsonTensor, toJsonTensor, type JsonTensor, type WireTensors } from '@flotilla/protocol';

export function parseTensorJson(text: string, source: string): WireTensors {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`${source} is not valid JSON: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new BadRequestError(`${source} must be an object mapping input names to { dtype, dims, data }`);
  }
  const out: WireTensors = {};
  for (const [name, t] of Object.entries(doc)) out[name] = fromJsonTensor(name, t);
  return out;
}

export async function readTensorFile(path: string): Promise<WireTensors> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new BadRequestError(`cannot read input file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseTensorJson(text, path);
}

export function tensorsToJson(tensors: WireTensors): Record<string, JsonTensor> {
  return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, toJsonTensor(t)]));
}

export async function writeTensorFile(path: string, tensors: WireTensors): Promise<void> {
  await writeFile(path, JSON.stringify(tensorsToJson(tensors)) + '\n');
}
