"""Stage guards at scale, and the time from a breach to the rollback.

setup: a model with VERSIONS ready versions, each with a POINTS-point series `prod/latency`
(one point a second, ending now), and GUARDS stages each holding one of the versions with a
guard over a 10-minute window of it (a threshold nothing reaches: the pass judges, nothing
trips).

latency: a model whose production stage has a guard (period PERIOD s, action rollback);
TRIALS times: promote a new version, log a breaching batch for it, and time from the batch's
answer (its commit) to the stage holding the previous version again.

    python3 bench/guards.py setup --base URL --versions 10 --points 1000000 --guards 1000
    python3 bench/guards.py latency --base URL --period 5 --trials 20
"""

import argparse
import json
import statistics
import time
import urllib.request
from datetime import datetime, timezone


def call(base, method, path, body=None, expect=(200, 201)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.status in expect, (path, r.status)
        raw = r.read()
        return json.loads(raw) if raw else None


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def setup(a):
    call(a.base, "PUT", "/api/v1/models/guarded", {})
    end = time.time()
    start = end - a.points
    t0 = time.perf_counter()
    for _ in range(a.versions):
        v = call(a.base, "POST", "/api/v1/models/guarded/versions", {"finalize": True})["version"]
        for first in range(0, a.points, 10_000):
            pts = [{"key": "prod/latency", "step": s, "value": 50.0 + (s % 100) / 10,
                    "timestamp": iso(start + s)} for s in range(first, min(first + 10_000, a.points))]
            call(a.base, "POST", f"/api/v1/models/guarded/versions/{v}/metrics", {"points": pts})
    loaded = time.perf_counter() - t0
    guard = {"conditions": [{"metric": "prod/latency", "aggregate": "mean", "window": "PT10M",
                             "op": ">", "threshold": 1e9}], "min_points": 10, "action": "notify"}
    for i in range(a.guards):
        stage = f"s{i:04d}"
        call(a.base, "POST", f"/api/v1/models/guarded/stages/{stage}/promote", {"version": 1 + i % a.versions})
        call(a.base, "PUT", f"/api/v1/models/guarded/stages/{stage}/guard", guard)
    print(json.dumps({"versions": a.versions, "points_each": a.points, "guards": a.guards,
                      "load_seconds": round(loaded, 1)}))


def latency(a):
    call(a.base, "PUT", "/api/v1/models/lat", {})
    first = call(a.base, "POST", "/api/v1/models/lat/versions", {"finalize": True})["version"]
    call(a.base, "POST", "/api/v1/models/lat/stages/production/promote", {"version": first})
    call(a.base, "PUT", "/api/v1/models/lat/stages/production/guard", {
        "conditions": [{"metric": "prod/error_rate", "aggregate": "mean", "window": "PT1M",
                        "op": ">", "threshold": 0.05}],
        "min_points": 1, "period": f"PT{a.period}S", "action": "rollback"})
    took = []
    for _ in range(a.trials):
        v = call(a.base, "POST", "/api/v1/models/lat/versions", {"finalize": True})["version"]
        previous = call(a.base, "GET", "/api/v1/models/lat/stages/production")["version"]
        call(a.base, "POST", "/api/v1/models/lat/stages/production/promote", {"version": v})
        # Somewhere in the guard's period, as a real breach would be.
        time.sleep((len(took) * 0.37) % a.period)
        pts = [{"key": "prod/error_rate", "step": s, "value": 0.5, "timestamp": iso(time.time())}
               for s in range(5)]
        call(a.base, "POST", f"/api/v1/models/lat/versions/{v}/metrics", {"points": pts})
        t0 = time.perf_counter()
        while call(a.base, "GET", "/api/v1/models/lat/stages/production")["version"] != previous:
            time.sleep(0.005)
            if time.perf_counter() - t0 > a.period + 30:
                raise SystemExit("no rollback")
        took.append(time.perf_counter() - t0)
    took.sort()
    print(json.dumps({"period_s": a.period, "trials": len(took),
                      "p50_s": round(statistics.median(took), 3), "max_s": round(took[-1], 3),
                      "min_s": round(took[0], 3), "goal_s": a.period + 1}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["setup", "latency"])
    ap.add_argument("--base", required=True)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--guards", type=int, default=1000)
    ap.add_argument("--period", type=int, default=5)
    ap.add_argument("--trials", type=int, default=20)
    a = ap.parse_args()
    (setup if a.what == "setup" else latency)(a)


if __name__ == "__main__":
    main()
