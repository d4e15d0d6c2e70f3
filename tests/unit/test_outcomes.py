"""Judging an attempt's outcome, with its result read the way the worker reads it
(``engine.result_file``), and the retry policy."""

import json
from pathlib import Path
from typing import Any

import pytest

from computalot.engine.attempt import Outcome
from computalot.engine.outcomes import Verdict, infrastructure_loss, judge_outcome, should_retry
from computalot.engine.result_file import prepare_result, read_result_file


def judged(text: str, *, batched: bool = False, count: int = 1) -> Verdict:
    """The verdict on an attempt that exited 0 after writing ``text`` as its result file."""
    fields = prepare_result(text.encode(), batched=batched, element_count=count, max_bytes=1 << 20)
    return judge_outcome(Outcome(**{"status": "ok", "exit_code": 0, **fields}))


def stored(verdict: Verdict) -> Any:
    assert verdict.result is not None
    return json.loads(verdict.result.text)


def test_completed_result_with_quality() -> None:
    verdict = judged('{"a": 1, "_quality": 0.5}')
    assert verdict.status == "completed"
    assert stored(verdict) == {"a": 1}
    assert verdict.quality == 0.5
    assert verdict.result_bytes == len('{"a":1}')


def test_missing_result_is_null_with_warning(tmp_path: Path) -> None:
    fields = read_result_file(
        tmp_path / "result.json", batched=False, element_count=1, max_bytes=1 << 20
    )
    verdict = judge_outcome(Outcome(**{"status": "ok", "exit_code": 0, **fields}))
    assert verdict.status == "completed" and stored(verdict) is None
    assert any("without writing" in w for w in verdict.warnings)
    batched = read_result_file(
        tmp_path / "result.json", batched=True, element_count=2, max_bytes=1 << 20
    )
    assert judge_outcome(Outcome(**{"status": "ok", **batched})).code == "invalid_result"


@pytest.mark.parametrize(
    ("text", "batched", "count"),
    [
        ("[1, 2]", False, 1),
        ("{not json", False, 1),
        ('{"results": [{}]}', True, 2),
        ('{"results": 3}', True, 1),
    ],
)
def test_bad_results_are_invalid(text: str, batched: bool, count: int) -> None:
    verdict = judged(text, batched=batched, count=count)
    assert verdict.status == "failed" and verdict.code == "invalid_result"
    error = verdict.error()
    assert error is not None and error["recommended_action"]


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        ({"status": "spawn_failed", "exit_code": 127, "error": "not found"}, "spawn_failed"),
        ({"status": "timeout", "error": "timed out"}, "timeout"),
        ({"status": "killed", "exit_code": -9}, "killed"),
        ({"status": "exit_nonzero", "exit_code": 3}, "exit_nonzero"),
    ],
)
def test_failures_are_typed(outcome: dict[str, object], code: str) -> None:
    verdict = judge_outcome(Outcome(**outcome))  # type: ignore[arg-type]
    assert verdict.status == "failed"
    assert verdict.code == code
    error = verdict.error()
    assert error is not None and error["recommended_action"]


def test_batched_results_split_per_element() -> None:
    verdict = judged('{"results": [{"v": 1, "_quality": 0.0}, {"v": 2}]}', batched=True, count=2)
    assert verdict.status == "completed"
    assert [e["result"] for e in stored(verdict)["elements"]] == [{"v": 1}, {"v": 2}]
    assert verdict.quality == 0.5


def test_a_result_nested_past_the_limit_is_invalid_and_names_it() -> None:
    assert judged('{"a": ' + "[" * 99 + "]" * 99 + "}").status == "completed"  # 100 levels
    verdict = judged('{"a": ' + "[" * 100 + "]" * 100 + "}")  # 101 levels
    assert verdict.code == "invalid_result"
    assert verdict.message is not None and "100 levels" in verdict.message


def test_results_over_the_cap_are_too_large_and_never_retried() -> None:
    big = json.dumps({"pad": "x" * 2000})
    fields = prepare_result(big.encode(), batched=False, element_count=1, max_bytes=1024)
    verdict = judge_outcome(Outcome(**{"status": "ok", **fields}))
    assert verdict.code == "result_too_large"
    error = verdict.error()
    assert error is not None and "COMPUTALOT_ARTIFACT_DIR" in error["recommended_action"]
    assert not should_retry(verdict, attempt=1, max_retries=5, lost=0, lost_budget=2)
    # The stored text is measured too: 1e5 is written back as 100000.0 (3 bytes become 8).
    grows = "{" + ",".join(f'"k{i}":1e5' for i in range(100)) + "}"
    fields = prepare_result(
        grows.encode(), batched=False, element_count=1, max_bytes=len(grows) + 10
    )
    assert fields["result_code"] == "result_too_large" and "stored result" in fields["result_error"]


