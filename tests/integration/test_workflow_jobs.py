"""The sweep, map_reduce and benchmark job types end to end (docs/workflows.md).

Real local Ray, real HTTP, real runner subprocesses. Every expected ranking, reduction and
statistic is computed here from the same formula the runner uses, so the test checks the
platform's arithmetic and bookkeeping, not only the shape of its answers.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import httpx
import pytest

from tests.support.helpers import wait_job

API = "/api/v1"

RUNNER = r"""
import json, os, sys
payload = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))


def one(p):
    kind = p["kind"]
    if kind == "sweep":
        if p["x"] == p.get("fail_x"):
            sys.exit("failing this point on purpose")
        if p["x"] == p.get("blank_x"):
            return {"other": 1}
        return {"score": -(p["x"] - 3) ** 2 - (p["y"] - 0.5) ** 2}
    if kind == "mr":
        s = p["seeds"]
        if s == p.get("bad_seed"):
            return {k: "not a number" for k in "vabcdh"} | {"w": 1, "xs": []}
        return {k: s * 2 for k in "vabcdh"} | {"w": s, "xs": [s, s]}
    if kind == "range":
        c = p["chunk"]
        return {"n": p["count"], "sumsq": sum(i * i for i in range(c["start"], c["end"]))}
    if kind == "bench":
        return {"t": p["cost"] + p["seed"] * 0.5, "replica": p["replica"], "seed": p["seed"]}
    raise SystemExit("unknown kind")


out = os.environ["COMPUTALOT_TASK_RESULT"]
if "batch" in payload:
    json.dump({"results": [one(p) for p in payload["batch"]]}, open(out, "w"))
else:
    json.dump(one(payload), open(out, "w"))
