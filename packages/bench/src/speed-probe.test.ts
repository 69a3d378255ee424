// The host-speed probe on a real child: inproc.js in probe mode with a real onnxruntime session
// (the mlp sample), timed on demand while it stays open, stopped by SIGTERM; a child that is gone
// answers undefined rather than hanging the bench.
import { spawn } from 'node:child_process';
import { sampleModelPath } from '@flotilla/sample-models';
import { repoPath } from './deps.js';
import { SpeedProbe } from './speed-probe.js';

const probeChild = (args: object) =>
  spawn(process.execPath, [repoPath('packages/bench/dist/inproc.js'), JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });

it('times the model at its batch size each time it is asked, idle in between, until stopped', async () => {
  const child = probeChild({ modelPath: sampleModelPath('mlp'), device: 'cpu', probe: { batch: 8, durationMs: 100 } });
  const probe = await SpeedProbe.start(child, 30_000);
  try {
    const first = await probe.probe(10_000);
    const second = await probe.probe(10_000);
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(0);
    // Idle between probes: the child is still there, waiting.
    expect(child.exitCode).toBeNull();
  } finally {
    await probe.stop();
  }
  expect(child.exitCode ?? child.signalCode).not.toBeNull();
  await expect(probe.probe(1000)).resolves.toBeUndefined(); // gone: no figure, no hang
}, 60_000);

it('a model it cannot open: start fails with the child’s error', async () => {
  const child = probeChild({ modelPath: '/nonexistent.onnx', device: 'cpu', probe: { batch: 1, durationMs: 100 } });
  await expect(SpeedProbe.start(child, 30_000)).rejects.toThrow(/speed probe exited with code 1/);
});
