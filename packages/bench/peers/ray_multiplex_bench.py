"""Ray Serve's model manager on the same reload-after-eviction scenario `pnpm bench:memory` runs on
Flotilla: one replica that holds one model at a time (@serve.multiplexed with
max_num_models_per_replica=1, which evicts least recently used); requests alternate between model
A (the one measured) and model B (small), so every request for A finds it evicted and waits for
its reload. Next to each reload, a plain onnxruntime (Python) session create of A is timed in the
replica's own process (same core), the baseline `bench:memory` uses for Flotilla too.

Prints one JSON line: {"reloadMs": median, "plainCreateMs": median, "reload_ratio", ...}.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort
import ray
from ray import serve


def session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class Multiplexed:
    def __init__(self, paths: dict, core):
        if core is not None:
            subprocess.run(["taskset", "-a", "-cp", str(core), str(os.getpid())], check=True, capture_output=True)
        self.paths = paths
        self.loads = 0

    @serve.multiplexed(max_num_models_per_replica=1)
    async def model(self, model_id: str) -> ort.InferenceSession:
        self.loads += 1
        return session(self.paths[model_id])

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        s = await self.model(serve.get_multiplexed_model_id())
        return s.run(None, {s.get_inputs()[0].name: x})[0]

    def plain_create_ms(self, model_id: str) -> float:
        # The baseline in the replica's own process and core, outside the multiplexing.
        t = time.perf_counter()
        s = session(self.paths[model_id])
        ms = (time.perf_counter() - t) * 1000
        del s
        return ms

    def stats(self) -> dict:
        return {"loads": self.loads}


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--a", required=True, help="model measured")
    p.add_argument("--a-dims", required=True)
    p.add_argument("--b", required=True, help="small model that evicts A")
    p.add_argument("--b-dims", required=True)
    p.add_argument("--n", type=int, default=7)
    p.add_argument("--replica-core", type=int, default=None)
    a = p.parse_args()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    handle = serve.run(Multiplexed.bind({"a": a.a, "b": a.b}, a.replica_core), name="mux", route_prefix=None)
    xa = np.random.default_rng(1).uniform(-1, 1, size=[int(d) for d in a.a_dims.split(",")]).astype(np.float32)
    xb = np.zeros([int(d) for d in a.b_dims.split(",")], dtype=np.float32)
    await handle.options(multiplexed_model_id="a").remote(xa)  # first load (not timed)
    await handle.options(multiplexed_model_id="b").remote(xb)  # evicts a
    reloads, plain = [], []
    for _ in range(a.n):
        plain.append(await handle.plain_create_ms.remote("a"))
        t = time.perf_counter()
        await handle.options(multiplexed_model_id="a").remote(xa)
        reloads.append((time.perf_counter() - t) * 1000)
        await handle.options(multiplexed_model_id="b").remote(xb)
    stats = await handle.stats.remote()
    serve.shutdown()
    ray.shutdown()
    r, c = statistics.median(reloads), statistics.median(plain)
    print(json.dumps({"reloadMs": round(r, 1), "plainCreateMs": round(c, 1), "reload_ratio": round(r / c, 3), "overheadMs": round(r - c, 1),
                      "loads": stats["loads"], "n": a.n, "rayVersion": ray.__version__, "ortVersion": ort.__version__}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
