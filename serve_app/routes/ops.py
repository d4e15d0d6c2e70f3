"""Operator routes: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from computalot.auth.principal import authenticate
from computalot.errors import ComputalotError, Forbidden, envelope
from computalot.sandbox.status import sandbox_check
from computalot.settings import X402_PLACEHOLDER_PAY_TO
from serve_app.deps import get_settings_dep, get_store
from serve_app.metrics_scrape import platform_metrics
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(tags=["ops"], route_class=StrictJSONRoute)

READY_TIMEOUT_S = 3.0


@router.api_route("/health", methods=["GET", "HEAD"])
async def health() -> dict[str, Any]:
    return {"status": "ok"}


@router.api_route("/live", methods=["GET", "HEAD"])
async def live() -> dict[str, Any]:
    return {"status": "ok"}


@router.api_route("/ready", methods=["GET", "HEAD"])
async def ready(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(get_store(request).ping(), READY_TIMEOUT_S)
        checks["store"] = "ok"
    except Exception as exc:  # any failure means "not ready", reported by name
        checks["store"] = f"unavailable: {type(exc).__name__}"
    engine = request.app.state.engine
    if engine is None:
        checks["engine"] = "unavailable: no engine configured"
    else:
        checks.update(await engine.health(READY_TIMEOUT_S))
    settings = get_settings_dep(request)
    checks["sandbox"], warnings = await asyncio.to_thread(sandbox_check, settings)
    if settings.x402_pay_to == X402_PLACEHOLDER_PAY_TO:
        warnings = [
            *warnings,
            "x402 top-ups name the placeholder burn address as payTo: set "
            "COMPUTALOT_X402_PAY_TO to the operator's wallet before taking payments",
        ]
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks, "warnings": warnings})
    action = (
        "install what checks.sandbox names on this node, or set "
        "COMPUTALOT_SANDBOX=none to run tasks unconfined"
        if checks["sandbox"] != "ok"
        else "wait a few seconds and retry"
    )
    body = envelope(
        503,
        "controller is not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"),
        details=[{"loc": [k], "msg": v} for k, v in checks.items()],
        recommended_action=action,
        checks=checks,
        warnings=warnings,
    )
    return JSONResponse(body, status_code=503)


def _is_local(request: Request) -> bool:
    """A request from this machine, and provably so.

    Behind the Serve ingress every peer looks like 127.0.0.1, so a loopback peer only counts
    when the API is bound to loopback (no remote client can reach it at all). A request that
    names a forwarding chain came through some proxy and is never treated as local: the
    header is written by the client and proves nothing.
    """
    if request.headers.get("x-forwarded-for") or request.headers.get("forwarded"):
        return False
    peer = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False
    return loopback and get_settings_dep(request).binds_loopback_only


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    if not _is_local(request):
        header = request.headers.get("authorization", "")
        token = header.partition(" ")[2].strip() if header.lower().startswith("bearer ") else ""
        metrics_token = get_settings_dep(request).metrics_token
        # As bytes: compare_digest refuses str with non-ASCII characters (a header may hold any).
        allowed = bool(
            metrics_token
            and token
            and hmac.compare_digest(token.encode(), metrics_token.get_secret_value().encode())
        )
        if not allowed and token:
            try:
                async with get_store(request).sessions() as db:
                    allowed = (await authenticate(db, token)).is_admin
            except ComputalotError:
                allowed = False
        if not allowed:
            raise Forbidden(
                "metrics are for operators",
                recommended_action="call from the API host, or send an admin token or the metrics token",
            )
    body = await platform_metrics(request.app.state)  # the whole platform's (docs/metrics.md)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
