"""Idle event streams: the server's memory with N streams open, and how long one event takes
to reach all of them. Opens N `GET /api/v1/events/stream` connections (raw sockets, no
reading beyond the response head until the event), reads the server's resident memory from
/proc before and after, then creates one model and times its event's arrival on every stream.

    python3 bench/streams.py --base http://127.0.0.1:18099 --pid PID --streams 1000
"""

import argparse
import asyncio
import json
import time
import urllib.request
from urllib.parse import urlparse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_stream(host, port):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/v1/events/stream HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head[:200]
    return reader, writer


async def wait_event(reader, name):
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError("the stream ended")
        buffer += chunk
        if name.encode() in buffer:
            return time.perf_counter()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--streams", type=int, default=1000)
    a = ap.parse_args()
    url = urlparse(a.base)
    before = rss_kib(a.pid)
    streams = []
    for i in range(0, a.streams, 100):
        streams += await asyncio.gather(*(open_stream(url.hostname, url.port) for _ in range(min(100, a.streams - i))))
    await asyncio.sleep(2)
    opened = rss_kib(a.pid)
    name = f"fanout-{int(time.time())}"
    waits = [asyncio.create_task(wait_event(r, name)) for r, _ in streams]
    req = urllib.request.Request(f"{a.base}/api/v1/models", data=json.dumps({"name": name}).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    sent = time.perf_counter()
    urllib.request.urlopen(req).read()
    arrived = sorted(t - sent for t in await asyncio.gather(*waits))
    after = rss_kib(a.pid)
    for _, w in streams:
        w.close()
    print(json.dumps({
        "streams": a.streams,
        "rss_before_mib": round(before / 1024, 1),
        "rss_open_mib": round(opened / 1024, 1),
        "per_stream_kib": round((opened - before) / a.streams, 1),
        "rss_after_event_mib": round(after / 1024, 1),
        "event_to_first_ms": round(arrived[0] * 1000, 1),
        "event_to_median_ms": round(arrived[len(arrived) // 2] * 1000, 1),
        "event_to_all_ms": round(arrived[-1] * 1000, 1),
    }))


asyncio.run(main())
