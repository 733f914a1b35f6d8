#!/usr/bin/env python3
"""MLflow's own Python client driving one tracking server: prints one JSON line per measure.

    python3 bench/mlflow_client.py --base http://127.0.0.1:8080 --label modelreg

- log_batch: one client, batches of 1,000 metrics (MLflow's per-request limit) for --seconds;
  points/s and p50/p99 per call.
- get_metric_history of 100,000 points (logged first with log_batch): the client's own paging,
  median and best of --reads reads, in ms.

bench/mlflow_compare.sh runs it against modelreg and against `mlflow server` on the same
Postgres, in one run.
"""

import argparse
import json
import statistics
import time
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


if __name__ == "__main__":
    main()
