"""The one cursor codec: a cursor round-trips; anything else is 400 naming ``cursor``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from computalot.cursors import (
    MAX_INT,
    decode_cursor,
    decode_positions,
    decode_time_and_id,
    encode_cursor,
)
from computalot.errors import BadRequest


def test_round_trips() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert decode_time_and_id(encode_cursor([at.isoformat(), "job_x"])) == (at, "job_x")
    assert decode_positions(encode_cursor([5, 2]), 2) == [5, 2]
    assert decode_cursor(encode_cursor([7]), int) == [7]


@pytest.mark.parametrize(
    "values",
    [[], [None], ["x"], [True], [1.5], [MAX_INT], [1, 2], {"a": 1}, "text", [[1]]],
)
def test_a_wrong_shape_is_400_naming_cursor(values: Any) -> None:
    with pytest.raises(BadRequest) as info:
        decode_cursor(encode_cursor(values) if isinstance(values, list) else "e30", int)
    assert info.value.status == 400 and info.value.details[0]["loc"] == ["cursor"]


@pytest.mark.parametrize("cursor", ["not-a-cursor", "%%%", "x" * 600, "WyJ4Il0", ""])
def test_junk_is_400(cursor: str) -> None:
    with pytest.raises(BadRequest):
        decode_positions(cursor, 2)


def test_positions_are_never_negative_and_times_are_aware() -> None:
    with pytest.raises(BadRequest):
        decode_positions(encode_cursor([-1, 0]), 2)
    with pytest.raises(BadRequest):
        decode_time_and_id(encode_cursor(["2026-01-02T03:04:05", "job_x"]))
    with pytest.raises(BadRequest):
        decode_time_and_id(encode_cursor(["yesterday", "job_x"]))
