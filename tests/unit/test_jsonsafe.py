import io
import json
import math
import pickle

import pytest

from computalot.jsonsafe import NonFinite, UnstorableJSON, load_result, loads_strict, scrub


def test_loads_strict_accepts_json_and_the_words_inside_strings() -> None:
    text = '{"a": [1, 2.5, null], "note": "NaN and -Infinity are fine in a string \\" NaN"}'
    assert loads_strict(text.encode()) == json.loads(text)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_loads_strict_refuses_non_finite_with_its_position(token: str) -> None:
    text = '{"s": "NaN Infinity", "x": [1, ' + token + "]}"
    with pytest.raises(UnstorableJSON) as caught:
        loads_strict(text)
    assert caught.value.pos == text.rindex(token)
    assert token in caught.value.msg
    assert isinstance(caught.value, json.JSONDecodeError)  # FastAPI's malformed-body path


def test_load_result_marks_non_finite_and_says_when_to_scrub() -> None:
    value, needs = load_result(io.BytesIO(b'{"a": NaN, "b": [1, -Infinity], "c": "NaN"}'))
    assert needs
    assert isinstance(value["a"], NonFinite) and value["a"].token == "NaN"
    assert value["c"] == "NaN"
    assert load_result(io.BytesIO(b'{"a": "\\ud800"}'))[1]  # a lone surrogate
    assert load_result(io.BytesIO(b'{"a": 1, "e": "\\u00e9"}')) == ({"a": 1, "e": "\u00e9"}, False)


def test_scrub_replaces_marks_float_nan_and_lone_surrogates_everywhere() -> None:
    value = {
        "a": NonFinite("NaN"),
        "b": [1, math.inf, {"c": math.nan, "d": "x\ud800y"}],
        "e": 0.5,
        "\udc00": "pair \U0001f600 kept",
    }
    clean, warnings = scrub(value)
    assert clean == {
        "a": None,
        "b": [1, None, {"c": None, "d": "x\ufffdy"}],
        "e": 0.5,
        "\ufffd": "pair \U0001f600 kept",
    }
    assert len(warnings) == 2
    assert warnings[0].startswith("3 non-finite numbers (NaN/Infinity)")
    assert warnings[1].startswith("2 strings in the result held a lone UTF-16 surrogate")
    assert scrub({"ok": [1, "x"]}) == ({"ok": [1, "x"]}, [])


def test_marks_survive_pickling() -> None:  # they cross from the Ray worker to the dispatcher
    copy = pickle.loads(pickle.dumps([NonFinite("-Infinity")]))
    assert isinstance(copy[0], NonFinite) and copy[0].token == "-Infinity"


@pytest.mark.parametrize(
    ("text", "lone"),
    [
        ('{"s": "a\\ud800b"}', "\\ud800"),  # a lone high surrogate
        ('{"s": "\\ud83d\\ude00", "t": "\\udc00"}', "\\udc00"),  # a pair is fine, not a lone low
    ],
)
def test_loads_strict_refuses_lone_surrogates(text: str, lone: str) -> None:
    with pytest.raises(UnstorableJSON) as caught:
        loads_strict(text)
    assert "surrogate" in caught.value.msg
    assert caught.value.pos == text.index(lone)


def test_loads_strict_accepts_surrogate_pairs_and_escaped_backslashes() -> None:
    assert loads_strict('{"s": "\\ud83d\\ude00"}') == {"s": "\U0001f600"}
    assert loads_strict('{"s": "\\\\ud800"}') == {"s": "\\ud800"}
