import io
import json
import math
import pickle

import pytest

from computalot.jsonsafe import NonFinite, NonFiniteJSON, load_result, loads_strict, scrub


def test_loads_strict_accepts_json_and_the_words_inside_strings() -> None:
    text = '{"a": [1, 2.5, null], "note": "NaN and -Infinity are fine in a string \\" NaN"}'
    assert loads_strict(text.encode()) == json.loads(text)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_loads_strict_refuses_non_finite_with_its_position(token: str) -> None:
    text = '{"s": "NaN Infinity", "x": [1, ' + token + "]}"
    with pytest.raises(NonFiniteJSON) as caught:
        loads_strict(text)
    assert caught.value.pos == text.rindex(token)
    assert token in caught.value.msg
    assert isinstance(caught.value, json.JSONDecodeError)  # FastAPI's malformed-body path


def test_load_result_marks_and_counts() -> None:
    value, count = load_result(io.BytesIO(b'{"a": NaN, "b": [1, -Infinity], "c": "NaN"}'))
    assert count == 2
    assert isinstance(value["a"], NonFinite) and value["a"].token == "NaN"
    assert value["c"] == "NaN"
    plain, none = load_result(io.BytesIO(b'{"a": 1}'))
    assert (plain, none) == ({"a": 1}, 0)


def test_scrub_replaces_marks_and_float_nan_everywhere() -> None:
    value = {"a": NonFinite("NaN"), "b": [1, math.inf, {"c": math.nan, "d": "x"}], "e": 0.5}
    clean, count = scrub(value)
    assert count == 3
    assert clean == {"a": None, "b": [1, None, {"c": None, "d": "x"}], "e": 0.5}


def test_marks_survive_pickling() -> None:  # they cross from the Ray worker to the dispatcher
    copy = pickle.loads(pickle.dumps([NonFinite("-Infinity")]))
    assert isinstance(copy[0], NonFinite) and copy[0].token == "-Infinity"
