"""NVIDIA Triton (tritonserver from the nvidia-pytriton wheel) on the same ONNX model, driven the
way `pnpm bench` drives Flotilla: one model instance whose inference callable runs onnxruntime
(Python) with 1 intra-op thread, Triton's dynamic batcher set to the batch size and queue delay
Flotilla's profile chose, single-item requests from `concurrency` callers over HTTP with binary
tensors (tritonclient.http.aio, the KServe v2 binary extension Triton's own clients use).
`pnpm bench` runs only the server half (--serve) and drives it from Node (peer-triton-load.ts), whose
client costs less CPU per request; BENCH_TRITON_CLIENT=python makes it run this whole script.

Pinning (when --replica-core is given and this process was started under `taskset -c <core>`):
this process (the load generator) stays on the starting core; the server half (this script with
--serve: PyTriton, tritonserver and its Python-backend stub, all children of it) starts under
`taskset -c <replica core>`, like Flotilla's worker in `pnpm bench`.

Prints one JSON line on stdout: {"itemsPerSec", "p50Ms", "p99Ms", "sent", "ok", "errored", ...}.
Set up with `bash packages/bench/peers/setup` (.cache/triton-venv from Debian's /usr/bin/python3.11:
with pyenv's 3.11.7 the Python-backend stub fails with
"'_thread.RLock' object has no attribute '_recursion_count'").
"""
import argparse
import asyncio
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time

import numpy as np

MODEL = "bench"
# tritonserver plus the Python-backend stub start in 3-5 s here; a loaded machine takes longer.
READY_TIMEOUT_S = 120
# The server half, once started (stopped on SIGTERM too).
SERVER = None


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--dims", required=True, help="one request's input dims, e.g. 1,16")
    p.add_argument("--max-batch", type=int, required=True)
    p.add_argument("--wait-ms", type=float, required=True)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--duration-s", type=float, default=3.0)
    p.add_argument("--warmup-s", type=float, default=0.5)
    p.add_argument("--replica-core", type=int, default=None)
    p.add_argument("--serve", action="store_true", help="internal: run the server half (ports from --ports)")
    p.add_argument("--ports", default=None, help="internal: http,grpc,metrics")
    p.add_argument("--token", default=None, help="internal: PyTriton's access token for restricted APIs (statistics)")
    return p.parse_args()


def free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def serve(a: argparse.Namespace) -> None:
    """The server half: PyTriton binds an onnxruntime callable and runs tritonserver until SIGTERM."""
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    ins = session.get_inputs()
    outs = session.get_outputs()
    # Triton's shapes leave out the batch axis; symbolic dims are -1.
    spec = lambda xs: [Tensor(name=x.name, dtype=np.float32, shape=tuple(d if isinstance(d, int) else -1 for d in x.shape[1:])) for x in xs]

    @batch
    def infer(**inputs):
        ys = session.run(None, {x.name: inputs[x.name] for x in ins})
        return {o.name: y for o, y in zip(outs, ys)}

    # tritonserver (a child) writes its log to stdout: send it to stderr, keep stdout for our one line.
    ready_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    http, grpc, metrics = (int(p) for p in a.ports.split(","))
    config = TritonConfig(http_address="127.0.0.1", http_port=http, grpc_address="127.0.0.1", grpc_port=grpc, metrics_port=metrics, allow_metrics=False, exit_on_error=True, exit_timeout_secs=5)
    with Triton(config=config, security_config=TritonSecurityConfig(access_token=a.token)) as triton:
        triton.bind(
            model_name=MODEL,
            infer_func=infer,
            inputs=spec(ins),
            outputs=spec(outs),
            config=ModelConfig(max_batch_size=a.max_batch, batcher=DynamicBatcher(max_queue_delay_microseconds=int(a.wait_ms * 1000))),
            strict=True,
        )
        triton.run()
        ready = {"ready": True, "ortVersion": ort.__version__, "pytritonVersion": _version("nvidia-pytriton"), "pid": os.getpid()}
        print(json.dumps(ready), file=ready_out, flush=True)
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.run_until_complete(stop.wait())


