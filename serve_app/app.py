"""The FastAPI application: built the same way under Ray Serve and under plain uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

from computalot.redact import register_data_dir
from computalot.settings import Settings
from computalot.store.db import Store
from serve_app.answer_cache import AnswerCache
from serve_app.auth_cache import AuthCache
from serve_app.errors import install_error_handlers
from serve_app.middleware import BodyLimitMiddleware, BodyLimits, Metrics, ObserveMiddleware
from serve_app.ratelimit import RateLimiter
from serve_app.routes import (
    account,
    admin,
    artifacts,
    auth,
    billing,
    docs,
    feedback,
    jobs,
    ops,
    project_kv,
    project_stream,
    projects,
    quotes,
    recipes,
    streams,
    ui,
)

log = logging.getLogger("computalot.api")

# streams before jobs: /jobs/watch must win over /jobs/{job_id}. Routes are matched in order,
# one by one, a few microseconds each (with ~75 routes ahead of it, /jobs/:id spent 0.1 ms
# there): the hot reads (account, jobs) come early; no path of theirs overlaps a later
# router's. The projects' routers stay ahead of jobs, as before.
ROUTERS = [
    ops.router,
    account.router,
    project_kv.router,
    project_stream.router,
    projects.router,
    streams.router,
    jobs.router,
    docs.router,
    auth.router,
    billing.router,
    quotes.router,
    admin.router,
    feedback.router,
    artifacts.router,
    recipes.router,
    ui.router,
]


def create_app(settings: Settings, *, engine: Any = None, store: Store | None = None) -> FastAPI:
    """Build the API. ``engine`` is the client of the Ray-side engine (``None`` = not ready)."""
    app = FastAPI(
        title="Computalot",
        version="0.2.0",
        description="Submit jobs, get structured JSON results. See /llms.txt.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    register_data_dir(settings.data_dir)
    app.state.store = store or Store(settings.resolved_database_url, inline=True)
    app.state.engine = engine
    app.state.metrics = Metrics()
    app.state.metrics.watch_store(app.state.store)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.state.auth_cache = AuthCache()  # token -> Principal, <= 0.5 s (serve_app.auth_cache)
    app.state.answers = AnswerCache()  # raw job row -> encoded answer (serve_app.answer_cache)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    limits = BodyLimits(
        settings.max_json_body_bytes, settings.max_tarball_bytes, settings.max_artifact_bytes
    )
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    app.add_middleware(ObserveMiddleware, metrics=app.state.metrics)
    return app
