"""``engine.run_recipe`` on the session's real Ray cluster, with a probe recipe registered in
this process (``tests/support/recipe_probe.py``): sub-tasks, failures, the timeout watchdog, a
cancel that stops the sub-tasks, published artifact ids (docs/recipes.md)."""

from __future__ import annotations

import _thread
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import ray

from computalot.artifacts.store import store_config
from computalot.engine.attempt import AttemptSpec
from computalot.engine.run_recipe import execute_recipe
from computalot.settings import load_settings
from tests.support import recipe_probe
from tests.support.helpers import pid_alive, wait_for


@pytest.fixture(scope="module", autouse=True)
def probe(platform: Any) -> None:
    recipe_probe.install()


def spec_for(operation: str, timeout_s: float = 60.0, **payload: Any) -> AttemptSpec:
    return AttemptSpec(
        job_id="job_probe",
        account_id="acc_probe",
        task_id=f"tsk_probe_{operation}",
        index=0,
        attempt=1,
        payload={"operation": operation, **payload},
        runner_command=[],
        timeout_s=timeout_s,
        namespace="computalot-test-nohub",
        store=store_config(load_settings()),
        recipe={"recipe": recipe_probe.NAME, "operation": operation, "cpus": 2, "inputs": {}},
    )


def cpus_free() -> float:
    return float(ray.available_resources().get("CPU", 0.0))


def test_sub_tasks_run_as_ray_tasks_and_the_result_is_their_answer() -> None:
    outcome, big = execute_recipe(spec_for("fan", n=3, seconds=0.1))
    assert outcome.status == "ok" and outcome.result_state == "ok", outcome
    result = json.loads(str(outcome.result_text))
    assert result["cpus"] == 2
    assert len(result["pids"]) == 3 and os.getpid() not in result["pids"]
    assert outcome.last_progress == {"fraction": 1.0, "best_score": 1.5}
    assert big is None


@pytest.mark.parametrize(
    ("operation", "status", "needle"),
    [
        ("refuse", "invalid_input", "candidate: 44 numbers"),
        ("child_refuses", "invalid_input", "refused by the sub-task"),
        ("crash", "recipe_error", "ZeroDivisionError"),
    ],
)
def test_a_failure_is_a_status_and_a_message_never_a_traceback(
    operation: str, status: str, needle: str
) -> None:
    outcome, _ = execute_recipe(spec_for(operation))
    assert outcome.status == status, outcome
    assert needle in str(outcome.error)
    assert "Traceback" not in str(outcome.error)


def test_a_result_that_is_not_plain_json_is_an_invalid_result() -> None:
    outcome, _ = execute_recipe(spec_for("nan"))
    assert outcome.status == "ok" and outcome.result_state == "invalid"
    assert outcome.result_code == "invalid_result" and "JSON" in str(outcome.result_error)


def test_the_watchdog_ends_an_operation_that_ignores_its_deadline() -> None:
    started = time.monotonic()
    outcome, _ = execute_recipe(spec_for("hang", timeout_s=1.5))
    assert outcome.status == "timeout", outcome
    assert time.monotonic() - started < 5


def test_a_timeout_stops_the_sub_tasks(tmp_path: Path) -> None:
    total = float(ray.cluster_resources()["CPU"])
    outcome, _ = execute_recipe(
        spec_for("fan", timeout_s=2.0, n=2, seconds=60, pid_dir=str(tmp_path))
    )
    assert outcome.status == "timeout"
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2
    wait_for(lambda: not any(pid_alive(p) for p in pids), "the sub-tasks' workers to die", 20)
    wait_for(lambda: cpus_free() == total, "every CPU back", 20)


def test_a_cancel_stops_the_sub_tasks_and_answers_cancelled(tmp_path: Path) -> None:
    """A Ray cancel reaches the recipe's thread as KeyboardInterrupt, as the dispatcher's does."""
    total = float(ray.cluster_resources()["CPU"])
    stop = threading.Event()

    def cancel_once_both_run() -> None:  # not a fixed delay: workers start slowly under load
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            if len(list(tmp_path.glob("*.pid"))) >= 2:
                break
            time.sleep(0.05)
        if not stop.is_set():
            _thread.interrupt_main()

    canceller = threading.Thread(target=cancel_once_both_run, daemon=True)
    canceller.start()
    try:
        outcome, _ = execute_recipe(spec_for("fan", n=2, seconds=60, pid_dir=str(tmp_path)))
    finally:
        stop.set()
    assert outcome.status == "cancelled"
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2
    wait_for(lambda: not any(pid_alive(p) for p in pids), "the sub-tasks' workers to die", 20)
    wait_for(lambda: cpus_free() == total, "every CPU back", 20)


def test_published_files_carry_the_ids_the_result_quotes() -> None:
    outcome, _ = execute_recipe(spec_for("publish"))
    assert outcome.status == "ok", outcome
    result = json.loads(str(outcome.result_text))
    by_path = {a["path"]: a for a in outcome.artifacts}
    assert set(by_path) == {"best.json", "scratch.txt"}
    assert by_path["best.json"]["id"] == result["best_artifact"]
    assert result["best_artifact"].startswith("art_")
    assert "id" not in by_path["scratch.txt"]  # the dispatcher names it when it records it


def test_a_task_naming_what_this_worker_lacks_fails_as_a_recipe_error() -> None:
    """A job written by a deployment with another recipe, operation or payload model."""
    unknown = spec_for("fan")
    unknown = AttemptSpec(**{**_fields(unknown), "recipe": {**unknown.recipe, "operation": "warp"}})
    outcome, _ = execute_recipe(unknown)
    assert outcome.status == "recipe_error" and "warp" in str(outcome.error), outcome
    outcome, _ = execute_recipe(spec_for("fan", colour="red"))
    assert outcome.status == "recipe_error" and "colour" in str(outcome.error), outcome


def _fields(spec: AttemptSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in AttemptSpec.__dataclass_fields__}
