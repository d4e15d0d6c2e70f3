import json
from decimal import Decimal

import pytest

from computalot.store.jsoncodec import dumps, dumps_bytes


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True], "é": "ünïcode", "nested": {"x": {"y": []}}},
        {"big": 2**70, "neg": -(2**64)},  # beyond orjson's 64 bits: the fallback writes them
        {1: "int keys become strings"},
        [0.1, 1e-7, 1.7976931348623157e308, -0.0],
        "a\ud800",  # not valid UTF-8: the fallback escapes it
    ],
)
def test_dumps_reads_back_like_the_standard_library(value: object) -> None:
    assert json.loads(dumps(value)) == json.loads(json.dumps(value))


def test_answers_are_always_valid_json() -> None:
    value = {"big": 2**70, "bad": "a\ud800", "nan": float("nan"), "money": Decimal("1.50")}
    assert json.loads(dumps_bytes(value)) == {
        "big": 2**70,
        "bad": "a\ufffd",
        "nan": None,
        "money": "1.50",
    }
    assert json.loads(dumps_bytes({"plain": [1, "é"]})) == {"plain": [1, "é"]}
