#!/usr/bin/env python3
"""MLflow's own Python client driving one tracking server: prints one JSON line per measure.

    python3 bench/mlflow_client.py --base http://127.0.0.1:8080 --label modelreg

- log_batch: one client, batches of 1,000 metrics (MLflow's per-request limit) for --seconds;
  points/s and p50/p99 per call.
- get_metric_history of 100,000 points (logged first with log_batch): the client's own paging,
  median and best of --reads reads, in ms.
- create_model_version + set_registered_model_alias, one pair at a time for --seconds.
- mlflow.register_model("runs:/<run>/model") + set_registered_model_alias, one pair at a time
  for --seconds: the run holds a model directory (an MLmodel file and 100 KB of weights)
  logged through the server's artifact proxy.
- The log and history measures over plain HTTP (the request bodies built once, the answers not parsed): what
  the server costs without the client's own protobuf work, which bounds the client figures
  (bench/mlflow_compare.sh also prints that floor).

bench/mlflow_compare.sh runs it against modelreg and against `mlflow server` on the same
Postgres, in one run.
"""

import argparse
import json
import os
import tempfile
import statistics
import time
import urllib.request
import uuid

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reads", type=int, default=5)
    args = ap.parse_args()
    mlflow.set_tracking_uri(args.base)
    client = MlflowClient()
    exp = client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")

    # log_batch throughput.
    run = client.create_run(exp)
    rid = run.info.run_id
    now = int(time.time() * 1000)
    step = 0
    latencies = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        batch = [Metric("loss", 1.0 / (step + i + 1), now, step + i) for i in range(1000)]
        t = time.perf_counter()
        client.log_batch(rid, metrics=batch)
        latencies.append(time.perf_counter() - t)
        step += 1000
    elapsed = sum(latencies)
    print(json.dumps({
        "server": args.label, "measure": "log_batch", "points": step,
        "points_per_second": round(step / elapsed), "calls": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }))

    # get_metric_history of 100,000 points.
    run = client.create_run(exp)
    rid = run.info.run_id
    for start in range(0, 100_000, 1000):
        client.log_batch(rid, metrics=[Metric("acc", 0.5 + s / 1e6, now, s) for s in range(start, start + 1000)])
    samples = []
    for _ in range(args.reads):
        t = time.perf_counter()
        history = client.get_metric_history(rid, "acc")
        samples.append(time.perf_counter() - t)
        assert len(history) == 100_000, len(history)
    print(json.dumps({
        "server": args.label, "measure": "get_metric_history_100k",
        "median_ms": round(statistics.median(samples) * 1000, 1),
        "best_ms": round(min(samples) * 1000, 1),
    }))

    # Registry: a new model version and an alias moved onto it, one pair at a time.
    model = f"bench-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    pairs = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        mv = client.create_model_version(model, source="s3://bench/model")
        client.set_registered_model_alias(model, "champion", mv.version)
        pairs.append(time.perf_counter() - t)
    print(json.dumps({
        "server": args.label, "measure": "create_model_version_and_alias",
        "per_second": round(len(pairs) / sum(pairs), 1),
        "p50_ms": round(percentile(pairs, 0.5) * 1000, 2),
    }))

    # Registry from a run, as training code does it: register_model + alias.
    with mlflow.start_run(experiment_id=exp) as model_run:
        folder = tempfile.mkdtemp()
        with open(os.path.join(folder, "MLmodel"), "w") as f:
            f.write("artifact_path: model\nflavors:\n  python_function: {}\n")
        with open(os.path.join(folder, "weights.bin"), "wb") as f:
            f.write(os.urandom(100_000))
        mlflow.log_artifacts(folder, artifact_path="model")
    registered = f"bench-registered-{uuid.uuid4().hex[:8]}"
    pairs = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        mv = mlflow.register_model(f"runs:/{model_run.info.run_id}/model", registered)
        client.set_registered_model_alias(registered, "champion", mv.version)
        pairs.append(time.perf_counter() - t)
    print(json.dumps({
        "server": args.label, "measure": "register_model_and_alias",
        "per_second": round(len(pairs) / sum(pairs), 1), "pairs": len(pairs),
        "p50_ms": round(percentile(pairs, 0.5) * 1000, 2),
    }))

    # Plain HTTP: the server's side only.
    def call(method, path, body=None):
        req = urllib.request.Request(args.base + path, data=body, method=method)
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.read()

    raw_run = client.create_run(exp).info.run_id
    bodies = [
        json.dumps({"run_id": raw_run, "metrics": [
            {"key": "raw", "value": 1.0 / (s + 1), "timestamp": now, "step": s}
            for s in range(start, start + 1000)]}).encode()
        for start in range(0, 200_000, 1000)
    ]
    latencies = []
    deadline = time.perf_counter() + args.seconds
    for body in bodies:
        if time.perf_counter() >= deadline:
            break
        t = time.perf_counter()
        call("POST", "/api/2.0/mlflow/runs/log-batch", body)
        latencies.append(time.perf_counter() - t)
    print(json.dumps({
        "server": args.label, "measure": "log_batch_http", "points": 1000 * len(latencies),
        "points_per_second": round(1000 * len(latencies) / sum(latencies)),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
    }))
    samples = []
    for _ in range(args.reads):
        t = time.perf_counter()
        token, n = "", 0
        while True:
            q = f"run_id={rid}&metric_key=acc" + (f"&page_token={token}" if token else "")
            page = json.loads(call("GET", f"/api/2.0/mlflow/metrics/get-history?{q}"))
            n += len(page.get("metrics", []))
            token = page.get("next_page_token")
            if not token:
                break
        samples.append(time.perf_counter() - t)
        assert n == 100_000, n
    print(json.dumps({
        "server": args.label, "measure": "get_metric_history_100k_http",
        "median_ms": round(statistics.median(samples) * 1000, 1),
    }))


if __name__ == "__main__":
    main()
