"""Fan-out shapes, batching, merge strategies, result validation and submit-time refusals.

Real local Ray, real HTTP, real runner subprocesses (docs/llms-full.md: Fan-out, Results, Runner protocol). The runner writes
the exact payload file it was handed to a shared directory, so the tests check what the
process saw, not only what the API says it sent.
"""

from __future__ import annotations

import concurrent.futures
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from computalot.sdk.client import ComputalotClient
from tests.support.helpers import wait_job

API = "/api/v1"

RUNNER = r"""
import json, os
payload = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
elements = payload["batch"] if "batch" in payload else [payload]
first = elements[0]
seen = first.get("seen_dir")
if seen:
    name = "seen-%s-%s.json" % (os.environ["COMPUTALOT_TASK_INDEX"], os.environ["COMPUTALOT_ATTEMPT"])
    with open(os.path.join(seen, name), "w") as fh:
        json.dump(payload, fh)


def one(p):
    mode = p.get("mode", "echo")
    if mode == "chunk":
        c = p["chunk"]
        return {"start": c["start"], "size": p["n"], "idx": c["index"]}
    if mode == "score":
        return {"score": p["x"] * 10, "x": p["x"]}
    return {"payload": p}


mode = first.get("mode", "echo")
out = os.environ["COMPUTALOT_TASK_RESULT"]
if mode == "list_result":
    json.dump([1, 2], open(out, "w"))
elif mode == "not_json":
    open(out, "w").write("{this is not json")
elif mode == "non_finite":  # Python's json writes NaN / Infinity, which JSON has not
    bad = {"v": float("nan"), "w": [1, float("inf"), -float("inf")], "ok": 1, "s": "a\ud800"}
    json.dump(bad, open(out, "w"))
elif mode == "no_result":
    print("exiting 0 without a result on purpose")
elif mode == "short_batch":
    json.dump({"results": [one(p) for p in elements][:-1]}, open(out, "w"))
elif "batch" in payload:
    json.dump({"results": [one(p) for p in elements]}, open(out, "w"))
else:
    json.dump(one(payload), open(out, "w"))
"""


@pytest.fixture(scope="module")
def project(admin: httpx.Client, make_project: Any) -> str:
    return str(make_project(admin, {"runner.py": RUNNER}))


