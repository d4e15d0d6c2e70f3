"""Request bodies are parsed as strict JSON: ``NaN`` / ``Infinity`` are refused (400).

Starlette parses with ``json.loads``, which accepts them; they would then reach the store, where
PostgreSQL refuses them, or an answer, which browsers refuse. Every router uses this route
class, so no body anywhere can carry one in (see ``computalot.jsonsafe``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from computalot.jsonsafe import loads_strict


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
