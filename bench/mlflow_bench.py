#!/usr/bin/env python3
"""The MLflow side of bench/compare.sh: the operations modelreg is compared with, against an
MLflow tracking/registry server, printed as JSON lines in loadgen's format.

Only talks to --base (127.0.0.1). Every loop is bounded by --seconds and --max-requests.
Needs aiohttp (installed by compare.sh into the benchmark's virtualenv).
"""
import argparse
import asyncio
import json
import os
import re
import statistics
import time
import uuid

import aiohttp

API = "/api/2.0/mlflow"
CLK = os.sysconf("SC_CLK_TCK")


def server_cpu(pattern):
    """CPU seconds used so far by processes whose command line matches pattern."""
    total, rx, me = 0.0, re.compile(pattern), str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if not rx.search(f.read().replace(b"\0", b" ").decode(errors="replace")):
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
        except (OSError, IndexError):
            pass
    return total


async def call(s, base, method, path, **kw):
    async with s.request(method, base + API + path, **kw) as r:
        body = await r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path}: {r.status} {body[:200]!r}")
        return json.loads(body) if body else {}


async def closed_loop(name, clients, seconds, max_requests, op, items=1, cpu_pattern=None):
    issued, errors, lat = 0, 0, []
    deadline = time.perf_counter() + seconds
    cpu0 = server_cpu(cpu_pattern) if cpu_pattern else None

    async def worker(c):
        nonlocal issued, errors
        while True:
            i = issued
            issued += 1
            if i >= max_requests or time.perf_counter() >= deadline:
                return
            t = time.perf_counter()
            try:
                await op(c, i)
                lat.append(time.perf_counter() - t)
            except Exception:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(clients)))
    secs = time.perf_counter() - start
    lat.sort()
    n = len(lat)
    pct = lambda p: lat[min(int(n * p), n - 1)] * 1e3 if n else 0.0
    cpu = (server_cpu(cpu_pattern) - cpu0) if cpu_pattern else None
    print(json.dumps({
        "scenario": name, "clients": clients, "requests": n, "errors": errors,
        "seconds": round(secs, 2), "per_second": round(n / secs, 1),
        "items_per_second": round(n * items / secs), "p50_ms": round(pct(0.5), 3),
        "p99_ms": round(pct(0.99), 3),
        "server_cpu_ms_per_request": round(cpu * 1e3 / max(n, 1), 3) if cpu is not None else None,
    }), flush=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:5005")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--max-requests", type=int, default=100000)
    ap.add_argument("--many-versions", type=int, default=2000)
    ap.add_argument("--cpu-pattern", default=r"mlflow|uvicorn|gunicorn|huey")
    a = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
        b = a.base
        loop = lambda name, op, clients=a.clients, items=1, max_requests=a.max_requests: closed_loop(
            name, clients, a.seconds, max_requests, op, items, a.cpu_pattern)

        small, many = f"p10-{tag}", f"pmany-{tag}"
        for m in (small, many, f"reg-{tag}"):
            await call(s, b, "POST", "/registered-models/create", json={"name": m})
        for _ in range(10):
            await call(s, b, "POST", "/model-versions/create", json={"name": small, "source": "s3://b/m"})

        async def create(c, i):
            await call(s, b, "POST", "/model-versions/create", json={"name": f"reg-{tag}", "source": f"s3://b/{i}"})
        await loop("mlflow_create_version", create)

        async def get_version(c, i):
            await call(s, b, "GET", "/model-versions/get", params={"name": small, "version": "1"})
        await loop("mlflow_get_version", get_version)

        async def alias_on(model):
            async def op(c, i):
                await call(s, b, "POST", "/registered-models/alias",
                           json={"name": model, "alias": "champion", "version": str(i % 2 + 1)})
            return op
        await loop("mlflow_alias_10", await alias_on(small))

        sem = asyncio.Semaphore(8)
        async def one(i):
            async with sem:
                await call(s, b, "POST", "/model-versions/create", json={"name": many, "source": f"s3://b/{i}"})
        await asyncio.gather(*(one(i) for i in range(a.many_versions)))
        await loop(f"mlflow_alias_{a.many_versions}", await alias_on(many), max_requests=min(a.max_requests, 400))

        exp = await call(s, b, "POST", "/experiments/create", json={"name": f"bench-{tag}"})
        exp_id = exp["experiment_id"]
        runs = []
        for c in range(a.clients):
            r = await call(s, b, "POST", "/runs/create", json={"experiment_id": exp_id, "start_time": 0})
            runs.append(r["run"]["info"]["run_id"])
        steps = [0] * a.clients
        now = int(time.time() * 1000)

        async def log_batch(c, i):
            first = steps[c]
            steps[c] += 100
            metrics = [{"key": f"m{k}", "value": (first + j) * 0.5, "timestamp": now, "step": first + j}
                       for k in range(10) for j in range(100)]
            await call(s, b, "POST", "/runs/log-batch", json={"run_id": runs[c], "metrics": metrics})
        await loop("mlflow_log_batch_1000", log_batch, items=1000)

        # A 100k-point history for one key, read whole and sampled.
        hist = (await call(s, b, "POST", "/runs/create", json={"experiment_id": exp_id, "start_time": 0}))["run"]["info"]["run_id"]
        async def fill(k):
            async with sem:
                metrics = [{"key": "loss", "value": j * 0.5, "timestamp": now, "step": j} for j in range(k * 1000, k * 1000 + 1000)]
                await call(s, b, "POST", "/runs/log-batch", json={"run_id": hist, "metrics": metrics})
        await asyncio.gather(*(fill(k) for k in range(100)))

        async def full_history(c, i):
            out = await call(s, b, "GET", "/metrics/get-history", params={"run_id": hist, "metric_key": "loss", "max_results": "1000000"})
            assert len(out.get("metrics", [])) >= 100000, len(out.get("metrics", []))
        await loop("mlflow_history_100k", full_history, clients=1, items=100000, max_requests=5)

        async def sampled(c, i):
            await call(s, b, "GET", "/metrics/get-history-bulk-interval",
                       params={"run_ids": hist, "metric_key": "loss", "max_results": "1000"})
        await loop("mlflow_history_sampled_1000", sampled, clients=1, max_requests=20)


if __name__ == "__main__":
    asyncio.run(main())
