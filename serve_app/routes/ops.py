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
from computalot.ingress import INGRESS_HEADER
from computalot.sandbox.status import sandbox_check
from computalot.settings import X402_PLACEHOLDER_PAY_TO
from serve_app.client_address import client_address, ingress_token_from_env
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

    Through the platform's own ingress (its token in ``X-Computalot-Ingress``), the client's
    address is the ``X-Forwarded-For`` the ingress set in place of any the client sent
    (``serve_app.client_address``): local when it is a loopback address. Without the token
    (a replica reached some other way, plain uvicorn) the TCP peer decides, and only when the
    API is bound to loopback; a request that names a forwarding chain came through some
    other proxy and is never treated as local: the header is written by the client and
    proves nothing.
    """
    token = ingress_token_from_env()
    sent = request.headers.get(INGRESS_HEADER, "")
    if token and sent and hmac.compare_digest(sent.encode(), token.encode()):
        return _is_loopback(client_address(request, token))
    if request.headers.get("x-forwarded-for") or request.headers.get("forwarded"):
        return False
    peer = request.client.host if request.client else ""
    return _is_loopback(peer) and get_settings_dep(request).binds_loopback_only


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


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