def test_a_big_text_comes_apart_from_the_outcome() -> None:
    fields = prepare_result(b'{"a": 1}', batched=False, element_count=1, max_bytes=1 << 20)
    text = fields.pop("result_text")
    verdict = judge_outcome(Outcome(**{"status": "ok", "result_in_ref": True, **fields}), text)
    assert stored(verdict) == {"a": 1}
    as_bytes = judge_outcome(
        Outcome(**{"status": "ok", "result_in_ref": True, **fields}), text.encode()
    )
    assert as_bytes.result is None and bytes(as_bytes.result_data) == b'{"a":1}'
    lost = judge_outcome(Outcome(**{"status": "ok", "result_in_ref": True, **fields}))
    assert lost.status == "failed" and lost.code == "invalid_result"


def test_retry_budget_user_failures() -> None:
    failed = judge_outcome(Outcome(**{"status": "exit_nonzero", "exit_code": 1}))
    # max_retries=2: attempts 1 and 2 retry, attempt 3 is final (N+1 attempts).
    assert should_retry(failed, attempt=1, max_retries=2, lost=0, lost_budget=2)
    assert should_retry(failed, attempt=2, max_retries=2, lost=0, lost_budget=2)
    assert not should_retry(failed, attempt=3, max_retries=2, lost=0, lost_budget=2)


def test_infrastructure_loss_has_its_own_budget() -> None:
    lost = infrastructure_loss("node died")
    assert should_retry(lost, attempt=1, max_retries=0, lost=1, lost_budget=2)
    assert not should_retry(lost, attempt=3, max_retries=0, lost=3, lost_budget=2)
    # A lost attempt does not use up the user's retries.
    failed = judge_outcome(Outcome(**{"status": "exit_nonzero"}))
    assert should_retry(failed, attempt=2, max_retries=1, lost=1, lost_budget=2)


def test_cancelled_never_retries() -> None:
    verdict = judge_outcome(Outcome(**{"status": "cancelled"}))
    assert verdict.status == "cancelled"
    assert not should_retry(verdict, attempt=1, max_retries=5, lost=0, lost_budget=2)


def test_non_finite_numbers_become_null_per_element() -> None:
    verdict = judged(
        '{"results": [{"v": NaN}, {"v": 1}, {"v": [Infinity, -Infinity]}]}', batched=True, count=3
    )
    assert verdict.status == "completed"
    elements = stored(verdict)["elements"]
    assert [e["result"] for e in elements] == [{"v": None}, {"v": 1}, {"v": [None, None]}]
    assert elements[0]["warnings"][0].startswith("1 non-finite number (NaN/Infinity)")
    assert elements[1]["warnings"] == []
    assert elements[2]["warnings"][0].startswith("2 non-finite numbers (NaN/Infinity)")
    assert verdict.result is not None
    json.loads(verdict.result.text, parse_constant=lambda name: pytest.fail(name))  # strict JSON


def test_non_finite_quality_and_whole_result() -> None:
    verdict = judged('{"a": NaN, "_quality": NaN}')
    assert verdict.status == "completed" and stored(verdict) == {"a": None}
    assert any(w.startswith("2 non-finite numbers") for w in verdict.warnings)
    verdict = judged("NaN")
    assert verdict.status == "failed" and verdict.code == "invalid_result"


def test_an_outcome_survives_pickling() -> None:
    """Ray hands the outcome from the worker to the dispatcher pickled."""
    import pickle

    outcome = Outcome(status="ok", exit_code=0, result_text="{}", artifacts=[{"path": "a"}])
    assert pickle.loads(pickle.dumps(outcome)) == outcome


def test_failures_are_judged_by_exception_type() -> None:
    from ray.exceptions import RayTaskError, TaskCancelledError, WorkerCrashedError

    from computalot.engine.failures import judge_failure
    from computalot.engine.inflight import Inflight

    def info(**flags: bool) -> Inflight:
        return Inflight("task_1", "job_1", "acct_1", 1, None, 0.0, 0.0, **flags)

    assert judge_failure(info(), TaskCancelledError(), 60).status == "cancelled"
    interrupted = RayTaskError("run_task", "Traceback …", KeyboardInterrupt())
    assert judge_failure(info(), interrupted, 60).status == "cancelled"
    crashed = judge_failure(info(), WorkerCrashedError(), 60)
    assert crashed.code == "worker_lost" and crashed.infrastructure
    # A message that merely mentions an interrupt is not a cancel.
    assert judge_failure(info(), RuntimeError("KeyboardInterrupt"), 60).code == "worker_lost"
    assert judge_failure(info(backstop=True), WorkerCrashedError(), 60).code == "timeout"
    assert judge_failure(info(forced=True), WorkerCrashedError(), 60).status == "cancelled"
