"""A JSON answer that embeds stored result texts (``jsoncodec.RawJSON``) as they are.

``GET /results`` hands on most results without decoding them (``store.results``): orjson writes
the rest of the answer and each stored text goes in unchanged (``orjson.Fragment``), so a page of
16 MB of results costs the replica about 16 MB, not a decoded tree many times that. What orjson
refuses elsewhere in the answer (an integer beyond 64 bits in ``meta``, say) is written by the
standard library like every other answer (``jsoncodec.dumps_bytes``), the texts spliced in.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import orjson
from fastapi.responses import JSONResponse

from computalot.jsonsafe import scrub
from computalot.store.jsoncodec import RawJSON, clip_depth

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _fragment(value: Any) -> Any:
    if type(value) is RawJSON:
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def render_raw(content: Any) -> bytes:
    try:
        return orjson.dumps(content, default=_fragment, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return _spliced(content)


def _spliced(content: Any) -> bytes:
    """The standard library's answer, each RawJSON written as a unique placeholder string that
    is then replaced by its text."""
    token = secrets.token_hex(8)
    texts: list[str] = []

    def placeholder(value: Any) -> Any:
        if type(value) is RawJSON:
            texts.append(value.text)
            return f"\x00{token}:{len(texts) - 1}\x00"
        return str(value)

    clean, _warnings = scrub(clip_depth(content))
    text = json.dumps(clean, ensure_ascii=False, default=placeholder)
    pattern = re.compile(r'"\\u0000' + token + r':(\d+)\\u0000"')
    return pattern.sub(lambda m: texts[int(m.group(1))], text).encode("utf-8")


class RawJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return render_raw(content)