"""


@pytest.fixture(scope="module")
def client(new_account: Any) -> httpx.Client:
    return new_account()


@pytest.fixture(scope="module")
def project(client: httpx.Client, make_project: Any) -> str:
    return str(make_project(client, {"runner.py": RUNNER}))


def submit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"{API}/jobs", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def base(project: str, job_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "project": project,
        "runner_command": ["python3", "runner.py"],
        "type": job_type,
        **fields,
    }


def run(client: httpx.Client, body: dict[str, Any], timeout_s: float = 240) -> tuple[Any, Any]:
    """Submit, wait for the end; (terminal job, first results page)."""
    job = submit(client, body)
    ended = wait_job(client, job["id"], timeout_s=timeout_s)
    results = client.get(f"{API}/results/{job['id']}")
    assert results.status_code == 200, results.text
    return ended, results.json()


def score(x: float, y: float) -> float:
    return -((x - 3) ** 2) - (y - 0.5) ** 2


# --- sweep -------------------------------------------------------------------------------
def test_a_sweep_ranks_every_point_and_counts_a_failed_one(
    client: httpx.Client, project: str
) -> None:
    ys = [0.0, 0.25, 0.5, 0.75, 1.0]
    body = base(
        project,
        "sweep",
        parameters={"x": [1, 2, 3, 4], "y": {"min": 0, "max": 1, "num": 5}},
        fixed_payload={"kind": "sweep", "fail_x": 4},
        rank_by="score",
    )
    ended, results = run(client, body)
    assert ended["type"] == "sweep" and ended["status"] == "partial", ended["error"]
    assert ended["task_counts"] == {**ended["task_counts"], "total": 20, "failed": 5}
    agg = results["aggregate_result"]
    expected = sorted(((score(x, y), x, y) for x in (1, 2, 3) for y in ys), key=lambda s: -s[0])
    assert [(r["params"]["x"], r["params"]["y"]) for r in agg["ranking"]] == [
        (x, y) for _s, x, y in expected
    ]
    assert [r["value"] for r in agg["ranking"]] == [s for s, _x, _y in expected]
    assert [r["rank"] for r in agg["ranking"]] == list(range(1, 16))
    assert agg["best"]["params"] == {"x": 3, "y": 0.5} and agg["best"]["value"] == 0
    assert agg["failed"] == 5 and agg["completed"] == 15 and agg["points"] == 20
    assert agg["rank_by"] == {"field": "score", "order": "max"}
    assert ended["workflow"] == {
        "type": "sweep",
        "rank_by": {"field": "score", "order": "max"},
        "parameters": ["x", "y"],
    }
    tasks = client.get(f"{API}/jobs/{ended['id']}/tasks", params={"limit": 100}).json()["tasks"]
    by_id = {t["id"]: t for t in tasks}
    best_task = by_id[agg["best"]["task_id"]]
    assert best_task["payload"] == {"kind": "sweep", "fail_x": 4, "x": 3, "y": 0.5}
    listed = client.get(f"{API}/jobs", params={"type": "sweep"}).json()["jobs"]
    assert ended["id"] in [j["id"] for j in listed]
    assert all(j["type"] == "sweep" for j in listed)


def test_rank_by_min_and_a_field_some_results_lack(client: httpx.Client, project: str) -> None:
    body = base(
        project,
        "sweep",
        parameters={"x": {"values": [1, 2, 4]}, "y": [0.5]},
        fixed_payload={"kind": "sweep", "blank_x": 2},
        rank_by={"field": "score", "order": "min"},
    )
    ended, results = run(client, body)
    assert ended["status"] == "completed"
    agg = results["aggregate_result"]
    assert [(r["params"]["x"], r["value"]) for r in agg["ranking"]] == [(1, -4), (4, -1)]
    assert agg["missing"] == 1
    assert any("1 of 3 completed results" in w for w in ended["warnings"])


def test_rank_by_a_field_no_result_has_completes_with_an_empty_ranking(
    client: httpx.Client, project: str
) -> None:
    body = base(
        project,
        "sweep",
        parameters={"x": [1, 2], "y": [0]},
        fixed_payload={"kind": "sweep"},
        rank_by="accuracy",
    )
    ended, results = run(client, body)
    assert ended["status"] == "completed"
    agg = results["aggregate_result"]
    assert agg["ranking"] == [] and agg["best"] is None and agg["missing"] == 2
    assert any("'accuracy' is not a number in any" in w for w in ended["warnings"])


def test_a_sweep_of_more_than_1000_points_is_planned_off_the_request_and_completes(
    client: httpx.Client, project: str
) -> None:
    xs = list(range(41))
    body = base(
        project,
        "sweep",
        parameters={"x": xs, "y": {"min": 0, "max": 1, "num": 25}},
        fixed_payload={"kind": "sweep"},
        rank_by="score",
    )
    job = submit(client, body)
    assert job["status"] == "planning" and job["task_counts"]["total"] == 41 * 25
    ended = wait_job(client, job["id"], timeout_s=900)
    assert ended["status"] == "completed" and ended["task_counts"]["completed"] == 1025
    agg = client.get(f"{API}/results/{job['id']}").json()["aggregate_result"]
    assert agg["ranked"] == 1025 and len(agg["ranking"]) == 1000 and agg["ranking_truncated"]
    assert agg["best"]["params"] == {"x": 3, "y": 0.5} and agg["best"]["value"] == 0


# --- map_reduce ---------------------------------------------------------------------------
def test_map_reduce_over_a_list_with_batches_reduces_every_operator(
    client: httpx.Client, project: str
) -> None:
    seeds = [1, 2, 3, 4, 5, 6, 7, 8]
    body = base(
        project,
        "map_reduce",
        payload={"kind": "mr", "seeds": seeds, "bad_seed": 7},
        split={"field": "seeds", "batch_size": 3},
        reduce={
            "v": "sum",
            "a": "mean",
            "b": "min",
            "c": "max",
            "d": "weighted_mean:w",
            "h": "histogram:2",
            "w": "count",
            "xs": "concat",
        },
    )
    ended, results = run(client, body)
    assert ended["type"] == "map_reduce" and ended["status"] == "completed"
    assert ended["workflow"]["reduce"] == {**body["reduce"]}
    assert ended["task_counts"]["total"] == 3  # 8 seeds in batches of 3
    assert results["summary"]["total"] == 8
    agg = results["aggregate_result"]
    good = [s for s in seeds if s != 7]
    values = [2 * s for s in good]
    assert agg["v"] == sum(values)
    assert math.isclose(agg["a"], statistics.mean(values))
    assert (agg["b"], agg["c"]) == (min(values), max(values))
    weights = good  # the runner's w is the seed
    wmean = sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)
    assert math.isclose(agg["d"], wmean)
    middle = (min(values) + max(values)) / 2
    assert agg["h"] == {
        "edges": [min(values), middle, max(values)],
        "counts": [sum(v < middle for v in values), sum(v >= middle for v in values)],
        "n": len(values),
    }
    assert agg["w"] == 8
    assert agg["xs"] == [s for s in good for _ in range(2)]
    assert agg["_n"] == 8 and agg["_failed"] == 0
    for name, op in (("v", "sum"), ("a", "mean"), ("h", "histogram:2")):
        assert any(w.startswith(f"reduce {name!r} ({op}): 1 of 8") for w in ended["warnings"])
    assert agg["_warnings"] == [w for w in ended["warnings"] if w.startswith("reduce")]
    assert results["results"][0]["result"]["xs"] == [1, 1]
    assert results["results"][6]["result"]["v"] == "not a number"


def test_map_reduce_over_a_range_and_a_histogram(client: httpx.Client, project: str) -> None:
    body = base(
        project,
        "map_reduce",
        payload={"kind": "range"},
        split={"range_field": "count", "total": 1000, "chunks": 7},
        reduce={"n": "sum", "sumsq": "histogram:2"},
    )
    ended, results = run(client, body)
    assert ended["status"] == "completed" and ended["task_counts"]["total"] == 7
    agg = results["aggregate_result"]
    assert agg["n"] == 1000
    hist = agg["sumsq"]
    assert hist["n"] == 7 and sum(hist["counts"]) == 7
    sizes = [143] * 6 + [142]
    starts = [sum(sizes[:i]) for i in range(7)]
    sq = [sum(i * i for i in range(s, s + n)) for s, n in zip(starts, sizes, strict=True)]
    assert hist["edges"][0] == min(sq) and hist["edges"][-1] == max(sq)
    middle = (min(sq) + max(sq)) / 2
    assert hist["counts"] == [sum(v < middle for v in sq), sum(v >= middle for v in sq)]


# --- benchmark ----------------------------------------------------------------------------
def test_a_benchmark_runs_replicas_with_their_seeds_and_ranks_candidates(
    client: httpx.Client, project: str
) -> None:
    body = base(
        project,
        "benchmark",
        candidates={"slow": {"cost": 10}, "fast": {"cost": 1}, "mid": {"cost": 5}},
        shared_payload={"kind": "bench", "seed": 100},
        replicas=4,
        rank_by={"field": "t", "order": "min"},
    )
    ended, results = run(client, body)
    assert ended["status"] == "completed" and ended["task_counts"]["total"] == 12
    assert ended["workflow"]["names"] == ["slow", "fast", "mid"]
    assert ended["workflow"]["replicas"] == 4
    agg = results["aggregate_result"]
    seen = [(r["result"]["replica"], r["result"]["seed"]) for r in results["results"]]
    assert seen == [(i, 100 + i) for i in range(4)] * 3
    ranking = agg["ranking"]
    assert [r["name"] for r in ranking] == ["fast", "mid", "slow"]
    for row, cost in zip(ranking, (1, 5, 10), strict=True):
        values = [cost + (100 + i) * 0.5 for i in range(4)]
        assert row["n"] == 4 and row["rank"] == ranking.index(row) + 1
        assert math.isclose(row["mean"], statistics.mean(values))
        assert math.isclose(row["std"], statistics.stdev(values))
        assert (row["min"], row["max"]) == (min(values), max(values))
        assert agg["per_replica"][row["name"]] == values
    tasks = client.get(f"{API}/jobs/{ended['id']}/tasks").json()["tasks"]
    assert tasks[5]["payload"] == {"kind": "bench", "seed": 101, "cost": 1, "replica": 1}


def test_benchmark_candidates_as_a_list_default_to_three_replicas_from_seed_zero(
    client: httpx.Client, project: str
) -> None:
    body = base(
        project,
        "benchmark",
        candidates=[{"name": "a", "payload": {"cost": 2}}, {"name": "b", "payload": {"cost": 1}}],
        shared_payload={"kind": "bench"},
        rank_by="t",
    )
    ended, results = run(client, body)
    assert ended["task_counts"]["total"] == 6
    agg = results["aggregate_result"]
    assert [r["name"] for r in agg["ranking"]] == ["a", "b"]  # order max: the biggest first
    assert agg["per_replica"] == {"a": [2.0, 2.5, 3.0], "b": [1.0, 1.5, 2.0]}


# --- refusals -----------------------------------------------------------------------------
BAD: list[tuple[str, dict[str, Any], list[Any]]] = [
    (
        "grid over the limit",
        {
            "type": "sweep",
            "parameters": {
                "a": {"min": 0, "max": 1, "num": 1000},
                "b": {"min": 0, "max": 1, "num": 1000},
            },
            "rank_by": "s",
        },
        ["parameters"],
    ),
    (
        "empty parameter list",
        {"type": "sweep", "parameters": {"a": []}, "rank_by": "s"},
        ["parameters", "a"],
    ),
    (
        "num <= 0",
        {"type": "sweep", "parameters": {"a": {"min": 0, "max": 1, "num": 0}}, "rank_by": "s"},
        ["parameters", "a", "num"],
    ),
    (
        "log scale from 0",
        {
            "type": "sweep",
            "parameters": {"a": {"min": 0, "max": 1, "num": 3, "scale": "log"}},
            "rank_by": "s",
        },
        ["parameters", "a", "min"],
    ),
    (
        "split on a sweep",
        {"type": "sweep", "parameters": {"a": [1]}, "rank_by": "s", "split": {"field": "a"}},
        ["split"],
    ),
    (
        "fan_out on a sweep",
        {"type": "sweep", "parameters": {"a": [1]}, "rank_by": "s", "fan_out": {"items": [{}]}},
        ["fan_out"],
    ),
    ("sweep fields on structured_runner", {"parameters": {"a": [1]}}, ["parameters"]),
    (
        "unknown reduce op",
        {
            "type": "map_reduce",
            "payload": {"s": [1]},
            "split": {"field": "s"},
            "reduce": {"v": "median"},
        },
        ["reduce", "v"],
    ),
    (
        "split field not a list",
        {
            "type": "map_reduce",
            "payload": {"s": 3},
            "split": {"field": "s"},
            "reduce": {"v": "sum"},
        },
        ["payload", "s"],
    ),
    (
        "benchmark seed override",
        {"type": "benchmark", "candidates": {"a": {"seed": 3}}, "rank_by": "t"},
        ["candidates", "a", "seed"],
    ),
    (
        "benchmark rank_by order",
        {"type": "benchmark", "candidates": {"a": {}}, "rank_by": {"field": "t", "order": "down"}},
        ["rank_by", "order"],
    ),
    (
        "replicas on a sweep",
        {"type": "sweep", "parameters": {"a": [1]}, "rank_by": "s", "replicas": 2},
        ["replicas"],
    ),
]


@pytest.mark.parametrize(("case", "fields", "loc"), BAD, ids=[c for c, _f, _l in BAD])
def test_bad_workflow_input_is_refused_naming_the_field_and_creates_nothing(
    new_account: Any, make_project: Any, case: str, fields: dict[str, Any], loc: list[Any]
) -> None:
    account = _bad_input_account(new_account, make_project)
    client, project = account
    before = client.get(f"{API}/jobs").json()["jobs"]
    body = {"project": project, "runner_command": ["python3", "runner.py"], **fields}
    answer = client.post(f"{API}/jobs", json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["details"][0]["loc"] == loc, error
    assert error["recommended_action"]
    assert client.get(f"{API}/jobs").json()["jobs"] == before


_ACCOUNT: list[tuple[httpx.Client, str]] = []


def _bad_input_account(new_account: Any, make_project: Any) -> tuple[httpx.Client, str]:
    """One account for every refusal case (created once: each case checks its job list)."""
    if not _ACCOUNT:
        client = new_account()
        _ACCOUNT.append((client, str(make_project(client, {"runner.py": RUNNER}))))
    return _ACCOUNT[0]


def test_a_recipe_job_refuses_workflow_fields(client: httpx.Client) -> None:
    before = client.get(f"{API}/jobs").json()["jobs"]
    answer = client.post(f"{API}/jobs", json={"recipe": "packing", "payload": {}, "rank_by": "x"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["loc"] == ["rank_by"]
    assert client.get(f"{API}/jobs").json()["jobs"] == before
