#!/usr/bin/env python3
"""A deployer that reacts to promotions: a webhook receiver that checks every delivery's
signature with the `standardwebhooks` package (pip install standardwebhooks).

    MODELREG_WEBHOOK_SECRET=whsec_… python3 examples/webhook_receiver.py --port 9000

Deliveries are at least once: the same delivery can arrive again (after a timeout, or a
crash of the server that sent it) with the same `webhook-id`, so a receiver does its work
once per id. Per model, events arrive in order: a later one waits until the earlier one was
delivered (or failed for good).
"""
import argparse
import http.server
import json
import os

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def handle(event):
    """Where a deployer would roll out or roll back."""
    data = event["data"]
    print(f"{event['type']}: {data['model']} {data.get('stage')} -> v{data.get('to_version')}", flush=True)


class Receiver(http.server.BaseHTTPRequestHandler):
    webhook = None  # set by serve()
    seen = set()  # delivery ids done; a real deployer keeps these in its own store

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = self.webhook.verify(body, dict(self.headers))
        except WebhookVerificationError:
            self.send_response(401)  # not from the registry (or too old): refused
            self.end_headers()
            return
        delivery = self.headers["webhook-id"]
        if delivery not in self.seen:
            handle(event)
            self.seen.add(delivery)
        self.send_response(204)  # any 2xx: delivered; anything else is retried
        self.end_headers()

    def log_message(self, *args):
        pass


def serve(port, secret, handler=Receiver):
    handler.webhook = Webhook(secret)
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    serve(args.port, os.environ["MODELREG_WEBHOOK_SECRET"]).serve_forever()
