import io
import json

import pytest

from computalot.engine.outcomes import infrastructure_loss, judge_outcome, should_retry
from computalot.jsonsafe import load_result


def ok(**extra: object) -> dict[str, object]:
    return {"status": "ok", "exit_code": 0, "result_state": "ok", **extra}


def test_completed_result_with_quality() -> None:
    verdict = judge_outcome(ok(result={"a": 1, "_quality": 0.5}), batched=False, element_count=1)
    assert verdict.status == "completed"
    assert verdict.result == {"a": 1}
    assert verdict.quality == 0.5


def test_missing_result_is_null_with_warning() -> None:
    verdict = judge_outcome(ok(result_state="missing"), batched=False, element_count=1)
    assert verdict.status == "completed" and verdict.result is None
    assert any("without writing" in w for w in verdict.warnings)


@pytest.mark.parametrize(
    ("outcome", "batched", "count", "code"),
    [
        (ok(result=[1, 2]), False, 1, "invalid_result"),
        (ok(result_state="invalid", result_error="not JSON"), False, 1, "invalid_result"),
        (ok(result={"results": [{}]}), True, 2, "invalid_result"),
        (ok(result_state="missing"), True, 2, "invalid_result"),
        (
            {"status": "spawn_failed", "exit_code": 127, "error": "not found"},
            False,
            1,
            "spawn_failed",
        ),
        ({"status": "timeout", "error": "timed out"}, False, 1, "timeout"),
        ({"status": "killed", "exit_code": -9}, False, 1, "killed"),
        ({"status": "exit_nonzero", "exit_code": 3}, False, 1, "exit_nonzero"),
    ],
)
def test_failures_are_typed(
    outcome: dict[str, object], batched: bool, count: int, code: str
) -> None:
    verdict = judge_outcome(outcome, batched=batched, element_count=count)
    assert verdict.status == "failed"
    assert verdict.code == code
    error = verdict.error()
    assert error is not None and error["recommended_action"]


def test_batched_results_split_per_element() -> None:
    result = {"results": [{"v": 1, "_quality": 0.0}, {"v": 2}]}
    verdict = judge_outcome(ok(result=result), batched=True, element_count=2)
    assert verdict.status == "completed"
    assert [e["result"] for e in verdict.result["elements"]] == [{"v": 1}, {"v": 2}]
    assert verdict.quality == 0.5


def test_retry_budget_user_failures() -> None:
    failed = judge_outcome(
        {"status": "exit_nonzero", "exit_code": 1}, batched=False, element_count=1
    )
    # max_retries=2: attempts 1 and 2 retry, attempt 3 is final (N+1 attempts).
    assert should_retry(failed, attempt=1, max_retries=2, lost=0, lost_budget=2)
    assert should_retry(failed, attempt=2, max_retries=2, lost=0, lost_budget=2)
    assert not should_retry(failed, attempt=3, max_retries=2, lost=0, lost_budget=2)


def test_infrastructure_loss_has_its_own_budget() -> None:
    lost = infrastructure_loss("node died")
    assert should_retry(lost, attempt=1, max_retries=0, lost=1, lost_budget=2)
    assert not should_retry(lost, attempt=3, max_retries=0, lost=3, lost_budget=2)
    # A lost attempt does not use up the user's retries.
    failed = judge_outcome({"status": "exit_nonzero"}, batched=False, element_count=1)
    assert should_retry(failed, attempt=2, max_retries=1, lost=1, lost_budget=2)


def test_cancelled_never_retries() -> None:
    verdict = judge_outcome({"status": "cancelled"}, batched=False, element_count=1)
    assert verdict.status == "cancelled"
    assert not should_retry(verdict, attempt=1, max_retries=5, lost=0, lost_budget=2)


def _read(text: str) -> tuple[object, bool]:
    return load_result(io.BytesIO(text.encode()))


def test_non_finite_numbers_become_null_per_element() -> None:
    value, marks = _read('{"results": [{"v": NaN}, {"v": 1}, {"v": [Infinity, -Infinity]}]}')
    assert marks
    verdict = judge_outcome(
        ok(result=value, result_needs_scrub=marks), batched=True, element_count=3
    )
    assert verdict.status == "completed"
    elements = verdict.result["elements"]
    assert [e["result"] for e in elements] == [{"v": None}, {"v": 1}, {"v": [None, None]}]
    assert elements[0]["warnings"][0].startswith("1 non-finite number (NaN/Infinity)")
    assert elements[1]["warnings"] == []
    assert elements[2]["warnings"][0].startswith("2 non-finite numbers (NaN/Infinity)")
    json.dumps(verdict.result, allow_nan=False)  # storable as strict JSON


def test_non_finite_quality_and_whole_result() -> None:
    value, marks = _read('{"a": NaN, "_quality": NaN}')
    verdict = judge_outcome(
        ok(result=value, result_needs_scrub=marks), batched=False, element_count=1
    )
    assert verdict.status == "completed" and verdict.result == {"a": None}
    assert any(w.startswith("2 non-finite numbers") for w in verdict.warnings)
    bare, marks = _read("NaN")
    verdict = judge_outcome(
        ok(result=bare, result_needs_scrub=marks), batched=False, element_count=1
    )
    assert verdict.status == "failed" and verdict.code == "invalid_result"
