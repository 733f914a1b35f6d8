#!/usr/bin/env python3
"""The web pages in a real headless browser (Debian's chromium and chromium-driver, driven by
selenium), against a modelreg server this script starts with auth on and fills with fixtures.

Checks each page renders its data, the filter box marks the error position the API returns, a
promote and a rollback from the page change the stage and show in its history, a stale page's
rollback is refused with a readable message, a read-only token sees no stage controls, a
model description holding HTML shows as text, the event feed follows new events, pages fit a
phone-width screen, and no page logs a console error. Screenshots go to --out.

    python3 tests/browser/ui_check.py --bin target/debug/modelreg --out target/ui-screens

With --timings FILE it also loads the large fixtures (a model with 1,000 versions, a
1,000,000-point series, 5 versions of 200,000 points) and writes, as JSON, how long each page
takes from navigation to drawn (the page's `modelreg:ready` performance mark): a benchmark
(bench/ui.sh runs it on a release build), not a pass/fail test.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

XSS = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


class Api:
    def __init__(self, base, token):
        self.base, self.token = base, token

    def call(self, method, path, body=None, expect=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        if expect is not None and status != expect:
            raise AssertionError(f"{method} {path}: {status} {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def version(self, model, config, tags=None, finalize=True):
        v = self.call("POST", f"/api/v1/models/{model}/versions", {"config": config, "tags": tags or {}}, 201)
        if finalize:
            self.call("POST", f"/api/v1/models/{model}/versions/{v['version']}/finalize", {}, 200)
        return v["version"]

    def series(self, model, version, key, n, f, batch=10_000):
        for start in range(0, n, batch):
            pts = [{"key": key, "step": s, "value": f(s)} for s in range(start, min(n, start + batch))]
            self.call("POST", f"/api/v1/models/{model}/versions/{version}/metrics", {"points": pts}, 200)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, work, db=None):
    db = db or f"sqlite://{work}/modelreg.db"
    tokens = {}
    for name, scopes in [("admin", ["admin"]), ("operator", ["read", "promote"]), ("viewer", ["read"])]:
        args = [binary, "token", "create", "--database-url", db, "--name", name]
        for s in scopes:
            args += ["--scope", s]
        tokens[name] = subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()
    port = free_port()
    env = dict(os.environ, MODELREG_LISTEN=f"127.0.0.1:{port}", MODELREG_DATABASE_URL=db, MODELREG_AUTH="required",
               MODELREG_ARTIFACTS_URL=f"file://{work}/artifacts", RUST_LOG="warn",
               # Retention policies are shown and previewed, never applied, in this check.
               MODELREG_RETENTION="false")
    log = open(f"{work}/server.log", "wb")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return proc, base, tokens
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"the server did not become ready; log: {work}/server.log")


def fixtures(api):
    api.call("POST", "/api/v1/models", {"name": "fraud", "description": XSS, "tags": {"team": "risk"}}, 201)
    api.call("PUT", "/api/v1/models/fraud/card", {
        "readme": f"# Fraud detector\n\nScores **card payments**; see [the runbook](https://runbooks.example/fraud).\n\n{XSS}\n\n- trained weekly\n- owned by risk\n\n```\nscore > 0.8 => review\n```",
        "license": "Apache-2.0", "owners": ["risk-team"], "limitations": "Not for ACH transfers."}, 200)
    for i in range(1, 6):
        v = api.version("fraud", {"optimizer": {"name": "adam", "lr": 0.01 / i}, "layers": [64, 32], "seed": 7},
                        {"dataset": "2026-11" if i < 4 else "2026-12"}, finalize=False)
        upload(api, "fraud", v, "model/weights.bin", b"weights of version %d" % v)
        age = "string" if i == 3 else "long"
        api.call("PUT", f"/api/v1/models/fraud/versions/{v}/schema", {
            "inputs": [{"name": "age", "type": age}, {"name": "amount", "type": "double"}],
            "outputs": [{"name": "score", "type": "double"}]}, 200)
        inputs = [{"kind": "dataset", "name": "transactions", "digest": f"sha256:{i:064x}", "context": "training"}]
        if i > 1:
            inputs.append({"kind": "version", "model": "fraud", "version": 1, "relation": "fine_tuned_from"})
        api.call("POST", f"/api/v1/models/fraud/versions/{v}/inputs", {"inputs": inputs}, 200)
        api.series("fraud", v, "val/acc", 3000, lambda s, i=i: 0.5 + 0.4 * (1 - 1 / (1 + s / 300)) + 0.01 * i + 0.02 * ((s * 7919) % 13) / 13)
        api.series("fraud", v, "loss", 25_000, lambda s, i=i: 2.0 / (1 + s / 1000) + 0.05 * i + (0.5 if s % 5000 == 4999 else 0))
        api.call("POST", f"/api/v1/models/fraud/versions/{v}/finalize", {}, 200)
    api.call("POST", "/api/v1/models/fraud/stages/production/promote", {"version": 1, "reason": "first"}, 200)
    api.call("PUT", "/api/v1/models/fraud/stages/staging/policy", {"schema_compatible": True}, 200)
    api.call("POST", "/api/v1/models/fraud/stages/staging/promote", {"version": 1}, 200)
    api.call("PUT", "/api/v1/models/fraud/stages/staging/guard", {"conditions": [
        {"metric": "val/acc", "aggregate": "last", "window": "PT1H", "op": "<", "threshold": 2}], "action": "notify"}, 200)
    api.call("POST", "/api/v1/models", {"name": "churn", "description": "churn model"}, 201)
    api.version("churn", {"depth": 4})
    signed_fixtures(api)


SIGNING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "signing")


def signed_fixtures(api):
    """`vision`: v1 carries the fixture's model_signing bundle (trusted key ci-2026), v2 the
    same files unsigned; production requires the signature."""
    with open(os.path.join(SIGNING, "key.pub")) as f:
        api.call("PUT", "/api/v1/trust/keys/ci-2026", {"public_key": f.read()}, 201)
    api.call("POST", "/api/v1/models", {"name": "vision"}, 201)
    for _ in range(2):
        v = api.version("vision", {}, finalize=False)
        for rel in ["config.json", "weights.bin", "tokenizer/vocab.txt"]:
            with open(os.path.join(SIGNING, "model", rel), "rb") as f:
                upload(api, "vision", v, f"model/{rel}", f.read())
        api.call("POST", f"/api/v1/models/vision/versions/{v}/finalize", {}, 200)
    with open(os.path.join(SIGNING, "model.sig")) as f:
        bundle = json.load(f)
    api.call("POST", "/api/v1/models/vision/versions/1/signatures", {"bundle": bundle, "path": "model/"}, 201)
    api.call("PUT", "/api/v1/models/vision/stages/production/policy",
             {"signed_by": {"keys": ["ci-2026"], "path": "model/"}}, 200)
    api.call("POST", "/api/v1/models/vision/stages/production/promote", {"version": 1}, 200)


def upload(api, model, version, path, body):
    req = urllib.request.Request(f"{api.base}/api/v1/models/{model}/versions/{version}/artifacts/{path}",
                                 data=body, method="PUT")
    req.add_header("authorization", f"Bearer {api.token}")
    urllib.request.urlopen(req).read()


def big_fixtures(api):
    api.call("POST", "/api/v1/models", {"name": "many", "description": "1,000 versions"}, 201)
    for i in range(1, 1001):
        v = api.version("many", {"lr": 1 / i}, finalize=False)
        api.call("POST", f"/api/v1/models/many/versions/{v}/metrics",
                 {"points": [{"key": "acc", "step": 0, "value": 0.5 + (i % 97) / 200}]}, 200)
    api.call("POST", "/api/v1/models", {"name": "long", "description": "long training runs"}, 201)
    config = {"optimizer": {"name": "adamw", "lr": 3e-4, "betas": [0.9, 0.95], "weight_decay": 0.1},
              "model": {"layers": 24, "d_model": 1024, "heads": 16}, "batch_size": 512, "steps": 1_000_000}
    v = api.version("long", config, {"dataset": "clicks-2026-11", "team": "ranking"}, finalize=False)
    upload(api, "long", v, "model.safetensors", os.urandom(256 * 1024))
    upload(api, "long", v, "tokenizer.json", b'{"vocab": 32000}')
    api.series("long", v, "train/loss", 1_000_000,
               lambda s: 3.0 / (1 + s / 20000) + 0.08 * ((s * 7919) % 101) / 101 + (1.5 if s % 250_000 == 4321 else 0))
    api.series("long", v, "val/auc", 1000, lambda s: 0.97 - 0.3 / (1 + s / 40))
    api.call("POST", f"/api/v1/models/long/versions/{v}/finalize", {}, 200)
    for i in range(5):
        cfg = dict(config, optimizer=dict(config["optimizer"], lr=[1e-4, 2e-4, 3e-4, 6e-4, 1e-3][i]))
        v = api.version("long", cfg, {"dataset": "clicks-2026-11", "sweep": "lr"}, finalize=False)
        api.series("long", v, "val/auc", 200_000,
                   lambda s, i=i: 0.6 + (0.3 + 0.015 * i) * (1 - 1 / (1 + s / (8000 + 9000 * i))) + 0.004 * ((s * 31) % 17) / 17)
        api.call("POST", f"/api/v1/models/long/versions/{v}/finalize", {}, 200)


class Browser:
    def __init__(self, base, out):
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"]:
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
        self.d = webdriver.Chrome(options=opts, service=service)
        self.base, self.out = base, out
        self.allowed = []  # console messages a check provoked on purpose

    def token(self, token):
        self.d.get(self.base + "/ui/")
        self.d.execute_script("sessionStorage.setItem('modelreg.token', arguments[0])", token)
        self.d.get_log("browser")  # the tokenless load's 401s

    def open(self, query, timeout=60):
        self.d.get(f"{self.base}/ui/{query}")
        return self.wait_ready(timeout)

    def wait_ready(self, timeout=60):
        WebDriverWait(self.d, timeout).until(
            lambda d: d.find_element(By.ID, "main").get_attribute("data-state") in ("ready", "error"))
        state = self.d.find_element(By.ID, "main").get_attribute("data-state")
        assert state == "ready", f"the page failed: {self.text()}"
        return self.d.execute_script(
            "const m = performance.getEntriesByName('modelreg:ready'); return m.length ? m[m.length - 1].startTime : null")

    def text(self):
        return self.d.find_element(By.ID, "main").text

    def all(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def one(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def until(self, f, what, timeout=15):
        try:
            WebDriverWait(self.d, timeout).until(lambda d: f())
        except Exception:
            raise AssertionError(f"timed out waiting for {what}; page: {self.text()[:1500]}")

    def shot(self, name):
        """The whole page: the window grows to the page's height for the picture."""
        size = self.d.get_window_size()
        height = self.d.execute_script("return document.documentElement.scrollHeight")
        self.d.set_window_size(size["width"], min(max(height + 140, size["height"]), 6000))
        self.d.save_screenshot(os.path.join(self.out, f"{name}.png"))
        self.d.set_window_size(size["width"], size["height"])

    def console_clean(self, page):
        bad = [e for e in self.d.get_log("browser") if e["level"] == "SEVERE"
               and not any(a in e["message"] for a in self.allowed)]
        assert not bad, f"console errors on {page}: {bad}"
        self.allowed = []

    def fits(self, page):
        over = self.d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert over <= 1, f"{page} overflows a phone-width screen by {over}px"


