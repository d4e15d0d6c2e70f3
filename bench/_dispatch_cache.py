"""Part (f) of bench/dispatch.py: the result cache (docs/llms-full.md, "Result cache").

A 10,000-task job (``fan_out.by``, one element per task) is submitted with ``"cache": true``,
then the same job again three times. The first runs every task; each re-submit should be
answered from the cache in its planner's chunks (10,000 tasks are over the rows written in the
request), end in under a second (POST -> ``end`` on the job's stream; the median of the
re-submits is the figure) and run no process. "No process" is counted from the re-submitted
jobs' tasks: every one must be ``cached`` with attempt 0 (an attempt is a process started). A
salt in the payload makes each bench run's first submit a miss.
"""

from __future__ import annotations

import statistics
import uuid
from typing import Any

import httpx
from _common import fmt, log, table, verdict
from _dispatch_support import COMMAND, check, run_job

#: Goal of the second submit, POST -> end (seconds).
GOAL_SECOND_S = 1.0


def _ran(client: httpx.Client, job_id: str) -> tuple[int, int]:
    """(tasks that started a process, tasks answered from the cache), over every task page."""
    ran = cached = 0
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = check(client.get(f"/api/v1/jobs/{job_id}/tasks", params=params), 200)
        for task in page["tasks"]:
            ran += int(task["attempt"] > 0)
            cached += int(bool(task.get("cached")))
        cursor = page.get("next_cursor")
        if not cursor:
            return ran, cached


def part_f(client: httpx.Client, project: str, n: int, repeats: int = 3) -> dict[str, Any]:
    body = {
        "project": project,
        "runner_command": COMMAND,
        "payload": {"i": list(range(n)), "salt": uuid.uuid4().hex},
        "fan_out": {"by": "i"},
        "cache": True,
    }
    log(f"(f) {n:,}-task job with cache: first submit (runs every task)")
    first = run_job(client, body, timeout_s=max(600.0, n * 0.2))
    log(f"(f) first: {first['wall_s']:.1f} s; second submit")
    again = [run_job(client, body, timeout_s=120) for _ in range(repeats)]
    second = again[0]
    walls = [run["wall_s"] for run in again]
    log(f"(f) re-submits: {', '.join(f'{w * 1000:.0f}' for w in walls)} ms; counting processes")
    first_ran, _ = _ran(client, first["id"])
    second_ran, second_cached = 0, n
    for run in again:
        ran, cached = _ran(client, run["id"])
        second_ran, second_cached = second_ran + ran, min(second_cached, cached)
    return {
        "tasks": n,
        "first_s": first["wall_s"],
        "first_processes": first_ran,
        "second_s": statistics.median(walls),
        "second_runs_s": walls,
        "second_submit_s": statistics.median(run["submit_s"] for run in again),
        "second_answer_status": second["end"].get("status"),
        "second_processes": second_ran,
        "second_cached": second_cached,
    }


def report_f(f: dict[str, Any]) -> bool:
    fast = f["second_s"] < GOAL_SECOND_S
    none_ran = f["second_processes"] == 0 and f["second_cached"] == f["tasks"]
    print(
        table(
            f"(f) {f['tasks']:,}-task job with cache: true, then the same job again",
            ["measure", "value", "goal", "verdict"],
            [
                ["first: POST -> end (every task runs)", f"{fmt(f['first_s'], 2)} s", "", ""],
                ["  processes run", f"{f['first_processes']:,}", "", ""],
                [
                    f"again: POST -> end (median of {len(f.get('second_runs_s', [0]))})",
                    f"{fmt(f['second_s'] * 1000, 0)} ms",
                    "< 1 s",
                    verdict(fast),
                ],
                [
                    "  each",
                    ", ".join(f"{w * 1000:.0f}" for w in f.get("second_runs_s", [])) + " ms",
                    "",
                    "",
                ],
                ["  of which POST /jobs", f"{fmt(f['second_submit_s'] * 1000, 0)} ms", "", ""],
                [
                    "  processes run (all) / tasks cached (each)",
                    f"{f['second_processes']:,} / {f['second_cached']:,}",
                    f"0 / {f['tasks']:,}",
                    verdict(none_ran),
                ],
            ],
        )
    )
    return fast and none_ran
