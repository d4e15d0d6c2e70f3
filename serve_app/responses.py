"""A JSON answer written by orjson, for the job routes (a page of results, tasks or events).

Returning a ``dict`` makes FastAPI walk it with ``jsonable_encoder`` before ``json.dumps``; for a
page of 1,000 results that walk costs more than reading them from the store. These routes build
plain JSON values themselves and answer with :class:`FastJSONResponse`.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from computalot.store.jsoncodec import dumps_bytes


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps_bytes(content)


class EncodedJSONResponse(JSONResponse):
    """An answer already encoded (``serve_app.answer_cache``): its bytes are sent as they are,
    with the headers a :class:`FastJSONResponse` of the same content gets."""

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return dumps_bytes(content)