def check(b, api, tokens):
    b.token(tokens["operator"])

    # Models: the list, stage badges, and a description with HTML in it, shown as text.
    b.open("")
    b.until(lambda: "fraud" in b.text() and "churn" in b.text(), "the models list")
    assert "production: 1" in b.text(), b.text()
    assert XSS in b.text(), "the description is shown as text"
    assert not b.all("main img") and not b.all("main script"), "no element came from the description"
    assert b.d.title == "modelreg", f"a script from the description ran: {b.d.title}"
    b.shot("models")
    b.console_clean("models")

    # A model's versions with a metric column, ordered by it by clicking its header.
    b.open("?model=fraud&cols=val/acc")
    rows = b.all("table.versions tbody tr")
    assert len(rows) == 5, len(rows)
    assert all(r.find_elements(By.CSS_SELECTOR, "td.num") for r in rows)
    b.one("th button[title='Order by val/acc']").click()
    b.wait_ready()
    b.until(lambda: "order_by=metric.val%2Facc%3Adesc" in b.d.current_url or "order_by=metric.val/acc:desc" in b.d.current_url, "order in the URL")
    firsts = [r.find_elements(By.CSS_SELECTOR, "td")[1].text for r in b.all("table.versions tbody tr")]
    assert firsts[0] == "v5", firsts
    b.shot("versions")
    b.console_clean("versions")

    # The model card: markdown rendered as elements made from text, never parsed as HTML.
    card = b.one(".model-card")
    assert "About this model" in card.text and "license: Apache-2.0" in card.text, card.text
    assert [h.text for h in b.all(".readme h3")] == ["Fraud detector"], "the # heading"
    assert b.one(".readme strong").text == "card payments"
    assert b.one(".readme a").get_attribute("href") == "https://runbooks.example/fraud"
    assert len(b.all(".readme li")) == 2 and "score > 0.8" in b.one(".readme pre").text
    assert XSS in card.text, "the readme's HTML is shown as text"
    assert not b.all(".model-card img") and not b.all(".model-card script")
    assert b.d.title == "modelreg", f"a script from the readme ran: {b.d.title}"

    # The filter box marks the position of the error the API answers.
    bad = "metric.val/acc > 0.5 and tag.team ~ 1"
    want = api.call("GET", "/api/v1/models/fraud/versions?" + urllib.parse.urlencode({"filter": bad}), expect=400)["position"]
    b.allowed.append("400")
    b.open("?" + urllib.parse.urlencode({"model": "fraud", "filter": bad}))
    b.until(lambda: b.all(".filter-echo mark"), "the marked filter")
    echo = b.one(".filter-echo")
    before = b.d.execute_script("return arguments[0].firstChild.textContent", echo)
    assert len(before) == want and b.one(".filter-echo mark").text == bad[want], (before, want)
    assert b.one("input.filter").get_attribute("aria-invalid") == "true"
    b.shot("filter-error")
    b.console_clean("filter error")

    # Stages: promote v3 from the page, then roll back; both show in the history.
    b.open("?model=fraud&view=stages&stage=production")
    b.one("form.promote input[name=version]").send_keys("3")
    b.one("form.promote input[name=reason]").send_keys("better recall")
    b.one("form.promote button[type=submit]").click()
    b.until(lambda: "done" in b.text() and "holds v3" in b.text(), "the promote")
    assert api.call("GET", "/api/v1/models/fraud/stages/production", expect=200)["version"] == 3
    b.until(lambda: "promoted v1 → v3 by operator" in b.text() and "better recall" in b.text(), "the promote in history")
    b.shot("stages-promoted")
    b.one("#stage-production button.rollback").click()
    b.until(lambda: "holds v1" in b.text() and "rolled back v3 → v1" in b.text(), "the rollback in history")
    assert api.call("GET", "/api/v1/models/fraud/stages/production", expect=200)["version"] == 1
    # Someone else promotes behind the page's back: the page's rollback is refused, readably.
    api.call("POST", "/api/v1/models/fraud/stages/production/promote", {"version": 4}, 200)
    b.allowed.append("409")
    b.one("#stage-production button.rollback").click()
    b.until(lambda: "Someone changed this stage" in b.text(), "the stale rollback refused")
    assert api.call("GET", "/api/v1/models/fraud/stages/production", expect=200)["version"] == 4
    assert "Policy: schema compatible with the version on this stage" in b.one("#stage-staging").text
    # The staging guard: its state, each condition's verdict, the guarded metric's chart.
    guard = b.one("#stage-staging .guard")
    assert "Guard:" in guard.text and "last of val/acc over PT1H" in guard.text, guard.text
    assert guard.find_elements(By.CSS_SELECTOR, "canvas"), "the guarded metric's chart"
    b.shot("stages")
    b.console_clean("stages")

    # A version: config tree, tags, artifacts with their checksum, one chart per metric.
    b.open("?model=fraud&version=2")
    text = b.text()
    for want_text in ["optimizer", "adam", "dataset: 2026-11", "model/weights.bin", "val/acc", "loss"]:
        assert want_text in text, want_text
    sha = api.call("GET", "/api/v1/models/fraud/versions/2/artifacts", expect=200)["items"][0]["sha256"]
    assert sha in text
    assert len(b.all("figure.chart canvas")) == 2
    assert "buckets of 25,000 points" in text, text
    # What it was made from (a link to v1) and what it accepts.
    made_from = b.all("ul.inputs")[0]
    assert "fine tuned from" in made_from.text and "transactions" in made_from.text, made_from.text
    assert [a.text for a in made_from.find_elements(By.CSS_SELECTOR, "a")] == ["fraud v1"]
    assert "age" in b.one("table.schema").text and "Limitations" in text
    b.open("?model=fraud&version=1")
    b.until(lambda: "fraud v2" in b.text(), "v1's dependants")
    # Zoom: the range is in the URL and re-read at full resolution.
    b.open("?model=fraud&version=2&zkey=loss&zfrom=4900&zto=5100&smooth=0.6")
    b.until(lambda: "201 points" in b.text(), "the zoomed range at full resolution")
    b.shot("version")
    b.console_clean("version")

    # Compare: config diff, overlay of one metric, and its last value against version number.
    b.open("?model=fraud&view=compare&versions=1,3,5&metric=loss")
    text = b.text()
    assert "/optimizer/lr" in text and "dataset" in text
    legend = [e.text for e in b.all("figure.chart .legend-item")]
    assert legend[:3] == ["v1", "v3", "v5"], legend
    assert "5 versions" in text, text
    assert "breaking" in text and "input \"age\" was" in text, "the schema diff v1 → v3"
    b.all("figure.chart .legend-item")[1].click()
    assert b.all("figure.chart .legend-item")[1].get_attribute("aria-pressed") == "false"
    b.shot("compare")
    b.console_clean("compare")

    # Signed versions: a badge with the key on the version, in the list and in compare; the
    # stage view names the key its policy requires.
    b.open("?model=vision&version=1")
    assert b.one(".chip.signed").text == "signed · ci-2026", b.one(".chip.signed").text
    b.open("?model=vision&version=2")
    assert not b.all(".chip.signed"), "v2 is not signed"
    b.open("?model=vision")
    signed_rows = [r.find_elements(By.CSS_SELECTOR, "td")[1].text for r in b.all("table.versions tbody tr")
                   if r.find_elements(By.CSS_SELECTOR, ".chip.signed")]
    assert signed_rows == ["v1"], signed_rows
    b.open("?model=vision&view=compare&versions=1,2")
    cells = [c.text for c in b.all("table.diff tbody tr")[0].find_elements(By.CSS_SELECTOR, "td")]
    assert cells == ["Signed by", "signed · ci-2026", "unsigned"], cells
    b.console_clean("compare (signatures)")
    b.open("?model=vision&view=stages")
    assert "Policy: signed by ci-2026 over model/" in b.one("#stage-production").text, b.one("#stage-production").text
    b.shot("stages-signed")
    b.console_clean("stages (signed_by)")

    # The event feed follows new events.
    b.open("?view=events")
    assert "stage.promoted" in b.text()
    api.call("PATCH", "/api/v1/models/churn", {"description": "retrained weekly"}, 200)
    b.until(lambda: "model.updated" in b.text() and b.all("tr.new"), "the new event in the feed")
    b.shot("events")
    b.console_clean("events")

    # Storage: the model's usage, its retention policy and what the policy would do now.
    api.call("PUT", "/api/v1/models/fraud/retention", {"keep_last": 2, "archive_after": "PT1S"}, 200)
    time.sleep(1.1)
    b.open("?model=fraud&view=storage")
    b.until(lambda: "What the policy would do now" in b.text(), "the retention preview")
    text = b.text()
    assert "Artifacts" in text and "Metrics" in text and "points" in text, text
    assert "archive ready versions after PT1S" in text and "the last 2" in text, text
    assert b.all("tr.kept") and "live" in text, "live versions shown as kept"
    b.shot("storage")
    b.console_clean("storage")
    api.call("DELETE", "/api/v1/models/fraud/retention", None, 204)

    # A read-only token sees no stage controls.
    b.token(tokens["viewer"])
    b.open("?model=fraud&view=stages")
    assert not b.all("form.promote") and not b.all("button.rollback") and not b.all("button.clear")
    assert "may not change stages" in b.text()
    b.console_clean("stages (read-only)")

    # Phone width: the pages fit.
    b.d.set_window_size(390, 844)
    for name, query in [("phone-models", ""), ("phone-version", "?model=fraud&version=2"), ("phone-stages", "?model=fraud&view=stages")]:
        b.open(query)
        b.fits(name)
        b.shot(name)
    b.d.set_window_size(1280, 900)
    b.console_clean("phone width")


