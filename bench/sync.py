"""Promote-to-switched latency of `modelreg sync`: the time from sending a promote to the
moment DEST/current points at the promoted version, read by polling the symlink every 0.5 ms.

Two series of N promotes each: versions not on disk yet (a download of their artifact, then
the switch) and versions already on disk (a promote back and forth between two kept
versions: the switch alone, as a rollback is).

    python3 bench/sync.py --base http://127.0.0.1:18098 --model m --dest DIR --new 2-51 --kept 50
"""

import argparse
import json
import os
import statistics
import time
import urllib.request


def promote(base, model, version):
    req = urllib.request.Request(
        f"{base}/api/v1/models/{model}/stages/production/promote",
        data=json.dumps({"version": version}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status


def switched(dest, version, limit=30.0):
    want = f"versions/{version}"
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        try:
            if os.readlink(os.path.join(dest, "current")) == want:
                return
        except OSError:
            pass
        time.sleep(0.0005)
    raise SystemExit(f"not switched to {version} within {limit} s")


def timed(base, model, dest, version):
    t0 = time.perf_counter()
    promote(base, model, version)
    switched(dest, version)
    return (time.perf_counter() - t0) * 1000


def summary(label, ms):
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    print(f"| {label} | {len(ms)} | {statistics.median(ms):.1f} ms | {p99:.1f} ms | {ms[-1]:.1f} ms |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--new", required=True, help="first-last: versions to promote in turn")
    ap.add_argument("--kept", type=int, default=50)
    a = ap.parse_args()
    first, last = (int(x) for x in a.new.split("-"))
    new = [timed(a.base, a.model, a.dest, v) for v in range(first, last + 1)]
    # The last two are on disk (--keep >= 2): back and forth between them.
    pair = [last - 1, last]
    kept = [timed(a.base, a.model, a.dest, pair[i % 2]) for i in range(a.kept)]
    summary("a new version (1 MiB download, sha256, switch)", new)
    summary("a version on disk (switch only, as a rollback)", kept)


if __name__ == "__main__":
    main()
