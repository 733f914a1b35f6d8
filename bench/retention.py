"""Erasure and retention at scale, over HTTP.

erase-setup: a model `erase-bench` with VERSIONS ready versions, each with a POINTS-point
series `loss` and ARTIFACTS small artifacts (1 KiB each), loaded by CLIENTS threads.

erase: erase every version of `erase-bench` (DELETE, one client, in order); the wall time
and each erase's latency.

bulk-setup: a model `retention-bench` with VERSIONS versions registered (pending; the
script that calls this ages them and makes them ready in the database).

    python3 bench/retention.py erase-setup --base URL --versions 1000 --points 1000 --artifacts 3
    python3 bench/retention.py erase --base URL --versions 1000
    python3 bench/retention.py bulk-setup --base URL --versions 100000 --clients 4
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


class Client:
    """One keep-alive connection."""

    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def call(self, method, path, body=None, raw=None, expect=(200, 201, 204)):
        headers = {}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        out = r.read()
        assert r.status in expect, (method, path, r.status, out[:300])
        return json.loads(out) if out else None


def parallel(base, n, clients, work):
    """Runs work(client, i) for i in 0..n over `clients` threads, each with its own
    connection; the seconds it took."""
    next_i = [0]
    lock = threading.Lock()

    def run():
        c = Client(base)
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n:
                return
            work(c, i)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def erase_setup(a):
    Client(a.base).call("PUT", "/api/v1/models/erase-bench", {})
    blob = b"x" * 1024
    pts = [{"key": "loss", "step": s, "value": 1.0 / (s + 1)} for s in range(a.points)]

    def one(c, _):
        v = c.call("POST", "/api/v1/models/erase-bench/versions", {})["version"]
        for k in range(a.artifacts):
            c.call("PUT", f"/api/v1/models/erase-bench/versions/{v}/artifacts/model/part-{k}.bin", raw=blob)
        c.call("POST", f"/api/v1/models/erase-bench/versions/{v}/metrics", {"points": pts})
        c.call("POST", f"/api/v1/models/erase-bench/versions/{v}/finalize")

    took = parallel(a.base, a.versions, a.clients, one)
    print(json.dumps({"versions": a.versions, "points_each": a.points, "artifacts_each": a.artifacts,
                      "load_seconds": round(took, 1)}))


def erase(a):
    c = Client(a.base)
    lat = []
    t0 = time.perf_counter()
    for v in range(1, a.versions + 1):
        s = time.perf_counter()
        r = c.call("DELETE", f"/api/v1/models/erase-bench/versions/{v}?reason=bench")
        lat.append(time.perf_counter() - s)
        assert r["status"] == "erased", r
    wall = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({"erased": a.versions, "wall_s": round(wall, 2),
                      "per_version_ms": {"mean": round(statistics.mean(lat) * 1e3, 2),
                                         "p50": round(lat[len(lat) // 2] * 1e3, 2),
                                         "p99": round(lat[int(len(lat) * 0.99)] * 1e3, 2)}}))


def bulk_setup(a):
    Client(a.base).call("PUT", "/api/v1/models/retention-bench", {})

    def one(c, _):
        c.call("POST", "/api/v1/models/retention-bench/versions", {})

    took = parallel(a.base, a.versions, a.clients, one)
    print(json.dumps({"versions": a.versions, "load_seconds": round(took, 1)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["erase-setup", "erase", "bulk-setup"])
    p.add_argument("--base", required=True)
    p.add_argument("--versions", type=int, default=1000)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--artifacts", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    a = p.parse_args()
    {"erase-setup": erase_setup, "erase": erase, "bulk-setup": bulk_setup}[a.what](a)


if __name__ == "__main__":
    main()
