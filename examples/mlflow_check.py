#!/usr/bin/env python3
"""MLflow's own Python client (mlflow-skinny from PyPI) against modelreg: only the client's
public API, then the native API to check that the same things are there.

    MLFLOW_TRACKING_TOKEN=mrt_… python3 examples/mlflow_check.py --base http://127.0.0.1:8080 \
        --read-token mrt_…

With --mlflow-server the same client calls run against an MLflow server instead and only the
error codes are compared (that is how the expected codes below were checked: against
`mlflow server` 3.17 with its default SQLite store).

Covers experiments and runs: set_experiment creating one, get_experiment_by_name,
get_experiment, search_experiments with a name filter; a run with params, tags, 2,000 metric
steps by log_metric and 50,000 by log_batch, ended, read back by get_run,
get_metric_history and search_runs (a metric filter and order); the run registered as a
model version, an alias set, read and deleted (a stage promoted and cleared); and the errors MLflow's server gives for a duplicate, a missing
experiment and a bad parameter.
"""

import argparse
import json
import os
import time
import sys
import urllib.request
import uuid

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException


def error_code(call):
    try:
        call()
    except MlflowException as e:
        return e.error_code
    return None


def native(base, path, token):
    req = urllib.request.Request(base + path)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8080")
    ap.add_argument("--read-token", help="a read-only token: creating must be refused")
    ap.add_argument("--mlflow-server", action="store_true", help="the server is MLflow's own")
    args = ap.parse_args()
    mlflow.set_tracking_uri(args.base)
    client = MlflowClient()
    suffix = uuid.uuid4().hex[:8]
    name = f"mlflow-check-{suffix}"

    # set_experiment: get-by-name answers RESOURCE_DOES_NOT_EXIST, so the client creates it.
    exp = mlflow.set_experiment(name)
    assert exp.name == name, exp
    again = client.get_experiment_by_name(name)
    assert again.experiment_id == exp.experiment_id
    assert client.get_experiment(exp.experiment_id).name == name
    assert client.get_experiment_by_name(f"absent-{suffix}") is None
    other = client.create_experiment(f"other-{suffix}", tags={"team": "risk"})
    assert client.get_experiment(other).tags == {"team": "risk"}, client.get_experiment(other).tags
    found = client.search_experiments(filter_string=f"name LIKE 'mlflow-check-{suffix}%'")
    assert [e.name for e in found] == [name], [e.name for e in found]

    # Errors, with the codes MLflow's server gives for the same calls.
    codes = {
        "create a duplicate": error_code(lambda: client.create_experiment(name)),
        "get a missing id": error_code(lambda: client.get_experiment("1234567")),
        "search with a bad max_results": error_code(lambda: client.search_experiments(max_results=-1)),
    }
    want = {
        "create a duplicate": "RESOURCE_ALREADY_EXISTS",
        "get a missing id": "RESOURCE_DOES_NOT_EXIST",
        "search with a bad max_results": "INVALID_PARAMETER_VALUE",
    }
    print(json.dumps(codes))
    assert codes == want, codes
    if args.mlflow_server:
        print("MLflow's server gives the expected codes")
        return

    # A run: params, tags, metrics one by one and in batches, then ended.
    started = time.time()
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_params({"lr": 0.01, "optimizer": "adam"})
        mlflow.set_tag("dataset", "2026-11")
        for step in range(2000):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        now = int(time.time() * 1000)
        batch = [Metric("val/acc", 0.5 + step / 200_000, now + step, step) for step in range(50_000)]
        client.log_batch(run.info.run_id, metrics=batch)
        run_id = run.info.run_id
    print(f"run logged in {time.time() - started:.1f} s")
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED", got.info
    assert got.info.run_name == "train"
    assert got.info.experiment_id == exp.experiment_id
    assert got.data.params == {"lr": "0.01", "optimizer": "adam"}, got.data.params
    assert got.data.tags["dataset"] == "2026-11"
    assert got.data.metrics["loss"] == 1.0 / 2000, got.data.metrics
    history = client.get_metric_history(run_id, "val/acc")
    assert [m.step for m in history] == list(range(50_000)), len(history)
    assert history[-1].value == 0.5 + 49_999 / 200_000
    assert len(client.get_metric_history(run_id, "loss")) == 2000
    # search_runs: MLflow's filter and order, on the version list's own filter and order.
    found = client.search_runs([exp.experiment_id], filter_string="metrics.loss < 0.01 and params.optimizer = 'adam'",
                               order_by=["metrics.loss ASC"])
    assert [r.info.run_id for r in found] == [run_id], found
    assert client.search_runs([exp.experiment_id], filter_string="metrics.loss > 1") == []

    # The registry: the run registered into its own model is that version; an alias is a stage.
    mv = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    assert (mv.version, mv.status, mv.run_id) == ("1", "READY", run_id), mv
    client.set_registered_model_alias(name, "champion", mv.version)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    assert [v.version for v in client.get_latest_versions(name)] == ["1"]
    client.delete_registered_model_alias(name, "champion")
    assert error_code(lambda: client.get_model_version_by_alias(name, "champion")) == "RESOURCE_DOES_NOT_EXIST"

    # What modelreg adds: the name rule, scopes, and the model behind the experiment.
    assert error_code(lambda: client.create_experiment("Not A Model Name")) == "INVALID_PARAMETER_VALUE"
    model = native(args.base, f"/api/v1/models/{name}", os.environ.get("MLFLOW_TRACKING_TOKEN"))
    assert model["id"].replace("-", "") == exp.experiment_id, model
    events = native(args.base, f"/api/v1/events?model={name}", os.environ.get("MLFLOW_TRACKING_TOKEN"))
    created = [e for e in events["items"] if e["action"] == "model.created"]
    assert len(created) == 1, events
    # The run is version 1 of the model: ready, its params as config, its metrics as series.
    version = native(args.base, f"/api/v1/models/{name}/versions/1", os.environ.get("MLFLOW_TRACKING_TOKEN"))
    assert version["id"].replace("-", "") == run_id, version
    assert version["status"] == "ready", version
    assert version["config"] == {"lr": "0.01", "optimizer": "adam"}, version["config"]
    counts = {m["key"]: m["count"] for m in version["metrics"]}
    assert counts == {"loss": 2000, "val/acc": 50_000}, counts
    history = native(args.base, f"/api/v1/models/{name}/stages/champion/history",
                     os.environ.get("MLFLOW_TRACKING_TOKEN"))
    assert [e["action"] for e in history["items"]] == ["stage.cleared", "stage.promoted"], history
    buckets = native(args.base, f"/api/v1/models/{name}/versions/1/metrics/val/acc?max_points=100",
                     os.environ.get("MLFLOW_TRACKING_TOKEN"))
    assert 0 < len(buckets["buckets"]) <= 100, buckets
    if args.read_token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = args.read_token
        assert client.get_experiment(exp.experiment_id).name == name
        assert error_code(lambda: client.create_experiment(f"denied-{suffix}")) == "PERMISSION_DENIED"
        assert created[0]["actor"] != "anonymous", created
    print(f"mlflow client checks passed against {args.base}")


if __name__ == "__main__":
    sys.exit(main())
