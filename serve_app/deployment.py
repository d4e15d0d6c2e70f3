"""The Ray Serve deployment that hosts the FastAPI app.

The app is built inside each replica (``__serve_build_asgi_app__``) from the ``COMPUTALOT_*``
variables the deployment carries plus the secret settings (database URL, metrics token), which
come as the deployment's init argument and never as variables, so replicas on any node see the
same settings and no replica (nor the HAProxy ingress) has a secret in its environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from ray import serve

from computalot.engine.client import EngineClient
from computalot.engine.cluster import head_placement
from computalot.maintenance.loop import maintenance_of
from computalot.settings import Secrets, Settings, load_settings_with
from serve_app.app import create_app

APP_NAME = "computalot"


@serve.deployment(name="api")
@serve.ingress()
class ApiServer:
    def __init__(self, secret_settings: Secrets | None = None) -> None:
        self.settings = load_settings_with(secret_settings)

    def __serve_build_asgi_app__(self) -> Any:
        app = create_app(self.settings, engine=EngineClient(self.settings.ray_namespace))
        with_maintenance(app)
        return app


def with_maintenance(app: FastAPI) -> None:
    """Run the replica's maintenance (planning sweep, retention) for the app's lifespan."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        maintenance = maintenance_of(app.state)
        maintenance.start()
        try:
            async with inner(app) as state:
                yield state
        finally:
            await maintenance.stop()

    app.router.lifespan_context = lifespan


def deploy(settings: Settings, env_vars: dict[str, str], secrets: Secrets) -> None:
    """Start Serve's HTTP ingress on host:port and (re)deploy the API app; its replicas run on
    the head node where one declares ``computalot_head`` (``engine.cluster.head_placement``),
    so the store (a SQLite file on the head) is only ever opened there."""
    serve.start(http_options={"host": settings.host, "port": settings.port})
    actor_options: dict[str, Any] = {"num_cpus": 0, "runtime_env": {"env_vars": env_vars}}
    actor_options.update(head_placement())
    app = ApiServer.options(  # type: ignore[attr-defined]
        num_replicas=settings.serve_replicas,
        max_ongoing_requests=settings.serve_max_ongoing_requests,
        ray_actor_options=actor_options,
    ).bind(secrets)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)


def undeploy() -> None:
    try:
        serve.delete(APP_NAME)
    except Exception:  # Serve already gone: nothing to remove
        pass
