"""The ``packing`` recipe through real HTTP and real Ray (docs/recipes.md, "packing"): every
operation, inline and artifact inputs, big batches split over Ray tasks, optimisers that publish
their best candidate and can start from it, seeds that repeat, and bad inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from recipes.packing.scoring import evaluate, evaluate_batch
from tests.support.helpers import wait_job

API = "/api/v1"
OPTIMISERS = ["feasible_optimize", "basin_hopping", "differential_evolution"]


def spread(seed: int) -> list[float]:
    """A loose valid-ish candidate: semicircles on a jittered 5 × 3 grid."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(15):
        out += [3.0 * (i % 5) + rng.uniform(-0.3, 0.3), 3.0 * (i // 5), rng.uniform(-3, 3)]
    return [float(v) for v in out]


@pytest.fixture(scope="module")
def member(new_account: Callable[..., httpx.Client]) -> httpx.Client:
    return new_account()


def upload_json(client: httpx.Client, value: Any, filename: str = "c.json") -> str:
    answer = client.post(
        f"{API}/artifacts",
        content=json.dumps(value).encode(),
        headers={"X-Artifact-Filename": filename},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def run(client: httpx.Client, payload: dict[str, Any], **fields: Any) -> tuple[dict, Any]:
    answer = client.post(f"{API}/recipes/packing/jobs", json={"payload": payload, **fields})
    assert answer.status_code == 201, answer.text
    job = wait_job(client, answer.json()["id"], timeout_s=300)
    results = client.get(f"{API}/results/{job['id']}").json()
    return job, results["aggregate_result"]


def test_eval_batch_inline_and_from_an_artifact_agree_with_the_kernel(member: httpx.Client) -> None:
    batch = [spread(s) for s in range(20)]
    batch[3] = [0.0] * 45  # fifteen semicircles on one spot: invalid
    expected = evaluate_batch(batch)
    job, inline = run(member, {"operation": "eval_batch", "candidates": batch})
    assert job["status"] == "completed", job
    assert inline == expected
    art = upload_json(member, batch)
    job, from_ref = run(member, {"operation": "eval_batch", "candidates_ref": art})
    assert job["status"] == "completed", job
    assert from_ref == expected
    assert from_ref["results"][3]["valid"] is False


def test_a_big_batch_is_split_over_ray_tasks_and_merged_in_order(member: httpx.Client) -> None:
    rng = np.random.default_rng(11)
    base = np.array(spread(1))
    batch = (base + rng.normal(scale=0.05, size=(12_000, 45))).round(6).tolist()
    art = upload_json(member, batch)
    job, result = run(
        member, {"operation": "eval_batch", "candidates_ref": art}, requirements={"cpu": 2}
    )
    assert job["status"] == "completed", job
    expected = evaluate_batch(batch)
    assert result["n_valid"] == expected["n_valid"]
    assert result["best_index"] == expected["best_index"]
    assert result["results"][::997] == expected["results"][::997]


@pytest.mark.parametrize("operation", OPTIMISERS)
def test_each_optimiser_publishes_a_valid_best_candidate_and_repeats_with_its_seed(
    member: httpx.Client, operation: str
) -> None:
    payload = {"operation": operation, "seed": 5, "max_iters": 3, "islands": 2}
    if operation == "feasible_optimize":
        payload["n_restarts"] = 2
    job, result = run(member, payload, requirements={"cpu": 2})
    assert job["status"] == "completed", job
    verdict = evaluate(result["best_candidate"])
    assert result["valid"] is True and verdict["valid"] is True
    assert result["best_score"] == pytest.approx(verdict["score"], abs=1e-12)
    assert result["evaluations"] > 0 and result["history"]
    art = member.get(f"{API}/artifacts/{result['best_candidate_artifact']}")
    assert art.status_code == 200
    saved = art.json()
    assert saved["candidate"] == result["best_candidate"]
    events = member.get(f"{API}/jobs/{job['id']}/events").json()["events"]
    progress = [e["data"]["progress"] for e in events if e["event"] == "progress"]
    assert progress and all("best_score" in p for p in progress)
    _, again = run(member, payload, requirements={"cpu": 2})
    assert again["best_candidate"] == result["best_candidate"]


def test_an_optimiser_starts_from_a_previous_best_artifact_and_never_ends_worse(
    member: httpx.Client,
) -> None:
    first_job, first = run(
        member, {"operation": "basin_hopping", "seed": 1, "max_iters": 2, "islands": 1}
    )
    assert first_job["status"] == "completed"
    job, second = run(
        member,
        {
            "operation": "feasible_optimize",
            "candidate_ref": first["best_candidate_artifact"],
            "n_restarts": 1,
            "islands": 1,
        },
    )
    assert job["status"] == "completed", job
    assert second["valid"] and second["best_score"] <= first["best_score"] + 1e-9


def test_a_time_budget_ends_the_search_with_the_best_so_far(member: httpx.Client) -> None:
    job, result = run(
        member,
        {"operation": "differential_evolution", "time_budget_s": 4, "seed": 2},
        timeout_s=120,
    )
    assert job["status"] == "completed", job
    assert result["valid"] is True
    task = member.get(f"{API}/jobs/{job['id']}/tasks").json()["tasks"][0]
    assert task["duration_s"] < 60


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ({"not": "a list"}, "candidates_ref"),
        ([[0.0] * 45, [0.0] * 44], "candidates_ref[1]"),
        ([[0.0] * 44 + ["x"]], "candidates[0]: candidate[44]"),
    ],
)
def test_a_bad_candidates_file_fails_the_task_naming_it(
    member: httpx.Client, value: Any, needle: str
) -> None:
    art = upload_json(member, value)
    job, _ = run(member, {"operation": "eval_batch", "candidates_ref": art})
    assert job["status"] == "failed", job
    error = member.get(f"{API}/jobs/{job['id']}/tasks").json()["tasks"][0]["error"]
    assert error["code"] == "invalid_input" and needle in error["message"], error


def test_a_candidate_file_with_nan_fails_the_task_naming_it(member: httpx.Client) -> None:
    answer = member.post(
        f"{API}/artifacts",
        content=("[" + ", ".join(["NaN"] + ["0.0"] * 44) + "]").encode(),
        headers={"X-Artifact-Filename": "nan.json"},
    )
    art = answer.json()["id"]
    job, _ = run(member, {"operation": "eval", "candidate_ref": art})
    assert job["status"] == "failed", job
    error = member.get(f"{API}/jobs/{job['id']}/tasks").json()["tasks"][0]["error"]
    assert error["code"] == "invalid_input" and "candidate_ref" in error["message"], error


def test_the_job_timeout_ends_an_optimiser_with_its_best_so_far_not_a_failure(
    member: httpx.Client,
) -> None:
    """No time budget and far more hops than fit: the job's timeout_s is the budget, with a
    margin to answer and store the best candidate."""
    job, result = run(
        member, {"operation": "basin_hopping", "max_iters": 100_000, "seed": 4}, timeout_s=10
    )
    assert job["status"] == "completed", job
    assert result["valid"] is True
    task = member.get(f"{API}/jobs/{job['id']}/tasks").json()["tasks"][0]
    assert task["duration_s"] <= 10