def submit(client: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    answer = client.post(f"{API}/jobs", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def job_body(project: str, **fields: Any) -> dict[str, Any]:
    return {
        "project": project,
        "runner_command": ["python3", "runner.py"],
        "timeout_s": 60,
        **fields,
    }


def run_job(client: httpx.Client, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit, wait for the end event, return (terminal job, results)."""
    job = submit(client, body)
    end = wait_job(client, job["id"])
    results = client.get(f"{API}/results/{job['id']}")
    assert results.status_code == 200, results.text
    return end, results.json()


def tasks_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/jobs/{job_id}/tasks", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["tasks"])


def seen_payloads(seen_dir: Path) -> list[dict[str, Any]]:
    """What the runner processes read, in task index order (first attempts only)."""
    files = sorted(seen_dir.glob("seen-*-1.json"), key=lambda p: int(p.name.split("-")[1]))
    return [json.loads(p.read_text()) for p in files]


def error_of(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert set(body) >= {"error"}, body
    return dict(body["error"])


# ---- shapes and batching ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("batching", "expected_tasks"),
    [({}, 10), ({"batch_size": 4}, 3), ({"fan_out_batch_size": 4}, 3)],
    ids=["unbatched", "batch_size", "fan_out.batch_size"],
)
def test_fan_out_by_collect(
    admin: httpx.Client, project: str, task_tmp: Path, batching: dict[str, int], expected_tasks: int
) -> None:
    xs = [7, 3, 9, 1, 4, 8, 2, 6, 5, 0]
    payload = {"seen_dir": str(task_tmp), "xs": xs, "keep": {"nested": True}}
    fan_out: dict[str, Any] = {"by": "xs"}
    body = job_body(project, payload=payload, fan_out=fan_out)
    if "batch_size" in batching:
        body["batch_size"] = batching["batch_size"]
    if "fan_out_batch_size" in batching:
        fan_out["batch_size"] = batching["fan_out_batch_size"]

    end, results = run_job(admin, body)

    element_payloads = [{**payload, "xs": x} for x in xs]
    assert end["status"] == "completed", end
    assert end["task_counts"]["total"] == expected_tasks
    assert end["task_counts"]["completed"] == expected_tasks
    assert len(tasks_of(admin, end["id"])) == expected_tasks
    expected_results = [{"payload": p} for p in element_payloads]
    assert results["aggregate_result"] == expected_results
    assert [r["index"] for r in results["results"]] == list(range(10))
    assert [r["result"] for r in results["results"]] == expected_results
    assert all(r["status"] == "completed" for r in results["results"])
    assert results["completeness"] == 1.0

    seen = seen_payloads(task_tmp)
    if expected_tasks == 10:
        assert seen == element_payloads
    else:
        assert seen == [
            {"batch": element_payloads[0:4]},
            {"batch": element_payloads[4:8]},
            {"batch": element_payloads[8:10]},
        ]
        # Batching stays invisible in the per-element results: one task id per 4 elements.
        task_ids = [r["task_id"] for r in results["results"]]
        assert len(set(task_ids)) == 3
        assert task_ids[0:4] == [task_ids[0]] * 4


@pytest.mark.parametrize("batch_size", [None, 2], ids=["unbatched", "batch_size"])
def test_fan_out_items_keyed_by_merge_key(
    admin: httpx.Client, project: str, task_tmp: Path, batch_size: int | None
) -> None:
    items = [
        {"name": "gamma", "lr": 0.1},
        {"name": "alpha", "lr": 0.01, "shared": "overridden"},
        {"name": "beta", "lr": 0.001},
    ]
    payload = {"seen_dir": str(task_tmp), "shared": "base", "lr": None}
    body = job_body(
        project,
        payload=payload,
        fan_out={"items": items},
        merge_strategy="keyed",
        merge_key="name",
    )
    if batch_size:
        body["batch_size"] = batch_size

    end, results = run_job(admin, body)

    element_payloads = [{**payload, **item} for item in items]
    assert end["status"] == "completed", end
    assert end["task_counts"]["total"] == (2 if batch_size else 3)
    assert results["aggregate_result"] == {
        "gamma": {"payload": element_payloads[0]},
        "alpha": {"payload": element_payloads[1]},
        "beta": {"payload": element_payloads[2]},
    }
    assert [r["index"] for r in results["results"]] == [0, 1, 2]
    assert [r["result"] for r in results["results"]] == [{"payload": p} for p in element_payloads]
    seen = seen_payloads(task_tmp)
    if batch_size:
        assert seen == [{"batch": element_payloads[:2]}, {"batch": element_payloads[2:]}]
    else:
        assert seen == element_payloads


def test_fan_out_keyed_default_key_is_the_element(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    body = job_body(
        project,
        payload={"model": ["small", "large", 3]},
        fan_out={"by": "model"},
        merge_strategy="keyed",
    )
    end, results = run_job(admin, body)
    assert end["status"] == "completed", end
    assert results["aggregate_result"] == {
        "small": {"payload": {"model": "small"}},
        "large": {"payload": {"model": "large"}},
        "3": {"payload": {"model": 3}},
    }

    # Items (objects) without merge_key are keyed by their index.
    body = job_body(project, fan_out={"items": [{"a": 1}, {"a": 2}]}, merge_strategy="keyed")
    end, results = run_job(admin, body)
    assert end["status"] == "completed", end
    assert results["aggregate_result"] == {"0": {"payload": {"a": 1}}, "1": {"payload": {"a": 2}}}


def test_fan_out_chunks_collect_and_weighted_avg(
    admin: httpx.Client, project: str, task_tmp: Path
) -> None:
    fan_out = {"chunks": 3, "range_field": "n", "total": 10}
    payload = {"mode": "chunk", "seen_dir": str(task_tmp)}
    spans = [(0, 4), (4, 7), (7, 10)]

    end, results = run_job(admin, job_body(project, payload=payload, fan_out=fan_out))
    assert end["status"] == "completed", end
    assert end["task_counts"]["total"] == 3
    expected = [{"start": s, "size": e - s, "idx": i} for i, (s, e) in enumerate(spans)]
    assert results["aggregate_result"] == expected
    assert [r["result"] for r in results["results"]] == expected
    assert seen_payloads(task_tmp) == [
        {**payload, "n": e - s, "chunk": {"index": i, "count": 3, "start": s, "end": e}}
        for i, (s, e) in enumerate(spans)
    ]

    body = job_body(project, payload=payload, fan_out=fan_out, merge_strategy="weighted_avg")
    end, results = run_job(admin, body)
    assert end["status"] == "completed", end
    aggregate = results["aggregate_result"]
    # Default weight for chunks = chunk size (4, 3, 3).
    assert aggregate == {
        "start": pytest.approx((0 * 4 + 4 * 3 + 7 * 3) / 10),
        "size": pytest.approx((4 * 4 + 3 * 3 + 3 * 3) / 10),
        "idx": pytest.approx((0 * 4 + 1 * 3 + 2 * 3) / 10),
        "_weight_total": pytest.approx(10.0),
        "_n": 3,
    }


def test_weighted_avg_with_weight_field_and_batching(admin: httpx.Client, project: str) -> None:
    body = job_body(
        project,
        payload={"mode": "score", "x": [1, 2, 3]},
        fan_out={"by": "x"},
        batch_size=2,
        merge_strategy="weighted_avg",
        weight_field="x",
    )
    end, results = run_job(admin, body)
    assert end["status"] == "completed", end
    assert end["task_counts"]["total"] == 2
    # score = 10 x, weighted by x: (10 + 40 + 90) / 6
    assert results["aggregate_result"] == {
        "score": pytest.approx(140 / 6),
        "_weight_total": pytest.approx(6.0),
        "_n": 3,
    }


def test_batching_is_invisible_in_results_summary(admin: httpx.Client, project: str) -> None:
    payload = {"xs": list(range(5))}
    _, plain = run_job(admin, job_body(project, payload=payload, fan_out={"by": "xs"}))
    body = job_body(project, payload=payload, fan_out={"by": "xs"}, batch_size=2)
    _, batched = run_job(admin, body)
    assert [r["result"] for r in batched["results"]] == [r["result"] for r in plain["results"]]
    assert batched["aggregate_result"] == plain["aggregate_result"]
    assert batched["completeness"] == plain["completeness"]
    assert {k: v for k, v in batched["summary"].items() if k != "duration_s"} == {
        k: v for k, v in plain["summary"].items() if k != "duration_s"
    }


# ---- result validation -----------------------------------------------------------------------
def test_invalid_results_and_missing_result(admin: httpx.Client, project: str) -> None:
    items = [{"mode": "list_result"}, {"mode": "not_json"}, {"mode": "no_result"}, {"mode": "echo"}]
    end, results = run_job(admin, job_body(project, fan_out={"items": items}))
    assert end["status"] == "partial", end
    assert end["task_counts"] == {
        "total": 4,
        "queued": 0,
        "running": 0,
        "completed": 2,
        "failed": 2,
        "cancelled": 0,
    }
    tasks = tasks_of(admin, end["id"])
    assert [t["status"] for t in tasks] == ["failed", "failed", "completed", "completed"]
    for t in tasks[:2]:
        assert t["error"]["code"] == "invalid_result", t
        assert t["error"]["recommended_action"], t
        assert t["exit_code"] == 0
    assert "list" in tasks[0]["error"]["message"]
    assert "JSON" in tasks[1]["error"]["message"]
    no_result = results["results"][2]
    assert no_result["status"] == "completed"
    assert no_result["result"] is None
    assert no_result["result_warnings"], no_result
    assert tasks[2]["result_warnings"] == no_result["result_warnings"]
    assert results["aggregate_result"] == [None, None, None, {"payload": {"mode": "echo"}}]
    assert end["error"]["code"], end


def test_values_json_cannot_carry_in_a_result_are_replaced_with_a_warning(
    admin: httpx.Client, project: str
) -> None:
    items = [{"mode": "non_finite"}, {"mode": "echo"}]
    end, results = run_job(admin, job_body(project, fan_out={"items": items}))
    assert end["status"] == "completed", end
    first = results["results"][0]
    assert first["result"] == {"v": None, "w": [1, None, None], "ok": 1, "s": "a\ufffd"}
    nan_warning, text_warning = first["result_warnings"]
    assert "NaN" in nan_warning and "null" in nan_warning, nan_warning
    assert "surrogate" in text_warning, text_warning
    assert results["aggregate_result"][0] == first["result"]
    # Every read of the job serialises it: none may fail on what the runner wrote.
    assert admin.get(f"{API}/jobs/{end['id']}").status_code == 200
    assert admin.get(f"{API}/jobs/{end['id']}/tasks").status_code == 200


@pytest.mark.parametrize(
    ("value", "token", "phrase"),
    [
        (1e999, "Infinity", "Infinity is not a JSON value"),
        (float("nan"), "NaN", "NaN is not a JSON value"),
        ("a\ud800b", "\\ud800", "lone UTF-16 surrogate"),
    ],
    ids=["infinity", "nan", "lone-surrogate"],
)
def test_values_the_store_cannot_keep_are_refused_in_a_body(
    admin: httpx.Client, project: str, value: Any, token: str, phrase: str
) -> None:
    body = json.dumps(job_body(project, payload={"note": "NaN \\u0000 in text", "x": value}))
    answer = admin.post(f"{API}/jobs", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text[:500]
    error = error_of(answer)
    assert error["code"] == "bad_request"
    assert phrase in error["message"], error
    assert f"at character {body.rindex(token)}" in error["message"], error
    assert error["recommended_action"], error


def test_batch_result_with_wrong_length_is_invalid(admin: httpx.Client, project: str) -> None:
    body = job_body(
        project, payload={"mode": "short_batch", "v": [1, 2, 3]}, fan_out={"by": "v"}, batch_size=3
    )
    end, results = run_job(admin, body)
    assert end["status"] == "failed", end
    (task,) = tasks_of(admin, end["id"])
    assert task["status"] == "failed"
    assert task["error"]["code"] == "invalid_result"
    assert "2 results for 3 elements" in task["error"]["message"]
    assert [r["status"] for r in results["results"]] == ["failed"] * 3
    assert [r["result"] for r in results["results"]] == [None] * 3


def test_missing_runner_command_is_spawn_failed(admin: httpx.Client, project: str) -> None:
    body = job_body(project, runner_command=["computalot-no-such-command-xyz", "--flag"])
    end, _results = run_job(admin, body)
    assert end["status"] == "failed", end
    assert end["error"] and end["error"]["code"], end
    assert end["recommended_action"], end
    (task,) = tasks_of(admin, end["id"])
    assert task["status"] == "failed"
    assert task["error"]["code"] == "spawn_failed", task
    assert task["exit_code"] == 127
    assert task["error"]["recommended_action"], task
    assert "computalot-no-such-command-xyz" in task["error"]["message"]


# ---- refusals at submit time -----------------------------------------------------------------
BAD_FANOUTS = [
    pytest.param(
        {"payload": {"xs": [1]}, "fan_out": {"by": "xs", "items": [{"a": 1}]}},
        ["fan_out"],
        id="mixed-shapes",
    ),
    pytest.param(
        {"payload": {"xs": [1]}, "fan_out": {"by": "ys"}}, ["fan_out", "by"], id="by-missing"
    ),
    pytest.param(
        {"payload": {"xs": 5}, "fan_out": {"by": "xs"}}, ["payload", "xs"], id="by-not-list"
    ),
    pytest.param(
        {"payload": {"xs": []}, "fan_out": {"by": "xs"}}, ["payload", "xs"], id="by-empty"
    ),
    pytest.param({"fan_out": {"items": []}}, ["fan_out", "items"], id="items-empty"),
    pytest.param(
        {"payload": {"xs": list(range(100_001))}, "fan_out": {"by": "xs"}},
        ["payload", "xs"],
        id="over-100000",
    ),
    pytest.param(
        {"fan_out": {"chunks": 2, "range_field": "n", "total": 10}, "batch_size": 2},
        ["batch_size"],
        id="batch_size-with-chunks",
    ),
    pytest.param(
        {"fan_out": {"chunks": 2, "range_field": "n", "total": 10, "batch_size": 2}},
        ["fan_out", "batch_size"],
        id="fan_out.batch_size-with-chunks",
    ),
    pytest.param({"batch_size": 2}, ["batch_size"], id="batch_size-without-fan_out"),
    pytest.param({"merge_strategy": "median"}, ["merge_strategy"], id="unknown-merge"),
]


@pytest.mark.parametrize(("fields", "loc"), BAD_FANOUTS)
def test_bad_fan_out_is_422_naming_the_field(
    admin: httpx.Client, project: str, fields: dict[str, Any], loc: list[str]
) -> None:
    tag = f"bad-{uuid.uuid4().hex[:8]}"
    answer = admin.post(f"{API}/jobs", json=job_body(project, tags=[tag], **fields))
    assert answer.status_code == 422, answer.text
    error = error_of(answer)
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"] == loc, error
    assert ".".join(loc) in error["message"], error
    assert error["recommended_action"]
    listed = admin.get(f"{API}/jobs", params={"tag": tag}).json()["jobs"]
    assert listed == [], "a refused submit must create nothing"


def test_payload_over_16_mib_is_413(admin: httpx.Client, project: str) -> None:
    body = json.dumps(job_body(project, payload={"blob": "x" * (16 * 1024 * 1024 + 10)}))
    answer = admin.post(f"{API}/jobs", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text[:500]
    assert error_of(answer)["code"] == "payload_too_large"


def test_unknown_project_is_404(admin: httpx.Client) -> None:
    answer = admin.post(f"{API}/jobs", json=job_body(f"nope-{uuid.uuid4().hex[:8]}"))
    assert answer.status_code == 404, answer.text
    assert error_of(answer)["code"] == "not_found"


def test_project_without_revision_is_409(admin: httpx.Client) -> None:
    name = f"empty-{uuid.uuid4().hex[:8]}"
    assert admin.post(f"{API}/projects", json={"name": name}).status_code == 201
    answer = admin.post(f"{API}/jobs", json=job_body(name))
    assert answer.status_code == 409, answer.text
    error = error_of(answer)
    assert error["code"] == "conflict"
    assert "push" in error["recommended_action"]


def test_unsatisfiable_requirements_is_422(admin: httpx.Client, project: str) -> None:
    answer = admin.post(f"{API}/jobs", json=job_body(project, requirements={"cpu": 512}))
    assert answer.status_code == 422, answer.text
    error = error_of(answer)
    assert error["code"] == "unsatisfiable_requirements", error
    assert error["details"][0]["loc"] == ["requirements", "cpu"], error
    assert "cpu" in error["message"]


# ---- idempotency -----------------------------------------------------------------------------
def test_idempotency_key_returns_the_first_job(admin: httpx.Client, project: str) -> None:
    tag = f"idem-{uuid.uuid4().hex[:8]}"
    key = f"key-{uuid.uuid4().hex}"
    body = job_body(project, tags=[tag], payload={"n": 1})
    first = admin.post(f"{API}/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    again = admin.post(f"{API}/jobs", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    listed = admin.get(f"{API}/jobs", params={"tag": tag}).json()["jobs"]
    assert [j["id"] for j in listed] == [first.json()["id"]]
    wait_job(admin, first.json()["id"])


def test_concurrent_duplicate_submits_create_one_job(admin: httpx.Client, project: str) -> None:
    tag = f"idem-{uuid.uuid4().hex[:8]}"
    key = f"key-{uuid.uuid4().hex}"
    body = job_body(project, tags=[tag], payload={"n": 2})

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(admin.base_url), headers=admin.headers, timeout=60) as c:
            return c.post(f"{API}/jobs", json=body, headers={"Idempotency-Key": key})

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(post, range(10)))
    assert all(a.status_code in (200, 201) for a in answers), [
        (a.status_code, a.text[:200]) for a in answers
    ]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1, ids
    assert sorted(a.status_code for a in answers) == [200] * 9 + [201]
    listed = admin.get(f"{API}/jobs", params={"tag": tag}).json()["jobs"]
    assert [j["id"] for j in listed] == list(ids)
    wait_job(admin, ids.pop())


def test_idempotency_key_is_per_account(
    admin: httpx.Client, new_account: Any, make_project: Any
) -> None:
    other = new_account()
    other_project = make_project(other, {"runner.py": RUNNER})
    key = f"key-{uuid.uuid4().hex}"
    mine = admin.post(
        f"{API}/jobs",
        json=job_body(make_project(admin, {"runner.py": RUNNER})),
        headers={"Idempotency-Key": key},
    )
    theirs = other.post(
        f"{API}/jobs", json=job_body(other_project), headers={"Idempotency-Key": key}
    )
    assert (mine.status_code, theirs.status_code) == (201, 201), (mine.text, theirs.text)
    assert mine.json()["id"] != theirs.json()["id"]
    wait_job(admin, mine.json()["id"])
    wait_job(other, theirs.json()["id"])


# ---- reading results page by page ------------------------------------------------------------
def read_pages(client: httpx.Client, job_id: str, limit: int) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        answer = client.get(f"{API}/results/{job_id}", params=params)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())
        cursor = pages[-1]["next_cursor"]
        if not cursor:
            return pages


@pytest.mark.parametrize(
    ("batching", "limit"),
    [({"batch_size": 4}, 3), ({"batch_size": 4}, 10), ({}, 2), ({"batch_size": 5}, 5)],
)
def test_results_pages_walk_every_element_once(
    admin: httpx.Client, project: str, batching: dict[str, int], limit: int
) -> None:
    xs = list(range(23))
    body = job_body(project, payload={"mode": "score", "x": xs}, fan_out={"by": "x"}, **batching)
    end, whole = run_job(admin, body)
    assert end["status"] == "completed", end
    pages = read_pages(admin, end["id"], limit)
    assert len(pages) == -(-len(xs) // limit)
    walked = [r for page in pages for r in page["results"]]
    assert [r["index"] for r in walked] == list(range(len(xs)))
    assert walked == whole["results"]
    # The job's aggregate comes once, with the first page; the summary with every page.
    assert pages[0]["aggregate_result"] == whole["aggregate_result"]
    assert len(whole["aggregate_result"]) == len(xs)
    assert all(page["aggregate_result"] is None for page in pages[1:])
    assert all(page["summary"] == whole["summary"] for page in pages)
    # The SDK walks the same pages.
    token = admin.headers["Authorization"].split()[1]
    with ComputalotClient(str(admin.base_url), token) as sdk:
        assert list(sdk.iter_results(end["id"], page_size=limit)) == walked


def test_a_bad_results_cursor_is_400(admin: httpx.Client, project: str) -> None:
    end, _ = run_job(admin, job_body(project, payload={"mode": "echo"}))
    for cursor in ("not-a-cursor", "WyJ4Il0"):  # garbage; a list holding a non-number
        answer = admin.get(f"{API}/results/{end['id']}", params={"cursor": cursor})
        assert answer.status_code == 400, answer.text
        assert error_of(answer)["code"] == "bad_request"
