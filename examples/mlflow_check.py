#!/usr/bin/env python3
"""MLflow's own Python client (mlflow-skinny from PyPI) against modelreg: only the client's
public API, then the native API to check that the same things are there.

    MLFLOW_TRACKING_TOKEN=mrt_… python3 examples/mlflow_check.py --base http://127.0.0.1:8080 \
        --read-token mrt_…

With --mlflow-server the same client calls run against an MLflow server instead and only the
error codes are compared (that is how the expected codes below were checked: against
`mlflow server` 3.17 with its default SQLite store).

Covers experiments (the first part of the MLflow layer): set_experiment creating one,
get_experiment_by_name, get_experiment, search_experiments with a name filter, and the
errors MLflow's server gives for a duplicate, a missing experiment and a bad parameter.
"""

import argparse
import json
import os
import sys
import urllib.request
import uuid

import mlflow
from mlflow import MlflowClient
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

    # What modelreg adds: the name rule, scopes, and the model behind the experiment.
    assert error_code(lambda: client.create_experiment("Not A Model Name")) == "INVALID_PARAMETER_VALUE"
    model = native(args.base, f"/api/v1/models/{name}", os.environ.get("MLFLOW_TRACKING_TOKEN"))
    assert model["id"].replace("-", "") == exp.experiment_id, model
    events = native(args.base, f"/api/v1/events?model={name}", os.environ.get("MLFLOW_TRACKING_TOKEN"))
    created = [e for e in events["items"] if e["action"] == "model.created"]
    assert len(created) == 1, events
    if args.read_token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = args.read_token
        assert client.get_experiment(exp.experiment_id).name == name
        assert error_code(lambda: client.create_experiment(f"denied-{suffix}")) == "PERMISSION_DENIED"
        assert created[0]["actor"] != "anonymous", created
    print(f"mlflow client checks passed against {args.base}")


if __name__ == "__main__":
    sys.exit(main())
