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
