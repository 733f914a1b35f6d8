#!/usr/bin/env python3
"""MLflow's own Python client (the full mlflow package, with scikit-learn) against modelreg: only the client's
public API, then the native API to check that the same things are there.

    MLFLOW_TRACKING_TOKEN=mrt_… python3 examples/mlflow_check.py --base http://127.0.0.1:8080 \
        --read-token mrt_…

With --mlflow-server the same client calls run against an MLflow server instead and only the
error codes are compared (that is how the expected codes below were checked: against
`mlflow server` 3.17 with its default SQLite store).

Covers experiments and runs: set_experiment creating one, get_experiment_by_name,
get_experiment, search_experiments with a name filter; an experiment with MLflow's own kind of
name ("MLflow Quickstart …") tagged, renamed, deleted (hidden from searches, no new runs) and
restored; a pandas dataset logged with log_input (twice) as the run's input; a run with params, tags, 2,000 metric
steps by log_metric and 50,000 by log_batch and a model directory (an MLmodel file beside the
weights) logged as artifacts, ended, read back by get_run, list_artifacts,
get_metric_history and search_runs (a metric filter and order). The registry:
mlflow.register_model("runs:/<run>/model", name) (twice: the second finds the model and adds a
version), an alias set, read and deleted (a stage promoted and cleared),
download_artifacts("models:/name@alias") compared byte for byte, search_model_versions,
search_registered_models, get_latest_versions, descriptions and tags, the deprecated stage
transitions, a version deleted (archived). MLflow 3: the quickstart (log_model with
registered_model_name, then loads by models:/m-…, models:/name/1, @alias and runs:/…), the
MLflow 2 form, sklearn autolog (a fit, a fit without a run, a GridSearchCV), evaluate,
log_table/load_table, restore_run and search_all_experiments. Then the native API: the same model, versions,
artifacts (sha256), stage history, events and metrics. And the errors MLflow's server gives
for a duplicate, a missing model or experiment and a bad parameter.
"""

import argparse
import hashlib
import json
import os
import tempfile
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


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def any_name(client, suffix, active):
    """MLflow's own experiment names (the docs' "MLflow Quickstart", paths), experiment tags,
    rename, delete and restore, as MLflow's client does them."""
    from mlflow.entities import ViewType

    title = f"MLflow Quickstart {suffix}"
    exp = mlflow.set_experiment(title)
    assert exp.name == title, exp
    assert client.get_experiment_by_name(title).experiment_id == exp.experiment_id
    client.set_experiment_tag(exp.experiment_id, "team", "risk")
    assert client.get_experiment(exp.experiment_id).tags == {"team": "risk"}
    client.delete_experiment_tag(exp.experiment_id, "team")
    assert client.get_experiment(exp.experiment_id).tags == {}
    found = client.search_experiments(filter_string=f"name = '{title}'")
    assert [e.experiment_id for e in found] == [exp.experiment_id], found
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.log_param("alpha", 0.5)
    renamed = f"Quickstart renamed {suffix}"
    client.rename_experiment(exp.experiment_id, renamed)
    assert client.get_experiment(exp.experiment_id).name == renamed
    assert client.get_experiment_by_name(title) is None
    client.delete_experiment(exp.experiment_id)
    assert client.get_experiment(exp.experiment_id).lifecycle_stage == "deleted"
    shown = [e.experiment_id for e in client.search_experiments()]
    assert exp.experiment_id not in shown, shown
    everything = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    assert exp.experiment_id in everything
    assert error_code(lambda: client.create_run(exp.experiment_id)) == "INVALID_PARAMETER_VALUE"
    client.restore_experiment(exp.experiment_id)
    assert client.get_experiment(exp.experiment_id).lifecycle_stage == "active"
    assert client.get_run(run.info.run_id).data.params == {"alpha": "0.5"}
    mlflow.set_experiment(active)


