"""Every JSON body is parsed strictly: each route of the app uses StrictJSONRoute.

A router created without ``route_class=StrictJSONRoute`` would let NaN / Infinity and lone
surrogates into the store again; this catches it the day the router is added.
"""

from __future__ import annotations

from fastapi.routing import APIRoute

from serve_app.app import ROUTERS
from serve_app.strict_json import StrictJSONRoute


def test_every_api_route_parses_json_strictly() -> None:
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 20
    loose = [r.path for r in routes if not isinstance(r, StrictJSONRoute)]
    assert loose == []
