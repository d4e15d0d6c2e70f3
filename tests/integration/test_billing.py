"""Billing end to end on the session platform (SQLite): holds at submit, 402 with nothing
created, settling to the task-seconds every attempt ran, cancel, retries, and 100 concurrent
submits at an account that can afford exactly 10 (docs/llms-full.md, "Billing").

Prices are the defaults: a job without requirements is ``cpu-small``, $0.05 per task-hour, so
a 72-second timeout holds exactly $0.001 per task.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import assert_envelope, wait_for, wait_job

API = "/api/v1"
PRICE = Decimal("0.05")  # cpu-small, USD per task-hour
MICRO = Decimal("0.000001")

RUNNER = r"""
import json, os, sys, time

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
attempt = int(os.environ["COMPUTALOT_ATTEMPT"])
d = p.get("dir")
if d:
    open(os.path.join(d, "started-%s-%s" % (os.environ["COMPUTALOT_TASK_INDEX"], attempt)), "w").close()
if p.get("gate"):
    deadline = time.time() + 120
    while not os.path.exists(p["gate"]):
        if time.time() > deadline:
            sys.exit("gate never opened")
        time.sleep(0.05)
time.sleep(p.get("seconds", 0))
if p.get("fail_first") and attempt == 1:
    sys.exit(3)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"attempt": attempt}, fh)
"""


def usd(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(MICRO)


def body(project: str, **fields: Any) -> dict[str, Any]:
    return {
        "project": project,
        "runner_command": ["python3", "runner.py"],
        "timeout_s": 60,
        **fields,
    }


def balance(client: httpx.Client) -> dict[str, Decimal]:
    answer = client.get(f"{API}/account/balance")
    assert answer.status_code == 200, answer.text
    return {k: usd(v) for k, v in answer.json().items()}


def every(client: httpx.Client, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """All rows of a paged billing list, following next_cursor."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 7, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{API}/account/{path}", params=query)
        assert page.status_code == 200, page.text
        rows += page.json()[key]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return rows


def hold_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    (hold,) = [h for h in every(client, "holds", "holds") if h["job_id"] == job_id]
    return hold


def tasks_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/jobs/{job_id}/tasks", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["tasks"])


def settled(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job's hold once settled (the end event and the settle are one transaction)."""
    hold = hold_of(client, job_id)
    assert hold["status"] == "settled", hold
    return hold


def debits_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in every(client, "ledger", "entries")
        if e["job_id"] == job_id and e["kind"] == "debit"
    ]


@pytest.fixture(scope="module")
def rich(new_account: Any) -> httpx.Client:
    return new_account("member", credit_usd=10)


@pytest.fixture(scope="module")
def project(rich: httpx.Client, make_project: Any) -> str:
    return str(make_project(rich, {"runner.py": RUNNER}))


def test_a_job_the_account_cannot_afford_is_402_and_creates_nothing(
    admin: httpx.Client, new_account: Any, make_project: Any
) -> None:
    poor = new_account("member", credit_usd=0.001)
    name = make_project(poor, {"runner.py": RUNNER})
    before = balance(poor)
    assert before == {
        "ledger_balance_usd": usd("0.001"),
        "held_usd": usd(0),
        "available_usd": usd("0.001"),
    }
    # 10 tasks × 3600 s × $0.05/h = $0.50 held; $0.001 available
    job = body(name, timeout_s=3600, fan_out={"items": [{"i": i} for i in range(10)]})
    key = f"billing-{uuid.uuid4().hex}"
    answer = poor.post(f"{API}/jobs", json=job, headers={"Idempotency-Key": key})
    err = assert_envelope(answer, 402, "payment_required")
    assert err["details"][0]["loc"] == ["available_usd"]
    assert err["details"][0]["hold_usd"] == 0.5
    assert usd(err["details"][0]["shortfall_usd"]) == usd("0.499")
    quote = answer.json()["quote"]
    assert quote["kind"] == "shortfall" and quote["id"].startswith("quote_")
    assert usd(quote["amount_usd"]) >= usd("0.499")
    assert answer.json()["accepts"], "a 402 carries the x402 requirements that pay it"
    # nothing was created: no job, no hold, no idempotency record, money untouched
    assert poor.get(f"{API}/jobs").json()["jobs"] == []
    assert every(poor, "holds", "holds") == []
    assert balance(poor) == before
    # the same key, once the account can pay, makes a NEW job (201, not the first answer's 200)
    grant = f"{API}/admin/accounts/{poor.account['id']}/grants"  # type: ignore[attr-defined]
    assert admin.post(grant, json={"amount_usd": 1}).status_code == 201
    again = poor.post(f"{API}/jobs", json=job, headers={"Idempotency-Key": key})
    assert again.status_code == 201, again.text
    assert balance(poor)["held_usd"] == usd("0.5")
    assert poor.put(f"{API}/jobs/{again.json()['id']}/cancel").status_code == 200
    end = wait_job(poor, again.json()["id"])
    assert end["status"] == "cancelled"
    assert settled(poor, end["id"])["settled_usd"] == 0  # nothing ran: nothing charged
    assert debits_of(poor, end["id"]) == []
    assert balance(poor)["available_usd"] == usd("1.001")


