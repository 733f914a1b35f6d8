#!/usr/bin/env python3
"""MLflow 3 training code, timed, against one tracking server: one JSON line per measure.

    python3 bench/mlflow3_client.py --base http://127.0.0.1:8080 --label modelreg

- quickstart: MLflow's sklearn quickstart end to end, --rounds times: start a run, log
  params and a metric, `mlflow.sklearn.log_model(name=…, registered_model_name=…,
  signature=…, input_example=…)`, end the run, then `mlflow.pyfunc.load_model("models:/…/N")`
  and predict. Median and best seconds.
- autolog: `mlflow.sklearn.autolog()` around a LogisticRegression fit on iris (params,
  metrics, dataset, model), --rounds times. Median and best seconds.
- search_logged_models: --logged logged models made in one experiment (each with a param, a
  tag and a metric, through the REST calls log_model makes), then
  `mlflow.search_logged_models(filter_string="metrics.acc > 0.5 AND params.depth = '3'",
  order_by=[{"field_name": "metrics.acc", "ascending": False}], max_results=100)`, --reads
  times. Median and best milliseconds.

The client's own work is in every figure (pickling, conda/pip requirement inference, the
MLmodel file, protobuf): bench/mlflow3_compare.sh runs it against modelreg and against
`mlflow server` on the same Postgres, in one run, so the ratios compare the servers.
"""

import argparse
import json
import statistics
import time
import uuid

import mlflow
from mlflow import MlflowClient


def summary(label, measure, samples, unit, scale):
    return {
        "server": label,
        "measure": measure,
        f"median_{unit}": round(statistics.median(samples) * scale, 3),
        f"best_{unit}": round(min(samples) * scale, 3),
        "rounds": len(samples),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--logged", type=int, default=500)
    ap.add_argument("--reads", type=int, default=20)
    args = ap.parse_args()
    mlflow.set_tracking_uri(args.base)
    client = MlflowClient()
    suffix = uuid.uuid4().hex[:6]

    from mlflow.models import infer_signature
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression

    X, y = datasets.load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=1000).fit(X, y)
    signature = infer_signature(X, lr.predict(X))
    mlflow.set_experiment(f"quickstart-{suffix}")
    registered = f"bench-quickstart-{suffix}"
    samples = []
    for i in range(args.rounds):
        t = time.perf_counter()
        with mlflow.start_run():
            mlflow.log_params({"solver": "lbfgs", "max_iter": 1000})
            mlflow.log_metric("accuracy", 0.97)
            info = mlflow.sklearn.log_model(sk_model=lr, name="iris_model", signature=signature,
                                            input_example=X[:5], registered_model_name=registered)
        model = mlflow.pyfunc.load_model(f"models:/{registered}/{info.registered_model_version}")
        assert len(model.predict(X[:3])) == 3
        samples.append(time.perf_counter() - t)
    print(json.dumps(summary(args.label, "quickstart", samples, "s", 1)), flush=True)

    mlflow.set_experiment(f"autolog-{suffix}")
    mlflow.sklearn.autolog()
    samples = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        with mlflow.start_run():
            LogisticRegression(max_iter=300).fit(X, y)
        samples.append(time.perf_counter() - t)
    mlflow.sklearn.autolog(disable=True)
    print(json.dumps(summary(args.label, "autolog_fit", samples, "s", 1)), flush=True)

    exp = mlflow.set_experiment(f"logged-{suffix}")
    for i in range(args.logged):
        m = client.create_logged_model(exp.experiment_id, name=f"m{i}",
                                       params={"depth": str(i % 5)}, tags={"team": "a"})
        with mlflow.start_run() as run:
            client.log_batch(run.info.run_id, metrics=[
                mlflow.entities.Metric("acc", (i % 100) / 100, 1, 0, model_id=m.model_id)])
    samples = []
    for _ in range(args.reads):
        t = time.perf_counter()
        found = mlflow.search_logged_models(
            experiment_ids=[exp.experiment_id],
            filter_string="metrics.acc > 0.5 AND params.depth = '3'",
            order_by=[{"field_name": "metrics.acc", "ascending": False}],
            max_results=100, output_format="list")
        samples.append(time.perf_counter() - t)
    assert len(found) == min(100, sum(1 for i in range(args.logged) if i % 5 == 3 and (i % 100) / 100 > 0.5)), len(found)
    print(json.dumps(summary(args.label, "search_logged_models", samples, "ms", 1000)), flush=True)


if __name__ == "__main__":
    main()
