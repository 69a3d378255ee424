// Builds ONNX models in TypeScript (onnx-proto's generated protobuf classes), so tests, the demo
// and benchmarks need no model hub and no Python/torch install. Weights come from a seeded PRNG:
// the same call always yields the same bytes (and so the same digest).
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type Dim = number | string;
type Attr = number | number[] | string;

const ELEM = { float32: 1, int64: 7 } as const;

/** mulberry32: small, fast, deterministic. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomFloats(n: number, seed: number, scale = 1): Float32Array {
  const r = prng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

function valueInfo(name: string, dtype: keyof typeof ELEM, shape: Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEM[dtype],
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function attribute(name: string, value: Attr) {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: A.INTS, ints: value };
  if (Number.isInteger(value)) return { name, type: A.INT, i: value };
  return { name, type: A.FLOAT, f: value };
}

export class GraphBuilder {
  private readonly nodes: ReturnType<typeof onnx.NodeProto.create>[] = [];
  private readonly inits: ReturnType<typeof onnx.TensorProto.create>[] = [];
  private readonly inputs: ReturnType<typeof onnx.ValueInfoProto.create>[] = [];
  private readonly outputs: ReturnType<typeof onnx.ValueInfoProto.create>[] = [];
  private counter = 0;

  constructor(private readonly name: string) {}

  input(name: string, shape: Dim[], dtype: keyof typeof ELEM = 'float32'): string {
    this.inputs.push(valueInfo(name, dtype, shape));
    return name;
  }

  output(name: string, shape: Dim[], dtype: keyof typeof ELEM = 'float32'): string {
    this.outputs.push(valueInfo(name, dtype, shape));
    return name;
  }

  /** A float32 constant tensor. */
  weight(dims: number[], values: Float32Array, name = `w${this.counter++}`): string {
    const raw = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    this.inits.push(onnx.TensorProto.create({ name, dims, dataType: ELEM.float32, rawData: raw }));
    return name;
  }

  /** An int64 constant tensor (shapes, axes). */
  ints(values: number[], name = `i${this.counter++}`): string {
    const raw = new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer);
    this.inits.push(onnx.TensorProto.create({ name, dims: [values.length], dataType: ELEM.int64, rawData: raw }));
    return name;
  }

  node(op: string, inputs: string[], attrs: Record<string, Attr> = {}, output = `t${this.counter++}`): string {
    this.nodes.push(
      onnx.NodeProto.create({
        opType: op,
        name: `${op}_${this.counter++}`,
        input: inputs,
        output: [output],
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return output;
  }

  toBytes(opset = 17): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'flotilla-devkit',
      opsetImport: [{ domain: '', version: opset }],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.inits,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

/** Dense layer y = x·W + b (Gemm), with He-like init scaled for stable activations. */
function dense(g: GraphBuilder, x: string, inDim: number, outDim: number, seed: number): string {
  const w = g.weight([inDim, outDim], randomFloats(inDim * outDim, seed, Math.sqrt(3 / inDim)));
  const b = g.weight([outDim], randomFloats(outDim, seed + 1, 0.1));
  return g.node('Gemm', [x, w, b]);
}

/** An MLP with a dynamic batch axis `N`: input `x` [N, sizes[0]] → output `y` [N, last]. */
export function buildMlp(sizes: number[] = [16, 32, 4], seed = 1, name = 'mlp'): Uint8Array {
  const g = new GraphBuilder(name);
  let t = g.input('x', ['N', sizes[0]!]);
  for (let i = 1; i < sizes.length; i++) {
    t = dense(g, t, sizes[i - 1]!, sizes[i]!, seed * 100 + i);
    if (i < sizes.length - 1) t = g.node('Relu', [t]);
  }
  g.node('Identity', [t], {}, 'y');
  g.output('y', ['N', sizes[sizes.length - 1]!]);
  return g.toBytes();
}

/** y = x * 2 + 1 over any shape (all dims dynamic): for large-tensor transport tests. */
export function buildAffine(name = 'affine'): Uint8Array {
  const g = new GraphBuilder(name);
  const x = g.input('x', ['N', 'C', 'H', 'W']);
  const two = g.weight([1], new Float32Array([2]));
  const one = g.weight([1], new Float32Array([1]));
  const m = g.node('Mul', [x, two]);
  g.node('Add', [m, one], {}, 'y');
  g.output('y', ['N', 'C', 'H', 'W']);
  return g.toBytes();
}

/** A model with a fixed batch of 1 (no batch axis): `x` [1, 8] → `y` [1, 8]. */
export function buildFixedBatch(name = 'fixed'): Uint8Array {
  const g = new GraphBuilder(name);
  const x = g.input('x', [1, 8]);
  const w = g.weight([8, 8], randomFloats(64, 7, 0.5));
  g.node('MatMul', [x, w], {}, 'y');
  g.output('y', [1, 8]);
  return g.toBytes();
}

/**
 * A small convolutional classifier with tens of MB of weights and ms-scale compute per item:
 * `x` [N, 3, 64, 64] → conv stack → global pool → dense 256→`classes` ... `y` [N, classes].
 */
export function buildConvNet(name = 'convnet', seed = 11): Uint8Array {
  const g = new GraphBuilder(name);
  let t = g.input('x', ['N', 3, 64, 64]);
  const chans = [3, 32, 64, 128, 256];
  for (let i = 1; i < chans.length; i++) {
    const cin = chans[i - 1]!;
    const cout = chans[i]!;
    const w = g.weight([cout, cin, 3, 3], randomFloats(cout * cin * 9, seed + i, Math.sqrt(3 / (cin * 9))));
    const b = g.weight([cout], randomFloats(cout, seed + 50 + i, 0.05));
    t = g.node('Conv', [t, w, b], { pads: [1, 1, 1, 1], strides: [2, 2], kernel_shape: [3, 3] });
    t = g.node('Relu', [t]);
  }
  t = g.node('GlobalAveragePool', [t]);
  t = g.node('Flatten', [t], { axis: 1 });
  // The heavy head: 256 → 4096 → 4096 → 100 (about 68 MB of float32 weights).
  t = g.node('Relu', [dense(g, t, 256, 4096, seed + 200)]);
  t = g.node('Relu', [dense(g, t, 4096, 4096, seed + 300)]);
  t = dense(g, t, 4096, 100, seed + 400);
  g.node('Identity', [t], {}, 'y');
  g.output('y', ['N', 100]);
  return g.toBytes();
}

/**
 * A token embedding, the input side of a transformer: int64 `input_ids` [batch, seq] → float32 `y`
 * [batch, seq, dim] (Gather from a vocab × dim table). Ids must be in [0, vocab).
 */
export function buildTokenEmbedding(vocab = 64, dim = 8, name = 'token-embedding', seed = 21): Uint8Array {
  const g = new GraphBuilder(name);
  const ids = g.input('input_ids', ['batch', 'seq'], 'int64');
  const table = g.weight([vocab, dim], randomFloats(vocab * dim, seed));
  g.node('Gather', [table, ids], { axis: 0 }, 'y');
  g.output('y', ['batch', 'seq', dim]);
  return g.toBytes();
}

/**
 * A small detector-like conv net with dynamic image size (for per-shape profiling): `x`
 * [N, 3, H, W] → two stride-2 3×3 convs (3→16→32, ReLU) → 1×1 conv to one channel → `y`
 * [N, 1, ceil(H/4), ceil(W/4)]. About 20 KB of weights; compute grows with H × W.
 */
export function buildDynamicHwConvNet(name = 'dynamic-hw-convnet', seed = 23): Uint8Array {
  const g = new GraphBuilder(name);
  let t = g.input('x', ['N', 3, 'H', 'W']);
  const chans = [3, 16, 32];
  for (let i = 1; i < chans.length; i++) {
    const cin = chans[i - 1]!;
    const cout = chans[i]!;
    const w = g.weight([cout, cin, 3, 3], randomFloats(cout * cin * 9, seed + i, Math.sqrt(3 / (cin * 9))));
    const b = g.weight([cout], randomFloats(cout, seed + 50 + i, 0.05));
    t = g.node('Relu', [g.node('Conv', [t, w, b], { pads: [1, 1, 1, 1], strides: [2, 2], kernel_shape: [3, 3] })]);
  }
  const w = g.weight([1, 32, 1, 1], randomFloats(32, seed + 99, 0.3));
  g.node('Conv', [t, w], { kernel_shape: [1, 1] }, 'y');
  g.output('y', ['N', 1, 'H4', 'W4']);
  return g.toBytes();
}

/**
 * A small convolutional image classifier with dynamic image size, the kind where batching does not
 * pay on one core (compute is all per-pixel convolutions, no large weights to reuse): `x`
 * [N, 3, H, W] → four 3×3 convs (3→16 at full resolution, then 16→32→64→128 at stride 2, ReLU) →
 * global average pool → dense 128→10 → `logits` [N, 10]. About 390 KB of weights; at 64×64 ≈ 16 M
 * multiply-adds and 256 KB of first-layer activations per item, so a batch outgrows the caches
 * sooner than it amortises anything.
 */
export function buildConvClassifier(name = 'conv-classifier', seed = 41): Uint8Array {
  const g = new GraphBuilder(name);
  let t = g.input('x', ['N', 3, 'H', 'W']);
  const chans = [3, 16, 32, 64, 128];
  for (let i = 1; i < chans.length; i++) {
    const cin = chans[i - 1]!;
    const cout = chans[i]!;
    const w = g.weight([cout, cin, 3, 3], randomFloats(cout * cin * 9, seed + i, Math.sqrt(3 / (cin * 9))));
    const b = g.weight([cout], randomFloats(cout, seed + 50 + i, 0.05));
    const stride = i === 1 ? 1 : 2;
    t = g.node('Relu', [g.node('Conv', [t, w, b], { pads: [1, 1, 1, 1], strides: [stride, stride], kernel_shape: [3, 3] })]);
  }
  t = g.node('Flatten', [g.node('GlobalAveragePool', [t])], { axis: 1 });
  g.node('Identity', [dense(g, t, 128, 10, seed + 200)], {}, 'logits');
  g.output('logits', ['N', 10]);
  return g.toBytes();
}

/**
 * A tiny BERT-like encoder (for dynamic sequence lengths and attention masks): int64 `input_ids`
 * [batch, seq] (ids < vocab) and int64 `attention_mask` [batch, seq] (1 = token, 0 = padding) →
 * embedding (Gather) → one single-head self-attention block (Q/K/V projections, QKᵀ/√dim plus an
 * additive mask of -1e4 on padding keys, Softmax, ·V, output projection, residual, LayerNorm) →
 * a ReLU feed-forward block (residual, LayerNorm) → mean over unmasked positions → `logits`
 * [batch, 2]. vocab 256, dim 64: about 200 KB of weights.
 */
export function buildTinyEncoder(vocab = 256, dim = 64, name = 'tiny-encoder', seed = 31): Uint8Array {
  const g = new GraphBuilder(name);
  const ids = g.input('input_ids', ['batch', 'seq'], 'int64');
  const mask = g.input('attention_mask', ['batch', 'seq'], 'int64');
  const proj = (x: string, inDim: number, outDim: number, s: number) => {
    const w = g.weight([inDim, outDim], randomFloats(inDim * outDim, s, Math.sqrt(3 / inDim)));
    const b = g.weight([outDim], randomFloats(outDim, s + 1, 0.05));
    return g.node('Add', [g.node('MatMul', [x, w]), b]);
  };
  const layerNorm = (x: string, s: number) =>
    g.node(
      'LayerNormalization',
      [
        x,
        g.weight(
          [dim],
          new Float32Array(dim).fill(1).map((v, i) => v + 0.1 * Math.sin(s + i)),
        ),
        g.weight([dim], randomFloats(dim, s, 0.05)),
      ],
      { axis: -1, epsilon: 1e-5 },
    );
  const x = g.node('Gather', [g.weight([vocab, dim], randomFloats(vocab * dim, seed)), ids], { axis: 0 });
  // Attention: scores [batch, seq, seq]; padding keys get -1e4 before the softmax.
  const q = proj(x, dim, dim, seed + 10);
  const k = proj(x, dim, dim, seed + 20);
  const v = proj(x, dim, dim, seed + 30);
  const scores = g.node('Mul', [
    g.node('MatMul', [q, g.node('Transpose', [k], { perm: [0, 2, 1] })]),
    g.weight([1], new Float32Array([1 / Math.sqrt(dim)])),
  ]);
  const m = g.node('Cast', [mask], { to: 1 });
  const bias = g.node('Mul', [g.node('Sub', [g.weight([1], new Float32Array([1])), m]), g.weight([1], new Float32Array([-1e4]))]);
  const attn = g.node('Softmax', [g.node('Add', [scores, g.node('Unsqueeze', [bias, g.ints([1])])])], { axis: -1 });
  const h = layerNorm(g.node('Add', [x, proj(g.node('MatMul', [attn, v]), dim, dim, seed + 40)]), seed + 50);
  const ff = proj(g.node('Relu', [proj(h, dim, 2 * dim, seed + 60)]), 2 * dim, dim, seed + 70);
  const h2 = layerNorm(g.node('Add', [h, ff]), seed + 80);
  // Mean over unmasked positions (a row with no token divides by 1, not 0).
  const summed = g.node('ReduceSum', [g.node('Mul', [h2, g.node('Unsqueeze', [m, g.ints([2])])]), g.ints([1])], { keepdims: 0 });
  const count = g.node('Max', [g.node('ReduceSum', [m, g.ints([1])], { keepdims: 1 }), g.weight([1], new Float32Array([1]))]);
  const pooled = g.node('Div', [summed, count]);
  const hidden = g.node('Tanh', [
    g.node('Gemm', [
      pooled,
      g.weight([dim, dim], randomFloats(dim * dim, seed + 90, Math.sqrt(3 / dim))),
      g.weight([dim], randomFloats(dim, seed + 91, 0.05)),
    ]),
  ]);
  g.node(
    'Gemm',
    [hidden, g.weight([dim, 2], randomFloats(dim * 2, seed + 92, Math.sqrt(3 / dim))), g.weight([2], randomFloats(2, seed + 93, 0.05))],
    {},
    'logits',
  );
  g.output('logits', ['batch', 2]);
  return g.toBytes();
}