def finished_run(client, mlflow_server, suffix, active):
    """Resuming a finished run to log a new param: MLflow's server takes it; modelreg keeps a
    finished run's params immutable and says so, and the client's end-of-block status update
    does not replace that error."""
    mlflow.set_experiment(f"finished-{suffix}")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 1)
    raised = None
    try:
        with mlflow.start_run(run_id=run.info.run_id):
            mlflow.log_param("late", 2)
    except MlflowException as e:
        raised = e
    mlflow.set_experiment(active)
    if mlflow_server:
        assert raised is None, raised
        return
    assert raised is not None and raised.error_code == "INVALID_PARAMETER_VALUE", raised
    assert "has ended" in raised.message, raised.message
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def datasets(client, args, suffix, active):
    """mlflow.log_input of a pandas dataset (twice: autolog and evaluate log them again): the
    run answers it once, with its context; natively it is the version's dataset input."""
    import pandas as pd

    experiment = f"datasets-{suffix}"
    mlflow.set_experiment(experiment)
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    ds = mlflow.data.from_pandas(df, source="/data/train.csv", name="train", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(ds, context="training")
        mlflow.log_input(ds, context="training")
    got = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(got) == 1, got
    assert (got[0].dataset.name, got[0].dataset.digest) == ("train", ds.digest), got[0]
    assert {t.key: t.value for t in got[0].tags}.get("mlflow.data.context") == "training", got[0]
    assert json.loads(got[0].dataset.schema) == json.loads(ds.to_dict()["schema"]), got[0].dataset.schema
    mlflow.set_experiment(active)
    if args.mlflow_server:
        return
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    version = native(args.base, f"/api/v1/models/{experiment}/versions/1", token)
    assert [(i["kind"], i["name"], i["digest"], i["context"]) for i in version["inputs"]] == [
        ("dataset", "train", ds.digest, "training")], version["inputs"]


def iris(as_frame=False):
    from sklearn import datasets

    return datasets.load_iris(return_X_y=True, as_frame=as_frame)


def quickstart(client, args, suffix, active):
    """MLflow 3's quickstart as its docs show it: log_model(name=…, registered_model_name=…,
    signature=…, input_example=…), then load by models:/m-…, models:/name/1, @alias and
    runs:/…/name, and predict; the logged model searched; then the MLflow 2 form
    (artifact_path=… and register_model("runs:/…")). Natively: the registered version's files,
    config, metrics and source."""
    from mlflow.entities import LoggedModelStatus
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split

    X, y = iris()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    params = {"solver": "lbfgs", "max_iter": 1000, "random_state": 8888}
    lr = LogisticRegression(**params).fit(X_train, y_train)
    accuracy = accuracy_score(y_test, lr.predict(X_test))
    exp = mlflow.set_experiment(f"MLflow Quickstart {suffix} 3")
    registered = f"tracking-quickstart-{suffix}"
    started = time.time()
    with mlflow.start_run() as run:
        mlflow.log_params(params)
        mlflow.log_metric("accuracy", accuracy)
        mlflow.set_tag("Training Info", "Basic LR model for iris data")
        signature = infer_signature(X_train, lr.predict(X_train))
        info = mlflow.sklearn.log_model(sk_model=lr, name="iris_model", signature=signature,
                                        input_example=X_train, registered_model_name=registered)
    assert str(info.registered_model_version) == "1", info.registered_model_version
    expected = list(lr.predict(X_test))
    client.set_registered_model_alias(registered, "champion", "1")
    for uri in (info.model_uri, f"models:/{registered}/1", f"models:/{registered}@champion",
                f"runs:/{run.info.run_id}/iris_model"):
        assert list(mlflow.pyfunc.load_model(uri).predict(X_test)) == expected, uri
    print(f"quickstart (log_model, register, 4 loads) in {time.time() - started:.1f} s")
    lm = mlflow.get_logged_model(info.model_id)
    assert lm.status == LoggedModelStatus.READY, lm.status
    assert lm.source_run_id == run.info.run_id, lm
    assert lm.params["solver"] == "lbfgs", lm.params
    assert [m.key for m in lm.metrics] == ["accuracy"], lm.metrics
    found = mlflow.search_logged_models(experiment_ids=[exp.experiment_id],
                                        filter_string="name = 'iris_model'", output_format="list")
    assert [m.model_id for m in found] == [info.model_id], found
    found = mlflow.search_logged_models(experiment_ids=[exp.experiment_id],
                                        filter_string="metrics.accuracy > 0.5", output_format="list")
    assert [m.model_id for m in found] == [info.model_id], found
    got = client.get_run(run.info.run_id)
    assert got.data.tags["Training Info"] == "Basic LR model for iris data"
    assert [o.model_id for o in got.outputs.model_outputs] == [info.model_id], got.outputs

    # MLflow 2's form: artifact_path=, then register_model("runs:/…").
    with mlflow.start_run() as run2:
        mlflow.sklearn.log_model(lr, artifact_path="model")
    mv = mlflow.register_model(f"runs:/{run2.info.run_id}/model", registered)
    assert mv.version == "2", mv
    assert list(mlflow.pyfunc.load_model(f"models:/{registered}/2").predict(X_test)) == expected
    mlflow.set_experiment(active)
    if args.mlflow_server:
        return
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    v1 = native(args.base, f"/api/v1/models/{registered}/versions/1", token)
    assert v1["status"] == "ready", v1
    assert v1["source"]["logged_model_id"] == info.model_id, v1["source"]
    assert v1["source"]["run_id"] == run.info.run_id, v1["source"]
    assert v1["config"]["solver"] == "lbfgs", v1["config"]
    assert "MLmodel" in {a["path"] for a in v1["artifacts"]}, v1["artifacts"]
    assert {m["key"] for m in v1["metrics"]} == {"accuracy"}, v1["metrics"]
    # The signature, read from the logged model's MLmodel file; the run it came from, as lineage.
    assert v1["schema"] and len(v1["schema"]["inputs"]) >= 1, v1["schema"]
    copied = [i for i in v1["inputs"] if i.get("relation") == "copied_from"]
    assert len(copied) == 1, v1["inputs"]
    source = native(args.base, f"/api/v1/models/{copied[0]['model']}/versions/{copied[0]['version']}",
                    token)
    assert source["id"].replace("-", "") == run.info.run_id, (source["id"], run.info.run_id)
    v2 = native(args.base, f"/api/v1/models/{registered}/versions/2", token)
    assert v2["source"]["run_id"] == run2.info.run_id, v2["source"]
    assert any(i.get("relation") == "copied_from" for i in v2["inputs"]), v2["inputs"]
    diff = native(args.base, f"/api/v1/models/{registered}/compare?versions=1,2", token)
    assert diff["schema_diff"][0]["from"] == 1, diff["schema_diff"]


def autolog(client, args, suffix, active):
    """sklearn autolog: a plain fit in a run, a fit with no run (autolog starts and ends its
    own), and a GridSearchCV (a parent run and a child run per candidate): metrics, params,
    datasets and models all there, through MLflow's client and natively."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    name = f"autolog-{suffix}"
    exp = mlflow.set_experiment(name)
    X, y = iris(as_frame=True)
    mlflow.sklearn.autolog()
    try:
        started = time.time()
        with mlflow.start_run() as run:
            LogisticRegression(max_iter=300).fit(X, y)
        print(f"autolog of a fit in {time.time() - started:.1f} s")
        LogisticRegression(max_iter=200).fit(X, y)
        own = mlflow.last_active_run()
        with mlflow.start_run() as parent:
            GridSearchCV(SVC(), {"kernel": ("linear", "rbf"), "C": [1, 10]}).fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    for r in (run, own):
        got = client.get_run(r.info.run_id)
        assert got.info.status == "FINISHED", got.info
        assert "training_accuracy_score" in got.data.metrics, got.data.metrics
        assert got.data.params["max_iter"] in ("300", "200"), got.data.params
        assert len(got.inputs.dataset_inputs) >= 1, got.inputs
        assert len(got.outputs.model_outputs) == 1, got.outputs
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert len(model.predict(X.head(3))) == 3
    top = client.get_run(parent.info.run_id)
    assert "best_cv_score" in top.data.metrics, top.data.metrics
    assert top.data.params["best_C"] in ("1", "10"), top.data.params
    assert len(top.outputs.model_outputs) >= 1, top.outputs
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4, len(children)
    dataset = client.get_run(run.info.run_id).inputs.dataset_inputs[0].dataset
    found = client.search_runs([exp.experiment_id],
                               filter_string=f"datasets.digest = '{dataset.digest}'")
    assert run.info.run_id in {r.info.run_id for r in found}, (dataset.digest, len(found))
    mlflow.set_experiment(active)
    if args.mlflow_server:
        return
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    versions = native(args.base, f"/api/v1/models/{name}/versions?limit=100", token)["items"]
    assert len(versions) == 7, len(versions)
    v = native(args.base, f"/api/v1/models/{name}/versions/1", token)
    assert v["status"] == "ready", v
    assert any(i["kind"] == "dataset" for i in v["inputs"]), v["inputs"]
    assert "training_accuracy_score" in {m["key"] for m in v["metrics"]}, v["metrics"]


def evaluate_and_tables(client, args, suffix, active):
    """mlflow.models.evaluate of a logged model, log_table + load_table (by run ids and by
    experiment), delete_run + restore_run, and search_runs(search_all_experiments=True)."""
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment(f"evaluate-{suffix}")
    X, y = iris(as_frame=True)
    data = X.copy()
    data["label"] = y
    with mlflow.start_run() as run:
        lr = LogisticRegression(max_iter=300).fit(X, y)
        info = mlflow.sklearn.log_model(lr, name="model", input_example=X.head(2))
        result = mlflow.models.evaluate(info.model_uri, data, targets="label",
                                        model_type="classifier", evaluators=["default"])
        mlflow.log_table({"a": [1, 2], "b": ["x", "y"]}, artifact_file="tables/t.json")
    assert result.metrics["accuracy_score"] > 0.5, result.metrics
    got = client.get_run(run.info.run_id)
    assert "accuracy_score" in got.data.metrics, got.data.metrics
    assert len(got.inputs.dataset_inputs) >= 1, got.inputs
    assert mlflow.load_table("tables/t.json", run_ids=[run.info.run_id]).shape == (2, 2)
    assert mlflow.load_table("tables/t.json").shape == (2, 2)
    client.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    client.restore_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "active"
    everywhere = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                    filter_string=f"attributes.run_id = '{run.info.run_id}'")
    assert [r.info.run_id for r in everywhere] == [run.info.run_id], everywhere
    mlflow.set_experiment(active)


def registry(client, args, run_id, exp, files, name):
    """register_model from the run into another model, aliases, downloads, searches, changes;
    then the native API's view of the same."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    mv = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert (mv.name, mv.version, mv.status, mv.run_id) == (name, "1", "READY", run_id), mv
    assert mv.source == f"mlflow-artifacts:/{exp.experiment_id}/{run_id}/artifacts/model", mv.source
    assert mlflow.register_model(f"runs:/{run_id}/model", name).version == "2"
    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    local = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=tempfile.mkdtemp())
    for file, data in files.items():
        with open(os.path.join(local, file), "rb") as f:
            assert f.read() == data, file
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["2", "1"]
    assert [v.version for v in client.search_model_versions(f"name='{name}'", order_by=["version_number ASC"])] == ["1", "2"]
    assert [v.version for v in client.get_latest_versions(name)] == ["2"]
    assert [m.name for m in client.search_registered_models(f"name = '{name}'")] == [name]
    client.update_registered_model(name, description="fraud scores")
    client.set_registered_model_tag(name, "team", "risk")
    client.update_model_version(name, "2", description="retrained")
    client.set_model_version_tag(name, "2", "validated", "yes")
    client.delete_model_version_tag(name, "2", "validated")
    m = client.get_registered_model(name)
    assert (m.description, m.tags) == ("fraud scores", {"team": "risk"}), m
    v2 = client.get_model_version(name, "2")
    assert (v2.description, v2.tags) == ("retrained", {}), v2
    # The deprecated stages: Staging and Production are the modelreg stages of those names.
    v2 = client.transition_model_version_stage(name, "2", "Staging")
    assert v2.current_stage == "Staging", v2
    assert [v.version for v in client.get_latest_versions(name, stages=["Staging"])] == ["2"]
    assert client.transition_model_version_stage(name, "2", "None").current_stage == "None"
    assert error_code(lambda: client.rename_registered_model(name, f"{name}-new")) == "INVALID_PARAMETER_VALUE"
    client.delete_model_version(name, "2")
    assert client.get_model_version(name, "2").current_stage == "Archived"
    client.delete_registered_model_alias(name, "champion")

    # The native API's view: the same model, versions, artifacts, history and events.
    v1 = native(args.base, f"/api/v1/models/{name}/versions/1", token)
    assert v1["status"] == "ready", v1
    assert v1["source"]["run_id"] == run_id, v1["source"]
    got = {a["path"]: a["sha256"] for a in v1["artifacts"]}
    assert got == {f: sha256(d) for f, d in files.items()}, got
    assert native(args.base, f"/api/v1/models/{name}/versions/2", token)["status"] == "archived"
    history = native(args.base, f"/api/v1/models/{name}/stages/champion/history", token)
    assert [e["action"] for e in history["items"]] == ["stage.cleared", "stage.promoted"], history
    staging = native(args.base, f"/api/v1/models/{name}/stages/staging/history", token)
    assert [e["action"] for e in staging["items"]] == ["stage.cleared", "stage.promoted"], staging
    events = native(args.base, f"/api/v1/events?model={name}&limit=100", token)
    actions = [e["action"] for e in events["items"]]
    for action in ("model.created", "version.created", "artifact.uploaded", "version.archived"):
        assert action in actions, (action, actions)


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
    registered = f"registered-{suffix}"
    client.create_registered_model(registered)
    codes = {
        "create a duplicate": error_code(lambda: client.create_experiment(name)),
        "get a missing id": error_code(lambda: client.get_experiment("1234567")),
        "search with a bad max_results": error_code(lambda: client.search_experiments(max_results=-1)),
        "register a duplicate model": error_code(lambda: client.create_registered_model(registered)),
        "get a missing model": error_code(lambda: client.get_registered_model(f"absent-{suffix}")),
        "get a missing version": error_code(lambda: client.get_model_version(registered, "7")),
        "search versions with a bad max_results": error_code(
            lambda: client.search_model_versions(f"name='{registered}'", max_results=-1)),
        "a version that is not a number": error_code(lambda: client.get_model_version(registered, "abc")),
        "search runs with a bad max_results": error_code(lambda: client.search_runs(["0"], max_results=-1)),
        "transition to an unknown stage": error_code(
            lambda: client.transition_model_version_stage(registered, "1", "Bogus")),
        "a missing alias": error_code(lambda: client.get_model_version_by_alias(registered, "nope")),
    }
    want = {
        "create a duplicate": "RESOURCE_ALREADY_EXISTS",
        "get a missing id": "RESOURCE_DOES_NOT_EXIST",
        "search with a bad max_results": "INVALID_PARAMETER_VALUE",
        "register a duplicate model": "RESOURCE_ALREADY_EXISTS",
        "get a missing model": "RESOURCE_DOES_NOT_EXIST",
        "get a missing version": "RESOURCE_DOES_NOT_EXIST",
        "search versions with a bad max_results": "INVALID_PARAMETER_VALUE",
        "a version that is not a number": "INVALID_PARAMETER_VALUE",
        "search runs with a bad max_results": "INVALID_PARAMETER_VALUE",
        "transition to an unknown stage": "INVALID_PARAMETER_VALUE",
        "a missing alias": "INVALID_PARAMETER_VALUE",
    }
    print(json.dumps(codes))
    assert codes == want, codes
    any_name(client, suffix, name)
    finished_run(client, args.mlflow_server, suffix, name)
    datasets(client, args, suffix, name)
    quickstart(client, args, suffix, name)
    autolog(client, args, suffix, name)
    evaluate_and_tables(client, args, suffix, name)
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
        model_dir = tempfile.mkdtemp()
        files = {
            "MLmodel": b"artifact_path: model\nflavors:\n  python_function:\n    loader_module: weights\n",
            "weights.bin": os.urandom(300_000),
        }
        for file, data in files.items():
            with open(os.path.join(model_dir, file), "wb") as f:
                f.write(data)
        mlflow.log_artifacts(model_dir, artifact_path="model")
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

    listed = {a.path: a.file_size for a in client.list_artifacts(run_id, "model")}
    assert listed == {"model/MLmodel": len(files["MLmodel"]), "model/weights.bin": 300_000}, listed
    assert [a.path for a in client.list_artifacts(run_id)] == ["model"]

    registry(client, args, run_id, exp, files, registered)

    # The registry: the run registered into its own model is that version; an alias is a stage.
    mv = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    assert (mv.version, mv.status, mv.run_id) == ("1", "READY", run_id), mv
    client.set_registered_model_alias(name, "champion", mv.version)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    assert [v.version for v in client.get_latest_versions(name)] == ["1"]
    client.delete_registered_model_alias(name, "champion")
    assert error_code(lambda: client.get_model_version_by_alias(name, "champion")) == "INVALID_PARAMETER_VALUE"

    # What modelreg adds: scopes, and the model behind the experiment.
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
