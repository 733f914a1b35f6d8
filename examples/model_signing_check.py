#!/usr/bin/env python3
"""Checks signed versions end to end with the real OpenSSF `model-signing` package: makes a
signing key, signs a model directory with `model_signing sign key`, uploads the files to a
running server, posts the bundle and has it verified; a bundle by an untrusted key, over a
directory with one file changed, one added or one missing, a malformed bundle and a payload
of another type are each refused with their 4xx code; the stored bundle, downloaded with the
files, verifies with `model_signing verify key`; a stage whose policy has `signed_by`
refuses the unsigned version and takes the signed one; and `modelreg download --public-key`
(with --cli) checks the files it fetches against the signature. Exits non-zero on any
failure.

    python examples/model_signing_check.py --base http://127.0.0.1:8080 [--token ADMIN] [--cli target/debug/modelreg]

Needs `pip install model-signing pyopenssl` (and the `cryptography` package it brings).
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

BIN = Path(sys.executable).parent


class Api:
    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, raw=None, parse=True):
        """(status, parsed JSON or the bytes) of a call; never raises on a 4xx."""
        headers = {}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                status, text, kind = r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as e:
            status, text, kind = e.code, e.read(), e.headers.get("content-type", "")
        if parse and "json" in kind:
            return status, json.loads(text) if text else None
        return status, text

    def ok(self, method, path, body=None, raw=None, expect=(200, 201), parse=True):
        status, answer = self.call(method, path, body, raw, parse)
        if status not in expect:
            sys.exit(f"{method} {path}: {status} {answer}")
        return answer


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok  {what}")


def refused(api, status, code, what, method, path, body):
    got, answer = api.call(method, path, body)
    code_got = answer.get("code") if isinstance(answer, dict) else None
    check(got == status and code_got == code,
          f"{what}: {status} {code} (got {got} {code_got}: {answer.get('detail') if isinstance(answer, dict) else answer})")
    return answer


def make_key(folder, name):
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def write_model(folder, weights=b"", extra=None, without=None):
    files = {
        "config.json": b'{"layers": 4, "hidden": 64}\n',
        "weights.bin": os.urandom(1 << 16) if not weights else weights,
        "tokenizer/vocab.txt": b"hello\nworld\n",
    }
    files.update(extra or {})
    if without:
        files.pop(without)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return files


def sign(private, model_dir, signature):
    subprocess.run([str(BIN / "model_signing"), "sign", "key", "--private_key", str(private),
                    "--signature", str(signature), str(model_dir)], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(signature.read_text())


def version_with(api, model, files, readme=True):
    v = api.ok("POST", f"/api/v1/models/{model}/versions", {})["version"]
    for rel, data in files.items():
        api.ok("PUT", f"/api/v1/models/{model}/versions/{v}/artifacts/model/{rel}", raw=data)
    if readme:
        api.ok("PUT", f"/api/v1/models/{model}/versions/{v}/artifacts/README.md", raw=b"# fraud\n")
    api.ok("POST", f"/api/v1/models/{model}/versions/{v}/finalize")
    return v


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8080")
    parser.add_argument("--token", help="an admin token, when the server requires one")
    parser.add_argument("--cli", help="the modelreg binary, to check `download --public-key`")
    args = parser.parse_args()
    api = Api(args.base, args.token or os.environ.get("MODELREG_TOKEN"))
    stamp = int(time.time() * 1000)
    model = f"signing-check-{stamp}"
    trusted = f"ci-live-{stamp}"
    work = Path(tempfile.mkdtemp(prefix="model-signing-check-"))

    private, public = make_key(work, "ci")
    stranger, _ = make_key(work, "stranger")
    api.ok("PUT", f"/api/v1/trust/keys/{trusted}",
           {"public_key": public.read_text(), "models": [model]})
    api.ok("POST", "/api/v1/models", {"name": model})
    sigs = f"/api/v1/models/{model}/versions/{{}}/signatures"

    model_dir = work / "model"
    files = write_model(model_dir)
    bundle = sign(private, model_dir, work / "model.sig")
    signed = version_with(api, model, files)
    answer = api.ok("POST", sigs.format(signed), {"bundle": bundle, "path": "model/"}, expect=(201,))
    check(answer["key"] == trusted and answer["verified"] is True and answer["files"] == 3,
          f"a bundle model_signing wrote is verified by {trusted} over 3 files")

    # An untrusted key.
    stranger_bundle = sign(stranger, model_dir, work / "stranger.sig")
    refused(api, 422, "untrusted_key", "a bundle by a key nobody trusts", "POST",
            sigs.format(signed), {"bundle": stranger_bundle, "path": "model/"})
    # One file changed, one added, one missing: the same bundle over other files.
    changed = version_with(api, model, {**files, "weights.bin": os.urandom(1 << 16)})
    answer = refused(api, 422, "signature_mismatch", "one file changed", "POST",
                     sigs.format(changed), {"bundle": bundle, "path": "model/"})
    check("model/weights.bin" in answer["detail"], "the changed file is named")
    added = version_with(api, model, {**files, "extra.txt": b"not signed\n"})
    answer = refused(api, 422, "signature_mismatch", "one file added", "POST",
                     sigs.format(added), {"bundle": bundle, "path": "model/"})
    check("model/extra.txt" in answer["detail"], "the added file is named")
    missing = version_with(api, model, {k: v for k, v in files.items() if k != "tokenizer/vocab.txt"})
    answer = refused(api, 422, "signature_mismatch", "one file missing", "POST",
                     sigs.format(missing), {"bundle": bundle, "path": "model/"})
    check("model/tokenizer/vocab.txt" in answer["detail"], "the missing file is named")
    # Malformed, and a payload of another type.
    refused(api, 422, "signature_invalid", "a malformed bundle", "POST", sigs.format(signed),
            {"bundle": {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}, "path": "model/"})
    other_type = json.loads(json.dumps(bundle))
    other_type["dsseEnvelope"]["payloadType"] = "application/vnd.example+json"
    refused(api, 422, "signature_invalid", "a payload of another type", "POST",
            sigs.format(signed), {"bundle": other_type, "path": "model/"})
    tampered = json.loads(json.dumps(bundle))
    statement = json.loads(base64.b64decode(tampered["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    tampered["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    refused(api, 422, "signature_invalid", "a payload changed after signing", "POST",
            sigs.format(signed), {"bundle": tampered, "path": "model/"})

    # The stored bundle and the files, downloaded, verify with model_signing itself.
    stored = api.ok("GET", sigs.format(signed))["items"]
    check(len(stored) == 1 and stored[0]["bundle"] == bundle, "the bundle is kept as posted")
    fetched = work / "fetched"
    listing = api.ok("GET", f"/api/v1/models/{model}/versions/{signed}/artifacts")["items"]
    for a in listing:
        if not a["path"].startswith("model/"):
            continue
        data = api.ok("GET", f"/api/v1/models/{model}/versions/{signed}/artifacts/{a['path']}",
                      parse=False)
        target = fetched / a["path"][len("model/"):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (work / "stored.sig").write_text(json.dumps(stored[0]["bundle"]))
    verify = subprocess.run([str(BIN / "model_signing"), "verify", "key", "--public_key", str(public),
                             "--signature", str(work / "stored.sig"), str(fetched)],
                            capture_output=True, text=True)
    check(verify.returncode == 0,
          f"model_signing verify key accepts the stored bundle over the downloaded files {verify.stderr.strip()[-200:]}")

    # A stage that requires the signature.
    policy = f"/api/v1/models/{model}/stages/production/policy"
    api.ok("PUT", policy, {"signed_by": {"keys": [trusted], "path": "model/"}})
    unsigned = version_with(api, model, files)
    answer = refused(api, 409, "policy_violation", "signed_by refuses the unsigned version", "POST",
                     f"/api/v1/models/{model}/stages/production/promote", {"version": unsigned})
    failing = [c for c in answer.get("checks", []) if c["check"] == "signed_by"]
    check(failing and failing[0]["ok"] is False, "the signed_by check says why")
    answer = api.ok("POST", f"/api/v1/models/{model}/stages/production/promote", {"version": signed})
    check(answer["version"] == signed, "signed_by takes the signed version")

    if args.cli:
        env = {**os.environ, "MODELREG_URL": api.base, "HOME": str(work)}
        if api.token:
            env["MODELREG_TOKEN"] = api.token
        out = subprocess.run([args.cli, "download", f"{model}@production", str(work / "deployed"),
                              "--public-key", str(public), "--json"],
                             capture_output=True, text=True, env=env)
        report = json.loads(out.stdout) if out.returncode == 0 else {}
        check(out.returncode == 0 and report.get("signature", {}).get("verified_here") is True,
              f"modelreg download --public-key verifies the signature and the files {out.stderr.strip()[-200:]}")
        _, stranger_public = make_key(work, "other")
        out = subprocess.run([args.cli, "download", f"{model}@production", str(work / "refused"),
                              "--public-key", str(stranger_public)],
                             capture_output=True, text=True, env=env)
        check(out.returncode == 1 and "signature_required" in out.stderr,
              "modelreg download refuses a signature the given key did not make")

    api.ok("DELETE", f"/api/v1/trust/keys/{trusted}", expect=(204,))
    print("model-signing check passed")


if __name__ == "__main__":
    main()
