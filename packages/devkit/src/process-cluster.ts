// A cluster for integration tests that need the worker as a real OS process (its own event loop,
// its own log): a nats-server of its own, a head in this process, one worker process and a client.
import { FlotillaClient } from '@flotilla/client';
import { silentLogger } from '@flotilla/bus';
import { Head } from '@flotilla/head';
import { NatsServer, type NatsServerOptions } from '@flotilla/local';
import { WorkerProcess } from './worker-process.js';

export interface ProcessClusterOptions {
  cluster: string;
  nats?: NatsServerOptions;
  /** The head's worker timeout, ms (default: the head's). */
  workerTimeoutMs?: number;
  /** The worker's extra CLI flags (default `--threads 1`) and environment. */
  workerArgs?: string[];
  workerEnv?: Record<string, string>;
}

export class ProcessCluster {
  private constructor(
    readonly nats: NatsServer,
    readonly head: Head,
    readonly worker: WorkerProcess,
    readonly client: FlotillaClient,
  ) {}

  /** Starts them in order; the worker is `w`, running at the head when this resolves. */
  static async start(o: ProcessClusterOptions): Promise<ProcessCluster> {
    const nats = await NatsServer.start(o.nats);
    const head = await Head.start({
      cluster: o.cluster,
      bus: { servers: nats.url },
      logger: silentLogger(),
      ...(o.workerTimeoutMs !== undefined ? { workerTimeoutMs: o.workerTimeoutMs } : {}),
    });
    const worker = await WorkerProcess.start({
      servers: nats.url,
      cluster: o.cluster,
      id: 'w',
      head,
      args: o.workerArgs ?? ['--threads', '1'],
      ...(o.workerEnv ? { env: o.workerEnv } : {}),
    });
    return new ProcessCluster(nats, head, worker, new FlotillaClient({ servers: nats.url, cluster: o.cluster }));
  }

  async stop(): Promise<void> {
    await this.client.close();
    await this.worker.stop();
    await this.head.stop();
    await this.nats.stop();
  }
}
