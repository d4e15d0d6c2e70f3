"""Results stored and answered as the JSON text their worker wrote: the store's serializer
passes it through, answers embed it unchanged, and result pages are planned by bytes."""

from __future__ import annotations

import json

import pytest

from computalot.store.jsoncodec import RawJSON, dumps
from computalot.store.results import Slice, batch_elements, plan_page, single_result
from serve_app.raw_response import render_raw


def test_the_store_serializer_passes_raw_json_through_unchanged() -> None:
    text = '{"b": 1,   "a": [1.50, "\\u00e9"]}'  # not how orjson would write it
    raw = RawJSON(text)
    assert dumps(raw) is text  # not copied, not re-encoded
    assert dumps({"a": 1}) == '{"a":1}'  # everything else is encoded as before


def test_answers_embed_raw_results_as_they_are() -> None:
    text = '{"big": [1, 2, 3], "s": "caf\\u00e9"}'
    page = {"results": [{"result": RawJSON(text)}, {"result": None}], "n": 2}
    answer = render_raw(page)
    assert text.encode() in answer  # spliced verbatim
    assert json.loads(answer) == {
        "results": [{"result": {"big": [1, 2, 3], "s": "café"}}, {"result": None}],
        "n": 2,
    }


def test_the_standard_library_fallback_still_embeds_the_texts() -> None:
    """An integer beyond 64 bits elsewhere in the answer makes orjson refuse it; the answer
    is then written by ``json`` with the stored texts spliced in."""
    raw = RawJSON('{"x": [1, {"y": null}]}')
    content = {"meta": {"huge": 10**30}, "results": [{"result": raw}], "note": "\x00tricky"}
    parsed = json.loads(render_raw(content))
    assert parsed == {
        "meta": {"huge": 10**30},
        "results": [{"result": {"x": [1, {"y": None}]}}],
        "note": "\x00tricky",
    }


def test_rows_stored_before_results_were_measured_are_decoded() -> None:
    assert isinstance(single_result('{"a": 1}', True)[0], RawJSON)
    assert single_result('{"a": 1}', False) == ({"a": 1}, "")
    assert single_result('{"a": 1}', True, decode=True) == ({"a": 1}, "")
    value, warning = single_result('{"cut": ', False)  # a row edited by hand
    assert value is None and "could not be read back" in warning
    assert batch_elements('{"elements": [{"result": 1}]}') == ([{"result": 1}], "")
    elements, warning = batch_elements("{oops")
    assert elements is None and "could not be read back" in warning


# (index, element_start, element_count, result bytes) of a job's tasks
SINGLES = [(i, i, 1, 40) for i in range(10)]


@pytest.mark.parametrize(
    ("tasks", "start", "end", "budget", "expected"),
    [
        (SINGLES, 0, 10, 1000, [Slice(i, 0, 1) for i in range(10)]),
        (SINGLES, 0, 10, 100, [Slice(0, 0, 1), Slice(1, 0, 1)]),  # 80 bytes; a third is 120
        (SINGLES[3:], 3, 10, 10, [Slice(3, 0, 1)]),  # bigger than a page: still one
        (SINGLES, 0, 4, 1000, [Slice(i, 0, 1) for i in range(4)]),  # the item limit
        # batched: 10 elements of 100 bytes each, the page starting at element 13
        ([(1, 10, 10, 1000), (2, 20, 10, 1000)], 13, 30, 450, [Slice(1, 3, 7)]),
        ([(1, 10, 10, 1000), (2, 20, 10, 1000)], 13, 30, 1000, [Slice(1, 3, 10), Slice(2, 0, 3)]),
        ([(0, 0, 5, 0)], 0, 5, 1, [Slice(0, 0, 5)]),  # nothing stored weighs nothing
    ],
)
def test_pages_are_planned_by_items_and_bytes(
    tasks: list[tuple[int, int, int, int]],
    start: int,
    end: int,
    budget: int,
    expected: list[Slice],
) -> None:
    assert plan_page(tasks, start, end, budget) == expected
