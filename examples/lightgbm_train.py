"""LightGBM with the sealed `lightgbm_train` recipe: upload a CSV, train, cross-validate, and
score the returned model in plain LightGBM.

Run against `computalot up`:
    COMPUTALOT_TOKEN=$(cat .computalot/admin_key) python examples/lightgbm_train.py
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
from pathlib import Path

import lightgbm as lgb

from computalot import ComputalotClient


def write_dataset(path: Path, rows: int = 4000, seed: int = 0) -> None:
    """A binary target that depends on three of five features, with noise."""
    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["x0", "x1", "x2", "x3", "x4", "churned"])
        for _ in range(rows):
            x = [rng.gauss(0, 1) for _ in range(5)]
            churned = int(1.2 * x[0] - x[1] + 0.8 * x[2] * x[3] + rng.gauss(0, 0.7) > 0)
            out.writerow([f"{v:.6f}" for v in x] + [churned])


def run(client: ComputalotClient, payload: dict) -> dict:
    job = client.submit_recipe_job("lightgbm_train", payload, requirements={"cpu": 2})
    done = client.wait(job["id"], timeout=600)
    if done["status"] != "completed":
        sys.exit(f"job {job['id']} ended {done['status']}: {done.get('error')}")
    return dict(client.get_results(job["id"])["aggregate_result"])


def main() -> None:
    client = ComputalotClient()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "churn.csv")
        write_dataset(data)
        dataset = client.upload_artifact(data)["id"]
        common = {"dataset_ref": dataset, "target_column": "churned", "n_estimators": 150}
        trained = run(client, {"operation": "train", "metric": "auc", **common})
        print(
            f"train: {trained['metric']} {trained['metric_value']:.4f} "
            f"at round {trained['best_iteration']}"
        )
        top = sorted(trained["feature_importance"].items(), key=lambda kv: -kv[1])[:3]
        print("most important:", [name for name, _gain in top])
        model_path = Path(tmp, "model.txt")
        client.download_artifact(trained["model_artifact"], model_path)
        booster = lgb.Booster(model_file=str(model_path))
        print(f"model loaded in plain LightGBM: {booster.num_trees()} trees")
        cv = run(client, {"operation": "cross_validate", "folds": 5, **common})
        print(f"cross_validate: {cv['metric']} mean {cv['mean']:.4f} std {cv['std']:.4f}")
        print(
            {
                "train_auc": trained["metric_value"],
                "cv_mean": cv["mean"],
                "trees": booster.num_trees(),
            }
        )


if __name__ == "__main__":
    main()