def test_a_finished_job_settles_to_its_task_seconds_in_one_debit(
    rich: httpx.Client, project: str
) -> None:
    start = balance(rich)
    job = rich.post(
        f"{API}/jobs",
        json=body(project, fan_out={"items": [{"seconds": 1.0 + i / 2} for i in range(3)]}),
    )
    assert job.status_code == 201, job.text
    held = usd(job.json()["cost"]["held_usd"])
    assert held == usd(Decimal(3 * 60) * PRICE / 3600 + Decimal("0.0000005"))  # rounded up
    end = wait_job(rich, job.json()["id"])
    assert end["status"] == "completed", end
    seconds = sum(t["duration_s"] for t in tasks_of(rich, end["id"]))
    assert seconds >= 4.5
    hold = settled(rich, end["id"])
    assert hold["billed_s"] == pytest.approx(seconds, abs=1e-6)
    expected = usd(Decimal(repr(seconds)) * PRICE / 3600)
    assert usd(hold["settled_usd"]) == expected
    assert usd(hold["released_usd"]) == held - expected
    (debit,) = debits_of(rich, end["id"])
    assert usd(debit["amount_usd"]) == -expected
    assert set(debit) == {"id", "kind", "amount_usd", "job_id", "created_at", "memo"}
    assert usd(end["cost"]["charged_usd"]) == expected
    after = balance(rich)
    assert after["ledger_balance_usd"] == start["ledger_balance_usd"] - expected
    assert after["held_usd"] == start["held_usd"]
    assert after["available_usd"] == after["ledger_balance_usd"] - after["held_usd"]


