"""Request bodies are parsed as strict JSON: nesting deeper than ``MAX_JSON_DEPTH`` and
``NaN`` / ``Infinity`` are refused (400).

Starlette parses with ``json.loads``, which accepts NaN; it would then reach the store, where
PostgreSQL refuses it, or an answer, which browsers refuse. A body nested 100,000 levels deep
would overflow the parser's C stack and kill the replica; its depth is measured before any parser
sees it, for every route, authenticated or not. Every router uses this route class, so no body
anywhere can get past it (see ``computalot.jsonsafe``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from computalot.errors import BadRequest
from computalot.jsonsafe import MAX_JSON_DEPTH, TooDeep, loads_strict
from serve_app.errors import EnvelopeHTTPException

#: Bodies larger than this are measured and parsed on a worker thread, not the event loop
#: (a 16 MiB body takes long enough to stall every other request: bench/README.md).
THREAD_PARSE_BYTES = 1024 * 1024


def _parse(body: bytes) -> Any:
    try:
        return loads_strict(body)
    except TooDeep as exc:
        raise EnvelopeHTTPException(
            BadRequest(
                str(exc),
                details=[{"loc": ["body"], "msg": f"at most {MAX_JSON_DEPTH} levels of nesting"}],
                recommended_action=f"send JSON nested at most {MAX_JSON_DEPTH} levels deep; "
                "flatten deep structures or upload them as artifacts",
            )
        ) from None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > THREAD_PARSE_BYTES:
                self._json = await asyncio.to_thread(_parse, body)
            else:
                self._json = _parse(body)
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
