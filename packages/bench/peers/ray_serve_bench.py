"""Ray Serve on the same ONNX model, driven the way `pnpm bench` drives Flotilla: one replica,
onnxruntime (Python) with 1 intra-op thread, Ray Serve's own dynamic batching (@serve.batch) set to
the batch size and queue delay Flotilla's profile chose, single-item requests from `concurrency`
callers through a DeploymentHandle (Ray's in-cluster request path; its HTTP proxy is slower).

Pinning (when --replica-core is given and this process was started under `taskset -c <core>`):
the driver, the load generator and Ray's own processes stay on the starting core; the replica
process moves itself, all threads, to --replica-core, like Flotilla's worker in `pnpm bench`.

With --turns N, N windows follow the run, each after a pause: the driver prints `turn <i>` and
waits for SIGUSR2 (the bench's protocol for load generators that take turns, load-windows.ts), then
its callers run --turn-warm-ms before the window and only what is answered within --turn-ms counts.

Prints one JSON line on stdout: {"itemsPerSec", "p50Ms", "p99Ms", "sent", "ok", "errored", ...},
with "turns": [items/s of each window] when it took turns.
Set up with `bash packages/bench/peers/setup` (a venv in .cache/peers with ray[serve], onnxruntime).
"""
import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import ray
from ray import serve


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--dims", required=True, help="one request's input dims, e.g. 1,1024")
    p.add_argument("--max-batch", type=int, required=True)
    p.add_argument("--wait-ms", type=float, required=True)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--duration-s", type=float, default=3.0)
    p.add_argument("--warmup-s", type=float, default=0.5)
    p.add_argument("--replica-core", type=int, default=None)
    p.add_argument("--turns", type=int, default=0)
    p.add_argument("--turn-ms", type=float, default=0)
    p.add_argument("--turn-warm-ms", type=float, default=0)
    return p.parse_args()


@serve.deployment(num_replicas=1, max_ongoing_requests=4096, ray_actor_options={"num_cpus": 0})
class OnnxModel:
    def __init__(self, path: str, core, max_batch: int, wait_s: float):
        if core is not None:
            subprocess.run(["taskset", "-a", "-cp", str(core), str(os.getpid())], check=True, capture_output=True)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.batches = 0
        self.items = 0
        self.run_batch.set_max_batch_size(max_batch)
        self.run_batch.set_batch_wait_timeout_s(wait_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.001)
    async def run_batch(self, xs: list) -> list:
        x = np.concatenate(xs, axis=0)
        y = self.session.run(None, {self.input: x})[0]
        self.batches += 1
        self.items += len(xs)
        return np.split(y, len(xs))

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        return await self.run_batch(x)

    def stats(self) -> dict:
        return {"batches": self.batches, "items": self.items, "pid": os.getpid(), "ortVersion": ort.__version__}


async def load(handle, x: np.ndarray, concurrency: int, duration_s: float, window=None) -> dict:
    """`concurrency` callers for `duration_s`; with `window` (from, to: perf_counter s), only what is answered within it counts."""
    latencies: list = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + duration_s
    counts = (lambda t: window[0] <= t <= window[1]) if window else (lambda t: True)

    async def caller():
        nonlocal errors, sent
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            if counts(t):
                sent += 1
            try:
                y = await handle.remote(x)
                if y.shape[0] != 1:
                    raise ValueError(f"reply has {y.shape[0]} rows")
                done = time.perf_counter()
                if counts(done):
                    latencies.append((done - t) * 1000)
            except Exception:  # counted, never hidden
                if counts(time.perf_counter()):
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = window[1] - window[0] if window else time.perf_counter() - t0
    latencies.sort()
    pct = lambda q: round(latencies[min(len(latencies) - 1, max(0, int(q * len(latencies)) - 1))], 3) if latencies else None
    return {
        "itemsPerSec": round(len(latencies) / elapsed, 1),
        "p50Ms": pct(0.50),
        "p99Ms": pct(0.99),
        "sent": sent,
        "ok": len(latencies),
        "errored": errors,
        "seconds": round(elapsed, 3),
    }


async def take_turns(handle, x: np.ndarray, a: argparse.Namespace) -> list:
    """a.turns windows, each after a pause (`turn <i>` on stdout, then SIGUSR2): each window's items/s."""
    go = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, go.set)
    out = []
    for i in range(a.turns):
        go.clear()
        print(f"turn {i}", flush=True)
        await go.wait()
        start = time.perf_counter() + a.turn_warm_ms / 1000
        window = (start, start + a.turn_ms / 1000)
        w = await load(handle, x, a.concurrency, (a.turn_warm_ms + a.turn_ms) / 1000, window)
        out.append(w["itemsPerSec"])
    return out


async def main() -> None:
    a = parse()
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    handle = serve.run(OnnxModel.bind(a.model, a.replica_core, a.max_batch, a.wait_ms / 1000), name="bench", route_prefix=None)
    dims = [int(d) for d in a.dims.split(",")]
    x = np.random.default_rng(1).uniform(-1, 1, size=dims).astype(np.float32)
    await handle.remote(x)
    startup_s = time.perf_counter() - t0
    if a.warmup_s > 0:
        await load(handle, x, a.concurrency, a.warmup_s)
    before = await handle.stats.remote()
    r = await load(handle, x, a.concurrency, a.duration_s)
    after = await handle.stats.remote()
    batches = after["batches"] - before["batches"]
    turns = await take_turns(handle, x, a) if a.turns > 0 else []
    r.update(
        {
            "concurrency": a.concurrency,
            "maxBatchSize": a.max_batch,
            "batchWaitMs": a.wait_ms,
            "meanBatch": round((after["items"] - before["items"]) / batches, 1) if batches else 0,
            "startupS": round(startup_s, 2),
            "rayVersion": ray.__version__,
            "ortVersion": after["ortVersion"],
            "replicaAffinity": subprocess.run(["taskset", "-cp", str(after["pid"])], capture_output=True, text=True).stdout.strip().split(":")[-1].strip(),
            "driverAffinity": ",".join(str(c) for c in sorted(os.sched_getaffinity(0))),
        }
    )
    if turns:
        r["turns"] = turns
    serve.shutdown()
    ray.shutdown()
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
