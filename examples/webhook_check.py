#!/usr/bin/env python3
"""Checks webhook signatures end to end with an independent implementation: runs the
receiver of webhook_receiver.py (which verifies with the `standardwebhooks` package) against
a running server started with MODELREG_WEBHOOK_ALLOW_PRIVATE=true, subscribes it, promotes,
rotates the secret and promotes again. Exits non-zero on any failure.

    python3 examples/webhook_check.py --base http://127.0.0.1:8080
"""
import argparse
import json
import sys
import threading
import time
import urllib.request

from standardwebhooks.webhooks import Webhook

import webhook_receiver

received = []


class Recording(webhook_receiver.Receiver):
    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        body = self.rfile.read(length)
        received.append((dict(self.headers), body))
        # Verify as the example does (a second read of the same bytes).
        self.rfile = __import__("io").BytesIO(body)
        super().do_POST()


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        text = r.read()
        return json.loads(text) if text else None


def wait_for(n, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline and len(received) < n:
        time.sleep(0.05)
    if len(received) < n:
        sys.exit(f"expected {n} deliveries, got {len(received)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8080")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    model = f"webhook-check-{int(time.time() * 1000)}"

    server = webhook_receiver.serve(0, "whsec_" + "A" * 44, Recording)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = call(base, "POST", "/api/v1/webhooks",
                {"url": f"http://127.0.0.1:{port}/hook", "events": ["stage.*"], "models": [model]})
    old = hook["secret"]
    Recording.webhook = Webhook(old)
    call(base, "POST", "/api/v1/models", {"name": model})
    for _ in range(2):
        call(base, "POST", f"/api/v1/models/{model}/versions", {"finalize": True})
    call(base, "POST", f"/api/v1/models/{model}/stages/production/promote", {"version": 1})
    wait_for(1)
    headers, body = received[0]
    event = Webhook(old).verify(body, headers)  # raises if the signature does not verify
    assert event["type"] == "stage.promoted" and event["data"]["to_version"] == 1, event

    new = call(base, "POST", f"/api/v1/webhooks/{hook['id']}/rotate-secret")["secret"]
    call(base, "POST", f"/api/v1/models/{model}/stages/production/promote", {"version": 2})
    wait_for(2)
    headers, body = received[1]
    assert len(headers["webhook-signature"].split(" ")) == 2, headers
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
    log = call(base, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries")["items"]
    assert [d["status"] for d in log] == ["succeeded", "succeeded"], log
    assert all(d["last_status_code"] == 204 for d in log), log
    call(base, "DELETE", f"/api/v1/webhooks/{hook['id']}")
    print("webhook_check: 2 deliveries verified by standardwebhooks (one signed by two secrets)")


if __name__ == "__main__":
    main()
