"""The recipe catalog and recipe submits through real HTTP (docs/recipes.md): the four recipes,
their schemas, 422s naming payload fields, 409 ``not_available``, the same job through both
submit routes, idempotency, and a cancel that stops an optimiser's sub-tasks on the cluster."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import ray

from tests.support.helpers import assert_envelope, wait_for, wait_job

API = "/api/v1"
CANDIDATE = [float(v) for i in range(15) for v in (3.0 * (i % 5), 3.0 * (i // 5), 0.0)]


@pytest.fixture(scope="module")
def member(new_account: Callable[..., httpx.Client]) -> httpx.Client:
    return new_account()


def test_the_catalog_lists_the_four_recipes_with_what_runs_here(member: httpx.Client) -> None:
    answer = member.get(f"{API}/recipes")
    assert answer.status_code == 200, answer.text
    listed = {r["name"]: r for r in answer.json()["recipes"]}
    assert list(listed) == ["prop_amm", "packing", "lightgbm_train", "echidna"]
    assert listed["packing"]["operations"] == [
        "eval",
        "eval_batch",
        "feasible_optimize",
        "basin_hopping",
        "differential_evolution",
    ]
    assert listed["lightgbm_train"]["operations"] == ["train", "cross_validate"]
    assert listed["packing"]["available"] and listed["lightgbm_train"]["available"]
    assert listed["prop_amm"]["available"] and not listed["echidna"]["available"]


@pytest.mark.parametrize("name", ["packing", "lightgbm_train", "prop_amm", "echidna"])
def test_each_recipe_answers_its_schema(member: httpx.Client, name: str) -> None:
    answer = member.get(f"{API}/recipes/{name}")
    assert answer.status_code == 200, answer.text
    recipe = answer.json()
    schema = recipe["payload_schema"]
    assert schema["type"] == "object" and "operation" in schema["properties"]
    assert all(op["description"] for op in recipe["operations"])
    assert all(a.endswith("_ref") for a in recipe["artifact_inputs"]) and recipe["artifact_inputs"]
    assert recipe["result_schema"] and recipe["examples"]


def test_an_unknown_recipe_is_404(member: httpx.Client) -> None:
    assert_envelope(member.get(f"{API}/recipes/nope"), 404, "not_found")
    answer = member.post(f"{API}/recipes/nope/jobs", json={"payload": {}})
    assert_envelope(answer, 404, "not_found")
    answer = member.post(f"{API}/jobs", json={"recipe": "nope", "payload": {}})
    assert_envelope(answer, 404, "not_found")


@pytest.mark.parametrize(
    ("name", "payload", "capability"),
    [
        (
            "prop_amm",
            {
                "operation": "bpf_eval",  # the SBF operations need a toolchain these nodes lack
                "rs_source_b64": "Y29uc3QgTkFNRTogJnN0ciA9ICJuIjsKY29uc3QgTU9ERUxfVVNFRDogJnN0ciA9"
                "ICJOb25lIjsKZm4gZ2V0X21vZGVsX3VzZWQoKSAtPiAmJ3N0YXRpYyBzdHIgeyBNT0RFTF9VU0VEIH0KZm4g"
                "Y29tcHV0ZV9zd2FwKF9kOiAmW3U4XSkgLT4gdTY0IHsgMCB9Cg==",
            },
            "sbf",
        ),
        ("echidna", {"project_ref": "art_x", "contract": "Token"}, "echidna"),
    ],
)
def test_recipes_not_built_here_refuse_jobs_as_not_available(
    member: httpx.Client, name: str, payload: dict[str, Any], capability: str
) -> None:
    before = member.get(f"{API}/jobs").json()
    err = assert_envelope(
        member.post(f"{API}/recipes/{name}/jobs", json={"payload": payload}), 409, "not_available"
    )
    assert err["details"][0]["capability"] == capability
    assert err["recommended_action"]
    assert member.get(f"{API}/jobs").json() == before  # nothing was created


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"operation": "eval", "candidate": CANDIDATE[:44]}, ["payload", "candidate"]),
        ({"operation": "eval", "candidate": [*CANDIDATE[:44], None]}, ["payload", "candidate"]),
        ({"operation": "eval"}, ["payload", "candidate"]),
        ({"operation": "warp", "candidate": CANDIDATE}, ["payload", "operation"]),
        ({"operation": "eval", "candidate": CANDIDATE, "colour": 1}, ["payload", "colour"]),
        (
            {"operation": "eval_batch", "candidates": [CANDIDATE, CANDIDATE[:3]]},
            ["payload", "candidates"],
        ),
    ],
)
def test_payload_errors_are_422_naming_the_field(
    member: httpx.Client, payload: dict[str, Any], loc: list[str]
) -> None:
    answer = member.post(f"{API}/recipes/packing/jobs", json={"payload": payload})
    err = assert_envelope(answer, 422, "validation_error")
    assert [str(p) for p in err["details"][0]["loc"][: len(loc)]] == loc, err


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
def test_non_finite_coordinates_never_reach_the_recipe(member: httpx.Client, number: str) -> None:
    """JSON has no NaN or infinity: the body is refused before any payload check (400 naming
    the character), so a candidate can only hold finite numbers."""
    text = json.dumps({"payload": {"candidate": [*CANDIDATE[:44], "X"]}}).replace('"X"', number)
    answer = member.post(
        f"{API}/recipes/packing/jobs", content=text, headers={"Content-Type": "application/json"}
    )
    err = assert_envelope(answer, 400, "bad_request")
    assert "character" in err["message"]


def test_project_fields_do_not_apply_to_recipe_jobs(member: httpx.Client) -> None:
    body = {"payload": {"candidate": CANDIDATE}, "runner_command": ["python3", "x.py"]}
    err = assert_envelope(
        member.post(f"{API}/recipes/packing/jobs", json=body), 422, "validation_error"
    )
    assert err["details"][0]["loc"] == ["runner_command"]
    body = {"payload": {"candidate": CANDIDATE}, "recipe": "lightgbm_train"}
    err = assert_envelope(
        member.post(f"{API}/recipes/packing/jobs", json=body), 422, "validation_error"
    )
    assert err["details"][0]["loc"] == ["recipe"]


def test_eval_through_both_submit_routes_with_an_idempotency_key(member: httpx.Client) -> None:
    from recipes.packing.scoring import evaluate

    body = {"payload": {"operation": "eval", "candidate": CANDIDATE}, "tags": ["grid"]}
    first = member.post(
        f"{API}/recipes/packing/jobs", json=body, headers={"Idempotency-Key": "k-eval"}
    )
    assert first.status_code == 201, first.text
    again = member.post(
        f"{API}/recipes/packing/jobs", json=body, headers={"Idempotency-Key": "k-eval"}
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = member.post(f"{API}/jobs", json={"recipe": "packing", **body})
    assert other.status_code == 201, other.text
    for job_id in (first.json()["id"], other.json()["id"]):
        job = wait_job(member, job_id)
        assert job["status"] == "completed", job
        assert job["recipe"] == "packing" and job["type"] is None and job["project"] is None
        result = member.get(f"{API}/results/{job_id}").json()["aggregate_result"]
        assert result == evaluate(CANDIDATE)
        assert result["valid"] is True


def test_a_recipe_job_is_held_and_billed_like_any_job(member: httpx.Client) -> None:
    """A few seconds of work (a millisecond eval rounds to $0 at a micro-dollar)."""
    before = member.get(f"{API}/account/balance").json()
    payload = {"operation": "basin_hopping", "time_budget_s": 2, "islands": 1}
    job = member.post(f"{API}/recipes/packing/jobs", json={"payload": payload}).json()
    assert float(job["cost"]["held_usd"]) > 0
    done = wait_job(member, job["id"])
    assert done["status"] == "completed"
    settled = member.get(f"{API}/jobs/{job['id']}").json()
    charged = float(settled["cost"]["charged_usd"])
    assert charged > 0, settled["cost"]
    after = member.get(f"{API}/account/balance").json()
    spent = float(before["ledger_balance_usd"]) - float(after["ledger_balance_usd"])
    assert spent == pytest.approx(charged, abs=1e-6)
    assert float(after["held_usd"]) == pytest.approx(float(before["held_usd"]), abs=1e-9)


def test_cancelling_an_optimiser_stops_its_sub_tasks(member: httpx.Client) -> None:
    """Two islands on two CPUs: every CPU of the job is busy until the cancel, and free again
    once it lands (the sub-tasks are stopped, not left computing)."""
    total = float(ray.cluster_resources()["CPU"])
    body = {
        "payload": {"operation": "basin_hopping", "time_budget_s": 600, "islands": 2, "seed": 3},
        "requirements": {"cpu": 2},
        "timeout_s": 900,
    }
    job = member.post(f"{API}/recipes/packing/jobs", json=body).json()
    wait_for(lambda: member.get(f"{API}/jobs/{job['id']}").json()["status"] == "running", "running")
    wait_for(
        lambda: float(ray.available_resources().get("CPU", 0)) <= total - 2, "islands busy", 60
    )
    time.sleep(1.0)
    answer = member.put(f"{API}/jobs/{job['id']}/cancel")
    assert answer.status_code == 200, answer.text
    ended = wait_job(member, job["id"])
    assert ended["status"] == "cancelled"
    wait_for(lambda: float(ray.available_resources().get("CPU", 0)) == total, "every CPU free", 30)


def test_batch_submit_takes_recipe_jobs_each_checked_on_its_own(member: httpx.Client) -> None:
    good = {"recipe": "packing", "payload": {"candidate": CANDIDATE}}
    bad = {"recipe": "packing", "payload": {"candidate": CANDIDATE[:3]}}
    answer = member.post(f"{API}/jobs/batch", json={"jobs": [good, bad]})
    assert answer.status_code == 201, answer.text
    first, second = answer.json()["jobs"]
    assert first["recipe"] == "packing"
    assert second["error"]["code"] == "validation_error"
    assert second["error"]["details"][0]["loc"][:2] == ["payload", "candidate"]
    assert wait_job(member, first["id"])["status"] == "completed"