def test_a_cancelled_job_pays_for_what_ran(
    rich: httpx.Client, project: str, task_tmp: Path
) -> None:
    job = rich.post(
        f"{API}/jobs",
        json=body(project, fan_out={"items": [{"seconds": 60, "dir": str(task_tmp)}] * 2}),
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    wait_for(lambda: len(list(task_tmp.glob("started-*"))) == 2, "both tasks running")
    assert hold_of(rich, job_id)["status"] == "open"
    assert balance(rich)["held_usd"] >= usd(job.json()["cost"]["held_usd"])
    time.sleep(1.5)  # both attempts run for at least this long before the cancel
    assert rich.put(f"{API}/jobs/{job_id}/cancel").status_code == 200
    end = wait_job(rich, job_id)
    assert end["status"] == "cancelled"
    hold = settled(rich, job_id)
    seconds = sum(t["duration_s"] or 0 for t in tasks_of(rich, job_id))
    assert 2 * 1.5 <= hold["billed_s"] < 2 * 30, hold
    assert hold["billed_s"] == pytest.approx(seconds, abs=1e-6)
    charged = usd(hold["settled_usd"])
    assert charged == usd(Decimal(repr(seconds)) * PRICE / 3600)
    assert 0 < charged < usd(hold["amount_usd"])
    (debit,) = debits_of(rich, job_id)
    assert usd(debit["amount_usd"]) == -charged


def test_every_attempt_of_a_retried_task_is_billed(rich: httpx.Client, project: str) -> None:
    job = rich.post(
        f"{API}/jobs",
        json=body(project, max_retries=1, payload={"seconds": 1.5, "fail_first": True}),
    )
    assert job.status_code == 201, job.text
    end = wait_job(rich, job.json()["id"])
    assert end["status"] == "completed", end
    (task,) = tasks_of(rich, end["id"])
    assert task["attempt"] == 2
    hold = settled(rich, end["id"])
    # the task row keeps the last attempt's duration; the bill has both
    assert hold["billed_s"] >= 3.0
    assert hold["billed_s"] >= task["duration_s"] + 1.5
    assert usd(hold["settled_usd"]) == usd(Decimal(repr(hold["billed_s"])) * PRICE / 3600)


def test_billing_lists_page_and_refuse_bad_input(rich: httpx.Client, anon: httpx.Client) -> None:
    entries = every(rich, "ledger", "entries")
    assert entries[-1]["kind"] == "grant" and usd(entries[-1]["amount_usd"]) == usd(10)
    assert [e["created_at"] for e in entries] == sorted(
        (e["created_at"] for e in entries), reverse=True
    )
    assert len({e["id"] for e in entries}) == len(entries)
    holds = every(rich, "holds", "holds", status="settled")
    assert holds and all(h["status"] == "settled" for h in holds)
    assert every(rich, "holds", "holds", status="open") == []
    err = assert_envelope(
        rich.get(f"{API}/account/holds", params={"status": "x"}), 422, "validation_error"
    )
    assert err["details"][0]["loc"] == ["status"]
    err = assert_envelope(
        rich.get(f"{API}/account/ledger", params={"cursor": "nope"}), 400, "bad_request"
    )
    assert err["details"][0]["loc"] == ["cursor"]
    assert_envelope(anon.get(f"{API}/account/balance"), 401, "unauthorized")
    presets = {p["name"]: p["usd_per_hour"] for p in rich.get(f"{API}/presets").json()["presets"]}
    assert presets["cpu-small"] == 0.05 and presets["gpu-large"] == 3.0


def test_the_first_admin_starts_with_credit(admin: httpx.Client) -> None:
    grants = [e for e in every(admin, "ledger", "entries") if e["memo"] == "starting credit"]
    assert len(grants) == 1 and grants[0]["kind"] == "grant"
    assert usd(grants[0]["amount_usd"]) == usd(1_000_000)


def test_100_concurrent_submits_at_an_account_that_can_afford_10(
    new_account: Any, make_project: Any, task_tmp: Path
) -> None:
    client = new_account("member", credit_usd=0.01)
    name = make_project(client, {"runner.py": RUNNER})
    gate = task_tmp / "open"
    # 72 s × $0.05/h = $0.001 held per job: exactly 10 fit in $0.01
    job = body(name, timeout_s=72, payload={"gate": str(gate), "seconds": 0.2})

    async def storm() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(
            base_url=str(client.base_url), headers=dict(client.headers), timeout=120, limits=limits
        ) as http:
            return list(
                await asyncio.gather(*(http.post(f"{API}/jobs", json=job) for _ in range(100)))
            )

    answers = asyncio.run(storm())
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 10 and codes.count(402) == 90, codes
    for refused in (a for a in answers if a.status_code == 402):
        assert_envelope(refused, 402, "payment_required")
    jobs = client.get(f"{API}/jobs", params={"limit": 500}).json()["jobs"]
    assert sorted(j["id"] for j in jobs) == sorted(
        a.json()["id"] for a in answers if a.status_code == 201
    )
    money = balance(client)
    assert money["held_usd"] == usd("0.01") and money["available_usd"] == 0
    gate.touch()
    for j in jobs:
        assert wait_job(client, j["id"])["status"] == "completed"
    entries = every(client, "ledger", "entries")
    grants = sum(usd(e["amount_usd"]) for e in entries if e["kind"] == "grant")
    credits = sum(usd(e["amount_usd"]) for e in entries if e["kind"] == "credit")
    debits = [-usd(e["amount_usd"]) for e in entries if e["kind"] == "debit"]
    assert grants == usd("0.01") and len(debits) == 10 and all(d > 0 for d in debits)
    money = balance(client)
    assert grants - sum(debits) + credits == money["ledger_balance_usd"]
    assert money["held_usd"] == 0 and money["available_usd"] == money["ledger_balance_usd"] > 0
    holds = every(client, "holds", "holds")
    assert len(holds) == 10 and all(h["status"] == "settled" for h in holds)
    assert sorted(usd(h["settled_usd"]) for h in holds) == sorted(debits)
