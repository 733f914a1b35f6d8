#!/usr/bin/env python3
"""Turns bench/compare.sh's JSON lines into one Markdown table with ratios to the baselines
measured in the same run."""
import json
import sys

rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        rows[r["scenario"]] = r


def get(name, field):
    r = rows.get(name)
    return r.get(field) if r else None


def ratio(a, b, invert=False):
    if not a or not b:
        return "n/a"
    return f"{(b / a if invert else a / b):.2f}x"


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    return f"{v:,.1f}{unit}" if isinstance(v, float) and v < 100 else f"{v:,.0f}{unit}"


mlflow_many = next((k for k in rows if k.startswith("mlflow_alias_") and k != "mlflow_alias_10"), None)
lines = [
    "| operation | modelreg | p50 / p99 ms | server CPU ms/req | vs bare Postgres | vs MLflow |",
    "|---|---|---|---|---|---|",
]


def add(label, name, field, unit, bare=None, bare_field=None, mlflow=None, mlflow_field=None, lower_is_better=False):
    v = get(name, field)
    if v is None:
        return
    bare_v = get(bare, bare_field or field) if bare else None
    ml_v = get(mlflow, mlflow_field or field) if mlflow else None
    lat = f"{get(name, 'p50_ms')} / {get(name, 'p99_ms')}"
    cpu = get(name, "server_cpu_ms_per_request")
    lines.append(
        f"| {label} | {fmt(v, unit)} | {lat} | {cpu if cpu is not None else 'n/a'} | "
        f"{ratio(v, bare_v, lower_is_better) + ' of ' + fmt(bare_v, unit) if bare_v else 'n/a'} | "
        f"{ratio(v, ml_v, lower_is_better) + ' (' + fmt(ml_v, unit) + ')' if ml_v else 'n/a'} |"
    )


add("register version", "register", "per_second", "/s", "bare_tx", None, "mlflow_create_version")
add("  register, each client its own model", "register_8models", "per_second", "/s", "bare_tx", None, "mlflow_create_version")
add("promote, 10 versions", "promote10", "per_second", "/s", "bare_tx", None, "mlflow_alias_10")
add("promote, 10,000 versions", "promote10k", "per_second", "/s", "bare_tx", None, mlflow_many)
add("log metrics, 10k-point batches (points/s)", "ingest", "items_per_second", "", "bare_copy", None, "mlflow_log_batch_1000")
add("  same, vs bare unnest inserts", "ingest", "items_per_second", "", "bare_unnest")
add("get version", "get_version", "per_second", "/s", "bare_select", None, "mlflow_get_version")
add("get version, 1 client (keep-alive)", "get_version_1client", "per_second", "/s")
add("1M points -> 1,000 buckets (p50 ms; lower is better)", "buckets", "p50_ms", " ms", "bare_bucket", "p50_ms",
    "mlflow_history_sampled_1000", "p50_ms", lower_is_better=True)
add("  same, 1 client", "buckets_1client", "p50_ms", " ms", "bare_bucket", "p50_ms",
    "mlflow_history_sampled_1000", "p50_ms", lower_is_better=True)
add("100k raw points (p50 ms; lower is better)", "raw100k", "p50_ms", " ms", None, None, "mlflow_history_100k", "p50_ms",
    lower_is_better=True)
add("overlay of 5 versions, 1,000 buckets each", "overlay", "per_second", "/s")
add("best 10 of 1,000 versions by a metric (filter + order_by)", "best", "per_second", "/s")
add("do-nothing axum (HTTP ceiling)", "noop", "per_second", "/s")
add("register, 10 webhooks subscribed", "register_10webhooks", "per_second", "/s", "register_0webhooks")
add("promote, 10 webhooks subscribed", "promote10_10webhooks", "per_second", "/s", "promote10_0webhooks")
add("  register, outbox only (dispatcher off)", "register_10webhooks_outbox_only", "per_second", "/s",
    "register_0webhooks_outbox_only")
add("  promote, outbox only (dispatcher off)", "promote10_10webhooks_outbox_only", "per_second", "/s",
    "promote10_0webhooks_outbox_only")
add("webhook backlog drained to a local receiver (deliveries/s)", "webhook_drain", "per_second", "/s")
add("promote -> delivery at the receiver, 10 webhooks (ms)", "webhook_latency", "p50_ms", " ms")
print("\n".join(lines))
p10, p10k = get("promote10", "per_second"), get("promote10k", "per_second")
if p10 and p10k:
    print(f"\npromote with 10,000 versions / with 10: {p10k / p10:.2f}x")
if get("register", "per_second") and get("noop", "per_second"):
    print(f"register / HTTP ceiling: {get('register', 'per_second') / get('noop', 'per_second'):.3f}")
for op in ("register", "promote10"):
    for suffix, how in (("", "dispatcher delivering"), ("_outbox_only", "dispatcher off")):
        with_ = get(f"{op}_10webhooks{suffix}", "per_second")
        without = get(f"{op}_0webhooks{suffix}", "per_second")
        if with_ and without:
            print(f"{op} with 10 webhooks / without ({how}, alternating rounds): {with_ / without:.3f}")
print("\nratios: throughput figures are modelreg / baseline (higher is better); latency figures are "
      "baseline / modelreg (higher is better, i.e. how many times faster modelreg is)")