async def load(client, x: np.ndarray, in_name: str, out_names: list, concurrency: int, duration_s: float) -> dict:
    import tritonclient.http as httpclient

    latencies: list = []
    errors: dict = {}
    sent = 0
    stop_at = time.perf_counter() + duration_s

    async def caller():
        nonlocal sent
        inp = httpclient.InferInput(in_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in out_names]
        while time.perf_counter() < stop_at:
            sent += 1
            t = time.perf_counter()
            try:
                r = await client.infer(MODEL, [inp], outputs=outputs)
                y = r.as_numpy(out_names[0])
                if y is None or y.shape[0] != 1:
                    raise ValueError(f"reply has shape {None if y is None else y.shape}")
                latencies.append((time.perf_counter() - t) * 1000)
            except Exception as e:  # counted, never hidden
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                await asyncio.sleep(0)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    pct = lambda q: round(latencies[min(len(latencies) - 1, max(0, int(q * len(latencies)) - 1))], 3) if latencies else None
    return {
        "itemsPerSec": round(len(latencies) / elapsed, 1),
        "p50Ms": pct(0.50),
        "p99Ms": pct(0.99),
        "sent": sent,
        "ok": len(latencies),
        "errored": sum(errors.values()),
        "errors": errors,
        "seconds": round(elapsed, 3),
    }


async def infer_counts(client, token: str) -> tuple:
    """(executions, items) of the model so far, from Triton's statistics extension."""
    s = (await client.get_inference_statistics(MODEL, headers={"triton-access-token": token}))["model_stats"][0]
    return s["execution_count"], s["inference_count"]


async def drive(a: argparse.Namespace) -> None:
    import onnxruntime as ort
    import tritonclient.http.aio as aioclient

    t0 = time.perf_counter()
    ports = free_ports(3)
    token = secrets.token_urlsafe(24)
    cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--serve", "--ports", ",".join(map(str, ports)), "--token", token]
    if a.replica_core is not None:
        cmd = ["taskset", "-c", str(a.replica_core), *cmd]
    # The server's log goes to our stderr (peers.ts keeps its tail for a failure message).
    global SERVER
    server = SERVER = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, start_new_session=True)
    try:
        if not select.select([server.stdout], [], [], READY_TIMEOUT_S)[0]:
            raise RuntimeError(f"the Triton server half was not ready within {READY_TIMEOUT_S} s")
        line = server.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError(f"the Triton server half exited (code {server.wait()}) before it was ready")
        ready = json.loads(line)
        sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        out_names = [o.name for o in sess.get_outputs()]
        dims = [int(d) for d in a.dims.split(",")]
        x = np.random.default_rng(1).uniform(-1, 1, size=dims).astype(np.float32)
        client = aioclient.InferenceServerClient(f"127.0.0.1:{ports[0]}", conn_limit=a.concurrency)
        try:
            await load(client, x, in_name, out_names, 1, 0.05)
            startup_s = time.perf_counter() - t0
            if a.warmup_s > 0:
                await load(client, x, in_name, out_names, a.concurrency, a.warmup_s)
            before = await infer_counts(client, token)
            r = await load(client, x, in_name, out_names, a.concurrency, a.duration_s)
            after = await infer_counts(client, token)
            server_version = (await client.get_server_metadata()).get("version", "?")
        finally:
            await client.close()
        executions = after[0] - before[0]
        affinity = lambda pid: subprocess.run(["taskset", "-cp", str(pid)], capture_output=True, text=True).stdout.strip().split(":")[-1].strip()
        tritonserver = subprocess.run(["pgrep", "-f", "-s", str(server.pid), "tritonserver"], capture_output=True, text=True).stdout.split()
        r.update(
            {
                "concurrency": a.concurrency,
                "maxBatchSize": a.max_batch,
                "batchWaitMs": a.wait_ms,
                "meanBatch": round((after[1] - before[1]) / executions, 1) if executions else 0,
                "startupS": round(startup_s, 2),
                "tritonVersion": server_version,
                "pytritonVersion": _version("nvidia-pytriton"),
                "client": f"tritonclient.http.aio {_version('tritonclient')}, binary tensors",
                "ortVersion": ready["ortVersion"],
                "replicaAffinity": affinity(ready["pid"]),
                "tritonserverAffinity": affinity(tritonserver[0]) if tritonserver else "?",
                "driverAffinity": ",".join(str(c) for c in sorted(os.sched_getaffinity(0))),
            }
        )
    finally:
        stop_server(server)
    print(json.dumps(r), flush=True)


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server half (PyTriton stops tritonserver); its whole session killed after 30 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def on_sigterm(*_) -> None:
    """The bench's timeout or teardown: stop the server half now (asyncio would not unwind to drive's finally)."""
    if SERVER is not None:
        stop_server(SERVER)
    os._exit(143)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    args = parse()
    if args.serve:
        serve(args)
    else:
        signal.signal(signal.SIGTERM, on_sigterm)
        asyncio.run(drive(args))
    sys.exit(0)
