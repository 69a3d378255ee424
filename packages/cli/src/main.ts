#!/usr/bin/env -S node --single-threaded-gc --initial-old-space-size=64
// The `flotilla` CLI. It runs under V8's single-threaded collector (worker/src/gc-mode.ts says why).
// A command loads the packages it runs when it runs (`await import` in its action): `flotilla ls`
// does not load onnxruntime, the head or a local cluster, nor a worker process the head's code.
import { Command } from 'commander';
import { authCommand } from './auth-command.js';
import { clusterCommands } from './cluster-commands.js';
import { dashboardCommand } from './dashboard-command.js';
import { gatewayCommand } from './gateway-command.js';
import { reportError } from './format.js';
import { loadCommand } from './load-command.js';
import { modelCommands } from './model-commands.js';
import { submitCommand } from './submit-command.js';

const program = new Command()
  .name('flotilla')
  .description('Serve ONNX models across a cluster over NATS')
  .version('0.1.0')
  .showHelpAfterError();

clusterCommands(program);
modelCommands(program);
loadCommand(program);
submitCommand(program);
gatewayCommand(program);
authCommand(program);
dashboardCommand(program);
program
  .command('demo')
  .description('start a local cluster, deploy sample models, run inferences, print latency, stop')
  .action(async () => {
    try {
      await (await import('./demo.js')).demo();
    } catch (err) {
      process.exitCode = reportError(err, false);
    }
  });

await program.parseAsync(process.argv);
