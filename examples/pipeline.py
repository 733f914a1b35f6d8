#!/usr/bin/env python3
"""A training pipeline talking to modelreg, with the Python standard library only.

Registers a version with its config (retry-safe with an Idempotency-Key), logs metrics in
batches as training goes, uploads the model file with its sha256, and finalizes the version.

    python3 examples/pipeline.py [--base http://127.0.0.1:8080] [--model demo-classifier]
    MODELREG_TOKEN=mrt_… python3 examples/pipeline.py      # when the server requires auth
"""
import argparse
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class Registry:
    def __init__(self, base, token=None):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, headers=None, raw=None, retries=3):
        """One request, retried on network errors and 503s: every call here is retry-safe."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"content-type": "application/json"} if body is not None else {}
        if self.token:
            h["authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        for attempt in range(retries + 1):
            req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    text = r.read()
                    return json.loads(text) if text else None
            except urllib.error.HTTPError as e:
                problem = e.read().decode(errors="replace")
                if e.code == 503 and attempt < retries:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                raise SystemExit(f"{method} {path} -> {e.code}: {problem}")
            except urllib.error.URLError as e:
                if attempt < retries:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                raise SystemExit(f"{method} {path}: {e.reason}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=os.environ.get("MODELREG_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--model", default="demo-classifier")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps-per-epoch", type=int, default=2000)
    a = ap.parse_args()
    reg = Registry(a.base, os.environ.get("MODELREG_TOKEN"))

    # 1. The model exists (PUT is create-or-update, safe on every run).
    reg.call("PUT", f"/api/v1/models/{a.model}", {"description": "example pipeline", "tags": {"team": "ml"}})

    # 2. Register this run's version. The key makes a retried request return the same version.
    config = {"optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999]}, "epochs": a.epochs, "batch_size": 64}
    run_id = str(uuid.uuid4())
    version = reg.call("POST", f"/api/v1/models/{a.model}/versions",
                       {"config": config, "tags": {"run": run_id}, "source": {"script": "examples/pipeline.py"}},
                       headers={"Idempotency-Key": run_id})
    v = version["version"]
    print(f"registered {a.model} version {v}")

    # 3. Train (simulated), logging metrics in batches; a retried batch never duplicates points.
    rng = random.Random(42)
    step, batch = 0, []
    for epoch in range(a.epochs):
        for _ in range(a.steps_per_epoch):
            loss = 2.0 * math.exp(-step / 3000) + rng.random() * 0.05
            batch.append({"key": "train/loss", "step": step, "value": loss})
            if len(batch) == 1000:
                reg.call("POST", f"/api/v1/models/{a.model}/versions/{v}/metrics", {"points": batch})
                batch = []
            step += 1
        accuracy = 0.6 + 0.35 * (1 - math.exp(-(epoch + 1) / 2))
        batch.append({"key": "val/accuracy", "step": step, "value": accuracy})
    if batch:
        reg.call("POST", f"/api/v1/models/{a.model}/versions/{v}/metrics", {"points": batch})
    print(f"logged {step} training steps")

    # 4. Upload the model file with its checksum; the server verifies it.
    weights = os.urandom(256 * 1024)
    digest = hashlib.sha256(weights).hexdigest()
    art = reg.call("PUT", f"/api/v1/models/{a.model}/versions/{v}/artifacts/model/weights.bin",
                   raw=weights, headers={"content-type": "application/octet-stream", "x-content-sha256": digest})
    assert art["sha256"] == digest, art

    # 5. Finalize: the version becomes immutable and can be promoted.
    final = reg.call("POST", f"/api/v1/models/{a.model}/versions/{v}/finalize")
    assert final["status"] == "ready", final
    detail = reg.call("GET", f"/api/v1/models/{a.model}/versions/{v}")
    summary = {m["key"]: round(m["last"], 4) for m in detail["metrics"]}
    print(f"version {v} is ready: artifacts={[x['path'] for x in detail['artifacts']]} metrics={summary}")

    # 6. Its digest pins exactly these files and this config; recompute it from what we sent.
    def canonical(obj):
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    sha = lambda text: "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    manifest = {"artifacts": [{"path": "model/weights.bin", "sha256": digest, "size": len(weights)}],
                "config": sha(canonical(config)), "format": "modelreg.manifest/1",
                "model": a.model, "version": v}
    assert final["digest"] == sha(canonical(manifest)) == detail["digest"], (final["digest"], manifest)
    print(f"version {v} digest {final['digest']} (recomputed here)")

    # 7. Which ready version of this model is best on validation accuracy so far?
    query = urllib.parse.urlencode({"filter": "status = ready and metric.val/accuracy > 0",
                                    "order_by": "metric.val/accuracy:desc", "limit": 1})
    best = reg.call("GET", f"/api/v1/models/{a.model}/versions?{query}")["items"]
    assert best, "the version just finalized has val/accuracy"
    print(f"best ready version by val/accuracy: {best[0]['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
