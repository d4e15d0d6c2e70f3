"""The submit schema refuses what the server does not run, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from computalot.schemas.jobs import NOT_YET, JobSubmit

WELL_FORMED: dict[str, Any] = {
    "callback_url": "https://example.com/hook",
    "checkpointing": {"enabled": True},
    "parameters": {"lr": [0.1]},
    "fixed_payload": {},
    "rank_by": "val_loss",
    "split": {"field": "seeds"},
    "reduce": {"hits": "sum"},
    "candidates": [{"name": "a", "payload": {}}],
    "shared_payload": {},
    "replicas": 3,
}


def _errors(body: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationError) as caught:
        JobSubmit.model_validate({"project": "p", **body})
    return list(caught.value.errors())


def test_every_field_not_built_has_a_well_formed_case() -> None:
    assert set(WELL_FORMED) == set(NOT_YET)


@pytest.mark.parametrize("name", sorted(NOT_YET))
@pytest.mark.parametrize("shape", ["well_formed", "mistyped"])
def test_a_field_not_built_yet_is_refused_by_name(name: str, shape: str) -> None:
    value = WELL_FORMED[name] if shape == "well_formed" else "?"
    (err,) = _errors({name: value})
    assert err["loc"] == (name,)
    assert err["type"] == "not_available"
    assert "not available yet" in err["msg"] or "not delivered yet" in err["msg"]


@pytest.mark.parametrize("job_type", ["sweep", "map_reduce", "benchmark"])
def test_job_types_not_built_yet_are_refused(job_type: str) -> None:
    (err,) = _errors({"type": job_type})
    assert err["loc"] == ("type",)
    assert "not available yet" in err["msg"]


def test_explicit_nulls_and_the_runnable_type_are_accepted() -> None:
    body = {"project": "p", "type": "structured_runner", **dict.fromkeys(NOT_YET)}
    job = JobSubmit.model_validate(body)
    assert job.callback_url is None and job.checkpointing is None