def timings(b, tokens, runs=5):
    b.token(tokens["admin"])
    views = {
        "floor: models page, 4 models (page start and one small API read)": "",
        "model page, 1,000 versions (first page, metric column)": "?model=many&cols=acc",
        "version page, 1,000,000-point series": "?model=long&version=1",
        "compare, overlay of 5 versions x 200,000 points": "?model=long&view=compare&versions=2,3,4,5,6&metric=val/auc",
    }
    out = {}
    for name, query in views.items():
        samples = [b.open(query) for _ in range(runs)]
        out[name] = {"median_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1),
                     "samples_ms": [round(s, 1) for s in samples]}
        print(f"  {name}: median {out[name]['median_ms']} ms, max {out[name]['max_ms']} ms")
    b.open("?model=long&version=1")
    b.shot("bench-version-1M")
    b.open("?model=long&view=compare&versions=2,3,4,5,6&metric=val/auc&smooth=0.8")
    b.shot("bench-compare-5x200k")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/modelreg")
    ap.add_argument("--out", default="target/ui-screens")
    ap.add_argument("--timings", help="load the large fixtures and write page timings (JSON) here")
    ap.add_argument("--database-url", help="an empty database for the server (default: a new SQLite file)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="modelreg-ui-")
    proc, base, tokens = start_server(os.path.abspath(args.bin), work, args.database_url)
    b = None
    try:
        api = Api(base, tokens["admin"])
        t0 = time.time()
        fixtures(api)
        print(f"fixtures loaded in {time.time() - t0:.1f} s")
        b = Browser(base, args.out)
        check(b, api, tokens)
        print(f"browser checks passed; screenshots in {args.out}")
        if args.timings:
            t0 = time.time()
            big_fixtures(api)
            print(f"large fixtures loaded in {time.time() - t0:.1f} s")
            result = {"browser": b.d.capabilities.get("browserVersion"),
                      "database": "postgres" if args.database_url else "sqlite", "views": timings(b, tokens)}
            with open(args.timings, "w") as f:
                json.dump(result, f, indent=2)
    except Exception:
        if b is not None:
            b.shot("failure")
        print(f"-- server log ({work}/server.log), last lines:", file=sys.stderr)
        with open(f"{work}/server.log", "rb") as f:
            sys.stderr.write(f.read()[-3000:].decode(errors="replace"))
        raise
    finally:
        if b is not None:
            b.d.quit()
        proc.terminate()
        proc.wait(timeout=10)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
