#!/usr/bin/env python3
"""Calls a running Flotilla gateway with the real KServe v2 / Triton clients from PyPI and compares
every output with onnxruntime run in this process on the same .onnx file.

Clients x modes: tritonclient HTTP (JSON, binary - its default -, binary with gzip both ways and
model_version "1", JSON with deflate), tritonclient gRPC (raw contents), kserve's
InferenceRESTClient (JSON, binary) and InferenceGRPCClient (raw, typed contents). Then protocol
checks (metadata, readiness, versions, statistics, error texts). Prints a table, and on the last
line `RESULT <json>` for the test that runs this script (packages/gateway/src/real-clients.test.ts).
tritonclient and kserve each register the `inference.*` protobuf messages in the one default
descriptor pool, so they cannot share a process: the kserve part runs in a child (--family kserve).

Usage: real_clients.py --http HOST:PORT --grpc HOST:PORT --models-dir DIR [--models mlp,affine,fixed]
"""
import argparse
import asyncio
import json
import subprocess
import sys
import traceback

import numpy as np
import onnxruntime as ort

NP_TO_V2 = {np.float32: "FP32", np.float64: "FP64", np.int64: "INT64", np.int32: "INT32", np.bool_: "BOOL", np.uint8: "UINT8"}
ORT_TO_NP = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def model_inputs(sess, seed, nonfinite):
    """Seeded inputs for the model: dynamic dims get small sizes; float inputs may hold NaN and +-Inf."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else [3, 3, 4, 5][k] for k, d in enumerate(i.shape)]
        dtype = ORT_TO_NP[i.type]
        if np.issubdtype(dtype, np.floating):
            x = rng.standard_normal(shape).astype(dtype)
            if nonfinite and x.size >= 3:
                flat = x.reshape(-1)
                flat[0], flat[1], flat[2] = np.nan, np.inf, -np.inf
        else:
            x = rng.integers(-100, 100, size=shape).astype(dtype)
        feeds[i.name] = x
    return feeds


def compare(got, want):
    """(pass, max abs diff over finite values, why): NaN and +-Inf must sit where onnxruntime has them."""
    if got is None:
        return False, None, "no output"
    got = np.asarray(got)
    if got.shape != want.shape:
        return False, None, f"shape {list(got.shape)} != {list(want.shape)}"
    if got.dtype != want.dtype:
        return False, None, f"dtype {got.dtype} != {want.dtype}"
    if np.issubdtype(want.dtype, np.floating):
        same = [np.array_equal(f(got), f(want)) for f in (np.isnan, np.isposinf, np.isneginf)]
        if not all(same):
            return False, None, "NaN/Inf positions differ"
        finite = np.isfinite(want)
        d = float(np.max(np.abs(got[finite].astype(np.float64) - want[finite].astype(np.float64)))) if finite.any() else 0.0
    else:
        d = float(np.max(np.abs(got.astype(np.int64) - want.astype(np.int64)))) if want.size else 0.0
    return d <= 1e-5, d, "" if d <= 1e-5 else f"max abs diff {d}"


# ---------- one function per client x mode: inputs (name -> array) -> outputs (name -> array) ----------


def triton_http(url, json_mode, **kw):
    def run(model, feeds, outputs):
        import tritonclient.http as thttp

        c = thttp.InferenceServerClient(url)
        try:
            ins = []
            for name, x in feeds.items():
                i = thttp.InferInput(name, list(x.shape), NP_TO_V2[x.dtype.type])
                i.set_data_from_numpy(x, binary_data=not json_mode)
                ins.append(i)
            outs = [thttp.InferRequestedOutput(n, binary_data=False) for n in outputs] if json_mode else None
            r = c.infer(model, ins, outputs=outs, **kw)
            return {n: r.as_numpy(n) for n in outputs}
        finally:
            c.close()

    return run


def triton_grpc(url, **kw):
    def run(model, feeds, outputs):
        import tritonclient.grpc as tgrpc

        c = tgrpc.InferenceServerClient(url)
        try:
            ins = []
            for name, x in feeds.items():
                i = tgrpc.InferInput(name, list(x.shape), NP_TO_V2[x.dtype.type])
                i.set_data_from_numpy(x)
                ins.append(i)
            r = c.infer(model, ins, **kw)
            return {n: r.as_numpy(n) for n in outputs}
        finally:
            c.close()

    return run


def kserve_rest(url, binary):
    def run(model, feeds, outputs):
        from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
        from kserve.protocol.infer_type import RequestedOutput

        async def go():
            c = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
            try:
                ins = []
                for name, x in feeds.items():
                    i = InferInput(name, list(x.shape), NP_TO_V2[x.dtype.type])
                    i.set_data_from_numpy(x, binary_data=binary)
                    ins.append(i)
                req_outs = [RequestedOutput(n, parameters={"binary_data": True}) for n in outputs] if binary else None
                r = await c.infer(f"http://{url}", InferRequest(model, ins, request_outputs=req_outs), model_name=model)
                return {o.name: o.as_numpy() for o in r.outputs}
            finally:
                await c.close()

        return asyncio.run(go())

    return run


def kserve_grpc(url, raw):
    def run(model, feeds, outputs):
        from kserve import InferenceGRPCClient, InferInput, InferRequest

        async def go():
            c = InferenceGRPCClient(url, timeout=30)
            try:
                ins = []
                for name, x in feeds.items():
                    i = InferInput(name, list(x.shape), NP_TO_V2[x.dtype.type])
                    i.set_data_from_numpy(x, binary_data=raw)
                    ins.append(i)
                r = await c.infer(InferRequest(model, ins))
                return {o.name: o.as_numpy() for o in r.outputs}
            finally:
                await c.close()

        return asyncio.run(go())

    return run


def check(out, name, fn):
    try:
        ok, detail = fn()
    except Exception as e:  # noqa: BLE001 - a failing check is reported, not raised
        ok, detail = False, f"{type(e).__name__}: {e}"
    out.append((name, bool(ok), str(detail)))


def kserve_checks(http_url):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    out = []

    def kserve_error_text():
        async def go():
            c = InferenceRESTClient(RESTConfig(protocol="v2"))
            try:
                x = InferInput("x", [1], "FP32")
                x.set_data_from_numpy(np.zeros([1], np.float32), binary_data=False)
                await c.infer(f"http://{http_url}", InferRequest("no-such-model", [x]), model_name="no-such-model")
                return False, "no error"
            except Exception as e:  # noqa: BLE001
                return "UNKNOWN_MODEL" in str(e), str(e)
            finally:
                await c.close()

        return asyncio.run(go())

    check(out, "kserve REST keeps the error text (content-type application/json)", kserve_error_text)
    return out


def triton_checks(http_url, grpc_url, models, sessions, calls):
    """Protocol checks beyond inference: (name, pass, detail)."""
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp
    from tritonclient.utils import InferenceServerException

    out = []

    h = thttp.InferenceServerClient(http_url)
    g = tgrpc.InferenceServerClient(grpc_url)
    try:
        def server_meta():
            hm, gm = h.get_server_metadata(), g.get_server_metadata(as_json=True)
            want = {"binary_tensor_data", "statistics"}
            return set(hm["extensions"]) == want and set(gm["extensions"]) == want, f"http {hm['extensions']} grpc {gm['extensions']}"

        check(out, "server metadata lists binary_tensor_data, statistics (http, grpc)", server_meta)
        check(out, "server live and ready (http, grpc)", lambda: (h.is_server_live() and h.is_server_ready() and g.is_server_live() and g.is_server_ready(), ""))
        for m in models:
            sess = sessions[m]
            want_in = [(i.name, [d if isinstance(d, int) else -1 for d in i.shape]) for i in sess.get_inputs()]
            want_out = [(o.name, [d if isinstance(d, int) else -1 for d in o.shape]) for o in sess.get_outputs()]

            def meta(m=m, want_in=want_in, want_out=want_out):
                hm = h.get_model_metadata(m, model_version="1")
                gm = g.get_model_metadata(m, as_json=True)
                got_h = ([(t["name"], t["shape"]) for t in hm["inputs"]], [(t["name"], t["shape"]) for t in hm["outputs"]])
                got_g = (
                    [(t["name"], [int(d) for d in t["shape"]]) for t in gm["inputs"]],
                    [(t["name"], [int(d) for d in t["shape"]]) for t in gm["outputs"]],
                )
                ok = got_h == (want_in, want_out) and got_g == (want_in, want_out)
                return ok, f"http {got_h} grpc {got_g} want {(want_in, want_out)}"

            check(out, f"{m}: model metadata shapes (dynamic -1) match the ONNX file (http v1, grpc)", meta)
            check(
                out,
                f"{m}: ready at version 1, not at version 2 (http); grpc ready",
                lambda m=m: (h.is_model_ready(m, "1") and not h.is_model_ready(m, "2") and g.is_model_ready(m, "1"), ""),
            )

            def stats(m=m):
                s = h.get_inference_statistics(m)["model_stats"][0]
                ok = s["name"] == m and s["version"] == "1" and s["execution_count"] >= calls[m] and s["inference_stats"]["success"]["count"] >= calls[m]
                return ok, f"execution_count {s['execution_count']} (this script made {calls[m]} calls), inference_count {s['inference_count']}"

            check(out, f"{m}: statistics count this script's calls", stats)

        def unknown_version():
            try:
                g.get_model_metadata(models[0], model_version="7")
                return False, "no error"
            except InferenceServerException as e:
                return "NOT_FOUND" in str(e.status()) and "UNKNOWN_MODEL" in e.message(), f"{e.status()} {e.message()}"

        check(out, "grpc: unknown version is NOT_FOUND with a coded message", unknown_version)

    finally:
        h.close()
        g.close()
    return out


def run_modes(modes, models, sessions):
    rows, calls = [], {m: 0 for m in models}
    for client, mode, run, nonfinite in modes:
        for k, m in enumerate(models):
            sess = sessions[m]
            feeds = model_inputs(sess, seed=k + 1, nonfinite=nonfinite)
            names = [o.name for o in sess.get_outputs()]
            want = dict(zip(names, sess.run(names, feeds)))
            try:
                calls[m] += 1
                got = run(m, feeds, names)
                results = [compare(got.get(n), want[n]) for n in names]
                ok = all(r[0] for r in results)
                diff = max((r[1] for r in results if r[1] is not None), default=None)
                why = "; ".join(r[2] for r in results if r[2])
            except Exception as e:  # noqa: BLE001 - a failing client is a row, not a crash
                ok, diff, why = False, None, f"{type(e).__name__}: {e}".splitlines()[0][:300]
                traceback.print_exc(file=sys.stderr)
            rows.append({"client": client, "mode": mode, "model": m, "pass": ok, "maxAbsDiff": diff, "why": why})
    return rows, calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--models", default="mlp,affine,fixed")
    ap.add_argument("--family", choices=["all", "kserve"], default="all")
    a = ap.parse_args()
    argv = sys.argv[1:]
    del sys.argv[1:]  # kserve parses the command line when imported (its model server's flags)
    models = a.models.split(",")
    sessions = {m: ort.InferenceSession(f"{a.models_dir}/{m}.onnx", providers=["CPUExecutionProvider"]) for m in models}

    if a.family == "kserve":
        # kserve's REST client writes JSON with orjson, which turns NaN into null: finite inputs there.
        modes = [
            ("kserve-rest", "json", kserve_rest(a.http, False), False),
            ("kserve-rest", "binary", kserve_rest(a.http, True), True),
            ("kserve-grpc", "raw", kserve_grpc(a.grpc, True), True),
            ("kserve-grpc", "typed", kserve_grpc(a.grpc, False), True),
        ]
        rows, calls = run_modes(modes, models, sessions)
        results = kserve_checks(a.http)
        print("RESULT " + json.dumps({"rows": rows, "calls": calls, "checks": results}))
        return 0

    child = subprocess.run([sys.executable, __file__, *argv, "--family", "kserve"], capture_output=True, text=True, timeout=300)
    sys.stderr.write(child.stderr)
    line = next((l for l in child.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the kserve child printed no RESULT (exit {child.returncode}):\n{child.stdout}\n{child.stderr[-3000:]}")
    kserve = json.loads(line[len("RESULT ") :])

    modes = [
        ("tritonclient-http", "json", triton_http(a.http, True), True),
        ("tritonclient-http", "binary", triton_http(a.http, False), True),
        ("tritonclient-http", "binary gzip v1", triton_http(a.http, False, request_compression_algorithm="gzip", response_compression_algorithm="gzip", model_version="1"), True),
        ("tritonclient-http", "json deflate", triton_http(a.http, True, request_compression_algorithm="deflate", response_compression_algorithm="deflate"), True),
        ("tritonclient-grpc", "raw", triton_grpc(a.grpc), True),
        ("tritonclient-grpc", "raw v1", triton_grpc(a.grpc, model_version="1"), True),
    ]
    rows, calls = run_modes(modes, models, sessions)
    rows += kserve["rows"]
    for m, n in kserve["calls"].items():
        calls[m] += n
    results = triton_checks(a.http, a.grpc, models, sessions, calls) + [tuple(c) for c in kserve["checks"]]

    print(f"{'client':<18} {'mode':<15} {'model':<8} {'pass':<5} max abs diff")
    for r in rows:
        d = "-" if r["maxAbsDiff"] is None else f"{r['maxAbsDiff']:.3g}"
        print(f"{r['client']:<18} {r['mode']:<15} {r['model']:<8} {'yes' if r['pass'] else 'NO':<5} {d} {r['why']}")
    print()
    for name, ok, detail in results:
        print(f"{'pass' if ok else 'FAIL'}  {name}" + ("" if ok else f": {detail}"))
    print("RESULT " + json.dumps({"rows": rows, "checks": [{"name": n, "pass": ok, "detail": d} for n, ok, d in results]}))
    return 0 if all(r["pass"] for r in rows) and all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
